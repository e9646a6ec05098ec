//! The SQL functions. Each is a few lines that delegate to embed-core through the model cache.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::json;

use crate::stats::{self, Function};
use crate::vector::Vector;
use crate::{error, gucs, model_cache, query_cache};

/// `uhok_embed(input text, normalize boolean DEFAULT true) RETURNS vector`
///
/// IMMUTABLE, deliberately. For a given model folder the result depends only on the input, and
/// IMMUTABLE is what lets it be used the ways users need:
/// - `ORDER BY v <-> uhok_embed('...')` uses an HNSW index. A VOLATILE function forces a
///   sequential scan (pgvector#728); STABLE would also allow the index, but
/// - only an IMMUTABLE function may appear in a generated column or an expression index, and
/// - with a constant argument the planner folds the call once at plan time.
///
/// The cost of the promise: changing uhok_embed.model_path changes results, which IMMUTABLE says
/// cannot happen. Rows embedded by another model are found through the model version
/// (uhok_embed_info()->>'version', stored beside each vector) and re-embedded; a cached plan that
/// folded a query vector is replanned on the next DISCARD PLANS or new session. The same trade
/// PostgreSQL makes for collations: IMMUTABLE, with versions to detect a change.
///
/// STRICT: NULL in gives NULL out. PARALLEL SAFE: each worker loads the model itself.
#[pg_extern(immutable, strict, parallel_safe)]
pub fn uhok_embed(input: &str, normalize: default!(bool, true)) -> Vector {
    embed_as(Function::Embed, input, normalize)
}

/// uhok_embed() counted in uhok_embed_stats as `function`'s (the row trigger, uhok_search).
pub fn embed_as(function: Function, input: &str, normalize: bool) -> Vector {
    let mut call = stats::Call::start(function);
    let model = model_cache::get();
    call.model(model.version_str());
    let vector = query_cache::get_or_insert(input, normalize, gucs::cache_size(), || {
        model.embed_counted(input, normalize, &mut call.usage)
    });
    let vector = vector.unwrap_or_else(|e| error::raise(e, None));
    finish(call, 1, model.max_seq_length(), |_| Some(input));
    Vector(vector)
}

/// `uhok_embed_batch(inputs text[], normalize boolean DEFAULT true) RETURNS vector[]`
///
/// One forward pass per `uhok_embed.batch_size` texts (sorted by length first), results
/// in input order, NULL elements give NULL elements. Each result equals uhok_embed() of its
/// element. IMMUTABLE for the same reasons as uhok_embed().
///
/// The texts are read in place from the array (not copied), each is tokenized only as far as
/// the model can use (embed-core's tokenize.rs), 4,096 at a time, and a pass takes at most
/// 64 MB; so beyond the array PostgreSQL already holds, a call holds its result and one pass.
/// At most 100,000 texts per call (54000 otherwise): the result is then at most 154 MB.
#[pg_extern(immutable, strict, parallel_safe)]
pub fn uhok_embed_batch(
    inputs: pgrx::Array<'_, &str>,
    normalize: default!(bool, true),
) -> Vec<Option<Vector>> {
    embed_batch_as(Function::EmbedBatch, inputs, normalize)
}

/// uhok_embed_batch() counted in uhok_embed_stats as `function`'s (the batch-mode trigger,
/// backfill).
pub fn embed_batch_as(
    function: Function,
    inputs: pgrx::Array<'_, &str>,
    normalize: bool,
) -> Vec<Option<Vector>> {
    let mut call = stats::Call::start(function);
    let model = model_cache::get();
    call.model(model.version_str());
    if inputs.len() > embed_core::MAX_TEXTS_PER_CALL {
        error::raise(
            embed_core::EmbedError::TooManyTexts {
                count: inputs.len(),
                max: embed_core::MAX_TEXTS_PER_CALL,
            },
            None,
        );
    }
    // Reserved fallibly, like every buffer whose size the input decides: an allocation that
    // fails in Rust aborts the backend (and resets the cluster), one that fails here is 53200.
    let mut texts = vec_for(inputs.len());
    texts.extend(inputs.iter());
    let mut present = vec_for(texts.len());
    present.extend(texts.iter().flatten().copied());
    let vectors = model
        .embed_many_counted(
            &present,
            normalize,
            gucs::batch_size(),
            // Between chunks, so statement_timeout and pg_cancel_backend stop a long batch.
            || {
                check_for_interrupts!();
            },
            &mut call.usage,
        )
        .unwrap_or_else(|e| error::raise(e, None));
    finish(call, present.len(), model.max_seq_length(), |i| {
        present.get(i).copied()
    });
    let mut vectors = vectors.into_iter();
    let mut out = vec_for(texts.len());
    out.extend(
        texts
            .iter()
            .map(|input| input.and_then(|_| vectors.next()).map(Vector)),
    );
    out
}

