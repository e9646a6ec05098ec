//! The one error type of the core. Every failure names the file it concerns, so the SQL layer can
//! map each variant once to a SQLSTATE and say which file and which setting to look at.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum EmbedError {
    /// The model folder does not exist or is not a directory.
    ModelDirMissing { path: PathBuf },
    /// A file the model folder must contain is not there.
    FileMissing { path: PathBuf },
    /// A file is there but cannot be read (permissions, I/O).
    FileUnreadable { path: PathBuf, reason: String },
    /// A JSON configuration file does not parse or asks for something we do not support.
    InvalidConfig { path: PathBuf, reason: String },
    /// tokenizer.json does not parse.
    InvalidTokenizer { path: PathBuf, reason: String },
    /// model.safetensors is truncated, corrupt, or its tensors do not fit config.json.
    InvalidWeights { path: PathBuf, reason: String },
    /// A model file changed while it was being read (an admin is copying a new one over it).
    FileChanged { path: PathBuf },
    /// The private snapshot of a model file could not be written or mapped (see snapshot.rs).
    Snapshot { path: PathBuf, reason: String },
    /// The snapshot store's volume has too little free space for a copy of a model file.
    DiskFull {
        path: PathBuf,
        needed: u64,
        available: u64,
    },
    /// Memory could not be allocated: `what` says for what ("the forward pass", ...).
    OutOfMemory { bytes: usize, what: &'static str },
    /// More texts in one call than [`crate::MAX_TEXTS_PER_CALL`].
    TooManyTexts { count: usize, max: usize },
    /// An input could not be tokenised.
    Tokenize { reason: String },
    /// The forward pass failed: a bug, never the user's input.
    Inference { reason: String },
}

pub type Result<T, E = EmbedError> = std::result::Result<T, E>;

/// An empty Vec with room for `len` elements, or OutOfMemory (for `what`) instead of the abort
/// that a failed infallible allocation gives (in PostgreSQL, a reset of the whole cluster).
/// Every buffer whose size comes from the input, and every up-front memory check, goes
/// through this.
pub fn reserved<T>(len: usize, what: &'static str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| EmbedError::OutOfMemory {
            bytes: len.saturating_mul(std::mem::size_of::<T>()),
            what,
        })?;
    Ok(v)
}

impl EmbedError {
    /// The file or folder the error is about, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::ModelDirMissing { path }
            | Self::FileMissing { path }
            | Self::FileUnreadable { path, .. }
            | Self::InvalidConfig { path, .. }
            | Self::InvalidTokenizer { path, .. }
            | Self::InvalidWeights { path, .. }
            | Self::FileChanged { path }
            | Self::Snapshot { path, .. }
            | Self::DiskFull { path, .. } => Some(path),
            Self::Tokenize { .. }
            | Self::Inference { .. }
            | Self::OutOfMemory { .. }
            | Self::TooManyTexts { .. } => None,
        }
    }

    /// A failure to open or read a model file: missing, or unreadable (permissions, I/O).
    pub(crate) fn reading(path: &Path, e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::NotFound => Self::FileMissing {
                path: path.to_owned(),
            },
            _ => Self::FileUnreadable {
                path: path.to_owned(),
                reason: e.to_string(),
            },
        }
    }

    pub(crate) fn config(path: &Path, reason: impl fmt::Display) -> Self {
        Self::InvalidConfig {
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn weights(path: &Path, reason: impl fmt::Display) -> Self {
        Self::InvalidWeights {
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn inference(reason: impl fmt::Display) -> Self {
        Self::Inference {
            reason: reason.to_string(),
        }
    }
}

// Messages follow PostgreSQL's style (lower case, no trailing period) because the SQL layer
// shows them verbatim as the ERROR's primary message.
impl fmt::Display for EmbedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ModelDirMissing { path } => {
                write!(f, "model folder \"{}\" does not exist", path.display())
            }
            Self::FileMissing { path } => {
                write!(f, "model file \"{}\" does not exist", path.display())
            }
            Self::FileUnreadable { path, reason } => {
                write!(
                    f,
                    "could not read model file \"{}\": {reason}",
                    path.display()
                )
            }
            Self::InvalidConfig { path, reason } => {
                write!(
                    f,
                    "invalid model configuration file \"{}\": {reason}",
                    path.display()
                )
            }
            Self::InvalidTokenizer { path, reason } => {
                write!(
                    f,
                    "could not parse tokenizer file \"{}\": {reason}",
                    path.display()
                )
            }
            Self::InvalidWeights { path, reason } => {
                write!(
                    f,
                    "invalid model weights file \"{}\": {reason}",
                    path.display()
                )
            }
            Self::FileChanged { path } => {
                write!(
                    f,
                    "model file \"{}\" changed while it was being read",
                    path.display()
                )
            }
            Self::Snapshot { path, reason } => {
                write!(
                    f,
                    "could not write the private copy of a model file in \"{}\": {reason}",
                    path.display()
                )
            }
            Self::DiskFull {
                path,
                needed,
                available,
            } => {
                write!(
                    f,
                    "not enough free space in \"{}\" for a private copy of a model file: {} MB needed (the file and 1 GB to spare), {} MB available",
                    path.display(),
                    needed >> 20,
                    available >> 20
                )
            }
            Self::OutOfMemory { bytes, what } => {
                write!(
                    f,
                    "out of memory: could not allocate {bytes} bytes for {what}"
                )
            }
            Self::TooManyTexts { count, max } => {
                write!(f, "cannot embed {count} texts in one call, at most {max}")
            }
            Self::Tokenize { reason } => write!(f, "could not tokenize input: {reason}"),
            Self::Inference { reason } => write!(f, "embedding forward pass failed: {reason}"),
        }
    }
}

impl std::error::Error for EmbedError {}
