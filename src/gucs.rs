//! The extension's settings, all named `uhok_embed.*`.

use std::ffi::{CStr, CString};

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};

/// Where the default model lives: `$sharedir` expands to PostgreSQL's share directory, like
/// `$libdir` in dynamic_library_path. scripts/install-models.sh points it at the default model.
const DEFAULT_MODEL_PATH: &CStr = c"$sharedir/uhok_embed/model";

static MODEL_PATH: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(DEFAULT_MODEL_PATH));
static THREADS: GucSetting<i32> = GucSetting::<i32>::new(1);
static BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(32);
static CACHE_SIZE: GucSetting<i32> = GucSetting::<i32>::new(1024);
static PRECISION: GucSetting<Precision> = GucSetting::<Precision>::new(Precision::Fp32);

/// Arithmetic of the forward pass's matrix products.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Precision {
    /// Full precision: equal to sentence-transformers within 1e-6.
    #[name = c"fp32"]
    Fp32,
    /// bf16 products (AVX512_BF16 where the CPU has it): about twice as fast, cosine to fp32
    /// >= 0.9999 on the test models; vectors carry a `+bf16` version.
    #[name = c"bf16"]
    Bf16,
}

impl Precision {
    /// The setting's value as written in SQL.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }
}

pub fn register() {
    // PGC_SUSET: the setting makes the server read files of the superuser's choosing, so only a
    // superuser may change it (pgml made such a setting USERSET; a user could read any file).
    GucRegistry::define_string_guc(
        c"uhok_embed.model_path",
        c"Sentence-transformers model folder that uhok_embed() uses.",
        c"A folder holding config.json, tokenizer.json, model.safetensors, sentence_bert_config.json and 1_Pooling/config.json. $sharedir expands to PostgreSQL's share directory.",
        &MODEL_PATH,
        GucContext::Suset,
        GucFlags::default(),
    );
    // One thread by default: a server runs many backends, and candle's default of one thread
    // per core in every backend oversubscribes the CPU. Any user may raise it for a session,
    // but never past the CPUs the server may use (embed_core::threads clamps it), and the
    // threads block every signal.
    GucRegistry::define_int_guc(
        c"uhok_embed.threads",
        c"Compute threads each backend uses for an embedding forward pass.",
        c"The default, 1, never oversubscribes a server running many backends; values above the number of CPUs the server may use count as that number.",
        &THREADS,
        1,
        64,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"uhok_embed.batch_size",
        c"Texts per forward pass in uhok_embed_batch(), the sync triggers and backfill.",
        c"Larger chunks amortise per-pass overhead (the weights are read once per pass); the statement's texts are sorted by length first. A pass also takes at most 64 MB of activations, whatever the batch size.",
        &BATCH_SIZE,
        1,
        4096,
        GucContext::Userset,
        GucFlags::default(),
    );
    // PGC_SUSET like model_path: it changes what uhok_embed() returns for everyone's tables.
    GucRegistry::define_enum_guc(
        c"uhok_embed.precision",
        c"Arithmetic of uhok_embed's forward pass: fp32 (exact) or bf16 (faster, approximate).",
        c"bf16 rounds weights and activations to bf16 and sums in fp32; its vectors' version ends in +bf16.",
        &PRECISION,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"uhok_embed.cache_size",
        c"Recent uhok_embed() results each backend keeps (0 disables the cache).",
        c"A repeated query text (of at most 1 kB) is answered from the cache without running the model. About 1.6 kB per entry at 384 dimensions, at most 16384 entries.",
        &CACHE_SIZE,
        0,
        16_384,
        GucContext::Userset,
        GucFlags::default(),
    );
}

/// The model path as set, `$sharedir` not yet expanded.
pub fn model_path_setting() -> String {
    MODEL_PATH
        .get()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| DEFAULT_MODEL_PATH.to_string_lossy().into_owned())
}

/// Compute threads in effect: the setting, at most the CPUs this server may use.
pub fn threads() -> usize {
    (THREADS.get().max(1) as usize).min(embed_core::threads::max_threads())
}

pub fn batch_size() -> usize {
    BATCH_SIZE.get().max(1) as usize
}

pub fn cache_size() -> usize {
    CACHE_SIZE.get().max(0) as usize
}

pub fn precision() -> Precision {
    PRECISION.get()
}