/// Counts a call of `texts` texts that succeeded: in this backend's figures (uhok_embed_info:
/// texts the model embedded), in uhok_embed_stats (texts given, cache hits included), and logs
/// its truncated texts if uhok_embed.log_truncated asks.
fn finish<'a>(
    mut call: stats::Call,
    texts: usize,
    max_seq_length: usize,
    text_at: impl Fn(usize) -> Option<&'a str>,
) {
    model_cache::record(call.usage.texts, call.usage.forward_passes);
    stats::log_truncated(&call.usage, max_seq_length, text_at);
    call.usage.texts = texts as u64;
    call.finish();
}

/// An empty Vec with room for `len` elements, or ERROR 53200 if that cannot be had.
fn vec_for<T>(len: usize) -> Vec<T> {
    embed_core::error::reserved(len, "the texts of this call")
        .unwrap_or_else(|e| error::raise(e, None))
}

/// `uhok_embed_version() RETURNS text`: the loaded model's version, what the sync triggers and
/// backfill store beside each vector (the same as uhok_embed_info()->>'version').
/// STABLE: it changes only when uhok_embed.model_path does.
#[pg_extern(stable, parallel_safe)]
pub fn uhok_embed_version() -> String {
    let model = model_cache::get();
    model
        .version()
        .unwrap_or_else(|e| error::raise(e, Some(&gucs::model_path_setting())))
}

/// `uhok_embed_info(load boolean DEFAULT true) RETURNS jsonb`: the old service's /health.
///
/// With `load` (the default) it loads the model if this backend has not yet, and reports a
/// failure as `"status": "error"` with the message rather than raising, as a health check should.
/// With `load => false` it only reports what this backend has loaded.
#[pg_extern(volatile, parallel_safe)]
fn uhok_embed_info(load: default!(bool, true)) -> JsonB {
    let setting = gucs::model_path_setting();
    let resolved = model_cache::resolve(&setting)
        .map(|p| p.display().to_string())
        .ok();
    // Err(None): not loaded and not asked to load; Err(Some(e)): the load failed.
    let model = if load {
        model_cache::try_get().map_err(Some)
    } else {
        model_cache::loaded().ok_or(None)
    };
    let counts = model_cache::stats();
    let (cache_entries, cache_hits, cache_misses) = query_cache::stats();
    let mut info = json!({
        "model_path": setting,
        "model_dir": resolved,
        "device": "cpu",
        "threads": gucs::threads(),
        "precision": gucs::precision().name(),
        "normalize": true,
        "batch_size": gucs::batch_size(),
        // This backend's own figures; the server's are in the view.
        "stats_view": "uhok_embed_stats",
        "texts_embedded": counts.texts,
        "forward_passes": counts.forward_passes,
        "cache": {
            "size": gucs::cache_size(),
            "entries": cache_entries,
            "hits": cache_hits,
            "misses": cache_misses,
        },
    });
    match model {
        Ok(model) => {
            let m = model.info();
            let version = match model.version() {
                Ok(v) => v,
                Err(e) => error::raise(e, Some(&setting)),
            };
            info.as_object_mut().unwrap().extend([
                ("status".into(), json!("ok")),
                ("loaded".into(), json!(true)),
                ("model".into(), json!(m.model)),
                ("version".into(), json!(version)),
                ("dim".into(), json!(m.dim)),
                ("max_seq_length".into(), json!(m.max_seq_length)),
                ("pooling".into(), json!(m.pooling)),
                ("model_normalizes".into(), json!(m.model_normalizes)),
                ("layers".into(), json!(m.layers)),
                ("vocab_size".into(), json!(m.vocab_size)),
                ("load_ms".into(), json!((m.load_ms * 10.0).round() / 10.0)),
                ("backend".into(), json!(m.backend)),
                // The loaded model serves from private snapshots; true when the folder's files
                // changed since (the next transaction loads them again).
                ("files_changed".into(), json!(model.files_changed())),
            ]);
        }
        Err(failure) => {
            let status = if failure.is_some() {
                "error"
            } else {
                "not loaded"
            };
            info.as_object_mut().unwrap().extend([
                ("status".into(), json!(status)),
                ("loaded".into(), json!(false)),
                ("error".into(), json!(failure.map(|e| e.to_string()))),
            ]);
        }
    }
    if !may_see_server_files() {
        // Paths and load errors (which name files) describe the server's disk: only for those
        // who may read server files anyway.
        let info = info.as_object_mut().unwrap();
        info.remove("model_dir");
        info.remove("model_path");
        if let Some(error) = info.get_mut("error") {
            if !error.is_null() {
                *error = json!(
                    "the model could not be loaded (superusers and members of pg_read_server_files see why)"
                );
            }
        }
    }
    JsonB(info)
}

/// A superuser, or a member of pg_read_server_files: who may see server paths.
fn may_see_server_files() -> bool {
    // SAFETY: plain catalog lookups for the current user, inside a transaction.
    unsafe {
        pg_sys::superuser()
            || pg_sys::has_privs_of_role(
                pg_sys::GetUserId(),
                pg_sys::Oid::from(pg_sys::ROLE_PG_READ_SERVER_FILES),
            )
    }
}
