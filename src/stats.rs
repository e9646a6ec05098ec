//! What the server does with the model, per database x role x model version x function: the
//! figures behind the uhok_embed_stats view (stats_sql.rs), kept the way pg_stat_statements
//! keeps its own.
//!
//! Under shared_preload_libraries the table lives in shared memory (requested in _PG_init, made
//! in the shmem startup hook, so no thread and no model load happen there) and every backend adds
//! to it. Without preloading, shared memory cannot be had any more, so each backend keeps the
//! same table in its own memory: the view then shows this session's figures and says so.
//!
//! Memory is bounded: `uhok_embed.stats_max` entries (set at server start; about 1 kB each; a
//! backend's own table has 100); when the table is full the entry with the fewest calls gives
//! way, and uhok_embed_stats_info counts it (`dealloc`, as pg_stat_statements_info does).
//!
//! Cost per call: one LWLock taken shared (exclusive only for a new entry) and a few atomic
//! additions; the entry's slot is remembered per backend, so no search on the common path.
//! Against a forward pass of milliseconds that is too little to see: bench/stats_overhead.sh
//! measures query p50 with `uhok_embed.stats` on and off in the same run.
//!
//! Latency percentiles come from a fixed histogram (embed_core::latency: 96 buckets, each 19%
//! wider than the one before), clamped to the min and max seen: within 9% of the true figure,
//! and nothing is sorted or grows.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use embed_core::latency::{bucket_of, percentile_ms, BUCKETS};
use embed_core::Usage;
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgSqlErrorCode;

use crate::gucs;

/// What was called: the rows of the view.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Function {
    /// uhok_embed(text) from SQL.
    Embed = 1,
    /// uhok_embed_batch(text[]) from SQL.
    EmbedBatch = 2,
    /// The sync triggers of uhok_embed_attach (row and batch mode).
    Trigger = 3,
    /// CALL uhok_embed_backfill.
    Backfill = 4,
    /// uhok_search's query embedding.
    Search = 5,
}

impl Function {
    pub fn name(self) -> &'static str {
        match self {
            Function::Embed => "uhok_embed",
            Function::EmbedBatch => "uhok_embed_batch",
            Function::Trigger => "trigger",
            Function::Backfill => "backfill",
            Function::Search => "search",
        }
    }

    /// The caller names the extension's own SQL passes to uhok_embed_internal.*_as().
    pub fn from_caller(caller: &str) -> Option<Function> {
        match caller {
            "trigger" => Some(Function::Trigger),
            "backfill" => Some(Function::Backfill),
            "search" => Some(Function::Search),
            _ => None,
        }
    }

    fn from_u8(n: u8) -> Option<Function> {
        [
            Function::Embed,
            Function::EmbedBatch,
            Function::Trigger,
            Function::Backfill,
            Function::Search,
        ]
        .into_iter()
        .find(|f| *f as u8 == n)
    }
}

/// Longest model version kept (folder name, '@', 16 hex digits, maybe '+bf16'); a longer one
/// is cut at a character boundary.
const VERSION_BYTES: usize = 118;

#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Key {
    hash: u64,
    database: u32,
    role: u32,
    function: u8,
    version_len: u8,
    version: [u8; VERSION_BYTES],
}

impl Key {
    fn new(function: Function, version: &str) -> Key {
        let mut len = version.len().min(VERSION_BYTES);
        while !version.is_char_boundary(len) {
            len -= 1;
        }
        let mut key = Key {
            hash: 0,
            // SAFETY: plain reads of the backend's database and current user.
            database: unsafe { pg_sys::MyDatabaseId }.to_u32(),
            role: unsafe { pg_sys::GetUserId() }.to_u32(),
            function: function as u8,
            version_len: len as u8,
            version: [0; VERSION_BYTES],
        };
        key.version[..len].copy_from_slice(&version.as_bytes()[..len]);
        // FNV-1a over the fields: only to skip most entries cheaply in a search.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let fields = [
            &key.database.to_le_bytes()[..],
            &key.role.to_le_bytes(),
            &[key.function],
        ];
        for b in fields.into_iter().flatten().chain(&key.version[..len]) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
        key.hash = h;
        key
    }

    fn version(&self) -> &str {
        std::str::from_utf8(&self.version[..self.version_len as usize]).unwrap_or("")
    }
}

