//! The one place where core errors become PostgreSQL errors: each variant gets a real SQLSTATE,
//! the core's message (which names the file), a detail and a hint that names the setting.

use embed_core::EmbedError;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

const MODEL_HINT: &str = "Set uhok_embed.model_path to a sentence-transformers model folder \
    (config.json, tokenizer.json, model.safetensors, sentence_bert_config.json, 1_Pooling/config.json), \
    or run scripts/install-models.sh to install the default model.";

/// Raises `err` as an ERROR; `model_path` is the setting it was loaded from, if it concerns one.
pub fn raise(err: EmbedError, model_path: Option<&str>) -> ! {
    use PgSqlErrorCode::*;
    let (code, hint) = match &err {
        EmbedError::ModelDirMissing { .. } | EmbedError::FileMissing { .. } => {
            (ERRCODE_UNDEFINED_FILE, Some(MODEL_HINT))
        }
        EmbedError::FileUnreadable { .. } => (
            ERRCODE_IO_ERROR,
            Some("The server reads model files as its own operating-system user: make them readable by it."),
        ),
        EmbedError::InvalidConfig { .. }
        | EmbedError::InvalidTokenizer { .. }
        | EmbedError::InvalidWeights { .. } => (ERRCODE_CONFIG_FILE_ERROR, Some(MODEL_HINT)),
        EmbedError::FileChanged { .. } => (
            ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            Some("Someone is writing the model file now (a copy in progress?). Retry once it is complete; to replace a model without this, copy the new folder beside the old one and move it into place, or re-run scripts/install-models.sh."),
        ),
        EmbedError::Snapshot { .. } => (
            ERRCODE_IO_ERROR,
            Some("uhok_embed reads models from private copies in the data directory's uhok_embed folder (one per model content, the size of model.safetensors): make room on the data directory's disk, or check that folder's permissions."),
        ),
        EmbedError::DiskFull { .. } => (
            ERRCODE_DISK_FULL,
            Some("uhok_embed reads models from private copies in the data directory's uhok_embed folder: make room on the data directory's disk."),
        ),
        EmbedError::OutOfMemory { .. } => (
            ERRCODE_OUT_OF_MEMORY,
            Some("The server process is short of memory (its address-space limit, or vm.overcommit_memory = 2): embed fewer or shorter texts per call, lower uhok_embed.batch_size, or give the server more memory."),
        ),
        EmbedError::TooManyTexts { .. } => (
            ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            Some("Embed the texts in several calls; to fill a table, use uhok_embed_attach's triggers or CALL uhok_embed_backfill, which work in batches."),
        ),
        EmbedError::Tokenize { .. } => (ERRCODE_INVALID_PARAMETER_VALUE, None),
        // A failed forward pass on a model that loaded is a bug, not bad input.
        EmbedError::Inference { .. } => (ERRCODE_INTERNAL_ERROR, None),
    };
    let mut report = ErrorReport::new(code, err.to_string(), "uhok_embed");
    if let Some(path) = model_path {
        report = report.set_detail(format!("uhok_embed.model_path is \"{path}\"."));
    }
    if let Some(hint) = hint {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raises a bad-setting error (an unusable uhok_embed.model_path value).
pub fn raise_bad_setting(message: String, hint: &str) -> ! {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        message,
        "uhok_embed",
    )
    .set_hint(hint)
    .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raises feature_not_supported unless the current database is UTF8 (see the bootstrap
/// script in lib.rs for why); checked once per backend.
pub fn require_utf8_database() {
    thread_local! {
        static CHECKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if CHECKED.get() {
        return;
    }
    // SAFETY: plain reads of the database encoding, set at backend start.
    let (encoding, name) = unsafe {
        (
            pgrx::pg_sys::GetDatabaseEncoding(),
            std::ffi::CStr::from_ptr(pgrx::pg_sys::GetDatabaseEncodingName()).to_string_lossy(),
        )
    };
    if encoding != pgrx::pg_sys::pg_enc::PG_UTF8 as i32 {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("uhok_embed requires a UTF8 database, and this one is {name}"),
            "uhok_embed",
        )
        .set_hint("Use the extension from a database created with ENCODING 'UTF8'; the client may still use any encoding.")
        .report(PgLogLevel::ERROR);
    }
    CHECKED.set(true);
}
