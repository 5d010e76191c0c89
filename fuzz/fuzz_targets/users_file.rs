#![no_main]
// The harness and its properties: tessera::fuzzing::users_file.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tessera::fuzzing::users_file(data);
});
