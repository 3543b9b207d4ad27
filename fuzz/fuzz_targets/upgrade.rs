#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| configurapi_runner_ws::fuzzing::upgrade(data));
