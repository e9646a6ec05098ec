//! uhok_embed: sentence embeddings inside PostgreSQL.
//!
//! A thin pgrx layer over `embed-core`: it registers settings, keeps one loaded model per backend,
//! turns core errors into SQLSTATEs and core vectors into pgvector's `vector`. No tensor maths
//! happens here.

use pgrx::prelude::*;

mod api;
mod error;
mod gucs;
mod model_cache;
mod query_cache;
mod sync;
mod vector;

pgrx::pg_module_magic!();

/// Registers settings. Under shared_preload_libraries (in the postmaster) it also loads the
/// model once for every backend to inherit; it never starts a thread there.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::register();
    // SAFETY: a plain read of a PostgreSQL global that is set while preload libraries load.
    if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        model_cache::preload();
    }
}

#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
