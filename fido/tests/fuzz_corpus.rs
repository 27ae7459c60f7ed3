//! The committed fuzz corpus (fuzz/corpus/fido_finish_json/) replayed through the function the fuzz
//! target calls (README.md, "Fuzzing"). `make_seeds` (ignored; run by hand) writes the ceremony
//! fixtures and the answers of a software authenticator to them:
//! `cargo nextest run -p fido --all-features --run-ignored only -E 'test(make_seeds)'`.

#![allow(clippy::unwrap_used, reason = "test helpers: a missing corpus or fixture file is a failed test")]

use std::path::{Path, PathBuf};

use fido::fuzzing;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

#[test]
fn fido_finish_json_corpus() {
    let dir = fuzz_dir().join("corpus/fido_finish_json");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files {
        eprintln!("{}", file.display());
        fuzzing::fido_finish_json(&std::fs::read(&file).unwrap());
    }
}

#[test]
fn the_seeds_finish_their_ceremonies() {
    // Only then does fuzzing start from answers that reach the signature checks.
    let s = fuzzing::setup();
    let read = |name: &str| std::fs::read_to_string(fuzz_dir().join("corpus/fido_finish_json").join(name)).unwrap();
    s.service.finish_registration(&s.registration, &read("seed-registration")).unwrap();
    s.service.finish_authentication(s.authentication.clone(), &read("seed-authentication"), &s.credential).unwrap();
}

#[test]
#[ignore = "writes fuzz/fixtures and seeds; run by hand"]
fn make_seeds() {
    use fido::soft::SoftAuthenticator;
    use fido::{Config, Service, UserInfo};
    let write = |dir: &str, name: &str, text: &str| {
        let dir = fuzz_dir().join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
    };
    let svc = Service::new(&Config::default()).unwrap();
    let user = UserInfo {
        user_handle: uuid::Uuid::from_bytes([7; 16]),
        name: "123456".into(),
        display_name: "医師 太郎".into(),
    };
    let mut auth = SoftAuthenticator::new();
    let (options, registration) = svc.start_registration(&user, &[]).unwrap();
    let created = auth.create(&options.to_json().unwrap());
    let new = svc.finish_registration(&registration, &created).unwrap();
    let (options, authentication) = svc.start_authentication(user.user_handle, std::slice::from_ref(&new.stored)).unwrap();
    let got = auth.get(&options.to_json().unwrap());
    write("fixtures", "fido-registration-state.json", &registration.to_json().unwrap());
    write("fixtures", "fido-authentication-state.json", &authentication.to_json().unwrap());
    write("fixtures", "fido-credential.json", &new.stored.to_json().unwrap());
    write("corpus/fido_finish_json", "seed-registration", &created);
    write("corpus/fido_finish_json", "seed-authentication", &got);
    write("corpus/fido_finish_json", "seed-envelope", r#"{"id":"AAAA","rawId":"AAAA","type":"public-key"}"#);
}
