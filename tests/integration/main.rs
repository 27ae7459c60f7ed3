//! The one integration test binary: starts the real gateway with real mTLS.
