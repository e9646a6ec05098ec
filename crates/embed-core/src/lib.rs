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
#[cfg(feature = "fuzzing")]
pub mod fuzz_api;
pub mod interrupt;
mod kernels;
pub mod latency;
pub mod model;
pub mod pool;
pub mod snapshot;
pub mod threads;
pub mod tokenize;
mod unigram;
mod widen;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use config::{ModelFiles, PipelineConfig, PoolingMode};
pub use error::{EmbedError, Result};
pub use model::Backend;
use model::Encoder;
use snapshot::{Snapshot, Stamp};
use tokenize::TextTokenizer;

/// Bytes of activations one forward pass may allocate (the seven [tokens, hidden] and
/// [tokens, intermediate] buffers): 64 MiB is 4,369 tokens at the e5 shape, so the default
/// batch of 32 texts of 128 tokens (4,096) is one pass as before, while a batch_size of 4096
/// long texts (which asked for 32 GB in one pass) becomes many passes of this size.
const PASS_ACTIVATION_BYTES: usize = 64 << 20;

/// Texts one call may embed: 100,000 vectors of 384 floats are 154 MB, the result alone; a
/// larger array (20 million empty strings fit in PostgreSQL's 1 GB) would ask for tens of GB.
pub const MAX_TEXTS_PER_CALL: usize = 100_000;

/// Texts tokenized at a time (their ids: at most 4096 x max_seq_length x 4 bytes, 8 MB at 512
/// tokens); each window is sorted by length and cut into passes on its own.
const TOKENIZE_WINDOW_TEXTS: usize = 4096;

/// What embedding calls did, for the extension's statistics (uhok_embed_stats): added to, never
/// reset, by the `*_counted` functions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// Texts that went through a forward pass.
    pub texts: u64,
    /// Their tokens, special tokens included, as the model saw them (after truncation).
    pub tokens: u64,
    /// Texts longer than max_seq_length tokens: the model saw only their start.
    pub truncated: u64,
    pub forward_passes: u64,
    /// Positions (in the call's input) of the first [`Usage::TRUNCATED_KEPT`] truncated texts,
    /// for a log line about each.
    pub truncated_first: Vec<usize>,
}

impl Usage {
    pub const TRUNCATED_KEPT: usize = 10;
}

/// How a model folder is loaded.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub backend: Backend,
    /// Where the private snapshots of the mapped files live (see snapshot.rs): a folder only
    /// this process's OS user writes. The extension uses `$PGDATA/uhok_embed`.
    pub snapshot_dir: PathBuf,
}

impl LoadOptions {
    /// The fast fp32 forward pass, snapshots in a per-user folder under the temporary directory.
    pub fn new(backend: Backend) -> Self {
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        Self {
            backend,
            snapshot_dir: std::env::temp_dir().join(format!("embed-core-snapshots-{uid}")),
        }
    }
}

