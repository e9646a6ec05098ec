//! Private, content-addressed snapshots of the files that are memory-mapped (model.safetensors
//! and tokenizer.json), so that no file operation on the user's model folder can reach a mapping.
//!
//! Why: a mapped file that someone truncates or overwrites in place (`cp new/model.safetensors
//! model/`) raises SIGBUS in every process that touches the changed pages, and in PostgreSQL one
//! crashed backend resets the whole cluster. PostgreSQL itself never maps relation files for this
//! reason. Options weighed (numbers for the 470 MB multilingual fixture, this 2-core machine):
//! - Read the weights into private memory: nothing can reach them, but every backend holds its own
//!   470 MB (64 connections: 64 copies), against the design's one copy for all backends.
//! - Read them in the postmaster under shared_preload_libraries (fork shares them): only when
//!   preloading, and a backend that loads another model (SET uhok_embed.model_path) is back to a
//!   private copy.
//! - A SIGBUS handler around every read of the weights: the handler is process-wide and would
//!   have to cooperate with PostgreSQL's own signal handling, for every kernel's inner loop.
//! - This: the source is read once with read(2) (which cannot fault: a short or changed file is
//!   an error), hashed while it is copied into a file of our own named by its SHA-256, and the
//!   copy is mapped. Nobody else writes that file (it is created 0400 in a folder only the
//!   server's OS user can write, and never rewritten: a new content is a new file), so every
//!   backend shares it through the page cache exactly as it shared the user's file before, and
//!   an unlinked snapshot stays valid for whoever still maps it. The version is the hash of what
//!   was copied, so it always names the weights in memory. Cost: one copy on disk per model
//!   content, written once (about 1 s for 470 MB here); later loads in any backend find it
//!   through a small index keyed by the source's path and stat data, in microseconds.
//!   /dev/shm is not involved, so Docker's 64 MB /dev/shm does not matter.
//!
//! ```text
//! <store>/sources/<hash of the source's canonical path>        "stat data, copied_at, sha256, path"
//! <store>/sources/<hash of the source's canonical path>.lock   one copier per source at a time
//! <store>/pgsql_tmp.<sha256>                                   the snapshot, mode 0400
//! <store>/pgsql_tmp.<sha256>.fp32                              derived from it (widen.rs)
//! <store>/sources/store.lock                                   space check, copy until indexed, cleanup
//! ```
//! One backend copies a source at a time (a lock per source): after a model change, the others
//! wait for its copy and map it, instead of all writing their own. A source whose stat data
//! were written within the racy window of its copy (see [`RACY_WINDOW`]) is hashed again, not
//! copied, by the next loader; one whose stat data changed but not its size (chmod, touch, a
//! re-install of the same files) is hashed, and re-indexed without a copy when its content is
//! the snapshot's. Before writing, the free space of the store's volume is checked.
//! Index entries whose source is gone or changed size, snapshots no entry names, and copies left by
//! processes that died while copying are removed on the next copy.
//! The `pgsql_tmp` prefix makes pg_basebackup and pg_rewind skip the snapshots (they are a cache,
//! rebuilt on first use) when the store lives in the data directory, as the extension puts it.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use memmap2::Mmap;
use sha2::{Digest, Sha256};

use crate::error::{EmbedError, Result};

const SNAPSHOT_PREFIX: &str = "pgsql_tmp.";
const INCOMING_PREFIX: &str = "pgsql_tmp.incoming.";

/// File timestamps are only as fine as the kernel's clock tick (4 ms here), so a write in the
/// same tick as our copy could leave the stat data unchanged (git's "racily clean" problem). An
/// entry whose source changed (ctime, which every write, chmod and rename sets, whatever mtime
/// `cp -p` or `rsync -t` restore) less than this before or after its copy is trusted only after
/// the source is hashed again and found equal.
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Incoming copies of a process that no longer exists, or older than this, are removed.
const STALE_INCOMING: Duration = Duration::from_secs(3600);

/// Free space to leave on the store's volume beyond the copy itself: the data directory's
/// volume also holds the database and often its WAL, and a full WAL volume stops the server.
const FREE_SPACE_MARGIN: u64 = 1 << 30;

/// A snapshot of one source file, open (so that removing it cannot take it away).
pub struct Snapshot {
    file: File,
    /// The snapshot's own path.
    pub path: PathBuf,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
    /// The source's stat data when it was copied: [`Snapshot::source_changed`] compares it.
    source: PathBuf,
    key: StatKey,
}

/// What identifies a version of a file without reading it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct StatKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    mode: u32,
}

/// One line of the index: a source's stat data, when it was copied, the content's hash.
#[derive(Clone, PartialEq, Debug)]
struct Entry {
    key: StatKey,
    copied_at_ns: i128,
    sha256: String,
    source: PathBuf,
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

impl StatKey {
    fn of(m: &fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
            mode: m.mode(),
        }
    }
}

