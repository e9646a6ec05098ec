//! The SQL half of the extension: sync triggers, backfill and search are PL/pgSQL in sql/, over
//! the Rust functions uhok_embed(), uhok_embed_batch() and uhok_embed_version() as
//! uhok_embed_internal has them (internal.rs), and the Rust row trigger (sync_trigger.rs).

pgrx::extension_sql_file!(
    "../sql/sync.sql",
    name = "sync",
    requires = [
        internal::internal_uhok_embed,
        internal::internal_uhok_embed_batch,
        internal::internal_uhok_embed_version,
        internal::internal_uhok_embed_as,
        internal::internal_uhok_embed_batch_as,
        sync_trigger::uhok_embed_row_embed
    ]
);

pgrx::extension_sql_file!("../sql/search.sql", name = "search", requires = ["sync"]);
