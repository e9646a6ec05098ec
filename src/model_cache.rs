//! One loaded model per backend, loaded on first use and kept until it is stale.
//!
//! A backend is a single-threaded process, so a thread_local needs no lock. A failed load is not
//! cached: the next call tries again, so a session can SET a good path after an error.
//!
//! [`try_get`] is the one place that decides when the loaded model is stale: when
//! uhok_embed.model_path or uhok_embed.precision no longer name it, or when a file of its folder
//! changed on disk (someone copied a new model over it). The files are checked once per
//! transaction (a stat call per file), so every vector and version a transaction writes comes
//! from one model. Until then the loaded model keeps serving from what it loaded (the weights
//! and tokenizer from private snapshots, which no change to the folder can reach).

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;

use embed_core::{Backend, Embedder, LoadOptions};

use crate::{error, gucs};

struct Loaded {
    setting: Setting,
    embedder: Rc<Embedder>,
}

/// What the settings ask for: uhok_embed.model_path as written, and uhok_embed.precision.
#[derive(PartialEq)]
struct Setting {
    model_path: String,
    precision: gucs::Precision,
}

impl Setting {
    fn current() -> Self {
        Self {
            model_path: gucs::model_path_setting(),
            precision: gucs::precision(),
        }
    }

    fn load(&self) -> Result<Embedder, LoadError> {
        let dir = resolve(&self.model_path)?;
        let backend = match self.precision {
            gucs::Precision::Fp32 => Backend::Fast,
            gucs::Precision::Bf16 => Backend::FastBf16,
        };
        let options = LoadOptions {
            backend,
            snapshot_dir: snapshot_dir(),
        };
        Embedder::load_from(&dir, &options).map_err(LoadError::Model)
    }
}

/// Where the private snapshots of model files live: `$PGDATA/uhok_embed`, which only the
/// server's OS user can write, on the data directory's disk (never /dev/shm).
pub fn snapshot_dir() -> PathBuf {
    // SAFETY: DataDir is set before any library is loaded and never changes afterwards.
    let data_dir = unsafe { std::ffi::CStr::from_ptr(pgrx::pg_sys::DataDir) };
    PathBuf::from(data_dir.to_string_lossy().into_owned()).join("uhok_embed")
}

thread_local! {
    static LOADED: RefCell<Option<Loaded>> = const { RefCell::new(None) };
    /// The transaction (by start time) in which the loaded model's files were last checked.
    static FILES_CHECKED_IN: Cell<Option<pgrx::pg_sys::TimestampTz>> = const { Cell::new(None) };
    static STATS: Cell<Stats> = const { Cell::new(Stats { texts: 0, forward_passes: 0 }) };
}

/// What this backend has run through the model, for uhok_embed_info() (and for tests that
/// check that an unchanged row is not re-embedded and a bulk insert is batched).
#[derive(Clone, Copy)]
pub struct Stats {
    pub texts: u64,
    pub forward_passes: u64,
}

pub fn record(texts: u64, forward_passes: u64) {
    let s = STATS.get();
    STATS.set(Stats {
        texts: s.texts + texts,
        forward_passes: s.forward_passes + forward_passes,
    });
}

pub fn stats() -> Stats {
    STATS.get()
}

