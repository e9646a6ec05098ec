//! Text -> token ids, exactly as sentence-transformers prepares them.
//!
//! sentence-transformers strips each input (Python `str.strip()`), lower-cases it when
//! sentence_bert_config.json says so, prepends the default prompt and truncates to max_seq_length
//! (special tokens included). Batches are not padded here: the encoder packs them. tokenizer.json files can
//! carry their own padding and truncation (all-MiniLM-L6-v2's pads to a fixed 128 and truncates
//! at 128 while its max_seq_length is 256): both are overridden here.

use std::path::Path;

use tokenizers::{Encoding, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::config::PipelineConfig;
use crate::error::{EmbedError, Result};
use crate::unigram::{self, CompactTokenizer};

/// Unigram models (the multilingual ones) run on `CompactUnigram`; the others (WordPiece, BPE)
/// on tokenizers' own models, which are small.
enum Inner {
    Compact(Box<CompactTokenizer>),
    Tokenizers(Box<Tokenizer>),
}

/// `$body` with `$t` bound to whichever tokenizer `$inner` holds (the two are different types
/// with the same methods).
macro_rules! with_tokenizer {
    ($inner:expr, $t:ident => $body:expr) => {
        match $inner {
            Inner::Compact($t) => $body,
            Inner::Tokenizers($t) => $body,
        }
    };
}

pub struct TextTokenizer {
    inner: Inner,
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
        // Mapped rather than read: copying the 17 MB of the multilingual tokenizer.json into a
        // buffer, faulting it in and unmapping it took ~15 of a 37 ms load, and the compact
        // Unigram model reads its pieces from the mapping for as long as it lives.
        let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
        let map = || {
            // SAFETY: read-only. The file must not be rewritten in place while mapped
            // (installers replace it with a new file, which is safe), as for the weights.
            unsafe { memmap2::Mmap::map(&file) }.map_err(|e| bad(e.to_string()))
        };
        let mut inner = match unigram::load(map()?) {
            Ok(compact) => Inner::Compact(Box::new(compact)),
            // Not a Unigram model the compact one covers: tokenizers' own model.
            Err(_) => Inner::Tokenizers(Box::new(
                Tokenizer::from_bytes(&map()?[..]).map_err(|e| bad(e.to_string()))?,
            )),
        };
        let truncation = TruncationParams {
            max_length: pipeline.max_seq_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        };
        with_tokenizer!(&mut inner, t => {
            // Batches are never padded: the encoder takes each text's own tokens.
            t.with_padding(None);
            t.with_truncation(Some(truncation)).map_err(|e| bad(e.to_string()))?;
        });
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
        with_tokenizer!(&self.inner, t => t.get_vocab_size(true))
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
        let text = self.prepare(text);
        let encoding: tokenizers::Result<Encoding> =
            with_tokenizer!(&self.inner, t => t.encode(text, true));
        let encoding = encoding.map_err(|e| EmbedError::Tokenize {
            reason: e.to_string(),
        })?;
        Ok(encoding.get_ids().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Texts for comparing tokenizers: Korean recipe names, other scripts, the special tokens
    /// written out, characters no piece covers (alone and in runs, which are fused), normalizer
    /// cases, and pseudo-random strings over all of these.
    fn tricky_texts() -> Vec<String> {
        let mut texts: Vec<String> = [
            "",
            " ",
            "갈비탕",
            "황금레시피 김치찌개",
            "  엄마표   된장찌개\t\n",
            "<s>",
            "</s>",
            "<unk>",
            "<pad>",
            "a<mask>b",
            "<s>갈비탕</s>",
            "▁",
            "▁▁갈비",
            "Hello, 世界! 1234.56",
            "ＡＢＣ１２３",
            "ﬁne café",
            "e\u{301}",
            "🍜🍲 라면",
            "\u{0}\u{7}x",
            "\u{200b}",
            "مرحبا بالعالم",
            "สวัสดีครับ",
            "नमस्ते दुनिया",
            "𠀀𠀁 한자",
            "\u{e000}\u{e001}\u{e002} 갈비",
            "x\u{10ffff}\u{10fffe}y",
            "ÀÉÎÕÜ àéîõü",
            "ㄱㄴㄷ ㅏㅑ",
            "가\u{3099}",
            "Ⅻ ½ ㎏ ㈜",
            "don't stop-believing...",
            "he said \"갈비탕\" \\ ok \"\"",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        texts.push("갈비탕 ".repeat(400));
        texts.push("\u{e000}".repeat(50));
        for dish in include_str!("../../../demo/recipes.txt").lines() {
            texts.push(dish.to_owned());
            texts.push(format!("초간단 {dish} 만들기"));
        }
        let alphabet: Vec<char> = "갈비탕김치찌개된장 abcXYZ019.,!?-'<>/▁ \t世界日本語ひらがなカタカナ🍜é\u{301}\u{e000}\u{200b}ﬁ①Ⅻ𠀀ㄱㅏ"
            .chars()
            .collect();
        let mut state = 0x2545_f491_u32;
        for _ in 0..3000 {
            let mut text = String::new();
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            for _ in 0..(state >> 16) % 24 {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                text.push(alphabet[(state >> 16) as usize % alphabet.len()]);
            }
            texts.push(text);
        }
        texts
    }

    /// The compact Unigram model gives tokenizers' ids, text for text (the multilingual e5
    /// fixture has the product model's XLM-R tokenizer).
    #[test]
    fn compact_unigram_gives_tokenizers_ids() {
        let path = crate::test_model_file("multilingual-e5-small-fixture", "tokenizer.json");
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: a test fixture nobody rewrites.
        let mut compact = unigram::load(unsafe { memmap2::Mmap::map(&file) }.unwrap()).unwrap();
        let mut reference = Tokenizer::from_file(&path).unwrap();
        compact.with_padding(None);
        reference.with_padding(None);
        assert_eq!(compact.get_vocab_size(true), reference.get_vocab_size(true));
        let texts = tricky_texts();
        for text in &texts {
            let got = compact.encode(text.as_str(), true).unwrap();
            let expected = reference.encode(text.as_str(), true).unwrap();
            assert_eq!(got.get_ids(), expected.get_ids(), "text {text:?}");
            assert_eq!(got.get_offsets(), expected.get_offsets(), "text {text:?}");
        }
        println!(
            "compact Unigram: same ids and offsets as tokenizers for {} texts",
            texts.len()
        );
    }

    /// WordPiece (all-MiniLM-L6-v2) is no Unigram model: it stays on tokenizers' own model.
    #[test]
    fn other_models_stay_on_tokenizers() {
        let path = crate::test_model_file("all-MiniLM-L6-v2", "tokenizer.json");
        let file = std::fs::File::open(path).unwrap();
        // SAFETY: a test fixture nobody rewrites.
        assert!(unigram::load(unsafe { memmap2::Mmap::map(&file) }.unwrap()).is_err());
    }

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
