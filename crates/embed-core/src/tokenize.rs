//! Text -> token ids, exactly as sentence-transformers prepares them.
//!
//! sentence-transformers strips each input (Python `str.strip()`), lower-cases it when
//! sentence_bert_config.json says so, prepends the default prompt, truncates to max_seq_length
//! (special tokens included) and pads each batch to its longest member. tokenizer.json files can
//! carry their own padding and truncation (all-MiniLM-L6-v2's pads to a fixed 128 and truncates
//! at 128 while its max_seq_length is 256): both are overridden here.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::config::PipelineConfig;
use crate::error::{EmbedError, Result};

pub struct TextTokenizer {
    inner: Tokenizer,
    max_seq_length: usize,
    do_lower_case: bool,
    default_prompt: Option<String>,
    pad_id: u32,
}

/// One padded batch, row-major `[rows, seq_len]`.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    pub ids: Vec<u32>,
    pub attention_mask: Vec<u32>,
    /// Real (unpadded) token count of each row, special tokens included.
    pub lengths: Vec<usize>,
    pub seq_len: usize,
}

impl TokenBatch {
    pub fn rows(&self) -> usize {
        self.lengths.len()
    }
}

/// Python's `str.strip()`: Unicode White_Space plus the four ASCII separators U+001C..U+001F,
/// which Python counts as whitespace and Rust does not.
pub fn python_strip(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

impl TextTokenizer {
    pub fn load(path: &Path, pipeline: &PipelineConfig) -> Result<Self> {
        crate::config::require_file(path)?;
        let bad = |reason: String| EmbedError::InvalidTokenizer {
            path: path.to_owned(),
            reason,
        };
        let mut inner = Tokenizer::from_file(path).map_err(|e| bad(e.to_string()))?;
        // Pad id: the tokenizer's own padding setting if it has one, else its pad token, else
        // config.json's pad_token_id. Its value never reaches the output (the mask hides pads),
        // but an id outside the vocabulary would fail the embedding lookup.
        let pad_id = inner
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| ["<pad>", "[PAD]"].iter().find_map(|t| inner.token_to_id(t)))
            .unwrap_or(pipeline.bert.pad_token_id as u32);
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: pipeline.max_seq_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            inner,
            max_seq_length: pipeline.max_seq_length,
            do_lower_case: pipeline.do_lower_case,
            default_prompt: pipeline.default_prompt.clone(),
            pad_id,
        })
    }

    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The text that actually reaches the tokenizer.
    fn prepare(&self, text: &str) -> String {
        let text = python_strip(text);
        let text = if self.do_lower_case {
            text.to_lowercase()
        } else {
            text.to_owned()
        };
        match &self.default_prompt {
            Some(prompt) => format!("{prompt}{text}"),
            None => text,
        }
    }

    /// Token ids of one text, special tokens included, truncated to max_seq_length.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding =
            self.inner
                .encode(self.prepare(text), true)
                .map_err(|e| EmbedError::Tokenize {
                    reason: e.to_string(),
                })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Encodes texts one at a time (tokenizers' encode_batch would start a rayon pool inside a
    /// PostgreSQL backend) and pads them to the longest, never to a fixed length.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<TokenBatch> {
        let encoded = texts
            .iter()
            .map(|t| self.encode(t))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.pad(&encoded.iter().map(Vec::as_slice).collect::<Vec<_>>()))
    }

    /// Pads already-encoded rows to the longest of them.
    pub fn pad(&self, rows: &[&[u32]]) -> TokenBatch {
        let seq_len = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(rows.len() * seq_len);
        let mut attention_mask = Vec::with_capacity(rows.len() * seq_len);
        let mut lengths = Vec::with_capacity(rows.len());
        for row in rows {
            ids.extend_from_slice(row);
            ids.resize(ids.len() + seq_len - row.len(), self.pad_id);
            attention_mask.extend(std::iter::repeat_n(1, row.len()));
            attention_mask.extend(std::iter::repeat_n(0, seq_len - row.len()));
            lengths.push(row.len());
        }
        TokenBatch {
            ids,
            attention_mask,
            lengths,
            seq_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::python_strip;

    #[test]
    fn strip_matches_python() {
        assert_eq!(python_strip("  갈비탕 \n"), "갈비탕");
        // Python's str.strip() removes U+001C..U+001F and U+3000; Rust's trim() keeps U+001C.
        assert_eq!(python_strip("\u{1c}\u{3000}x\u{1f}\u{a0}"), "x");
        // U+200B (zero width space) is not whitespace for either.
        assert_eq!(python_strip("\u{200b}x"), "\u{200b}x");
        assert_eq!(python_strip(" \t "), "");
    }
}
