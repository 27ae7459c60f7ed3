//! The committed fuzz corpus (fuzz/corpus/agent_http/) replayed through the function the fuzz target
//! calls (README.md, "Fuzzing"). `make_seeds` (ignored; run by hand) writes the seeds.

#![allow(clippy::unwrap_used, reason = "test helpers: a missing corpus or fixture file is a failed test")]

use std::path::{Path, PathBuf};

use card_agent::fuzzing;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/agent_http")
}

#[test]
fn agent_http_corpus() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus()).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files {
        eprintln!("{}", file.display());
        fuzzing::agent_http(&std::fs::read(&file).unwrap());
    }
}

/// Requests as the gateway page sends them (`method ‖ flags ‖ path ‖ fields`, see `fuzzing::request`).
#[test]
#[ignore = "writes seeds; run by hand"]
fn make_seeds() {
    std::fs::create_dir_all(corpus()).unwrap();
    let body = format!(
        r#"{{"card":"hpki","challenge":"{}","origin":"{}","pin":"1234"}}"#,
        "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo",
        fuzzing::ORIGIN
    );
    let seeds: [(&str, Vec<u8>); 5] = [
        ("seed-sign", [&[1, 0x00, 0][..], body.as_bytes()].concat()),
        ("seed-status", vec![0, 0x20, 1]),
        ("seed-preflight", vec![2, 0x60, 0]),
        ("seed-foreign-host", [&[1, 0x02, 0][..], b"evil.example:18443\n", body.as_bytes()].concat()),
        ("seed-foreign-origin", [&[1, 0x04, 0][..], b"https://evil.example\n", body.as_bytes()].concat()),
    ];
    for (name, bytes) in seeds {
        std::fs::write(corpus().join(name), bytes).unwrap();
    }
}