/// The counters of one entry, by position.
#[derive(Clone, Copy)]
enum Counter {
    Calls,
    Texts,
    Tokens,
    Truncated,
    Errors,
    CacheHits,
    CacheMisses,
    ForwardPasses,
    TotalNs,
    MinNs,
    MaxNs,
    Loads,
    LoadNs,
}
const COUNTERS: usize = Counter::LoadNs as usize + 1;

#[repr(C)]
struct Entry {
    /// Written only under the exclusive lock; read under the shared one.
    key: Key,
    counters: [AtomicU64; COUNTERS],
    histogram: [AtomicU64; BUCKETS],
}

impl Entry {
    fn get(&self, c: Counter) -> u64 {
        self.counters[c as usize].load(Relaxed)
    }

    fn add(&self, c: Counter, n: u64) {
        if n > 0 {
            self.counters[c as usize].fetch_add(n, Relaxed);
        }
    }

    /// Makes this entry `key`'s, every counter zero.
    fn claim(&mut self, key: Key) {
        self.key = key;
        for c in self.counters.iter().chain(&self.histogram) {
            c.store(0, Relaxed);
        }
        self.counters[Counter::MinNs as usize].store(u64::MAX, Relaxed);
    }

    fn add_call(&self, call: &Finished) {
        self.add(Counter::Calls, 1);
        self.add(Counter::Texts, call.usage.texts);
        self.add(Counter::Tokens, call.usage.tokens);
        self.add(Counter::Truncated, call.usage.truncated);
        self.add(Counter::Errors, u64::from(call.failed));
        self.add(Counter::CacheHits, call.cache_hits);
        self.add(Counter::CacheMisses, call.cache_misses);
        self.add(Counter::ForwardPasses, call.usage.forward_passes);
        self.add(Counter::TotalNs, call.elapsed_ns);
        self.counters[Counter::MinNs as usize].fetch_min(call.elapsed_ns, Relaxed);
        self.counters[Counter::MaxNs as usize].fetch_max(call.elapsed_ns, Relaxed);
        self.add(Counter::Loads, call.loads);
        self.add(Counter::LoadNs, call.load_ns);
        self.histogram[bucket_of(call.elapsed_ns)].fetch_add(1, Relaxed);
    }
}

#[repr(C)]
struct Header {
    /// The LWLock guarding the entries' keys and `used`; null in a backend's own table.
    lock: *mut pg_sys::LWLock,
    capacity: usize,
    /// Entries 0..used hold a key.
    used: AtomicUsize,
    /// Entries that gave way to new ones since the last reset.
    dealloc: AtomicU64,
    /// When the figures were last reset (TimestampTz).
    reset_at: AtomicI64,
}

/// The header followed by `capacity` entries, in shared memory or in this backend's memory.
#[derive(Clone, Copy)]
struct Table(*mut Header);

fn table_bytes(capacity: usize) -> usize {
    std::mem::size_of::<Header>() + capacity * std::mem::size_of::<Entry>()
}

impl Table {
    /// # Safety
    /// `memory` is `table_bytes(capacity)` zeroed bytes, aligned for Header, that outlive the
    /// table.
    unsafe fn init(memory: *mut u8, capacity: usize, lock: *mut pg_sys::LWLock) -> Table {
        let header = memory.cast::<Header>();
        // SAFETY: the caller's promise; zeroed bytes are valid atomics and keys.
        unsafe {
            header.write(Header {
                lock,
                capacity,
                used: AtomicUsize::new(0),
                dealloc: AtomicU64::new(0),
                reset_at: AtomicI64::new(pg_sys::GetCurrentTimestamp()),
            });
        }
        Table(header)
    }

    fn header(&self) -> &Header {
        // SAFETY: made by init() and never freed.
        unsafe { &*self.0 }
    }

    fn entry(&self, i: usize) -> &Entry {
        debug_assert!(i < self.header().capacity);
        // SAFETY: the entries follow the header (Entry's alignment, 8, divides Header's size).
        unsafe { &*self.0.add(1).cast::<Entry>().add(i) }
    }

    #[allow(clippy::mut_from_ref)]
    /// # Safety
    /// Only under the exclusive lock (or in a backend's own table).
    unsafe fn entry_mut(&self, i: usize) -> &mut Entry {
        // SAFETY: as in entry(); the caller holds the lock.
        unsafe { &mut *self.0.add(1).cast::<Entry>().add(i) }
    }

    fn lock(&self, mode: pg_sys::LWLockMode::Type) -> Locked {
        let lock = self.header().lock;
        if !lock.is_null() {
            // SAFETY: the named tranche's lock, made in shared memory at startup.
            unsafe { pg_sys::LWLockAcquire(lock, mode) };
        }
        Locked(lock)
    }

