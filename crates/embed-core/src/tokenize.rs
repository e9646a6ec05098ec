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
use crate::snapshot::Snapshot;
use crate::unigram::{self, CompactTokenizer};

/// Unigram models (the multilingual ones) run on `CompactUnigram`; the others (WordPiece, BPE)
/// on tokenizers' own models, which are small.
pub(crate) enum Inner {
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
    /// Whether the pre-tokenizer splits at spaces, so that a prefix cut at a space gives the
    /// whole text's first tokens (see [`prefix_windows`]); otherwise long texts are tokenized
    /// from their first MiB.
    splits_at_spaces: bool,
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
    /// Loads the tokenizer from `snapshot`, the private copy of `path` (snapshot.rs). A Unigram
    /// tokenizer runs on the compact model over its index in `store`, built there by the first
    /// load of this content (unigram.rs); the others are parsed by tokenizers.
    pub fn load(
        path: &Path,
        snapshot: &Snapshot,
        pipeline: &PipelineConfig,
        store: &Path,
        poll: &mut dyn FnMut(),
    ) -> Result<Self> {
        let bad = |reason: String| EmbedError::InvalidTokenizer {
            path: path.to_owned(),
            reason,
        };
        let inner = match compact(snapshot, store, poll) {
            Some(compact) => Inner::Compact(Box::new(compact)),
            // Mapped rather than read: copying the 17 MB of the multilingual tokenizer.json
            // into a buffer, faulting it in and unmapping it took ~15 of a 37 ms load. The
            // mapping is of the private snapshot, which nobody rewrites.
            None => parse_with(&|| snapshot.map(), false).map_err(|e| match e {
                ParseError::Io(e) => e,
                ParseError::Invalid(reason) => bad(reason),
            })?,
        };
        Self::from_inner(
            inner,
            pipeline.max_seq_length,
            pipeline.do_lower_case,
            pipeline.default_prompt.clone(),
        )
        .map_err(bad)
    }

