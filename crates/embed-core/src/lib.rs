//! sentence-transformers-exact sentence embeddings in pure Rust, with no PostgreSQL in sight.
//!
//! ```text
//! model folder --config--> PipelineConfig
//! text --tokenize--> TokenBatch --model--> token embeddings --pool--> vector --normalise--> vector
//! ```
//! The PostgreSQL extension is a thin layer over [`Embedder`]; everything here is covered by
//! `cargo test -p embed-core` against sentence-transformers' own outputs.

mod bert;
pub mod config;
pub mod error;
mod kernels;
pub mod model;
pub mod pool;
pub mod tokenize;
mod unigram;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use config::{ModelFiles, PipelineConfig, PoolingMode};
pub use error::{EmbedError, Result};
pub use model::Backend;
use model::Encoder;
use tokenize::TextTokenizer;

/// A loaded model folder, ready to embed.
pub struct Embedder {
    files: ModelFiles,
    name: String,
    pipeline: PipelineConfig,
    tokenizer: TextTokenizer,
    encoder: Encoder,
    load_time: Duration,
    /// Hashing 470 MB of weights takes ~0.3 s, so it is done on first request, not at load.
    weights_sha256: OnceLock<String>,
}

/// What `uhok_embed_info()` reports about a loaded model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub model: String,
    pub path: PathBuf,
    pub dim: usize,
    pub max_seq_length: usize,
    pub pooling: String,
    pub model_normalizes: bool,
    pub layers: usize,
    pub vocab_size: usize,
    pub load_ms: f64,
    /// Which forward pass runs: "fast" (bert.rs), "fast-bf16" (the same in bf16) or "candle".
    pub backend: &'static str,
}

impl Embedder {
    /// Loads a sentence-transformers model folder. Every failure names the file at fault.
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_with(dir, Backend::Fast)
    }

    /// Loads with a chosen forward-pass implementation (the benchmarks compare them).
    pub fn load_with(dir: &Path, backend: Backend) -> Result<Self> {
        let started = Instant::now();
        let files = ModelFiles::in_dir(dir)?;
        let pipeline = PipelineConfig::read(&files)?;
        let tokenizer = TextTokenizer::load(&files.tokenizer, &pipeline)?;
        let encoder = Encoder::load(&files.weights, &pipeline.bert, backend)?;
        if tokenizer.vocab_size() > pipeline.bert.vocab_size {
            return Err(EmbedError::InvalidTokenizer {
                path: files.tokenizer.clone(),
                reason: format!(
                    "its vocabulary has {} tokens but config.json's vocab_size is {}",
                    tokenizer.vocab_size(),
                    pipeline.bert.vocab_size
                ),
            });
        }
        // The folder's own name: installers name it after the model (the default path is a
        // symlink to such a folder, so resolve it first).
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        Ok(Self {
            files,
            name,
            pipeline,
            tokenizer,
            encoder,
            load_time: started.elapsed(),
            weights_sha256: OnceLock::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dimension(&self) -> usize {
        self.pipeline.dimension
    }

    pub fn pipeline(&self) -> &PipelineConfig {
        &self.pipeline
    }

    /// Token ids of one text as the model sees it (special tokens included, truncated).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode(text)
    }

    /// Embeds texts in one forward pass. `normalize = false` returns the pooled vector before
    /// any Normalize module, like sentence-transformers with Normalize removed.
    pub fn embed_batch(&self, texts: &[&str], normalize: bool) -> Result<Vec<Vec<f32>>> {
        self.embed_many(texts, normalize, texts.len(), || {})
    }

    /// Embeds any number of texts in chunks of `chunk_size`, results in input order.
    ///
    /// Texts are sorted by token count before chunking, so the candle backend, which pads each
    /// chunk to its longest text, pads little. `between_chunks` runs before each chunk (the SQL
    /// layer checks for query cancellation there).
    pub fn embed_many(
        &self,
        texts: &[&str],
        normalize: bool,
        chunk_size: usize,
        mut between_chunks: impl FnMut(),
    ) -> Result<Vec<Vec<f32>>> {
        let encoded = texts
            .iter()
            .map(|t| self.tokenizer.encode(t))
            .collect::<Result<Vec<_>>>()?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| encoded[i].len());
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(chunk_size.max(1)) {
            between_chunks();
            let rows: Vec<&[u32]> = chunk.iter().map(|&i| encoded[i].as_slice()).collect();
            for (&i, v) in chunk.iter().zip(self.forward(&rows, normalize)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn forward(&self, rows: &[&[u32]], normalize: bool) -> Result<Vec<Vec<f32>>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let hidden = self.encoder.forward(rows)?;
        let lengths: Vec<usize> = rows.iter().map(|r| r.len()).collect();
        let mut pooled = pool::pool(
            &hidden,
            self.pipeline.bert.hidden_size,
            &lengths,
            &self.pipeline.pooling,
        );
        if normalize {
            pooled.iter_mut().for_each(|v| pool::l2_normalize(v));
        }
        Ok(pooled)
    }

    pub fn embed(&self, text: &str, normalize: bool) -> Result<Vec<f32>> {
        Ok(self
            .embed_batch(&[text], normalize)?
            .pop()
            .expect("one input gives one output"))
    }

    /// A stable identity for what produced a vector: folder name plus the first 16 hex digits
    /// of model.safetensors' SHA-256 (`sha256sum model.safetensors` shows the same digits),
    /// and `+bf16` when the products run in bf16 (those vectors differ slightly).
    pub fn version(&self) -> Result<String> {
        let hash = match self.weights_sha256.get() {
            Some(hash) => hash,
            None => {
                let hash = sha256_file(&self.files.weights)?;
                self.weights_sha256.get_or_init(|| hash)
            }
        };
        let precision = match self.encoder.backend() {
            Backend::FastBf16 => "+bf16",
            Backend::Fast | Backend::Candle => "",
        };
        Ok(format!("{}@{}{precision}", self.name, &hash[..16]))
    }

    pub fn info(&self) -> ModelInfo {
        ModelInfo {
            model: self.name.clone(),
            path: self.files.dir.clone(),
            dim: self.pipeline.dimension,
            max_seq_length: self.tokenizer.max_seq_length(),
            pooling: self
                .pipeline
                .pooling
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>()
                .join("+"),
            model_normalizes: self.pipeline.model_normalizes,
            layers: self.pipeline.bert.num_hidden_layers,
            vocab_size: self.pipeline.bert.vocab_size,
            load_ms: self.load_time.as_secs_f64() * 1e3,
            backend: self.encoder.backend().name(),
        }
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let unreadable = |e: std::io::Error| EmbedError::FileUnreadable {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(unreadable)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// A file of one of the test models (scripts/install-models.sh installs them; point
/// UHOK_EMBED_TEST_MODELS elsewhere if they are not where PostgreSQL 15 keeps them).
#[cfg(test)]
pub(crate) fn test_model_file(model: &str, file: &str) -> PathBuf {
    let dir = std::env::var_os("UHOK_EMBED_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/share/postgresql/15/uhok_embed/models".into());
    let path = dir.join(model).join(file);
    assert!(
        path.is_file(),
        "{} is missing (run scripts/install-models.sh, or set UHOK_EMBED_TEST_MODELS)",
        path.display()
    );
    path
}