    /// The entry of `key`, if there is one (under any lock).
    fn find(&self, key: &Key) -> Option<usize> {
        let used = self.header().used.load(Relaxed);
        (0..used).find(|&i| {
            let k = &self.entry(i).key;
            k.hash == key.hash && k == key
        })
    }

    /// Adds a call to `key`'s entry, making the entry if needed.
    fn add(&self, key: &Key, call: &Finished) {
        let remembered = SLOTS.with_borrow(|s| s.get(&key.hash).copied());
        {
            let _shared = self.lock(pg_sys::LWLockMode::LW_SHARED);
            let slot = remembered
                .filter(|&i| i < self.header().used.load(Relaxed) && self.entry(i).key == *key)
                .or_else(|| self.find(key));
            if let Some(i) = slot {
                self.entry(i).add_call(call);
                if remembered != Some(i) {
                    SLOTS.with_borrow_mut(|s| s.insert(key.hash, i));
                }
                return;
            }
        }
        let _exclusive = self.lock(pg_sys::LWLockMode::LW_EXCLUSIVE);
        let i = self.find(key).unwrap_or_else(|| {
            let header = self.header();
            let used = header.used.load(Relaxed);
            let i = if used < header.capacity {
                header.used.store(used + 1, Relaxed);
                used
            } else {
                header.dealloc.fetch_add(1, Relaxed);
                (0..used)
                    .min_by_key(|&i| self.entry(i).get(Counter::Calls))
                    .expect("a full table has entries")
            };
            // SAFETY: under the exclusive lock.
            unsafe { self.entry_mut(i).claim(*key) };
            i
        });
        self.entry(i).add_call(call);
        SLOTS.with_borrow_mut(|s| s.insert(key.hash, i));
    }

    fn reset(&self) -> pg_sys::TimestampTz {
        let _exclusive = self.lock(pg_sys::LWLockMode::LW_EXCLUSIVE);
        let header = self.header();
        header.used.store(0, Relaxed);
        header.dealloc.store(0, Relaxed);
        // SAFETY: reads the clock.
        let now = unsafe { pg_sys::GetCurrentTimestamp() };
        header.reset_at.store(now, Relaxed);
        now
    }
}

/// Holds the table's lock (if it has one) until dropped.
struct Locked(*mut pg_sys::LWLock);

impl Drop for Locked {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: acquired in Table::lock.
            unsafe { pg_sys::LWLockRelease(self.0) };
        }
    }
}

/// Entries of a backend's own table (without preloading, where uhok_embed.stats_max does not
/// exist): one database, and a few roles, model versions and functions.
const LOCAL_CAPACITY: usize = 100;

/// The table in shared memory, set by the shmem startup hook in the postmaster (and inherited
/// by every backend it forks). Null when not preloaded.
static mut SHARED: *mut Header = std::ptr::null_mut();

thread_local! {
    /// This backend's own table, when there is no shared one.
    static LOCAL: Cell<Option<Table>> = const { Cell::new(None) };
    /// Entry slot by key hash: where this backend last found each of its keys (checked
    /// against the key before use, since a reset or an eviction reuses slots).
    static SLOTS: RefCell<HashMap<u64, usize>> = RefCell::new(HashMap::new());
    /// Model loads not yet counted in an entry: the next call to finish takes them (a load
    /// that uhok_embed_version() or uhok_embed_info() did goes to the call that follows).
    static LOADS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

fn shared() -> Option<Table> {
    // SAFETY: set once in the postmaster before any backend exists; read-only afterwards.
    let p = unsafe { SHARED };
    (!p.is_null()).then_some(Table(p))
}

/// The table calls are added to: the shared one, or this backend's own (made on first use).
fn table() -> Table {
    shared().unwrap_or_else(|| {
        LOCAL.get().unwrap_or_else(|| {
            let capacity = LOCAL_CAPACITY;
            let layout = std::alloc::Layout::from_size_align(table_bytes(capacity), 8)
                .expect("a small table");
            // SAFETY: a non-zero size; kept for the life of the backend.
            let memory = unsafe { std::alloc::alloc_zeroed(layout) };
            if memory.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            // SAFETY: zeroed, aligned, never freed; no lock in a backend's own table.
            let table = unsafe { Table::init(memory, capacity, std::ptr::null_mut()) };
            LOCAL.set(Some(table));
            table
        })
    })
}

/// Whether the figures are the whole server's (the library was preloaded).
pub fn cluster_wide() -> bool {
    shared().is_some()
}

/// A model load of `ns` nanoseconds, counted with the next call.
pub fn record_load(ns: u64) {
    let (n, total) = LOADS.get();
    LOADS.set((n + 1, total + ns));
}

/// One call under way. [`Call::finish`] counts it; a call dropped unfinished (an ERROR, a
/// cancel unwinding through it) counts as a failed call.
pub struct Call {
    function: Function,
    start: Instant,
    cache: (u64, u64),
    /// The entry it counts in; the model's version is unknown until it is loaded.
    key: Option<Key>,
    /// What the model did for this call; embed-core adds to it.
    pub usage: Usage,
    done: bool,
}

struct Finished<'a> {
    usage: &'a Usage,
    failed: bool,
    cache_hits: u64,
    cache_misses: u64,
    elapsed_ns: u64,
    loads: u64,
    load_ns: u64,
}

