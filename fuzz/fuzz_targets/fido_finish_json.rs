#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fido::fuzzing::fido_finish_json(data));