    /// A parsed tokenizer set up as sentence-transformers uses it: no padding, truncation at
    /// max_seq_length.
    pub(crate) fn from_inner(
        mut inner: Inner,
        max_seq_length: usize,
        do_lower_case: bool,
        default_prompt: Option<String>,
    ) -> std::result::Result<Self, String> {
        let truncation = TruncationParams {
            max_length: max_seq_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        };
        with_tokenizer!(&mut inner, t => {
            // Batches are never padded: the encoder takes each text's own tokens.
            t.with_padding(None);
            t.with_truncation(Some(truncation)).map_err(|e| e.to_string())?;
        });
        let splits_at_spaces =
            with_tokenizer!(&inner, t => t.get_pre_tokenizer().is_some_and(splits_at_spaces));
        Ok(Self {
            inner,
            splits_at_spaces,
            max_seq_length,
            do_lower_case,
            default_prompt,
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

    pub(crate) fn encode_prepared(&self, text: &str) -> Result<Encoding> {
        let text = self.prepare(text);
        // tokenizers panics on some inputs its configuration cannot handle; that is an error
        // for this text, not a reason to take the caller down.
        let encoding = no_panic(|| with_tokenizer!(&self.inner, t => t.encode(text, true)));
        match encoding {
            Ok(Ok(encoding)) => Ok(encoding),
            Ok(Err(e)) => Err(EmbedError::Tokenize {
                reason: e.to_string(),
            }),
            Err(panic) => Err(EmbedError::Tokenize { reason: panic }),
        }
    }

    /// Token ids of one text, special tokens included, truncated to max_seq_length.
    ///
    /// Only a prefix of a long text is tokenized: the model sees max_seq_length tokens, and
    /// tokenizing all of a 20 MB text took 2 s and ~24 bytes of tokenizer state per input byte
    /// (60 MB of text aborted the process under a 3 GB limit). See [`prefix_windows`] for why the
    /// tokens kept are exactly those of the whole text.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_counted(text).map(|(ids, _)| ids)
    }

    /// [`Self::encode`], and whether the text had more tokens than the model takes (its end
    /// was cut off: the vector does not see it).
    pub fn encode_counted(&self, text: &str) -> Result<(Vec<u32>, bool)> {
        let text = python_strip(text);
        for window in prefix_windows(text, self.max_seq_length) {
            crate::interrupt::poll();
            let encoding = self.encode_prepared(window.text)?;
            let full = encoding.len() >= self.max_seq_length;
            let overflow = || {
                encoding
                    .get_overflowing()
                    .iter()
                    .map(Encoding::len)
                    .sum::<usize>()
            };
            let enough = window.last
                || match window.cut {
                    Cut::None => true,
                    // Tokens to spare past the ones kept: whatever the cut does to the last word
                    // (a character before the spaces that a normalizer turns into a space, a
                    // lone '▁') lands in the overflow.
                    Cut::AtSpace if self.splits_at_spaces => {
                        full && overflow() >= AT_SPACE_MARGIN_TOKENS
                    }
                    // A pre-tokenizer that does not split at spaces: only the whole text, or
                    // the last window, is exact enough.
                    Cut::AtSpace => false,
                    // A cut inside a word: that word's tokens may differ from the whole text's,
                    // so the tokens kept must lie well before it.
                    Cut::InsideWord => {
                        self.splits_at_spaces && full && overflow() >= INSIDE_WORD_MARGIN_TOKENS
                    }
                };
            if enough {
                // Full, with tokens past the kept ones, or text past the window.
                let truncated = full && (!matches!(window.cut, Cut::None) || overflow() > 0);
                return Ok((encoding.get_ids().to_vec(), truncated));
            }
        }
        unreachable!("the last window is always enough")
    }
}

/// The compact Unigram model of `snapshot` over its index in `store`: mapped if a load already
/// built it, else built now and kept there for every later load (from memory when the store
/// has no room). None when the file is no Unigram model the compact one covers, or anything
/// failed: parse_with() then decides, from the file itself, so a damaged index costs time,
/// never a wrong token.
fn compact(snapshot: &Snapshot, store: &Path, poll: &mut dyn FnMut()) -> Option<CompactTokenizer> {
    let open = |bytes| no_panic(|| unigram::open(bytes)).ok()?.ok();
    if let Some(index) = snapshot.existing_derived(store, unigram::INDEX_SUFFIX) {
        if let Some(tokenizer) = index
            .map()
            .ok()
            .and_then(|m| open(unigram::IndexBytes::Mapped(m)))
        {
            return Some(tokenizer);
        }
    }
    let json = snapshot.map().ok()?;
    let built = no_panic(|| unigram::build(&json)).ok()?.ok()?;
    drop(json);
    let kept = snapshot.derived(
        store,
        unigram::INDEX_SUFFIX,
        built.len() as u64,
        poll,
        &mut |file, _| std::io::Write::write_all(file, &built),
    );
    match kept.and_then(|index| index.map()) {
        Ok(mapped) => open(unigram::IndexBytes::Mapped(mapped)),
        Err(_) => open(unigram::IndexBytes::Owned(built)),
    }
}

pub(crate) enum ParseError {
    Io(EmbedError),
    Invalid(String),
}

/// Parses tokenizer.json's bytes (`map` maps them): the compact Unigram model (built in
/// memory), else tokenizers' own. (Loads go through TextTokenizer::load.)
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn parse(
    map: &dyn Fn() -> Result<memmap2::Mmap>,
) -> std::result::Result<Inner, ParseError> {
    parse_with(map, true)
}

/// [`parse`], trying the compact model first only if `try_compact`.
fn parse_with(
    map: &dyn Fn() -> Result<memmap2::Mmap>,
    try_compact: bool,
) -> std::result::Result<Inner, ParseError> {
    let bytes = map().map_err(ParseError::Io)?;
    // tokenizers' deserializers panic on some malformed files (`"decoder":;null` hit an
    // expect("Helper") in tokenizers 0.23.2, found by fuzz/tokenizer_json): an invalid file.
    if try_compact {
        if let Ok(Ok(compact)) = no_panic(|| unigram::load(&bytes)) {
            return Ok(Inner::Compact(Box::new(compact)));
        }
    }
    match no_panic(|| Tokenizer::from_bytes(&bytes[..])) {
        Ok(Ok(t)) => Ok(Inner::Tokenizers(Box::new(t))),
        Ok(Err(e)) => Err(ParseError::Invalid(e.to_string())),
        Err(panic) => Err(ParseError::Invalid(panic)),
    }
}

#[cfg(feature = "fuzzing")]
thread_local! {
    /// Inside [`no_panic`]: the fuzz targets' panic hook lets such a panic unwind to it
    /// (libFuzzer's hook aborts on every panic, caught or not).
    pub(crate) static CATCHING_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic inside it (third-party parsing and tokenizing code only; never
/// around a call that can raise a PostgreSQL error) into the panic's message.
fn no_panic<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    #[cfg(feature = "fuzzing")]
    CATCHING_PANICS.set(true);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    #[cfg(feature = "fuzzing")]
    CATCHING_PANICS.set(false);
    result.map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown error".into());
        format!("the tokenizer library failed: {message}")
    })
}

/// Bytes of text per token of max_seq_length in the first window: Korean recipe names run at
/// 2-4 bytes a token, English at 4-6, so the first window nearly always suffices.
const FIRST_WINDOW_BYTES_PER_TOKEN: usize = 32;

/// The largest window: beyond it, a text whose first max_seq_length tokens are not yet found
/// before a whitespace (one word of over a MiB) is tokenized from this much of it.
pub(crate) const MAX_WINDOW_BYTES: usize = 1 << 20;

/// Tokens that must lie between the tokens kept and a cut inside a word.
const INSIDE_WORD_MARGIN_TOKENS: usize = 64;

/// Tokens that must lie between the tokens kept and a cut at a space.
const AT_SPACE_MARGIN_TOKENS: usize = 8;

/// Pre-tokenizers that split at U+0020 before anything else is tokenized, so that words before
/// a space are tokenized on their own: BERT's, Metaspace with `split` (XLM-R, T5), the
/// whitespace splitters, ByteLevel with its regex (GPT-2's, which attaches a space to the next
/// word); a Sequence when one of its steps does (later steps only split further).
fn splits_at_spaces(p: &tokenizers::PreTokenizerWrapper) -> bool {
    use tokenizers::PreTokenizerWrapper as P;
    match p {
        P::BertPreTokenizer(_) | P::Whitespace(_) | P::WhitespaceSplit(_) => true,
        P::Metaspace(m) => m.get_split(),
        P::ByteLevel(b) => b.use_regex,
        P::Sequence(seq) => seq.as_ref().iter().any(splits_at_spaces),
        _ => false,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cut {
    /// The window is the whole text.
    None,
    /// The window ends where a run of spaces starts.
    AtSpace,
    /// No space in the window's second half: cut at a character boundary.
    InsideWord,
}

struct Window<'a> {
    text: &'a str,
    cut: Cut,
    /// The last window: what it gives is the answer (1 MiB of text did not hold the tokens).
    last: bool,
}

/// Growing prefixes of `text` (doubling from 32 bytes per token up to 1 MiB), each ending where
/// a run of ASCII spaces starts, until the whole text fits.
///
/// Why a prefix ending at a space gives exactly the whole text's first tokens: both
/// pre-tokenizers of the supported models (Metaspace for XLM-R/Unigram, BertPreTokenizer for
/// WordPiece) split at spaces first and tokenize each piece on its own, and the normalizers
/// (lower-casing, NFKC-style charsmaps, accent stripping, collapsing spaces) map characters
/// without looking across a space. So every word that ends before the cut is tokenized as in
/// the whole text, and once the prefix yields max_seq_length tokens or more, truncation keeps
/// the same ones. Only U+0020 is a cut point: other whitespace (tabs, U+3000) becomes a space
/// in some normalizers but not all; whitespace just before the cut is dropped, and a window is
/// only taken when it yields a few tokens more than those kept, so that whatever the cut does
/// to the last word falls outside them. Tokenizers whose pre-tokenizer does not split at spaces
/// take the whole text, up to the last window. The unit test
/// `prefixes_give_the_whole_texts_tokens` and the fuzz target `tokenize` check this against
/// tokenizing whole texts.
fn prefix_windows(text: &str, max_seq_length: usize) -> impl Iterator<Item = Window<'_>> {
    let mut size = (max_seq_length * FIRST_WINDOW_BYTES_PER_TOKEN).clamp(1024, MAX_WINDOW_BYTES);
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        if text.len() <= size {
            done = true;
            return Some(Window {
                text,
                cut: Cut::None,
                last: true,
            });
        }
        let last = size >= MAX_WINDOW_BYTES;
        let mut end = size;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let bytes = text.as_bytes();
        // The start of the last run of spaces that reaches into the window's second half.
        let (cut, cut_at) = match bytes[end / 2..end].iter().rposition(|&b| b == b' ') {
            Some(i) => {
                let mut start = end / 2 + i;
                while start > 0 && bytes[start - 1] == b' ' {
                    start -= 1;
                }
                if start > 0 {
                    (Cut::AtSpace, start)
                } else {
                    (Cut::InsideWord, end)
                }
            }
            None => (Cut::InsideWord, end),
        };
        done = last;
        size = (size * 2).min(MAX_WINDOW_BYTES);
        Some(Window {
            // Any whitespace before the spaces goes too (python_strip's set, and U+200B, which
            // XLM-R's charsmap turns into a space): the window ends with its last word.
            text: text[..cut_at].trim_end_matches(|c: char| {
                c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c) || c == '\u{200b}'
            }),
            cut,
            last,
        })
    })
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
        let mut compact = unigram::load(&std::fs::read(&path).unwrap()).unwrap();
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

    /// The first load of a Unigram tokenizer keeps its index in the store; later loads map that
    /// file, and a truncated one is replaced, each time with tokenizers' ids.
    #[test]
    fn the_index_is_built_once_then_mapped() {
        let dir = crate::test_model_file("multilingual-e5-small-fixture", "tokenizer.json")
            .parent()
            .unwrap()
            .to_owned();
        let files = crate::config::ModelFiles::in_dir(&dir).unwrap();
        let pipeline = PipelineConfig::read(&files).unwrap();
        let store =
            std::env::temp_dir().join(format!("embed-core-index-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&store);
        let snapshot = crate::snapshot::snapshot(&files.tokenizer, &store, &mut || {}).unwrap();
        let Ok(inner) = parse_with(&|| snapshot.map(), false) else {
            panic!("tokenizers reads the fixture")
        };
        assert!(matches!(inner, Inner::Tokenizers(_)));
        let reference = TextTokenizer::from_inner(
            inner,
            pipeline.max_seq_length,
            pipeline.do_lower_case,
            pipeline.default_prompt.clone(),
        )
        .unwrap();
        let texts = [
            "갈비탕",
            "Hello, world",
            "  김치찌개 레시피  ",
            "\u{1F600} ok",
        ];
        let check = |t: &TextTokenizer| {
            assert!(matches!(t.inner, Inner::Compact(_)));
            for text in texts {
                assert_eq!(
                    t.encode(text).unwrap(),
                    reference.encode(text).unwrap(),
                    "{text:?}"
                );
            }
        };
        let index = || {
            snapshot
                .existing_derived(&store, unigram::INDEX_SUFFIX)
                .map(|i| i.path)
        };
        assert!(index().is_none());
        let first = TextTokenizer::load(&files.tokenizer, &snapshot, &pipeline, &store, &mut || {})
            .unwrap();
        check(&first);
        let path = index().expect("the first load keeps the index");
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        let built = inode(&path);
        let again = TextTokenizer::load(&files.tokenizer, &snapshot, &pipeline, &store, &mut || {})
            .unwrap();
        check(&again);
        assert_eq!(inode(&path), built, "a later load maps the same file");
        // Truncated: not read as an index, and replaced by a whole one.
        let whole_size = std::fs::metadata(&path).unwrap().len();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(whole_size / 2)
            .unwrap();
        let repaired =
            TextTokenizer::load(&files.tokenizer, &snapshot, &pipeline, &store, &mut || {})
                .unwrap();
        check(&repaired);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole_size);
        std::fs::remove_dir_all(&store).unwrap();
    }

    /// WordPiece (all-MiniLM-L6-v2) is no Unigram model: it stays on tokenizers' own model.
    #[test]
    fn other_models_stay_on_tokenizers() {
        let path = crate::test_model_file("all-MiniLM-L6-v2", "tokenizer.json");
        assert!(unigram::load(&std::fs::read(path).unwrap()).is_err());
    }

    fn load(model: &str) -> TextTokenizer {
        let dir = crate::test_model_file(model, "tokenizer.json")
            .parent()
            .unwrap()
            .to_owned();
        let files = crate::config::ModelFiles::in_dir(&dir).unwrap();
        let pipeline = PipelineConfig::read(&files).unwrap();
        let options = crate::LoadOptions::new(crate::Backend::Fast);
        let snapshot =
            crate::snapshot::snapshot(&files.tokenizer, &options.snapshot_dir, &mut || {}).unwrap();
        TextTokenizer::load(
            &files.tokenizer,
            &snapshot,
            &pipeline,
            &options.snapshot_dir,
            &mut || {},
        )
        .unwrap()
    }

    /// Long texts tokenized from a prefix give the ids of tokenizing them whole, for both
    /// tokenizer kinds: word-separated texts of every length around the window sizes, runs of
    /// spaces and other whitespace at the cuts, words longer than a window.
    #[test]
    fn prefixes_give_the_whole_texts_tokens() {
        let dishes: Vec<&str> = include_str!("../../../demo/recipes.txt").lines().collect();
        let mut texts = Vec::new();
        for (i, sep) in [
            " ",
            "  ",
            " \t ",
            "\t  ",
            "\u{200b} ",
            "\u{a0}  ",
            "\u{3000}",
            "\n",
            " \u{200b}",
            "-",
            "   \u{301}",
        ]
        .iter()
        .enumerate()
        {
            for count in [50, 300, 1000, 3000] {
                let text: Vec<&str> = dishes
                    .iter()
                    .cycle()
                    .skip(i * 7)
                    .take(count)
                    .copied()
                    .collect();
                texts.push(text.join(sep));
            }
        }
        texts.push("갈".repeat(20_000));
        texts.push(format!("{} 갈비탕", "갈비".repeat(3000)));
        texts.push(format!("{} {}", "a".repeat(5000), "갈비탕 ".repeat(400)));
        texts.push("ab ".repeat(5000));
        texts.push(format!("x{}y", " ".repeat(40_000)));
        texts.push("supercalifragilistic".repeat(500));
        for model in ["all-MiniLM-L6-v2", "multilingual-e5-small-fixture"] {
            let t = load(model);
            for text in &texts {
                let whole = t.encode_prepared(python_strip(text)).unwrap();
                assert_eq!(
                    t.encode(text).unwrap(),
                    whole.get_ids(),
                    "{model}: text of {} bytes starting {:?}",
                    text.len(),
                    text.chars().take(40).collect::<String>()
                );
            }
        }
    }

    /// A text of hundreds of MB is tokenized from at most a MiB of it: bounded time and memory.
    #[test]
    fn huge_texts_cost_a_window() {
        let t = load("multilingual-e5-small-fixture");
        for text in ["갈".repeat(30_000_000), "갈비탕 ".repeat(10_000_000)] {
            let started = std::time::Instant::now();
            let ids = t.encode(&text).unwrap();
            assert_eq!(ids.len(), t.max_seq_length());
            println!(
                "{} MB text: {} tokens in {:.0} ms",
                text.len() >> 20,
                ids.len(),
                started.elapsed().as_secs_f64() * 1e3
            );
        }
    }

    /// Inputs the fuzz targets found (tests/fuzz_regressions/tokenizer_json/): each is an
    /// error or a tokenizer, never a panic.
    #[test]
    fn fuzz_findings_are_errors() {
        // Where cargo runs the test from, not the compile-time path (see tests/reference.rs).
        let crate_dir =
            std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into());
        let dir = std::path::Path::new(&crate_dir).join("tests/fuzz_regressions/tokenizer_json");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let map = || {
                let file = std::fs::File::open(&path).unwrap();
                // SAFETY: a test fixture nobody rewrites.
                Ok(unsafe { memmap2::Mmap::map(&file) }.unwrap())
            };
            if let Ok(inner) = parse(&map) {
                let t = TextTokenizer::from_inner(inner, 16, false, None).unwrap();
                let _ = t.encode("갈비탕 a b");
            }
            seen += 1;
        }
        assert!(seen > 0);
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
