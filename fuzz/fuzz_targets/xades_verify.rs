#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xades::fuzzing::verify_document(data));
