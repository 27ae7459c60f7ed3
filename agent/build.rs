//! Compile-time facts of this agent build (docs/design.md §3.15): the release keys it trusts (two
//! slots, minisign public keys; absent: updates are off), the version it reports (default: the
//! package version) and the target triple it was built for.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for name in [
        "NINSHO_AGENT_RELEASE_KEY_1",
        "NINSHO_AGENT_RELEASE_KEY_2",
        "NINSHO_AGENT_VERSION",
    ] {
        println!("cargo:rerun-if-env-changed={name}");
    }
    // Test builds only (tests/run.sh): the updater can be told to crash at a named step
    // (`NINSHO_AGENT_CRASH_AT`), so the tests can show that every crash point recovers.
    println!("cargo::rustc-check-cfg=cfg(ninsho_agent_test_hooks)");
    if env::var("NINSHO_AGENT_TEST_HOOKS").is_ok_and(|v| v == "1") {
        println!("cargo:rustc-cfg=ninsho_agent_test_hooks");
    }
    let target = env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=NINSHO_AGENT_BUILD_TARGET={target}");
    let version = env::var("NINSHO_AGENT_VERSION")
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| env::var("CARGO_PKG_VERSION").unwrap_or_default());
    if !is_version(&version) {
        panic!(
            "NINSHO_AGENT_VERSION must be a semantic version MAJOR.MINOR.PATCH[-PRE], got {version:?}"
        );
    }
    println!("cargo:rustc-env=NINSHO_AGENT_BUILD_VERSION={version}");
    for (from, to) in [
        ("NINSHO_AGENT_RELEASE_KEY_1", "NINSHO_AGENT_BUILD_KEY_1"),
        ("NINSHO_AGENT_RELEASE_KEY_2", "NINSHO_AGENT_BUILD_KEY_2"),
    ] {
        // One line of base64 (the key line of a minisign.pub file); whitespace is dropped.
        let key: String = env::var(from)
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
        {
            panic!("{from} must be a minisign public key (one line of base64)");
        }
        println!("cargo:rustc-env={to}={key}");
    }
}

/// `MAJOR.MINOR.PATCH`, optionally `-PRE` (checked again by semver at run time).
fn is_version(v: &str) -> bool {
    let core = v.split_once('-').map_or(v, |(core, _)| core);
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}
