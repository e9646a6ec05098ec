//! Text -> token ids, exactly as sentence-transformers prepares them.
//!
//! sentence-transformers strips each input (Python `str.strip()`), lower-cases it when
//! sentence_bert_config.json says so, prepends the default prompt and truncates to max_seq_length
//! (special tokens included). Batches are not padded here: the encoder packs them. tokenizer.json files can
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
        // Batches are never padded: the encoder takes each text's own tokens.
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
