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
//! <store>/sources/<sha256 of the source's canonical path>   "dev ino size mtime ctime sha256"
//! <store>/pgsql_tmp.<sha256>                                   the snapshot, mode 0400
//! ```
//! The `pgsql_tmp` prefix makes pg_basebackup and pg_rewind skip the snapshots (they are a cache,
//! rebuilt on first use) when the store lives in the data directory, as the extension puts it.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use memmap2::Mmap;
use sha2::{Digest, Sha256};

use crate::error::{EmbedError, Result};

const SNAPSHOT_PREFIX: &str = "pgsql_tmp.";
const INCOMING_PREFIX: &str = "pgsql_tmp.incoming.";

/// A source written less than this long ago is not indexed: file timestamps are only as fine as
/// the kernel's clock tick (4 ms here), so a write in the same tick as our copy would leave the
/// stat data unchanged (git's "racily clean" problem). Such a source is copied again by the next
/// loader, which finds it older.
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Incoming copies left behind by a process that died while copying are removed after this.
const STALE_INCOMING: Duration = Duration::from_secs(3600);

/// A snapshot of one source file, open (so that removing it cannot take it away).
pub struct Snapshot {
    file: File,
    /// The snapshot's own path (candle's loader opens files by path).
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

    fn line(&self, sha256: &str) -> String {
        format!(
            "{} {} {} {} {} {} {sha256}\n",
            self.dev, self.ino, self.size, self.mtime_ns, self.ctime_ns, self.mode
        )
    }

    fn parse(line: &str) -> Option<(Self, String)> {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        let [dev, ino, size, mtime, ctime, mode, sha] = f[..] else {
            return None;
        };
        let sha = sha.to_owned();
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some((
            Self {
                dev: dev.parse().ok()?,
                ino: ino.parse().ok()?,
                size: size.parse().ok()?,
                mtime_ns: mtime.parse().ok()?,
                ctime_ns: ctime.parse().ok()?,
                mode: mode.parse().ok()?,
            },
            sha,
        ))
    }

    fn changed_recently(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        // Only writes race with a copy; a chmod (ctime alone) changes no content.
        now - self.mtime_ns < RACY_WINDOW.as_nanos() as i128
    }
}

impl Snapshot {
    /// A read-only mapping of the snapshot. Each call maps it again (the same pages).
    pub fn map(&self) -> Result<Mmap> {
        map(&self.file, &self.path)
    }

    /// True when the source file is no longer the one this snapshot was copied from (written,
    /// truncated, replaced, removed or its permissions changed). A stat call, ~1 µs.
    pub fn source_changed(&self) -> bool {
        fs::metadata(&self.source).map_or(true, |m| StatKey::of(&m) != self.key)
    }
}