impl Call {
    pub fn start(function: Function) -> Call {
        let (_, hits, misses) = crate::query_cache::stats();
        Call {
            function,
            start: Instant::now(),
            cache: (hits, misses),
            key: None,
            usage: Usage::default(),
            done: false,
        }
    }

    /// The version of the model serving this call (the entry it is counted in).
    pub fn model(&mut self, version: &str) {
        self.key = Some(Key::new(self.function, version));
    }

    pub fn finish(mut self) {
        self.done = true;
        self.count(false);
    }

    fn count(&self, failed: bool) {
        if !gucs::stats_enabled() {
            return;
        }
        let (_, hits, misses) = crate::query_cache::stats();
        let (loads, load_ns) = LOADS.replace((0, 0));
        let call = Finished {
            usage: &self.usage,
            failed,
            cache_hits: hits - self.cache.0,
            cache_misses: misses - self.cache.1,
            elapsed_ns: self.start.elapsed().as_nanos().min(u64::MAX as u128) as u64,
            loads,
            load_ns,
        };
        let key = self.key.unwrap_or_else(|| Key::new(self.function, ""));
        table().add(&key, &call);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.done {
            // Unwinding from an ERROR: a few atomic additions under an LWLock, nothing that
            // can raise another.
            self.count(true);
        }
    }
}

/// One row of uhok_embed_stats.
pub struct Row {
    pub role: pg_sys::Oid,
    pub database: pg_sys::Oid,
    pub function: &'static str,
    pub version: Option<String>,
    pub calls: i64,
    pub texts: i64,
    pub tokens: i64,
    pub truncated: i64,
    pub errors: i64,
    pub cache_hits: i64,
    pub cache_misses: i64,
    pub forward_passes: i64,
    pub total_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub loads: i64,
    pub load_ms: f64,
}

/// Every entry, copied under the shared lock. (Who may see which is decided by the caller,
/// after the lock is released: a privilege check reads catalogs, which can raise an ERROR.)
pub fn rows() -> Vec<Row> {
    let table = table();
    let _shared = table.lock(pg_sys::LWLockMode::LW_SHARED);
    let used = table.header().used.load(Relaxed);
    let mut rows = Vec::with_capacity(used);
    for i in 0..used {
        let e = table.entry(i);
        let role = pg_sys::Oid::from(e.key.role);
        let histogram: Vec<u64> = e.histogram.iter().map(|b| b.load(Relaxed)).collect();
        let calls = e.get(Counter::Calls);
        let ms = |ns: u64| ns as f64 / 1e6;
        let (min, max) = (ms(e.get(Counter::MinNs)), ms(e.get(Counter::MaxNs)));
        let percentile = |p: f64| percentile_ms(&histogram, p).clamp(min, max.max(min));
        let n = |c: Counter| e.get(c).min(i64::MAX as u64) as i64;
        rows.push(Row {
            role,
            database: pg_sys::Oid::from(e.key.database),
            function: Function::from_u8(e.key.function).map_or("?", Function::name),
            version: Some(e.key.version().to_owned()).filter(|v| !v.is_empty()),
            calls: n(Counter::Calls),
            texts: n(Counter::Texts),
            tokens: n(Counter::Tokens),
            truncated: n(Counter::Truncated),
            errors: n(Counter::Errors),
            cache_hits: n(Counter::CacheHits),
            cache_misses: n(Counter::CacheMisses),
            forward_passes: n(Counter::ForwardPasses),
            total_ms: ms(e.get(Counter::TotalNs)),
            mean_ms: ms(e.get(Counter::TotalNs)) / calls.max(1) as f64,
            min_ms: if calls == 0 { 0.0 } else { min },
            max_ms: max,
            p50_ms: percentile(0.50),
            p95_ms: percentile(0.95),
            p99_ms: percentile(0.99),
            loads: n(Counter::Loads),
            load_ms: ms(e.get(Counter::LoadNs)),
        });
    }
    rows
}

