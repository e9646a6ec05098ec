//! The compute threads of a forward pass: a pool of our own, sized by [`set_threads`].
//!
//! Not rayon's global pool: that one is sized once, the first time anything uses it, so a later
//! change of the thread count did nothing; and its workers inherit whatever signals the creating
//! thread accepts. In a PostgreSQL backend a worker must never take the backend's signals (their
//! handlers touch backend state that only the backend's own thread may touch), so every thread
//! of this pool starts with all signals blocked. With one thread (the default) there is no pool
//! at all and no thread is ever started.

use std::sync::{Arc, Mutex};

use rayon::ThreadPool;

static POOL: Mutex<Option<Arc<ThreadPool>>> = Mutex::new(None);

/// The most threads a pass may use: the CPUs this process may run on, read once
/// (available_parallelism reads the cgroup's CPU quota files: ~70 µs, measured as the cost of
/// a cached query when it ran on every call).
pub fn max_threads() -> usize {
    static MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Uses `threads` compute threads (clamped to 1..=[`max_threads`]) from the next product on.
/// Returns the count in effect. A change builds a new pool; the old one's threads exit once
/// no product uses them.
pub fn set_threads(threads: usize) -> usize {
    let threads = threads.clamp(1, max_threads());
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    let current = pool.as_ref().map_or(1, |p| p.current_num_threads());
    if current != threads {
        *pool = if threads == 1 {
            None
        } else {
            build(threads).map(Arc::new)
        };
    }
    pool.as_ref().map_or(1, |p| p.current_num_threads())
}

/// The pool, when more than one thread is in effect.
pub(crate) fn pool() -> Option<Arc<ThreadPool>> {
    POOL.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// A pool for candle's forward pass (the fallback for non-fp32 weights), which always uses
/// rayon: the pool above when there is one, else one thread of our own, so that rayon's global
/// pool, whose workers would take the caller's signals, is never started. None only if the
/// system refuses a thread (candle then runs on the calling thread's global pool).
pub(crate) fn pool_for_candle() -> Option<Arc<ThreadPool>> {
    static ONE: Mutex<Option<Arc<ThreadPool>>> = Mutex::new(None);
    pool().or_else(|| {
        let mut one = ONE.lock().unwrap_or_else(|p| p.into_inner());
        if one.is_none() {
            *one = build(1).map(Arc::new);
        }
        one.clone()
    })
}

/// A pool whose threads block every signal; None if the system refuses threads (the pass then
/// runs on the calling thread alone).
fn build(threads: usize) -> Option<ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("embed-core compute {i}"))
        .spawn_handler(|thread| {
            let mut builder = std::thread::Builder::new();
            if let Some(name) = thread.name() {
                builder = builder.name(name.to_owned());
            }
            if let Some(stack) = thread.stack_size() {
                builder = builder.stack_size(stack);
            }
            // A new thread starts with its creator's signal mask: block everything around the
            // spawn, so the thread never runs with signals open, then restore ours.
            // SAFETY: plain libc calls on sigset_t values that live on this stack.
            let spawned = unsafe {
                let mut all: libc::sigset_t = std::mem::zeroed();
                let mut old: libc::sigset_t = std::mem::zeroed();
                libc::sigfillset(&mut all);
                libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
                let spawned = builder.spawn(move || thread.run());
                libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
                spawned
            };
            spawned.map(|_| ())
        })
        .build()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_takes_effect_and_workers_block_signals() {
        if max_threads() < 2 {
            return;
        }
        assert_eq!(set_threads(2), 2);
        assert_eq!(pool().unwrap().current_num_threads(), 2);
        let blocked = pool().unwrap().install(|| {
            // SAFETY: reads this thread's signal mask.
            unsafe {
                let mut mask: libc::sigset_t = std::mem::zeroed();
                libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
                libc::sigismember(&mask, libc::SIGINT) == 1
                    && libc::sigismember(&mask, libc::SIGUSR1) == 1
            }
        });
        assert!(blocked, "a compute thread accepts signals");
        assert_eq!(set_threads(1000), max_threads());
        assert_eq!(set_threads(0), 1);
        assert!(pool().is_none());
    }
}
