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
