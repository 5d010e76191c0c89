#![no_main]
// The harness and its properties: tessera::fuzzing::forwarded_for.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tessera::fuzzing::forwarded_for(data);
});