/// PostgreSQL's share directory (what `pg_config --sharedir` prints for this server).
fn share_dir() -> PathBuf {
    let mut buf = [0 as std::ffi::c_char; pgrx::pg_sys::MAXPGPATH as usize];
    // SAFETY: my_exec_path is a NUL-terminated path set at process start; get_share_path writes
    // at most MAXPGPATH bytes, NUL included, into buf.
    unsafe {
        pgrx::pg_sys::get_share_path(
            std::ptr::addr_of!(pgrx::pg_sys::my_exec_path).cast(),
            buf.as_mut_ptr(),
        );
        PathBuf::from(
            std::ffi::CStr::from_ptr(buf.as_ptr())
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// Why the model the setting names could not be loaded.
pub enum LoadError {
    /// The setting itself is unusable (a relative path).
    BadSetting(String),
    Model(embed_core::EmbedError),
}

impl LoadError {
    /// Raises this as an ERROR with its SQLSTATE, detail and hint.
    pub fn raise(self, setting: &str) -> ! {
        match self {
            LoadError::BadSetting(message) => error::raise_bad_setting(
                message,
                "Use an absolute path, or one that starts with $sharedir.",
            ),
            LoadError::Model(e) => error::raise(e, Some(setting)),
        }
    }
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::BadSetting(message) => f.write_str(message),
            LoadError::Model(e) => e.fmt(f),
        }
    }
}

/// The folder a setting names: `$sharedir` expanded; anything else must be absolute.
pub fn resolve(setting: &str) -> Result<PathBuf, LoadError> {
    if let Some(rest) = setting.strip_prefix("$sharedir") {
        return Ok(share_dir().join(rest.trim_start_matches('/')));
    }
    let path = PathBuf::from(setting);
    if !path.is_absolute() {
        return Err(LoadError::BadSetting(format!(
            "uhok_embed.model_path \"{setting}\" is not an absolute path"
        )));
    }
    Ok(path)
}

/// The model the current setting names, if this backend has already loaded it (stale or not).
pub fn loaded() -> Option<Rc<Embedder>> {
    let setting = Setting::current();
    LOADED.with_borrow(|l| {
        l.as_ref()
            .filter(|l| l.setting == setting)
            .map(|l| l.embedder.clone())
    })
}

/// The loaded model, unless its files changed on disk; checked once per transaction.
fn fresh() -> Option<Rc<Embedder>> {
    let embedder = loaded()?;
    // SAFETY: reads the current transaction's start time; functions only run in a transaction.
    let transaction = unsafe { pgrx::pg_sys::GetCurrentTransactionStartTimestamp() };
    if FILES_CHECKED_IN.get() != Some(transaction) {
        if embedder.files_changed() {
            pgrx::log!(
                "uhok_embed: the files of the loaded model {} changed on disk; loading them again",
                embedder.version().unwrap_or_default()
            );
            return None;
        }
        FILES_CHECKED_IN.set(Some(transaction));
    }
    Some(embedder)
}

/// The model the current setting names, loading it on first use and again when it is stale.
pub fn try_get() -> Result<Rc<Embedder>, LoadError> {
    error::require_utf8_database();
    apply_thread_setting();
    if let Some(embedder) = fresh() {
        return Ok(embedder);
    }
    let setting = Setting::current();
    // Drop the old model first: two multilingual models would be ~1 GB at once.
    LOADED.set(None);
    crate::query_cache::clear();
    let started = std::time::Instant::now();
    let embedder = Rc::new(setting.load()?);
    crate::stats::record_load(started.elapsed().as_nanos() as u64);
    LOADED.set(Some(Loaded {
        setting,
        embedder: embedder.clone(),
    }));
    // SAFETY: as in fresh().
    FILES_CHECKED_IN.set(Some(unsafe {
        pgrx::pg_sys::GetCurrentTransactionStartTimestamp()
    }));
    Ok(embedder)
}

/// Under shared_preload_libraries, _PG_init calls this in the postmaster: the model (and its
/// version hash) is loaded once, before any backend forks, and every backend inherits it
/// copy-on-write, so a new connection's first uhok_embed() does not load anything. Loading
/// starts no thread (the postmaster must stay single-threaded). A failure is only a WARNING:
/// the server starts, and backends load the model on first use as without preloading.
pub fn preload() {
    let setting = Setting::current();
    // A panic inside the load (a bug, say a model file some library chokes on) must not keep the
    // server from starting: it is logged like a failed load and backends load on first use.
    // Only Rust panics are caught here; a PostgreSQL error keeps unwinding as it would have.
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fault_point("preload_panic");
        setting.load()
    }));
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(payload) => {
            if payload.is::<pgrx::pg_sys::panic::CaughtError>()
                || payload.is::<pgrx::pg_sys::panic::ErrorReportWithLevel>()
                || payload.is::<pgrx::pg_sys::panic::ErrorReport>()
            {
                std::panic::resume_unwind(payload);
            }
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            pgrx::warning!(
                "uhok_embed: could not preload the model: it panicked while loading ({message}); backends will load it on first use"
            );
            return;
        }
    };
    match loaded {
        Ok(embedder) => {
            let version = embedder.version().unwrap_or_else(|e| e.to_string());
            pgrx::log!(
                "uhok_embed: preloaded {version} from \"{}\" in {:.0} ms",
                setting.model_path,
                embedder.info().load_ms
            );
            LOADED.set(Some(Loaded {
                setting,
                embedder: Rc::new(embedder),
            }));
        }
        Err(e) => pgrx::warning!(
            "uhok_embed: could not preload the model: {e}; backends will load it on first use"
        ),
    }
}

/// Like [`try_get`], raising an ERROR on failure.
pub fn get() -> Rc<Embedder> {
    try_get().unwrap_or_else(|e| e.raise(&gucs::model_path_setting()))
}

/// Sizes the compute threads from uhok_embed.threads: embed_core::threads builds a new pool
/// when the count changes (its threads block every signal).
pub fn apply_thread_setting() {
    embed_core::threads::set_threads(gucs::threads());
}

/// A fault injection point for the tests: panics when the server's environment sets
/// UHOK_EMBED_FAULT to `name` (only the postmaster's environment, which only whoever starts
/// the server controls). tests/preload.sh uses `preload_panic`.
fn fault_point(name: &str) {
    if std::env::var("UHOK_EMBED_FAULT").is_ok_and(|f| f == name) {
        panic!("fault injection: {name}");
    }
}
