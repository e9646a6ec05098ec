#![no_main]
//! embed_core::fuzz_api::tokenizer_json: arbitrary bytes as that model file; Ok or an error, never a crash.
libfuzzer_sys::fuzz_target!(init: embed_core::fuzz_api::install_panic_hook(), |data: &[u8]| {
    let _ = embed_core::fuzz_api::tokenizer_json(data);
});
