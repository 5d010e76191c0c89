#![no_main]
// The harness and its properties: tessera::fuzzing::cookie_header.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tessera::fuzzing::cookie_header(data);
});
