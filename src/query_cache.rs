//! Recent query embeddings of this backend, least recently used first out
//! (`uhok_embed.cache_size` entries, 0 disables). A search service sees the same queries again
//! and again ("김치찌개"), and a hit skips the forward pass entirely.
//!
//! Eviction scans for the oldest entry: at the default 1,024 entries that is about a
//! microsecond, against milliseconds for the forward pass it saves on a hit.
//!
//! Memory is bounded: only texts of at most [`MAX_CACHED_TEXT_BYTES`] are cached (queries are
//! short; a long text is rarely repeated, and keying the cache by it would keep its whole size
//! per entry), and uhok_embed.cache_size is at most 16,384 entries: at 384 dimensions and the
//! longest cached texts, under 45 MB per backend.

use std::cell::RefCell;
use std::collections::HashMap;

/// The longest text cached, in bytes.
pub const MAX_CACHED_TEXT_BYTES: usize = 1024;

#[derive(Default)]
struct Cache {
    entries: HashMap<(String, bool), (Vec<f32>, u64)>,
    clock: u64,
    hits: u64,
    misses: u64,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// The cached embedding of `text`, or `compute()`'s, remembered for next time.
pub fn get_or_insert<E>(
    text: &str,
    normalize: bool,
    capacity: usize,
    compute: impl FnOnce() -> Result<Vec<f32>, E>,
) -> Result<Vec<f32>, E> {
    if capacity == 0 || text.len() > MAX_CACHED_TEXT_BYTES {
        return compute();
    }
    let key = (text.to_owned(), normalize);
    let hit = CACHE.with_borrow_mut(|c| {
        c.clock += 1;
        let now = c.clock;
        let found = c.entries.get_mut(&key).map(|(v, used)| {
            *used = now;
            v.clone()
        });
        if found.is_some() {
            c.hits += 1
        } else {
            c.misses += 1
        }
        found
    });
    if let Some(v) = hit {
        return Ok(v);
    }
    let v = compute()?;
    CACHE.with_borrow_mut(|c| {
        while c.entries.len() >= capacity {
            let oldest = c
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => c.entries.remove(&k),
                None => break,
            };
        }
        let now = c.clock;
        c.entries.insert(key, (v.clone(), now));
    });
    Ok(v)
}

/// Forget every entry (the model changed); the hit and miss counts stay.
pub fn clear() {
    CACHE.with_borrow_mut(|c| c.entries.clear());
}

/// (entries, hits, misses)
pub fn stats() -> (usize, u64, u64) {
    CACHE.with_borrow(|c| (c.entries.len(), c.hits, c.misses))
}
