//! Ninsho Gateway server library.
