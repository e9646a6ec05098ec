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
mod sync;
mod vector;

pgrx::pg_module_magic!();

/// Registers settings only. It never loads a model or starts a thread: under
/// shared_preload_libraries this runs in the postmaster, which must stay single-threaded.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::register();
}

#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
