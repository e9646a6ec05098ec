//! The embedder's caller may stop long work at points this module marks.
//!
//! The extension registers PostgreSQL's CHECK_FOR_INTERRUPTS here once; the core calls [`poll`]
//! between the steps of long work (every matrix product of the forward pass and the attention
//! of a layer, every MiB of a model file copied or hashed, every text tokenized, every 10 ms of
//! waiting for another process's copy), always from the thread
//! that called into the core, never from a compute thread. A cancel raised there unwinds
//! through the core's frames, which own everything through Drop, so nothing leaks. The longest
//! step between two polls is one product of a full pass (e5 shape, 4,096 tokens x 1536 x 384:
//! ~30 ms on one core).

use std::sync::OnceLock;

static HOOK: OnceLock<fn()> = OnceLock::new();

/// Sets the function [`poll`] calls. The first registration wins; later ones are ignored.
pub fn set_hook(hook: fn()) {
    let _ = HOOK.set(hook);
}

/// Lets the caller stop here (by unwinding) if it has been asked to.
#[inline]
pub fn poll() {
    if let Some(hook) = HOOK.get() {
        hook();
    }
}
