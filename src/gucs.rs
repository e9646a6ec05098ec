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
static STATS: GucSetting<bool> = GucSetting::<bool>::new(true);
static STATS_MAX: GucSetting<i32> = GucSetting::<i32>::new(1000);
static LOG_TRUNCATED: GucSetting<LogLevel> = GucSetting::<LogLevel>::new(LogLevel::Off);

/// uhok_embed.log_truncated: the level at which a truncated text is logged.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum LogLevel {
    #[name = c"off"]
    Off,
    #[name = c"debug1"]
    Debug1,
    #[name = c"log"]
    Log,
    #[name = c"notice"]
    Notice,
    #[name = c"warning"]
    Warning,
}

impl LogLevel {
    pub fn level(self) -> Option<pgrx::PgLogLevel> {
        match self {
            LogLevel::Off => None,
            LogLevel::Debug1 => Some(pgrx::PgLogLevel::DEBUG1),
            LogLevel::Log => Some(pgrx::PgLogLevel::LOG),
            LogLevel::Notice => Some(pgrx::PgLogLevel::NOTICE),
            LogLevel::Warning => Some(pgrx::PgLogLevel::WARNING),
        }
    }
}

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
    // Like pg_stat_statements.track: only a superuser may stop the counting others rely on.
    GucRegistry::define_bool_guc(
        c"uhok_embed.stats",
        c"Counts calls, texts, errors and latency in uhok_embed_stats.",
        c"On by default; the cost is an LWLock taken shared and a few atomic additions per call (bench/stats_overhead.sh).",
        &STATS,
        GucContext::Suset,
        GucFlags::default(),
    );
    // Sizes shared memory, so it is read once at server start (about 1 kB per entry), and exists
    // only when the library is preloaded: PostgreSQL refuses a PGC_POSTMASTER setting defined
    // later (FATAL), as pg_stat_statements.max is.
    // SAFETY: a plain read of a PostgreSQL global that is set while preload libraries load.
    if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        GucRegistry::define_int_guc(
            c"uhok_embed.stats_max",
            c"Entries (database x role x model version x function) uhok_embed_stats keeps.",
            c"When the table is full, the entry with the fewest calls gives way (uhok_embed_stats_info.dealloc counts them). About 1 kB each, in shared memory when uhok_embed is in shared_preload_libraries.",
            &STATS_MAX,
            10,
            100_000,
            GucContext::Postmaster,
            GucFlags::default(),
        );
    }
    // PGC_SUSET: at LOG it writes the start of users' texts to the server log.
    GucRegistry::define_enum_guc(
        c"uhok_embed.log_truncated",
        c"Level at which a text longer than the model's max_seq_length is reported (off, debug1, log, notice, warning).",
        c"The message gives the text's size and its first 80 characters; at most 10 texts per call, then a count.",
        &LOG_TRUNCATED,
        GucContext::Suset,
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

pub fn stats_enabled() -> bool {
    STATS.get()
}

/// uhok_embed.stats_max (only set under shared_preload_libraries).
pub fn stats_max() -> usize {
    STATS_MAX.get().clamp(10, 100_000) as usize
}

pub fn log_truncated() -> LogLevel {
    LOG_TRUNCATED.get()
}