/// (entries given way, last reset, entries in use, capacity)
pub fn info() -> (i64, pg_sys::TimestampTz, i64, i64) {
    let table = table();
    let h = table.header();
    (
        h.dealloc.load(Relaxed) as i64,
        h.reset_at.load(Relaxed),
        h.used.load(Relaxed) as i64,
        h.capacity as i64,
    )
}

/// Forgets every figure; returns the time of the reset.
pub fn reset() -> pg_sys::TimestampTz {
    table().reset()
}

/// Under shared_preload_libraries (from _PG_init, in the postmaster): asks for the shared
/// table's memory and lock, and makes them when shared memory is made. No thread, no load.
pub fn request_shared_memory() {
    // SAFETY: _PG_init runs once, single-threaded, while preload libraries load; the previous
    // hooks are kept and called first, as every extension that installs these hooks does.
    unsafe {
        PREV_REQUEST = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(on_shmem_request);
        PREV_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(on_shmem_startup);
    }
}

const SHMEM_NAME: &std::ffi::CStr = c"uhok_embed stats";
const TRANCHE_NAME: &std::ffi::CStr = c"uhok_embed";

static mut PREV_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_STARTUP: pg_sys::shmem_startup_hook_type = None;

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_shmem_request() {
    // SAFETY: called by the postmaster while it sizes shared memory.
    unsafe {
        if let Some(prev) = PREV_REQUEST {
            prev();
        }
        pg_sys::RequestAddinShmemSpace(table_bytes(gucs::stats_max()));
        pg_sys::RequestNamedLWLockTranche(TRANCHE_NAME.as_ptr(), 1);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_shmem_startup() {
    // SAFETY: called by the postmaster (again after a crash restart) once shared memory exists;
    // AddinShmemInitLock (MainLWLockArray[21]) serialises ShmemInitStruct as pgrx's own
    // pg_shmem_init! does.
    unsafe {
        if let Some(prev) = PREV_STARTUP {
            prev();
        }
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let capacity = gucs::stats_max();
        let mut found = false;
        let memory =
            pg_sys::ShmemInitStruct(SHMEM_NAME.as_ptr(), table_bytes(capacity), &mut found);
        if !found {
            // ShmemInitStruct's memory is not zeroed.
            std::ptr::write_bytes(memory.cast::<u8>(), 0, table_bytes(capacity));
            let lock = &raw mut (*pg_sys::GetNamedLWLockTranche(TRANCHE_NAME.as_ptr())).lock;
            Table::init(memory.cast(), capacity, lock);
        }
        SHARED = memory.cast();
        pg_sys::LWLockRelease(init_lock);
    }
}

/// Logs the first truncated texts of a call at uhok_embed.log_truncated's level (off by
/// default): their size and first 80 characters. At most [`Usage::TRUNCATED_KEPT`] lines a call,
/// and one more that says how many were not shown.
pub fn log_truncated<'a>(
    usage: &Usage,
    max_seq_length: usize,
    text_at: impl Fn(usize) -> Option<&'a str>,
) {
    let Some(level) = gucs::log_truncated().level() else {
        return;
    };
    let report = |message: String| {
        ErrorReport::new(PgSqlErrorCode::ERRCODE_WARNING_STRING_DATA_RIGHT_TRUNCATION, message, "uhok_embed")
            .set_detail(format!("The model reads at most {max_seq_length} tokens of a text (its max_seq_length); the vector does not reflect the rest."))
            .set_hint("Split long texts into passages and embed each, or use a model with a longer max_seq_length.")
            .report(level);
    };
    for text in usage.truncated_first.iter().filter_map(|&i| text_at(i)) {
        let start: String = text.chars().take(80).collect();
        let more = if start.len() < text.len() { "..." } else { "" };
        report(format!(
            "uhok_embed: a text of {} bytes was truncated to {max_seq_length} tokens: \"{start}{more}\"",
            text.len()
        ));
    }
    let unshown = usage
        .truncated
        .saturating_sub(usage.truncated_first.len() as u64);
    if unshown > 0 {
        report(format!("uhok_embed: {unshown} more texts of this call were truncated to {max_seq_length} tokens"));
    }
}
