//! Reads a sentence-transformers model folder the way sentence-transformers does.
//!
//! ```text
//! config.json                        BERT shape (candle-transformers' Config)
//! tokenizer.json                     the Hugging Face tokenizer
//! model.safetensors                  the weights
//! sentence_bert_config.json          max_seq_length, do_lower_case
//! modules.json            (optional) Transformer -> Pooling [-> Normalize]; where Pooling lives
//! 1_Pooling/config.json              pooling mode (or the folder modules.json names)
//! config_sentence_transformers.json  (optional) prompts, default_prompt_name
//! ```
//! Nothing these files say is hard-coded anywhere else.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use candle_transformers::models::bert::Config as BertConfig;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::{EmbedError, Result};

/// Paths of the files that make up a model folder.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub tokenizer: PathBuf,
    pub weights: PathBuf,
    pub sentence_bert_config: PathBuf,
    pub modules: PathBuf,
    pub sentence_transformers_config: PathBuf,
    /// 1_Pooling/config.json, where Pooling lives unless modules.json says otherwise.
    pub pooling_default: PathBuf,
}

impl ModelFiles {
    pub fn in_dir(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(EmbedError::ModelDirMissing {
                path: dir.to_owned(),
            });
        }
        let files = Self {
            dir: dir.to_owned(),
            config: dir.join("config.json"),
            tokenizer: dir.join("tokenizer.json"),
            weights: dir.join("model.safetensors"),
            sentence_bert_config: dir.join("sentence_bert_config.json"),
            modules: dir.join("modules.json"),
            sentence_transformers_config: dir.join("config_sentence_transformers.json"),
            pooling_default: dir.join("1_Pooling").join("config.json"),
        };
        for required in [
            &files.config,
            &files.tokenizer,
            &files.weights,
            &files.sentence_bert_config,
        ] {
            require_file(required)?;
        }
        Ok(files)
    }
}

impl ModelFiles {
    /// The JSON configuration files (read, not mapped), present or not, and 1_Pooling's
    /// default place.
    pub fn configs(&self) -> impl Iterator<Item = &Path> {
        [
            &self.config,
            &self.sentence_bert_config,
            &self.modules,
            &self.sentence_transformers_config,
            &self.pooling_default,
        ]
        .into_iter()
        .map(PathBuf::as_path)
    }
}

pub(crate) fn require_file(path: &Path) -> Result<()> {
    if path.is_file() {
        Ok(())
    } else {
        Err(EmbedError::FileMissing {
            path: path.to_owned(),
        })
    }
}

/// The largest JSON configuration file read (real ones are a few KiB): a wrong file copied
/// into the folder's place costs an error, not its size in memory.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let io = |e| EmbedError::reading(path, e);
    let mut bytes = Vec::new();
    fs::File::open(path)
        .map_err(io)?
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(EmbedError::config(
            path,
            format!("the file is larger than {} MiB", MAX_CONFIG_BYTES >> 20),
        ));
    }
    Ok(bytes)
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = read_file(path)?;
    serde_json::from_slice(&bytes).map_err(|e| EmbedError::config(path, e))
}

/// How token embeddings become one sentence embedding (sentence-transformers' Pooling module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolingMode {
    Cls,
    Max,
    Mean,
    MeanSqrtLen,
}

impl PoolingMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Cls => "cls",
            Self::Max => "max",
            Self::Mean => "mean",
            Self::MeanSqrtLen => "mean_sqrt_len_tokens",
        }
    }
}

#[derive(Deserialize)]
struct SentenceBertConfigFile {
    max_seq_length: Option<usize>,
    #[serde(default)]
    do_lower_case: bool,
}

#[derive(Deserialize)]
struct PoolingConfigFile {
    word_embedding_dimension: usize,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
    #[serde(default)]
    include_prompt: Option<bool>,
}

#[derive(Deserialize)]
struct ModuleEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize, Default)]
struct SentenceTransformersConfigFile {
    #[serde(default)]
    prompts: HashMap<String, String>,
    default_prompt_name: Option<String>,
}

/// Everything the folder's files say about the pipeline around the transformer.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub bert: BertConfig,
    pub max_seq_length: usize,
    pub do_lower_case: bool,
    /// In sentence-transformers' order: when several are set the results are concatenated.
    pub pooling: Vec<PoolingMode>,
    pub dimension: usize,
    /// Whether the model's own pipeline ends in a Normalize module.
    pub model_normalizes: bool,
    /// The default prompt prepended to every input, if config_sentence_transformers.json names one.
    pub default_prompt: Option<String>,
}

