#![no_main]
//! embed_core::fuzz_api::tokenize: any text, repeated past the first window, gives exactly the
//! tokens of tokenizing it whole, for both test models' tokenizers.
libfuzzer_sys::fuzz_target!(init: embed_core::fuzz_api::install_panic_hook(), |data: &[u8]| {
    embed_core::fuzz_api::tokenize(data);
});
