//! uhok_embed: sentence embeddings inside PostgreSQL.
//!
//! A thin pgrx layer over `embed-core`: it registers settings, keeps one loaded model per backend,
//! turns core errors into SQLSTATEs and core vectors into pgvector's `vector`. No tensor maths
//! happens here.

use pgrx::prelude::*;

mod api;
mod error;
mod gucs;
mod internal;
mod model_cache;
mod query_cache;
mod snapshots;
mod stats;
mod stats_sql;
mod sync;
mod sync_trigger;
mod vector;

pgrx::pg_module_magic!();

// Runs first, before anything is created.
//
// Texts reach Rust as UTF-8 &str: in a database of another encoding (EUC_KR is common in Korea)
// every call would fail with pgrx's UTF-8 error (XX000). Refused here; error::require_utf8_database()
// says the same to a call from such a database.
//
// uhok_embed_internal holds what the extension's own SQL calls (see src/internal.rs and the top
// of sql/sync.sql). Without IF NOT EXISTS, deliberately: a schema of that name made beforehand by
// someone else makes CREATE EXTENSION fail rather than put the extension's functions in it.
pgrx::extension_sql!(
    r#"
DO $$
BEGIN
    IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.<>) 'UTF8' THEN
        RAISE EXCEPTION 'uhok_embed requires a UTF8 database, and this one is %', pg_catalog.getdatabaseencoding()
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Create the database with ENCODING ''UTF8'' (for example CREATE DATABASE ... TEMPLATE template0 ENCODING ''UTF8'' LOCALE ''C.UTF-8''); the client may still use any encoding (client_encoding).';
    END IF;
END
$$;

CREATE SCHEMA uhok_embed_internal;
GRANT USAGE ON SCHEMA uhok_embed_internal TO PUBLIC;
COMMENT ON SCHEMA uhok_embed_internal IS
'uhok_embed''s internal functions: the ones its triggers, backfill and search call. Only the extension''s owner may create objects here, so no overload can make those calls ambiguous or redirect them.';

-- pgvector 0.8 or later: uhok_search sets hnsw.iterative_scan (0.8.0) so that excluded ids
-- and pages still give top_k rows. The control file's requires = 'vector' takes any version.
-- The same check runs at ALTER EXTENSION uhok_embed UPDATE (uhok_embed--0.5.0--0.6.0.sql).
CREATE FUNCTION uhok_embed_internal.uhok_embed_require_pgvector(version text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    -- No backslashes: PL/pgSQL reads this literal under the caller's standard_conforming_strings.
    parts text[] := regexp_match(version, '^([0-9]+)[.]([0-9]+)');
BEGIN
    IF version IS NULL THEN
        RAISE EXCEPTION 'uhok_embed requires pgvector, which is not installed in this database'
            USING ERRCODE = 'undefined_object',
                  HINT = 'CREATE EXTENSION uhok_embed CASCADE creates it.';
    END IF;
    IF parts IS NULL OR (parts[1]::integer, parts[2]::integer) < (0, 8) THEN
        RAISE EXCEPTION 'uhok_embed requires pgvector 0.8.0 or later, and this database has %', version
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'uhok_search relies on pgvector 0.8''s iterative index scans (hnsw.iterative_scan).',
                  HINT = 'Install pgvector 0.8 or later on the server, then ALTER EXTENSION vector UPDATE in this database.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION uhok_embed_internal.uhok_embed_require_pgvector(text) IS
'Refuses a pgvector older than 0.8.0 (CREATE EXTENSION and ALTER EXTENSION UPDATE call it with the installed version).';
SELECT uhok_embed_internal.uhok_embed_require_pgvector(
    (SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'vector'));
"#,
    name = "bootstrap",
    bootstrap
);

/// Registers settings and the interrupt check. Under shared_preload_libraries (in the
/// postmaster) it also loads the model once for every backend to inherit; it never starts a
/// thread there.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::register();
    // embed-core polls this between the steps of long work, on the backend's own thread, so
    // statement_timeout and pg_cancel_backend stop a forward pass, a tokenization or a copy.
    embed_core::interrupt::set_hook(poll_interrupts);
    // SAFETY: a plain read of a PostgreSQL global that is set while preload libraries load.
    if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        stats::request_shared_memory();
        model_cache::preload();
    }
}

/// CHECK_FOR_INTERRUPTS: raises the pending cancel or timeout, if any, as an ERROR.
fn poll_interrupts() {
    check_for_interrupts!();
}

#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