fn unreadable(path: &Path, e: std::io::Error) -> EmbedError {
    match e.kind() {
        std::io::ErrorKind::NotFound => EmbedError::FileMissing {
            path: path.to_owned(),
        },
        _ => EmbedError::FileUnreadable {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    }
}

fn store_error(store: &Path, e: std::io::Error) -> EmbedError {
    EmbedError::Snapshot {
        path: store.to_owned(),
        reason: e.to_string(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The mapped snapshot of `source`, copying it into `store` first if no snapshot of its current
/// content is there. `poll` runs between chunks of a copy (the extension checks for a cancel).
pub fn snapshot(source: &Path, store: &Path, poll: &mut dyn FnMut()) -> Result<Snapshot> {
    let meta = fs::metadata(source).map_err(|e| unreadable(source, e))?;
    if !meta.is_file() {
        return Err(EmbedError::FileMissing {
            path: source.to_owned(),
        });
    }
    let key = StatKey::of(&meta);
    let canonical = source.canonicalize().map_err(|e| unreadable(source, e))?;
    let index = store
        .join("sources")
        .join(&hex(&Sha256::digest(canonical.as_os_str().as_encoded_bytes()))[..32]);
    if let Some(found) = indexed(&index, key, source, store)? {
        return Ok(found);
    }
    copy_in(source, key, store, &index, poll)
}

/// The snapshot the index names for this stat data, if it is still there.
fn indexed(index: &Path, key: StatKey, source: &Path, store: &Path) -> Result<Option<Snapshot>> {
    let Ok(text) = read_small(index) else {
        return Ok(None);
    };
    let Some((indexed_key, sha256)) = StatKey::parse(&text) else {
        return Ok(None);
    };
    if indexed_key != key {
        return Ok(None);
    }
    let path = store.join(format!("{SNAPSHOT_PREFIX}{sha256}"));
    let Ok(file) = File::open(&path) else {
        // Removed by a cleanup since the index was read: copy again.
        return Ok(None);
    };
    match file.metadata() {
        Ok(m) if m.len() == key.size => {}
        _ => return Ok(None),
    }
    Ok(Some(Snapshot {
        file,
        path,
        sha256,
        source: source.to_owned(),
        key,
    }))
}

fn read_small(path: &Path) -> std::io::Result<String> {
    let mut text = String::new();
    File::open(path)?.take(4096).read_to_string(&mut text)?;
    Ok(text)
}

fn map(file: &File, path: &Path) -> Result<Mmap> {
    // SAFETY: read-only mapping of a snapshot: a file of ours, created 0400 and never written
    // after it was renamed into place (a new content is a new file), so it cannot change or
    // shrink under the mapping. Unlinking it keeps the mapping valid.
    unsafe { Mmap::map(file) }.map_err(|e| EmbedError::Snapshot {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Removes the incoming copy unless it was renamed into place (also on a cancel's unwind).
struct Incoming<'a>(&'a Path, bool);

impl Drop for Incoming<'_> {
    fn drop(&mut self) {
        if !self.1 {
            let _ = fs::remove_file(self.0);
        }
    }
}

fn copy_in(
    source: &Path,
    key: StatKey,
    store: &Path,
    index: &Path,
    poll: &mut dyn FnMut(),
) -> Result<Snapshot> {
    for dir in [store.to_owned(), store.join("sources")] {
        fs::create_dir_all(&dir).map_err(|e| store_error(&dir, e))?;
        // Only the server's own OS user may write the snapshots.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| store_error(&dir, e))?;
    }
    let mut src = File::open(source).map_err(|e| unreadable(source, e))?;
    let opened = src.metadata().map_err(|e| unreadable(source, e))?;
    let nonce = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let incoming_path = store.join(format!(
        "{INCOMING_PREFIX}{}.{nonce}",
        std::process::id()
    ));
    let mut incoming = Incoming(&incoming_path, false);
    // Read and write: after the rename this descriptor is the snapshot we map, so a cleanup
    // by another process between the rename and an open by name cannot take it away.
    let mut out = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(&incoming_path)
        .map_err(|e| store_error(&incoming_path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut copied = 0u64;
    loop {
        poll();
        let n = src.read(&mut buf).map_err(|e| unreadable(source, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| store_error(&incoming_path, e))?;
        copied += n as u64;
        if copied > opened.len() {
            break; // growing while we read: reported below
        }
    }
    // The copy is what the source held only if the source did not change while it was read.
    let now = fs::metadata(source).map(|m| StatKey::of(&m));
    let after = src.metadata().map(|m| StatKey::of(&m));
    if copied != opened.len()
        || StatKey::of(&opened) != key
        || now.ok() != Some(key)
        || after.ok() != Some(key)
    {
        return Err(EmbedError::FileChanged {
            path: source.to_owned(),
        });
    }
    // On disk before it is named: after a power loss the index must never name a partial file.
    out.sync_all().map_err(|e| store_error(&incoming_path, e))?;
    let sha256 = hex(&hasher.finalize());
    let path = store.join(format!("{SNAPSHOT_PREFIX}{sha256}"));
    fs::rename(&incoming_path, &path).map_err(|e| store_error(&path, e))?;
    incoming.1 = true;
    if !key.changed_recently() {
        write_index(index, &key.line(&sha256), store)?;
    }
    remove_unused(store, &sha256);
    Ok(Snapshot {
        file: out,
        path,
        sha256,
        source: source.to_owned(),
        key,
    })
}

fn write_index(index: &Path, line: &str, store: &Path) -> Result<()> {
    let tmp = index.with_extension(format!("tmp.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(line.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, index)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        store_error(store, e)
    })
}

/// Removes snapshots no index entry names any more (their sources changed) and incoming copies
/// of processes that died while copying. A backend that still maps a removed snapshot keeps
/// using it: unlinking does not touch a mapping. Errors are ignored: this is housekeeping.
fn remove_unused(store: &Path, keep: &str) {
    let Ok(sources) = fs::read_dir(store.join("sources")) else {
        return;
    };
    let mut named: Vec<String> = sources
        .flatten()
        .filter_map(|e| read_small(&e.path()).ok())
        .filter_map(|text| StatKey::parse(&text).map(|(_, sha)| sha))
        .collect();
    named.push(keep.to_owned());
    let Ok(entries) = fs::read_dir(store) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_INCOMING);
        let unused = if name.starts_with(INCOMING_PREFIX) {
            old
        } else if let Some(sha) = name.strip_prefix(SNAPSHOT_PREFIX) {
            !named.iter().any(|n| n == sha)
        } else {
            false
        };
        if unused {
            let _ = fs::remove_file(entry.path());
        }
    }
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
        assert_eq!((again.path.clone(), again.sha256.clone()), (first.path.clone(), first.sha256.clone()));
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
    fn index_lines_round_trip_and_reject_garbage() {
        let key = StatKey {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: -4,
            ctime_ns: 5,
            mode: 0o100644,
        };
        let sha = "a".repeat(64);
        assert_eq!(StatKey::parse(&key.line(&sha)), Some((key, sha)));
        for bad in ["", "1 2 3", "1 2 3 4 5 6 zz", "x 2 3 4 5 6 aaaa"] {
            assert_eq!(StatKey::parse(bad), None);
        }
    }
}
