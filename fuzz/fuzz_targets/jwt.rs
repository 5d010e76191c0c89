#![no_main]
// The harness and its properties: tessera::fuzzing::jwt.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tessera::fuzzing::jwt(data);
});