/// A loaded model folder, ready to embed.
pub struct Embedder {
    /// The folder as the caller named it (a symlink, say `$sharedir/uhok_embed/model`);
    /// `files.dir` is what it resolved to when loaded.
    requested_dir: PathBuf,
    files: ModelFiles,
    name: String,
    pipeline: PipelineConfig,
    tokenizer: TextTokenizer,
    encoder: Encoder,
    load_time: Duration,
    /// The private copies the encoder and the tokenizer map; kept for their hashes and to
    /// tell when the user's files changed.
    weights: Snapshot,
    tokenizer_file: Snapshot,
    /// The JSON configuration files as they were when read.
    config_stamps: Vec<(PathBuf, Stamp)>,
    /// [`Embedder::version`], made once: the extension reads it at every call.
    version: String,
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
        Self::load_from(dir, &LoadOptions::new(backend))
    }

    /// Loads a model folder, mapping private snapshots of its large files (snapshot.rs), never
    /// the files themselves.
    pub fn load_from(dir: &Path, options: &LoadOptions) -> Result<Self> {
        let started = Instant::now();
        let requested_dir = dir.to_owned();
        // Resolved once: a folder that is a symlink (the default model) moved to another model
        // while this load reads it must not give one model's weights with another's tokenizer.
        // files_changed() resolves it again to notice the move.
        let dir = &dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
        let files = ModelFiles::in_dir(dir)?;
        let config_stamps = files
            .configs()
            .map(|p| (p.to_owned(), Stamp::of(p)))
            .collect();
        let pipeline = PipelineConfig::read(&files)?;
        reserve_for_load(&files, options.backend)?;
        let poll = &mut interrupt::poll;
        let tokenizer_snapshot = snapshot::snapshot(&files.tokenizer, &options.snapshot_dir, poll)?;
        let tokenizer = TextTokenizer::load(
            &files.tokenizer,
            &tokenizer_snapshot,
            &pipeline,
            &options.snapshot_dir,
            poll,
        )?;
        let weights_snapshot = snapshot::snapshot(&files.weights, &options.snapshot_dir, poll)?;
        // fp16/bf16 weights run the fast pass from an fp32 copy shared by all backends; candle,
        // when asked for by name (the benchmarks' reference), converts them itself.
        // Where the copy cannot be written (no room on the data directory's volume, a store it
        // may not write), candle runs them as it did before, rather than the load failing.
        let weights_snapshot = match options.backend {
            Backend::Fast | Backend::FastBf16 => {
                let store = &options.snapshot_dir;
                match widen::to_fp32(&files.weights, &weights_snapshot, store, poll) {
                    Ok(Some(widened)) => widened,
                    Ok(None) | Err(EmbedError::DiskFull { .. } | EmbedError::Snapshot { .. }) => {
                        weights_snapshot
                    }
                    Err(e) => return Err(e),
                }
            }
            Backend::Candle => weights_snapshot,
        };
        let encoder = Encoder::load(
            &files.weights,
            &weights_snapshot,
            &pipeline.bert,
            options.backend,
        )?;
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
        let precision = match encoder.backend() {
            Backend::FastBf16 => "+bf16",
            Backend::Fast | Backend::Candle => "",
        };
        let version = format!("{name}@{}{precision}", &weights_snapshot.sha256[..16]);
        Ok(Self {
            requested_dir,
            files,
            name,
            pipeline,
            tokenizer,
            encoder,
            load_time: started.elapsed(),
            weights: weights_snapshot,
            tokenizer_file: tokenizer_snapshot,
            config_stamps,
            version,
        })
    }

    /// True when the folder the caller named no longer resolves to the one this embedder read
    /// (a symlink on the way now points elsewhere: `ln -sfn models/other model`, or removed),
    /// or when a file of that folder is no longer the one it read (written, truncated,
    /// replaced, removed, chmod'ed): model.safetensors, tokenizer.json or one of the JSON
    /// configuration files. The embedder itself keeps working from what it loaded either way;
    /// the caller decides when to reload. A realpath and a stat call per file, a few
    /// microseconds.
    pub fn files_changed(&self) -> bool {
        self.folder_moved()
            || self.weights.source_changed()
            || self.tokenizer_file.source_changed()
            || self
                .config_stamps
                .iter()
                .any(|(path, stamp)| Stamp::of(path) != *stamp)
    }

    /// True when the folder the caller named resolves elsewhere than when it was loaded.
    fn folder_moved(&self) -> bool {
        match self.requested_dir.canonicalize() {
            Ok(now) => now != self.files.dir,
            Err(_) => true,
        }
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
        between_chunks: impl FnMut(),
    ) -> Result<Vec<Vec<f32>>> {
        self.embed_many_counted(
            texts,
            normalize,
            chunk_size,
            between_chunks,
            &mut Usage::default(),
        )
    }

    /// [`Self::embed_many`], adding what the call did to `usage` (also the part done before an
    /// error).
    pub fn embed_many_counted(
        &self,
        texts: &[&str],
        normalize: bool,
        chunk_size: usize,
        mut between_chunks: impl FnMut(),
        usage: &mut Usage,
    ) -> Result<Vec<Vec<f32>>> {
        if texts.len() > MAX_TEXTS_PER_CALL {
            return Err(EmbedError::TooManyTexts {
                count: texts.len(),
                max: MAX_TEXTS_PER_CALL,
            });
        }
        self.reserve_for_call(texts)?;
        let mut out = error::reserved(texts.len(), "the results")?;
        out.resize(texts.len(), Vec::new());
        // Tokenized a window at a time, so that the token ids held at once stay bounded too.
        for (w, window) in texts.chunks(TOKENIZE_WINDOW_TEXTS).enumerate() {
            let first = w * TOKENIZE_WINDOW_TEXTS;
            let kept = usage.truncated_first.len();
            let done = self.embed_window(
                window,
                normalize,
                chunk_size,
                &mut between_chunks,
                &mut out[first..],
                usage,
            );
            // embed_window numbers the truncated texts within its window.
            usage.truncated_first[kept..]
                .iter_mut()
                .for_each(|i| *i += first);
            done?;
        }
        Ok(out)
    }

    /// Bytes a call over `texts` holds at its peak, estimated before any work: the result
    /// vectors (kept until the call returns), one window's token ids, one forward pass's
    /// activations, and the tokenizer's work on the longest text (tokenizers allocates ~24
    /// bytes per byte of text it normalizes, and a text reaches it as a prefix of at most
    /// `MAX_WINDOW_BYTES`, see tokenize.rs). Over-estimated rather than under: it only decides
    /// whether to start.
    pub fn call_bytes(&self, texts: &[&str]) -> usize {
        let n = texts.len();
        let max_seq = self.tokenizer.max_seq_length();
        // A token covers at least one byte; special tokens and a prompt add a few.
        let tokens: usize = texts
            .iter()
            .map(|t| max_seq.min(t.len().saturating_add(8)))
            .fold(0, usize::saturating_add);
        let longest = texts.iter().map(|t| t.len()).max().unwrap_or(0);
        let bert = &self.pipeline.bert;
        let per_token = 4 * (6 * bert.hidden_size + bert.intermediate_size);
        // Per text: its vector, the Vec and malloc headers, and the SQL layer's arrays of &str.
        let result = 4 * self.pipeline.bert.hidden_size * self.pipeline.pooling.len().max(1) + 128;
        n.saturating_mul(result)
            .saturating_add(
                n.min(TOKENIZE_WINDOW_TEXTS)
                    .saturating_mul(4 * max_seq + 64),
            )
            .saturating_add(tokens.min(self.tokens_per_pass()).saturating_mul(per_token))
            .saturating_add(64 * longest.min(tokenize::MAX_WINDOW_BYTES))
    }

    /// Checks that the memory a call needs ([`Self::call_bytes`]) can be had before it starts:
    /// under an address-space limit (`ulimit -v`) or `vm.overcommit_memory = 2`, an
    /// allocation that fails half-way in Rust aborts the process (and PostgreSQL resets the
    /// cluster), while this fails as an error. The probe is reserved, never touched, and freed
    /// at once (a few microseconds: an mmap and munmap at most).
    fn reserve_for_call(&self, texts: &[&str]) -> Result<()> {
        error::reserved::<u8>(
            self.call_bytes(texts),
            "this call's texts (estimated before starting)",
        )
        .map(drop)
    }

    /// embed_many over one window of texts, results into `out`.
    fn embed_window(
        &self,
        texts: &[&str],
        normalize: bool,
        chunk_size: usize,
        between_chunks: &mut impl FnMut(),
        out: &mut [Vec<f32>],
        usage: &mut Usage,
    ) -> Result<()> {
        let mut encoded = Vec::with_capacity(texts.len());
        for (i, t) in texts.iter().enumerate() {
            interrupt::poll();
            let (ids, truncated) = self.tokenizer.encode_counted(t)?;
            usage.tokens += ids.len() as u64;
            if truncated {
                usage.truncated += 1;
                if usage.truncated_first.len() < Usage::TRUNCATED_KEPT {
                    usage.truncated_first.push(i);
                }
            }
            encoded.push(ids);
        }
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| encoded[i].len());
        let max_tokens = self.tokens_per_pass();
        let mut rest = &order[..];
        while !rest.is_empty() {
            // Up to chunk_size texts and max_tokens tokens (a text never exceeds max_seq_length
            // tokens, and max_tokens is at least that, so every chunk takes one text or more).
            let mut take = 0;
            let mut tokens = 0;
            while take < rest.len() && take < chunk_size.max(1) {
                tokens += encoded[rest[take]].len();
                if take > 0 && tokens > max_tokens {
                    break;
                }
                take += 1;
            }
            let (chunk, later) = rest.split_at(take);
            rest = later;
            between_chunks();
            let rows: Vec<&[u32]> = chunk.iter().map(|&i| encoded[i].as_slice()).collect();
            usage.forward_passes += 1;
            for (&i, v) in chunk.iter().zip(self.forward(&rows, normalize)?) {
                out[i] = v;
            }
            usage.texts += chunk.len() as u64;
        }
        Ok(())
    }

    /// Tokens one forward pass takes at most: what [`PASS_ACTIVATION_BYTES`] holds at this
    /// model's shape, and never less than one text of max_seq_length tokens.
    pub fn tokens_per_pass(&self) -> usize {
        let bert = &self.pipeline.bert;
        let per_token = 4 * (6 * bert.hidden_size + bert.intermediate_size);
        (PASS_ACTIVATION_BYTES / per_token.max(1)).max(self.tokenizer.max_seq_length())
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
        self.embed_counted(text, normalize, &mut Usage::default())
    }

    /// [`Self::embed`], adding what it did to `usage`.
    pub fn embed_counted(
        &self,
        text: &str,
        normalize: bool,
        usage: &mut Usage,
    ) -> Result<Vec<f32>> {
        Ok(self
            .embed_many_counted(&[text], normalize, 1, || {}, usage)?
            .pop()
            .expect("one input gives one output"))
    }

    /// A stable identity for what produced a vector: folder name plus the first 16 hex digits
    /// of the SHA-256 of the model.safetensors that was loaded (`sha256sum model.safetensors`
    /// shows the same digits while the file is unchanged), and `+bf16` when the products run
    /// in bf16 (those vectors differ slightly). It is the hash of the private copy in use, so
    /// it names these weights even after the user's file changed.
    pub fn version(&self) -> Result<String> {
        Ok(self.version.clone())
    }

    /// [`Self::version`], without a copy.
    pub fn version_str(&self) -> &str {
        &self.version
    }

    /// Tokens the model reads of a text; the rest of a longer text is cut off.
    pub fn max_seq_length(&self) -> usize {
        self.tokenizer.max_seq_length()
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

/// Checks, before a load starts, that the private memory it needs can be had (see
/// [`Embedder::reserve_for_call`] for why): the tokenizer's tables (well under the size of
/// tokenizer.json: ~5 MB for the multilingual models' 17 MB), a read buffer, the bf16 copy of the
/// layers' weights when asked for (at most the weights file's size), and a margin for the configuration.
/// The weights themselves are mapped, and a mapping that finds no room is an error too.
fn reserve_for_load(files: &ModelFiles, backend: Backend) -> Result<()> {
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len() as usize);
    // The bf16 copy is half the fp32 weights, which an fp16 file widens to twice its size: the
    // file's size covers both.
    let bf16 = match backend {
        Backend::FastBf16 => size(&files.weights),
        Backend::Fast | Backend::Candle => 0,
    };
    let bytes = size(&files.tokenizer)
        .saturating_add(bf16)
        .saturating_add(16 << 20);
    error::reserved::<u8>(bytes, "loading the model (estimated before starting)").map(drop)
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