impl Entry {
    fn line(&self) -> String {
        let k = &self.key;
        format!(
            "{} {} {} {} {} {} {} {} {}\n",
            k.dev,
            k.ino,
            k.size,
            k.mtime_ns,
            k.ctime_ns,
            k.mode,
            self.copied_at_ns,
            self.sha256,
            self.source.display()
        )
    }

    fn parse(line: &str) -> Option<Self> {
        let mut f = line.trim_end_matches('\n').splitn(9, ' ');
        let mut num = || f.next()?.parse::<i128>().ok();
        let (dev, ino, size, mtime_ns, ctime_ns, mode, copied_at_ns) =
            (num()?, num()?, num()?, num()?, num()?, num()?, num()?);
        let sha256 = f.next()?.to_owned();
        let source = PathBuf::from(f.next()?);
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(Self {
            key: StatKey {
                dev: dev.try_into().ok()?,
                ino: ino.try_into().ok()?,
                size: size.try_into().ok()?,
                mtime_ns,
                ctime_ns,
                mode: mode.try_into().ok()?,
            },
            copied_at_ns,
            sha256,
            source,
        })
    }

    /// The source may have changed within the clock tick of its copy: its ctime is within the
    /// window on either side of the copy's own time. ctime, not mtime: the kernel stamps ctime
    /// at every write, chmod and utime, while mtime is whatever `tar x`, `rsync -t` or
    /// `touch -d` set, a future time included, which kept such an entry racy forever (every
    /// new backend re-hashed the weights under the lock). A ctime beyond the window after the
    /// copy is a clock that was stepped back, not a write in the copy's tick.
    fn racy(&self) -> bool {
        (self.copied_at_ns - self.key.ctime_ns).abs() < RACY_WINDOW.as_nanos() as i128
    }
}

/// The stat data of a file that is read rather than mapped (the JSON configuration files), to
/// tell later whether it changed; None if it cannot be stat'ed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stamp(Option<StatKey>);

impl Stamp {
    pub fn of(path: &Path) -> Self {
        Self(fs::metadata(path).ok().map(|m| StatKey::of(&m)))
    }
}

impl Snapshot {
    /// A read-only mapping of the snapshot. Each call maps it again (the same pages).
    pub fn map(&self) -> Result<Mmap> {
        map(&self.file, &self.path)
    }

    /// A file derived from this snapshot's content (the fp32 weights of an fp16 model, see
    /// widen.rs), of `size` bytes: `pgsql_tmp.<sha256>.<suffix>` in the same store, written once by `write` (to
    /// an incoming file, fsynced, then renamed into place, one writer at a time) and shared by
    /// every backend like the snapshot itself. It stands for the same source: same hash (so the
    /// same version), same change detection. Removed with the snapshot it derives from.
    pub fn derived(
        &self,
        store: &Path,
        suffix: &str,
        size: u64,
        poll: &mut dyn FnMut(),
        write: &mut dyn FnMut(&mut File, &mut dyn FnMut()) -> std::io::Result<()>,
    ) -> Result<Snapshot> {
        let path = self.derived_path(store, suffix);
        let found = |file: File, path: PathBuf| self.derived_file(file, path);
        if let Some(file) = whole(&path, size) {
            return Ok(found(file, path));
        }
        let lock_path = store
            .join("sources")
            .join(format!("{}.{suffix}.lock", &self.sha256[..32]));
        let _lock = lock(&lock_path, poll)?;
        if let Some(file) = whole(&path, size) {
            return Ok(found(file, path));
        }
        let _store = lock(&store_lock(store), poll)?;
        check_free_space(store, size)?;
        let mut incoming = Incoming::create(store, now_ns())?;
        write(&mut incoming.file, poll).map_err(|e| store_error(&incoming.path, e))?;
        let out = incoming.place(&path)?;
        Ok(found(out, path))
    }

    /// The file [`Snapshot::derived`] made from this snapshot under `suffix`, if the store has
    /// it (derived files appear whole, by rename); its reader checks its content.
    pub fn existing_derived(&self, store: &Path, suffix: &str) -> Option<Snapshot> {
        let path = self.derived_path(store, suffix);
        let file = File::open(&path).ok()?;
        Some(self.derived_file(file, path))
    }

    /// Where the file derived from this snapshot under `suffix` lives.
    fn derived_path(&self, store: &Path, suffix: &str) -> PathBuf {
        store.join(format!("{SNAPSHOT_PREFIX}{}.{suffix}", self.sha256))
    }

    /// A derived file, opened: it stands for this snapshot's source (same hash, same change
    /// detection).
    fn derived_file(&self, file: File, path: PathBuf) -> Snapshot {
        Snapshot {
            file,
            path,
            sha256: self.sha256.clone(),
            source: self.source.clone(),
            key: self.key,
        }
    }

