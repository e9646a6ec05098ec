//! uhok_embed(), uhok_embed_batch() and uhok_embed_version() once more, in the schema
//! uhok_embed_internal, for the extension's own SQL to call (sql/sync.sql, sql/search.sql).
//!
//! A schema-qualified call still chooses among every function of that name in the schema. The
//! public functions live in the schema the extension was installed in, often public, where
//! other roles may be allowed to create functions; one `public.uhok_embed_version(x integer
//! DEFAULT 0)` would make every trigger's `@extschema@.uhok_embed_version()` ambiguous (42725),
//! and a better-matching one would run instead. uhok_embed_internal is created by the extension
//! (lib.rs) and only its owner may create there, so calls into it resolve to these and nothing
//! else. Same C code, same volatility and strictness as the public ones; EXECUTE is PUBLIC's, as
//! theirs is (revoking one without the other restricts nothing).

use pgrx::prelude::*;

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

use crate::api;
use crate::stats::Function;
use crate::vector::Vector;

// The SQL is written out because pgrx places a function in another schema only through a
// #[pg_schema] module, whose CREATE SCHEMA IF NOT EXISTS would adopt a schema someone made
// beforehand; lib.rs's bootstrap creates uhok_embed_internal (without IF NOT EXISTS) first.

#[pg_extern(sql = r#"
CREATE FUNCTION uhok_embed_internal.uhok_embed(input text, "normalize" boolean DEFAULT true) RETURNS vector
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'internal_uhok_embed_wrapper';
"#)]
pub fn internal_uhok_embed(input: &str, normalize: default!(bool, true)) -> Vector {
    api::uhok_embed(input, normalize)
}

#[pg_extern(sql = r#"
CREATE FUNCTION uhok_embed_internal.uhok_embed_batch(inputs text[], "normalize" boolean DEFAULT true) RETURNS vector[]
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'internal_uhok_embed_batch_wrapper';
"#)]
pub fn internal_uhok_embed_batch(
    inputs: pgrx::Array<'_, &str>,
    normalize: default!(bool, true),
) -> Vec<Option<Vector>> {
    api::uhok_embed_batch(inputs, normalize)
}

#[pg_extern(sql = r#"
CREATE FUNCTION uhok_embed_internal.uhok_embed_version() RETURNS text
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'internal_uhok_embed_version_wrapper';
"#)]
pub fn internal_uhok_embed_version() -> String {
    api::uhok_embed_version()
}

// The same, counted in uhok_embed_stats under the caller's name ('trigger', 'backfill',
// 'search') rather than as the user's own uhok_embed() calls.

#[pg_extern(sql = r#"
CREATE FUNCTION uhok_embed_internal.uhok_embed_as(caller text, input text) RETURNS vector
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'internal_uhok_embed_as_wrapper';
"#)]
pub fn internal_uhok_embed_as(caller: &str, input: &str) -> Vector {
    api::embed_as(function(caller), input, true)
}

#[pg_extern(sql = r#"
CREATE FUNCTION uhok_embed_internal.uhok_embed_batch_as(caller text, inputs text[]) RETURNS vector[]
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'internal_uhok_embed_batch_as_wrapper';
"#)]
pub fn internal_uhok_embed_batch_as(
    caller: &str,
    inputs: pgrx::Array<'_, &str>,
) -> Vec<Option<Vector>> {
    api::embed_batch_as(function(caller), inputs, true)
}

fn function(caller: &str) -> Function {
    Function::from_caller(caller).unwrap_or_else(|| {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("unknown caller \"{caller}\""),
            "uhok_embed",
        )
        .set_hint("The extension's own SQL passes 'trigger', 'backfill' or 'search'.")
        .report(PgLogLevel::ERROR);
        unreachable!("ERROR does not return")
    })
}
