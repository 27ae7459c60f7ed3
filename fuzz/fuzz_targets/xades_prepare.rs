#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xades::fuzzing::prepare_document(data));
