#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| card_agent::fuzzing::agent_http(data));
