//! The statistics seen from SQL: uhok_embed_stats() and uhok_embed_stats_info() under views of
//! the same names, and uhok_embed_stats_reset() (revoked from PUBLIC), as pg_stat_statements
//! has them. What is counted and how is stats.rs.

use pgrx::prelude::*;

use crate::stats;

/// `uhok_embed_stats()`: one row per database x role x model version x function. A role sees
/// its own rows (and those of roles whose privileges it has); superusers and members of
/// pg_read_all_stats see every row, as with pg_stat_activity. PARALLEL RESTRICTED: without
/// preloading, the figures are the leader's own, which a worker does not have.
#[pg_extern(volatile, parallel_restricted)]
fn uhok_embed_stats() -> TableIterator<
    'static,
    (
        name!(userid, pg_sys::Oid),
        name!(dbid, pg_sys::Oid),
        name!(function, String),
        name!(model_version, Option<String>),
        name!(calls, i64),
        name!(texts, i64),
        name!(tokens, i64),
        name!(truncated, i64),
        name!(errors, i64),
        name!(cache_hits, i64),
        name!(cache_misses, i64),
        name!(forward_passes, i64),
        name!(total_time, f64),
        name!(mean_time, f64),
        name!(min_time, f64),
        name!(max_time, f64),
        name!(p50_time, f64),
        name!(p95_time, f64),
        name!(p99_time, f64),
        name!(model_loads, i64),
        name!(load_time, f64),
    ),
> {
    if !stats::cluster_wide() {
        pgrx::notice!(
            "uhok_embed is not in shared_preload_libraries: these are this session's own figures"
        );
    }
    // SAFETY: catalog lookups for the current user, inside a transaction.
    let me = unsafe { pg_sys::GetUserId() };
    let all =
        unsafe { pg_sys::has_privs_of_role(me, pg_sys::Oid::from(pg_sys::ROLE_PG_READ_ALL_STATS)) };
    let mut rows = stats::rows();
    // SAFETY: as above; after stats::rows() has released its lock.
    rows.retain(|r| all || unsafe { pg_sys::has_privs_of_role(me, r.role) });
    TableIterator::new(rows.into_iter().map(|r| {
        (
            r.role,
            r.database,
            r.function.to_owned(),
            r.version,
            r.calls,
            r.texts,
            r.tokens,
            r.truncated,
            r.errors,
            r.cache_hits,
            r.cache_misses,
            r.forward_passes,
            r.total_ms,
            r.mean_ms,
            r.min_ms,
            r.max_ms,
            r.p50_ms,
            r.p95_ms,
            r.p99_ms,
            r.loads,
            r.load_ms,
        )
    }))
}

/// `uhok_embed_stats_info()`: entries that gave way to new ones (dealloc) and when the figures
/// were last reset, as pg_stat_statements_info; and whether they are the whole server's.
#[pg_extern(volatile, parallel_restricted)]
fn uhok_embed_stats_info() -> TableIterator<
    'static,
    (
        name!(dealloc, i64),
        name!(stats_reset, pgrx::datum::TimestampWithTimeZone),
        name!(scope, String),
        name!(entries, i64),
        name!(max_entries, i64),
    ),
> {
    let (dealloc, reset_at, entries, max) = stats::info();
    let scope = if stats::cluster_wide() {
        "cluster"
    } else {
        "session"
    };
    TableIterator::once((dealloc, timestamp(reset_at), scope.to_owned(), entries, max))
}

/// `uhok_embed_stats_reset()`: forgets every figure (of the server, or of this session when not
/// preloaded); returns when. Revoked from PUBLIC: a superuser may GRANT it.
#[pg_extern(volatile, parallel_unsafe)]
fn uhok_embed_stats_reset() -> pgrx::datum::TimestampWithTimeZone {
    timestamp(stats::reset())
}

fn timestamp(t: pg_sys::TimestampTz) -> pgrx::datum::TimestampWithTimeZone {
    t.try_into()
        .expect("the server's clock is a valid timestamp")
}

pgrx::extension_sql!(
    r#"
CREATE VIEW uhok_embed_stats AS SELECT * FROM uhok_embed_stats();
CREATE VIEW uhok_embed_stats_info AS SELECT * FROM uhok_embed_stats_info();
GRANT SELECT ON uhok_embed_stats, uhok_embed_stats_info TO PUBLIC;
REVOKE ALL ON FUNCTION uhok_embed_stats_reset() FROM PUBLIC;
COMMENT ON VIEW uhok_embed_stats IS
'What the server did with the model, per database, role, model version and function (uhok_embed, uhok_embed_batch, trigger, backfill, search): calls, texts, tokens, truncated texts, errors, cache hits, forward passes, times in ms and their p50/p95/p99. Cluster-wide when uhok_embed is in shared_preload_libraries, else this session''s own.';
COMMENT ON VIEW uhok_embed_stats_info IS
'When uhok_embed_stats was last reset, how many entries gave way to new ones (uhok_embed.stats_max), and whether the figures are the cluster''s or this session''s.';
"#,
    name = "stats_views",
    requires = [
        uhok_embed_stats,
        uhok_embed_stats_info,
        uhok_embed_stats_reset
    ]
);
