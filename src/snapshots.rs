//! The snapshot store seen from SQL (embed-core's snapshot.rs keeps it): what it holds and what
//! the next cleanup would remove, and that cleanup on demand. Both are revoked from PUBLIC (they
//! show server paths and delete files); a superuser may GRANT them to a monitoring role.

use pgrx::prelude::*;

use crate::{error, model_cache};

/// file, kind, bytes, sha256, sources, in_use: both functions' columns (pgrx wants them spelled
/// out with name!() in each signature).
type Row = (String, String, i64, Option<String>, Vec<String>, bool);

fn row(f: embed_core::snapshot::StoreFile) -> Row {
    (
        f.name,
        f.kind.to_owned(),
        i64::try_from(f.bytes).unwrap_or(i64::MAX),
        f.sha256,
        f.sources.iter().map(|p| p.display().to_string()).collect(),
        f.in_use,
    )
}

/// `uhok_embed_snapshots()`: each file of `$PGDATA/uhok_embed` (the private copies every
/// backend maps), its size, which live model files name it, and whether the cleanup keeps it.
#[pg_extern(volatile, parallel_safe)]
fn uhok_embed_snapshots() -> TableIterator<
    'static,
    (
        name!(file, String),
        name!(kind, String),
        name!(bytes, i64),
        name!(sha256, Option<String>),
        name!(sources, Vec<String>),
        name!(in_use, bool),
    ),
> {
    let files = embed_core::snapshot::list(&model_cache::snapshot_dir())
        .unwrap_or_else(|e| error::raise(e, None));
    TableIterator::new(files.into_iter().map(row))
}

/// `uhok_embed_snapshots_remove_unused()`: removes the files uhok_embed_snapshots() shows with
/// `in_use = false` now, rather than at the next copy of a model, and returns them. A backend
/// that still maps a removed copy keeps using it; its space is freed when the last one lets go.
#[pg_extern(volatile, parallel_unsafe)]
fn uhok_embed_snapshots_remove_unused() -> TableIterator<
    'static,
    (
        name!(file, String),
        name!(kind, String),
        name!(bytes, i64),
        name!(sha256, Option<String>),
        name!(sources, Vec<String>),
        name!(in_use, bool),
    ),
> {
    let removed =
        embed_core::snapshot::remove_unused_now(&model_cache::snapshot_dir(), &mut || {
            check_for_interrupts!();
        })
        .unwrap_or_else(|e| error::raise(e, None));
    TableIterator::new(removed.into_iter().map(row))
}

pgrx::extension_sql!(
    r#"
REVOKE ALL ON FUNCTION uhok_embed_snapshots() FROM PUBLIC;
REVOKE ALL ON FUNCTION uhok_embed_snapshots_remove_unused() FROM PUBLIC;
"#,
    name = "snapshots_privileges",
    requires = [uhok_embed_snapshots, uhok_embed_snapshots_remove_unused]
);