impl PipelineConfig {
    pub fn read(files: &ModelFiles) -> Result<Self> {
        let bert: BertConfig = read_json(&files.config)?;
        let model_type = bert.model_type.as_deref().unwrap_or("bert");
        if model_type != "bert" {
            return Err(EmbedError::config(
                &files.config,
                format!("model_type \"{model_type}\" is not supported (only \"bert\")"),
            ));
        }
        if bert.num_attention_heads == 0
            || !bert.hidden_size.is_multiple_of(bert.num_attention_heads)
        {
            return Err(EmbedError::config(
                &files.config,
                "hidden_size is not a multiple of num_attention_heads",
            ));
        }

        let sbert: SentenceBertConfigFile = read_json(&files.sentence_bert_config)?;
        // sentence-transformers falls back to the model's position limit; more positions than
        // the model has would index past its position-embedding table.
        let max_seq_length = sbert
            .max_seq_length
            .unwrap_or(bert.max_position_embeddings)
            .min(bert.max_position_embeddings);
        if max_seq_length < 2 {
            return Err(EmbedError::config(
                &files.sentence_bert_config,
                "max_seq_length must be at least 2",
            ));
        }

        // modules.json says where Pooling lives and whether Normalize follows. Without it,
        // sentence-transformers' own layout is Transformer, 1_Pooling, and no Normalize.
        let (pooling_dir, model_normalizes) = if files.modules.is_file() {
            let modules: Vec<ModuleEntry> = read_json(&files.modules)?;
            let pooling = modules
                .iter()
                .find(|m| m.kind.ends_with(".Pooling"))
                .ok_or_else(|| {
                    EmbedError::config(
                        &files.modules,
                        "no sentence_transformers.models.Pooling module",
                    )
                })?;
            for m in &modules {
                let known = [".Transformer", ".Pooling", ".Normalize"];
                if !known.iter().any(|k| m.kind.ends_with(k)) {
                    return Err(EmbedError::config(
                        &files.modules,
                        format!("module \"{}\" is not supported", m.kind),
                    ));
                }
            }
            let normalizes = modules.iter().any(|m| m.kind.ends_with(".Normalize"));
            (files.dir.join(&pooling.path), normalizes)
        } else {
            (files.dir.join("1_Pooling"), false)
        };
        let pooling_file = pooling_dir.join("config.json");
        require_file(&pooling_file)?;
        let p: PoolingConfigFile = read_json(&pooling_file)?;
        if p.pooling_mode_weightedmean_tokens || p.pooling_mode_lasttoken {
            return Err(EmbedError::config(
                &pooling_file,
                "weightedmean and lasttoken pooling are not supported (cls, max, mean, mean_sqrt_len_tokens are)",
            ));
        }
        if p.include_prompt == Some(false) {
            return Err(EmbedError::config(
                &pooling_file,
                "include_prompt = false is not supported",
            ));
        }
        let pooling: Vec<PoolingMode> = [
            (p.pooling_mode_cls_token, PoolingMode::Cls),
            (p.pooling_mode_max_tokens, PoolingMode::Max),
            (p.pooling_mode_mean_tokens, PoolingMode::Mean),
            (
                p.pooling_mode_mean_sqrt_len_tokens,
                PoolingMode::MeanSqrtLen,
            ),
        ]
        .into_iter()
        .filter_map(|(on, mode)| on.then_some(mode))
        .collect();
        if pooling.is_empty() {
            return Err(EmbedError::config(
                &pooling_file,
                "no pooling mode is enabled",
            ));
        }
        if p.word_embedding_dimension != bert.hidden_size {
            return Err(EmbedError::config(
                &pooling_file,
                format!(
                    "word_embedding_dimension {} does not match hidden_size {} in config.json",
                    p.word_embedding_dimension, bert.hidden_size
                ),
            ));
        }

        let st: SentenceTransformersConfigFile = if files.sentence_transformers_config.is_file() {
            read_json(&files.sentence_transformers_config)?
        } else {
            SentenceTransformersConfigFile::default()
        };
        let default_prompt = match st.default_prompt_name {
            None => None,
            Some(name) => Some(st.prompts.get(&name).cloned().ok_or_else(|| {
                EmbedError::config(
                    &files.sentence_transformers_config,
                    format!("default_prompt_name \"{name}\" is not in prompts"),
                )
            })?),
        };

        Ok(Self {
            dimension: bert.hidden_size * pooling.len(),
            bert,
            max_seq_length,
            do_lower_case: sbert.do_lower_case,
            pooling,
            model_normalizes,
            default_prompt,
        })
    }
}