    /// True when the source file is no longer the one this snapshot was copied from (written,
    /// truncated, replaced, removed or its permissions changed). A stat call, ~1 µs.
    pub fn source_changed(&self) -> bool {
        fs::metadata(&self.source).map_or(true, |m| StatKey::of(&m) != self.key)
    }
}

fn store_error(path: &Path, e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Snapshot {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The store, created 0700 if missing; refused if another user owns it or others may write it
/// (whoever can write it could plant a snapshot, or truncate one under a mapping).
fn open_store(store: &Path) -> Result<()> {
    for dir in [store.to_owned(), store.join("sources")] {
        if !dir.exists() {
            fs::create_dir_all(&dir).map_err(|e| store_error(&dir, e))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| store_error(&dir, e))?;
        }
        let m = fs::symlink_metadata(&dir).map_err(|e| store_error(&dir, e))?;
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        if !m.is_dir() || m.uid() != uid || m.mode() & 0o022 != 0 {
            return Err(store_error(
                &dir,
                "the folder must be a directory owned by the server's user and writable by no one else",
            ));
        }
    }
    Ok(())
}

/// The mapped snapshot of `source`, copying it into `store` first if no snapshot of its current
/// content is there. `poll` runs between chunks of a copy or a hash, and while waiting for
/// another process's copy (the extension checks for a cancel there).
pub fn snapshot(source: &Path, store: &Path, poll: &mut dyn FnMut()) -> Result<Snapshot> {
    let meta = fs::metadata(source).map_err(|e| EmbedError::reading(source, e))?;
    if !meta.is_file() {
        return Err(EmbedError::FileMissing {
            path: source.to_owned(),
        });
    }
    open_store(store)?;
    let canonical = source
        .canonicalize()
        .map_err(|e| EmbedError::reading(source, e))?;
    let index = store
        .join("sources")
        .join(&hex(&Sha256::digest(canonical.as_os_str().as_encoded_bytes()))[..32]);
    if let Some(found) = indexed(&index, StatKey::of(&meta), source, store, false, poll)? {
        return Ok(found);
    }
    // One copier per source: the others wait here, then find its copy in the index.
    let _lock = lock(&index.with_extension("lock"), poll)?;
    let meta = fs::metadata(source).map_err(|e| EmbedError::reading(source, e))?;
    if let Some(found) = indexed(&index, StatKey::of(&meta), source, store, true, poll)? {
        return Ok(found);
    }
    // Outside the store lock (a hash takes ~0.35 s for 470 MB): the cleanup keeps an entry
    // whose source kept its size, so the copy it names stays while it is hashed.
    if let Some(found) = same_content(&index, source, store, poll)? {
        return Ok(found);
    }
    let _store = lock(&store_lock(store), poll)?;
    // Under the store lock: the space check, the copy until the index names it, and the
    // cleanup, so that no cleanup removes a copy renamed in but not yet indexed, and two copies
    // of different models do not both pass the space check.
    let found = copy_in(source, &canonical, store, &index, poll)?;
    remove_unused(store, Some(&found.sha256));
    Ok(found)
}

/// The lock of the whole store (see snapshot()); per-source locks are taken before it, never
/// after.
fn store_lock(store: &Path) -> PathBuf {
    store.join("sources").join("store.lock")
}

/// The snapshot the index names, when the source's stat data changed but not its content:
/// `chmod`, `chown`, `touch`, a re-install of the same files. Any of them changes ctime, and
/// before this each cost a full copy with its fsync (1.5-1.8 s for the 470 MB multilingual
/// weights here, and then a re-hash of 0.36 s by the next loader when the copy fell within the
/// racy window of the change); hashing alone takes ~0.35 s. Only tried when the size is the
/// copy's: a different size is a new content, copied at once.
fn same_content(
    index: &Path,
    source: &Path,
    store: &Path,
    poll: &mut dyn FnMut(),
) -> Result<Option<Snapshot>> {
    let Some(entry) = read_small(index).ok().as_deref().and_then(Entry::parse) else {
        return Ok(None);
    };
    let size = fs::metadata(source)
        .map_err(|e| EmbedError::reading(source, e))?
        .len();
    if entry.key.size != size {
        return Ok(None);
    }
    let path = store.join(format!("{SNAPSHOT_PREFIX}{}", entry.sha256));
    let Some(file) = whole(&path, size) else {
        return Ok(None);
    };
    rehash(index, &entry, file, path, source, store, poll)
}

/// Hashes the source and, when its bytes are still those of `entry`'s snapshot (`file`, at
/// `path`), indexes it under its current stat data and returns the snapshot. The entry's time
/// is the hash's start, as copy_in's is the copy's, for the racy rule.
fn rehash(
    index: &Path,
    entry: &Entry,
    file: File,
    path: PathBuf,
    source: &Path,
    store: &Path,
    poll: &mut dyn FnMut(),
) -> Result<Option<Snapshot>> {
    let hashed_at_ns = now_ns();
    let (sha256, key) = hash_source(source, None, poll)?;
    if sha256 != entry.sha256 {
        return Ok(None);
    }
    write_index(
        index,
        &Entry {
            key,
            copied_at_ns: hashed_at_ns,
            sha256: sha256.clone(),
            source: entry.source.clone(),
        },
        store,
    )?;
    Ok(Some(Snapshot {
        file,
        path,
        sha256,
        source: source.to_owned(),
        key,
    }))
}

/// The snapshot the index names for this stat data, if it is still there. A racy entry is
/// trusted only when `verify` (the caller holds the source's lock) and the source hashes equal.
fn indexed(
    index: &Path,
    key: StatKey,
    source: &Path,
    store: &Path,
    verify: bool,
    poll: &mut dyn FnMut(),
) -> Result<Option<Snapshot>> {
    let Some(entry) = read_small(index).ok().as_deref().and_then(Entry::parse) else {
        return Ok(None);
    };
    if entry.key != key {
        return Ok(None);
    }
    let path = store.join(format!("{SNAPSHOT_PREFIX}{}", entry.sha256));
    // Gone (removed by a cleanup since the index was read) or not whole: copy again.
    let Some(file) = whole(&path, key.size) else {
        return Ok(None);
    };
    if entry.racy() {
        if !verify {
            return Ok(None);
        }
        // Equal now; trusted without hashing once the source is older than the window.
        return rehash(index, &entry, file, path, source, store, poll);
    }
    Ok(Some(Snapshot {
        file,
        path,
        sha256: entry.sha256,
        source: source.to_owned(),
        key,
    }))
}

fn read_small(path: &Path) -> std::io::Result<String> {
    let mut text = String::new();
    File::open(path)?.take(8192).read_to_string(&mut text)?;
    Ok(text)
}

fn map(file: &File, path: &Path) -> Result<Mmap> {
    // SAFETY: read-only mapping of a snapshot: a file of ours, created 0400 in a folder only we
    // can write, and never written after it was renamed into place (a new content is a new
    // file), so it cannot change or shrink under the mapping. Unlinking it keeps the mapping.
    unsafe { Mmap::map(file) }.map_err(|e| match e.raw_os_error() {
        // No address space left for the mapping (ulimit -v, a cgroup): out of memory, not I/O.
        Some(libc::ENOMEM) => EmbedError::OutOfMemory {
            bytes: file.metadata().map_or(0, |m| m.len() as usize),
            what: "mapping the model file",
        },
        _ => EmbedError::Snapshot {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    })
}

/// An exclusive lock on `path` (created if missing), polled so that a cancel can end the wait;
/// released when the returned file is closed.
fn lock(path: &Path, poll: &mut dyn FnMut()) -> Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| store_error(path, e))?;
    loop {
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(file);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(store_error(path, e));
        }
        poll();
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads the source to its end with read(2), hashing it and, if `out` is given, writing it
/// there. Returns the hash and the stat data, or FileChanged if the source changed meanwhile.
fn hash_source(
    source: &Path,
    mut out: Option<(&mut File, &Path)>,
    poll: &mut dyn FnMut(),
) -> Result<(String, StatKey)> {
    let mut src = File::open(source).map_err(|e| EmbedError::reading(source, e))?;
    let opened = StatKey::of(&src.metadata().map_err(|e| EmbedError::reading(source, e))?);
    let mut hasher = Sha256::new();
    let mut buf = crate::error::reserved(1 << 20, "reading the model file")?;
    buf.resize(1 << 20, 0u8);
    let mut read = 0u64;
    loop {
        poll();
        let n = src
            .read(&mut buf)
            .map_err(|e| EmbedError::reading(source, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        if let Some((out, path)) = out.as_mut() {
            out.write_all(&buf[..n]).map_err(|e| store_error(path, e))?;
        }
        read += n as u64;
        if read > opened.size {
            break; // growing while we read: reported below
        }
    }
    // What was read is the source's content only if it did not change while it was read.
    let by_name = fs::metadata(source).map(|m| StatKey::of(&m)).ok();
    let by_handle = src.metadata().map(|m| StatKey::of(&m)).ok();
    if read != opened.size || by_name != Some(opened) || by_handle != Some(opened) {
        return Err(EmbedError::FileChanged {
            path: source.to_owned(),
        });
    }
    Ok((hex(&hasher.finalize()), opened))
}

/// A new file of the store: written under an incoming name (`pgsql_tmp.incoming.<pid>.<time>`,
/// 0400, read and write), then fsynced and renamed into place once whole, so that after a power
/// loss no name points at a partial file. Dropped before it is placed (an error, a cancel's
/// unwind), it removes itself.
struct Incoming {
    path: PathBuf,
    file: File,
    placed: bool,
}

impl Incoming {
    fn create(store: &Path, stamp_ns: i128) -> Result<Self> {
        let path = store.join(format!(
            "{INCOMING_PREFIX}{}.{stamp_ns}",
            std::process::id()
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&path)
            .map_err(|e| store_error(&path, e))?;
        Ok(Self {
            path,
            file,
            placed: false,
        })
    }

    /// Renames the whole file to `path` and returns its descriptor: the file that gets mapped,
    /// so a cleanup by another process between the rename and an open by name cannot take it
    /// away.
    fn place(mut self, path: &Path) -> Result<File> {
        self.file
            .sync_all()
            .map_err(|e| store_error(&self.path, e))?;
        fs::rename(&self.path, path).map_err(|e| store_error(path, e))?;
        self.placed = true;
        self.file.try_clone().map_err(|e| store_error(path, e))
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if !self.placed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Space the store's volume has for unprivileged writes.
fn free_space(store: &Path) -> Option<u64> {
    let path = std::ffi::CString::new(store.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct on this stack; the path is NUL-terminated.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(path.as_ptr(), &mut st) == 0)
            .then(|| st.f_bavail as u64 * st.f_frsize as u64)
    }
}

/// The file at `path` if it has `size` bytes (a derived file from another layout or build is
/// written again, renamed over it).
fn whole(path: &Path, size: u64) -> Option<File> {
    let file = File::open(path).ok()?;
    (file.metadata().ok()?.len() == size).then_some(file)
}

/// DiskFull unless the store's volume has room for `size` bytes and the margin.
fn check_free_space(store: &Path, size: u64) -> Result<()> {
    match free_space(store) {
        Some(available) if available < size.saturating_add(FREE_SPACE_MARGIN) => {
            Err(EmbedError::DiskFull {
                path: store.to_owned(),
                needed: size.saturating_add(FREE_SPACE_MARGIN),
                available,
            })
        }
        _ => Ok(()),
    }
}

fn copy_in(
    source: &Path,
    canonical: &Path,
    store: &Path,
    index: &Path,
    poll: &mut dyn FnMut(),
) -> Result<Snapshot> {
    let size = fs::metadata(source)
        .map_err(|e| EmbedError::reading(source, e))?
        .len();
    check_free_space(store, size)?;
    let copied_at_ns = now_ns();
    let mut incoming = Incoming::create(store, copied_at_ns)?;
    let (sha256, key) = hash_source(source, Some((&mut incoming.file, &incoming.path)), poll)?;
    let path = store.join(format!("{SNAPSHOT_PREFIX}{sha256}"));
    let out = incoming.place(&path)?;
    let entry = Entry {
        key,
        copied_at_ns,
        sha256: sha256.clone(),
        source: canonical.to_owned(),
    };
    write_index(index, &entry, store)?;
    Ok(Snapshot {
        file: out,
        path,
        sha256,
        source: source.to_owned(),
        key,
    })
}

fn write_index(index: &Path, entry: &Entry, store: &Path) -> Result<()> {
    let tmp = index.with_extension(format!("tmp.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(entry.line().as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, index)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        store_error(store, e)
    })
}

/// One file of the store, as [`list`] reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreFile {
    /// The file's name in the store.
    pub name: String,
    /// `snapshot` (a copy of a source), `derived` (made from a snapshot, such as the fp32
    /// weights widen.rs writes) or `incoming` (a copy being written, or left by a process that
    /// died while writing it).
    pub kind: &'static str,
    pub bytes: u64,
    /// The content's SHA-256 (for `derived`: the snapshot's it was made from).
    pub sha256: Option<String>,
    /// The live sources whose index entry names this content.
    pub sources: Vec<PathBuf>,
    /// Whether the next cleanup keeps it: a live source names it, or it is an incoming copy
    /// whose process still runs (and is younger than [`STALE_INCOMING`]).
    pub in_use: bool,
}

/// Every file of the store with what the cleanup rule says of it. Reads only; an absent store
/// is empty.
pub fn list(store: &Path) -> Result<Vec<StoreFile>> {
    if !store.exists() {
        return Ok(Vec::new());
    }
    let (live, _) = read_index(store);
    let entries = fs::read_dir(store).map_err(|e| store_error(store, e))?;
    let mut files: Vec<StoreFile> = entries
        .flatten()
        .filter_map(|e| describe(&e, &live))
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// A file of the store as [`list`] reports it; None for what is not a copy (sources/).
fn describe(entry: &fs::DirEntry, live: &[Entry]) -> Option<StoreFile> {
    let name = entry.file_name().to_string_lossy().into_owned();
    let (kind, sha256) = classify(&name)?;
    let sources: Vec<PathBuf> = live
        .iter()
        .filter(|e| Some(e.sha256.as_str()) == sha256.as_deref())
        .map(|e| e.source.clone())
        .collect();
    Some(StoreFile {
        in_use: !unused(entry, kind, &sources),
        bytes: entry.metadata().map_or(0, |m| m.len()),
        name,
        kind,
        sha256,
        sources,
    })
}

/// Removes now what the cleanup after a copy would (see [`remove_unused`]), under the store
/// lock, and returns what was removed. For a DBA who wants the disk space back without waiting
/// for the next model change.
pub fn remove_unused_now(store: &Path, poll: &mut dyn FnMut()) -> Result<Vec<StoreFile>> {
    if !store.join("sources").exists() {
        return Ok(Vec::new());
    }
    open_store(store)?;
    let _store = lock(&store_lock(store), poll)?;
    Ok(remove_unused(store, None))
}

/// Index entries whose source still has the copy's size, and the paths of the others. Kept
/// while the source has the copy's size: a chmod or touch changes its stat data but not its
/// bytes, and the next load re-indexes it after a hash (same_content).
fn read_index(store: &Path) -> (Vec<Entry>, Vec<PathBuf>) {
    let (mut live, mut dead) = (Vec::new(), Vec::new());
    let Ok(sources) = fs::read_dir(store.join("sources")) else {
        return (live, dead);
    };
    for entry in sources.flatten() {
        let path = entry.path();
        if path.extension().is_some() {
            continue; // a lock or a temporary file
        }
        match read_small(&path).ok().as_deref().and_then(Entry::parse) {
            Some(e) if fs::metadata(&e.source).is_ok_and(|m| m.len() == e.key.size) => live.push(e),
            _ => dead.push(path),
        }
    }
    (live, dead)
}

/// What a file of the store is, from its name: its kind and the SHA-256 it belongs to.
fn classify(name: &str) -> Option<(&'static str, Option<String>)> {
    if name.starts_with(INCOMING_PREFIX) {
        return Some(("incoming", None));
    }
    let rest = name.strip_prefix(SNAPSHOT_PREFIX)?;
    match rest.split_once('.') {
        Some((sha, _)) => Some(("derived", Some(sha.to_owned()))),
        None => Some(("snapshot", Some(rest.to_owned()))),
    }
}

/// The one cleanup rule. A snapshot or derived file is unused when no live source names its
/// content; an incoming copy when its process no longer exists or it is older than
/// [`STALE_INCOMING`].
fn unused(entry: &fs::DirEntry, kind: &str, sources: &[PathBuf]) -> bool {
    if kind != "incoming" {
        return sources.is_empty();
    }
    let name = entry.file_name().to_string_lossy().into_owned();
    let pid = name[INCOMING_PREFIX.len()..]
        .split('.')
        .next()
        .and_then(|p| p.parse::<i32>().ok());
    let gone = pid.is_some_and(|pid| {
        // SAFETY: kill with signal 0 only checks that the process exists.
        let status = unsafe { libc::kill(pid, 0) };
        status != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    });
    let old = entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > STALE_INCOMING);
    gone || old
}

/// Housekeeping under the store lock (errors ignored): index entries whose source is gone or no
/// longer the file they describe, and every file [`unused`] says is, but the content `keep` (the
/// copy just made, which its index entry may not name yet). A process that still maps a removed
/// snapshot keeps using it (unlinking does not touch a mapping; its disk space is freed when the
/// last mapping goes). Returns what it removed.
fn remove_unused(store: &Path, keep: Option<&str>) -> Vec<StoreFile> {
    let (live, dead) = read_index(store);
    for path in dead {
        let _ = fs::remove_file(path);
    }
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(store) else {
        return removed;
    };
    for entry in entries.flatten() {
        let Some(file) = describe(&entry, &live) else {
            continue;
        };
        let kept = file.sha256.is_some() && file.sha256.as_deref() == keep;
        if !kept && !file.in_use && fs::remove_file(entry.path()).is_ok() {
            removed.push(file);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "embed-core-snapshot-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    /// Sources older than the racy window, so that they are indexed.
    fn old_file(path: &Path, content: &[u8]) {
        fs::write(path, content).unwrap();
        let t = SystemTime::now() - Duration::from_secs(60);
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn a_snapshot_outlives_every_change_to_its_source() {
        let store = store();
        fs::create_dir_all(&store).unwrap();
        let source = store.join("weights.bin");
        old_file(&source, &vec![7u8; 3 << 20]);
        let first = snapshot(&source, &store, &mut || {}).unwrap();
        assert_eq!(first.map().unwrap().len(), 3 << 20);
        // Second load: found through the index, same file.
        let again = snapshot(&source, &store, &mut || {}).unwrap();
        assert_eq!(
            (again.path.clone(), again.sha256.clone()),
            (first.path.clone(), first.sha256.clone())
        );
        assert!(!first.source_changed());
        // Truncate and rewrite the source in place: the mapping still reads the old bytes.
        let mapped = first.map().unwrap();
        fs::write(&source, b"short").unwrap();
        assert!(first.source_changed());
        assert!(mapped.iter().all(|&b| b == 7));
        let changed = snapshot(&source, &store, &mut || {}).unwrap();
        assert_ne!(changed.sha256, first.sha256);
        assert_eq!(&changed.map().unwrap()[..], b"short");
        // The old snapshot is no longer named and was removed, and still reads fine.
        assert!(!first.path.exists());
        assert!(mapped.iter().all(|&b| b == 7));
        assert!(first.map().unwrap().iter().all(|&b| b == 7));
        fs::remove_file(&source).unwrap();
        assert!(changed.source_changed());
        assert!(matches!(
            snapshot(&source, &store, &mut || {}),
            Err(EmbedError::FileMissing { .. })
        ));
        fs::remove_dir_all(&store).unwrap();
    }

    #[test]
    fn the_listing_and_the_cleanup_apply_one_rule() {
        let store = store();
        assert_eq!(list(&store).unwrap(), vec![]);
        assert_eq!(remove_unused_now(&store, &mut || {}).unwrap(), vec![]);
        fs::create_dir_all(&store).unwrap();
        let source = store.join("weights.bin");
        old_file(&source, &vec![3u8; 1 << 20]);
        let snap = snapshot(&source, &store, &mut || {}).unwrap();
        let derived = store.join(format!("{SNAPSHOT_PREFIX}{}.fp32", snap.sha256));
        fs::write(&derived, b"widened").unwrap();
        // What nothing names: a copy of a content no source has, its derived file, and an
        // incoming copy of a process that does not exist (pid_max is at most 2^22).
        let orphan = store.join(format!("{SNAPSHOT_PREFIX}{}", "ab".repeat(32)));
        fs::write(&orphan, b"orphan").unwrap();
        let orphan_derived = store.join(format!("{SNAPSHOT_PREFIX}{}.fp32", "ab".repeat(32)));
        fs::write(&orphan_derived, b"orphan too").unwrap();
        let dead_incoming = store.join(format!("{INCOMING_PREFIX}{}.1", 1 << 23));
        fs::write(&dead_incoming, b"half").unwrap();
        let live_incoming = store.join(format!("{INCOMING_PREFIX}{}.1", std::process::id()));
        fs::write(&live_incoming, b"writing").unwrap();

        let files = list(&store).unwrap();
        let of = |path: &Path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.iter().find(|f| f.name == name).cloned().unwrap()
        };
        let canonical = source.canonicalize().unwrap();
        let s = of(&snap.path);
        assert_eq!((s.kind, s.bytes, s.in_use), ("snapshot", 1 << 20, true));
        assert_eq!(
            (s.sha256.as_deref(), &s.sources[..]),
            (Some(&snap.sha256[..]), &[canonical.clone()][..])
        );
        let d = of(&derived);
        assert_eq!(
            (d.kind, d.in_use, &d.sources[..]),
            ("derived", true, &[canonical][..])
        );
        assert_eq!((of(&orphan).kind, of(&orphan).in_use), ("snapshot", false));
        assert_eq!(
            (of(&orphan_derived).kind, of(&orphan_derived).in_use),
            ("derived", false)
        );
        assert_eq!(
            (of(&dead_incoming).kind, of(&dead_incoming).in_use),
            ("incoming", false)
        );
        assert_eq!(
            (of(&live_incoming).kind, of(&live_incoming).in_use),
            ("incoming", true)
        );
        assert_eq!(files.len(), 6);

        let mut removed: Vec<String> = remove_unused_now(&store, &mut || {})
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        removed.sort();
        let mut expected: Vec<String> = [&orphan, &orphan_derived, &dead_incoming]
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        expected.sort();
        assert_eq!(removed, expected);
        assert_eq!(list(&store).unwrap().len(), 3);
        assert!(snap.path.exists() && derived.exists() && live_incoming.exists());
        // The source gone, its copies are unused too.
        fs::remove_file(&source).unwrap();
        assert!(list(&store)
            .unwrap()
            .iter()
            .all(|f| !f.in_use || f.kind == "incoming"));
        assert_eq!(remove_unused_now(&store, &mut || {}).unwrap().len(), 2);
        fs::remove_dir_all(&store).unwrap();
    }

    #[test]
    fn a_metadata_change_is_hashed_not_copied() {
        let store = store();
        fs::create_dir_all(&store).unwrap();
        let source = store.join("weights.bin");
        old_file(&source, &vec![3u8; 3 << 20]);
        let first = snapshot(&source, &store, &mut || {}).unwrap();
        let inode = |p: &Path| fs::metadata(p).unwrap().ino();
        let copy = inode(&first.path);
        // chmod to the same mode: only ctime changes.
        fs::set_permissions(&source, fs::metadata(&source).unwrap().permissions()).unwrap();
        let rehashed = snapshot(&source, &store, &mut || {}).unwrap();
        assert_eq!(rehashed.sha256, first.sha256);
        assert_eq!(inode(&rehashed.path), copy, "copied again");
        assert!(!rehashed.source_changed());
        // The same size with other bytes is a new content.
        fs::write(&source, vec![4u8; 3 << 20]).unwrap();
        let changed = snapshot(&source, &store, &mut || {}).unwrap();
        assert_ne!(changed.sha256, first.sha256);
        assert!(changed.map().unwrap().iter().all(|&b| b == 4));
        fs::remove_dir_all(&store).unwrap();
    }

    /// Two sources copied again and again at once into one store: each copy is still in place
    /// when its snapshot() returns (the other's cleanup ran before the copy was renamed in or
    /// after it was indexed, never in between).
    #[test]
    fn concurrent_copies_and_cleanups_keep_each_others_snapshots() {
        let store = store();
        fs::create_dir_all(&store).unwrap();
        let run = |name: &str, byte: u8| {
            let source = store.join(name);
            for i in 0..40u8 {
                old_file(&source, &vec![byte.wrapping_add(i); 256 << 10]);
                let s = snapshot(&source, &store, &mut || {}).unwrap();
                assert!(
                    s.path.exists(),
                    "{name}: copy {i} removed before it was indexed"
                );
            }
        };
        std::thread::scope(|scope| {
            scope.spawn(|| run("a.bin", 0));
            scope.spawn(|| run("b.bin", 100));
        });
        fs::remove_dir_all(&store).unwrap();
    }

    #[test]
    fn a_cancelled_copy_leaves_nothing_behind() {
        let store = store();
        fs::create_dir_all(&store).unwrap();
        let source = store.join("weights.bin");
        old_file(&source, &vec![1u8; 4 << 20]);
        let mut calls = 0;
        let cancelled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            snapshot(&source, &store, &mut || {
                calls += 1;
                if calls == 2 {
                    panic!("cancel");
                }
            })
        }));
        assert!(cancelled.is_err());
        let left: Vec<_> = fs::read_dir(&store)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(SNAPSHOT_PREFIX))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        fs::remove_dir_all(&store).unwrap();
    }

    #[test]
    fn only_a_change_near_the_copy_is_racy() {
        let second = 1_000_000_000_i128;
        let copied_at_ns = 1_800_000_000 * second;
        let entry = |ctime_ns: i128, mtime_ns: i128| Entry {
            key: StatKey {
                dev: 1,
                ino: 2,
                size: 3,
                mtime_ns,
                ctime_ns,
                mode: 0o100644,
            },
            copied_at_ns,
            sha256: "a".repeat(64),
            source: PathBuf::from("/x"),
        };
        let year = 365 * 24 * 3600 * second;
        // A change in the copy's tick, before or after it.
        assert!(entry(copied_at_ns, copied_at_ns).racy());
        assert!(entry(copied_at_ns - second, copied_at_ns - second).racy());
        assert!(entry(copied_at_ns + second, copied_at_ns).racy());
        // Older than the window, whatever mtime says (tar x, rsync -t, touch -d).
        assert!(!entry(copied_at_ns - 60 * second, copied_at_ns - 60 * second).racy());
        assert!(!entry(copied_at_ns - 60 * second, copied_at_ns + year).racy());
        assert!(!entry(copied_at_ns - 60 * second, copied_at_ns - year).racy());
        // A ctime far in the future: the clock was stepped back since.
        assert!(!entry(copied_at_ns + year, copied_at_ns + year).racy());
    }

    #[test]
    fn index_lines_round_trip_and_reject_garbage() {
        let entry = Entry {
            key: StatKey {
                dev: 1,
                ino: 2,
                size: 3,
                mtime_ns: -4,
                ctime_ns: 5,
                mode: 0o100644,
            },
            copied_at_ns: 6,
            sha256: "a".repeat(64),
            source: PathBuf::from("/a path/with spaces"),
        };
        assert_eq!(Entry::parse(&entry.line()), Some(entry));
        for bad in ["", "1 2 3", "1 2 3 4 5 6 7 zz /x", "x 2 3 4 5 6 7 aaaa /x"] {
            assert_eq!(Entry::parse(bad), None);
        }
    }
}
