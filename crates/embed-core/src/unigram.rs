//! A compact Unigram (SentencePiece) model for the tokenizers pipeline: the tokens of
//! `tokenizers::models::unigram::Unigram`, without its memory.
//!
//! tokenizers builds a byte trie with a hash map in every node; for the multilingual models'
//! 250,002 pieces that took 0.54 s and ~250 MB of private memory in every backend that loaded
//! the model itself (without shared_preload_libraries). Here the pieces stay where they are in
//! the mapped tokenizer.json (shared by every backend through the page cache) and a table of
//! ids finds them: the model folder loads in 27 ms with ~5 MB of private memory (64
//! connections without preloading: 507 MB of PSS in all, against 18 GB before). The best path
//! is computed as tokenizers' `encode_optimized` does (sentencepiece's Viterbi), looking each
//! candidate piece up instead of walking the trie, in the same order (shorter pieces first, so
//! that equal scores keep the same winner), and unknown characters are fused as it fuses them.
//! tokenize.rs's tests check that the two give the same ids and offsets.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};

use hashbrown::DefaultHashBuilder;
use memmap2::Mmap;
use serde::de::{DeserializeSeed, Deserializer, Error, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use tokenizers::models::unigram::UnigramTrainer;
use tokenizers::{
    AddedToken, DecoderWrapper, Model, NormalizerWrapper, PostProcessorWrapper,
    PreTokenizerWrapper, Token, TokenizerBuilder, TokenizerImpl,
};

/// tokenizers' pipeline (normalizer, pre-tokenizer, added tokens, post-processor) around the
/// compact Unigram model.
pub type CompactTokenizer = TokenizerImpl<
    CompactUnigram,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// tokenizers' score for a character no piece covers: the lowest piece score minus this.
const UNK_PENALTY: f64 = 10.0;

/// Marks an offset into `CompactUnigram::escaped` rather than into the file.
const ESCAPED: u32 = 1 << 31;

pub struct CompactUnigram {
    /// tokenizer.json, mapped read-only. Most pieces are read where they stand in it, so every
    /// backend shares them through the page cache instead of holding a copy.
    json: Mmap,
    /// The few pieces that are JSON-escaped in the file (quotes, backslashes), unescaped.
    escaped: Vec<u8>,
    /// Where piece i starts: in `json`, or in `escaped` when `ESCAPED` is set.
    offsets: Vec<u32>,
    lens: Vec<u8>,
    /// Scores as tokenizers reads them: serde_json's f64 of the f32 sentencepiece wrote, which
    /// for a quarter of XLM-R's pieces is a few units in the last place off the f32 (rounding
    /// to f32 would change which of two nearly equal paths wins). Kept as the f32 and the
    /// distance in f64 units in the last place: exact, in 5 bytes instead of 8.
    scores: Vec<f32>,
    score_ulps: Vec<i8>,
    /// Ids by piece: open addressing, three quarters full, each slot an id in its low `id_bits`
    /// and a tag from the piece's hash above them, so that probing rarely reads a piece. (A
    /// hashbrown table of ids took 2.6 MB for 250,002 pieces, this one 1.3.) A piece listed
    /// twice keeps its last id, as tokenizers' map does.
    slots: Vec<u32>,
    id_bits: u32,
    hasher: DefaultHashBuilder,
    unk_id: Option<u32>,
    min_score: f64,
    /// Bytes in the longest piece: no candidate is longer.
    max_piece_len: usize,
}

impl CompactUnigram {
    fn piece(&self, id: u32) -> &[u8] {
        let (offset, len) = (
            self.offsets[id as usize],
            usize::from(self.lens[id as usize]),
        );
        if offset & ESCAPED != 0 {
            &self.escaped[(offset & !ESCAPED) as usize..][..len]
        } else {
            &self.json[offset as usize..][..len]
        }
    }

    /// The slot to start probing at for `hash`, and the tag its pieces carry.
    fn slot_and_tag(&self, hash: u64) -> (usize, u32) {
        let slot = ((u128::from(hash) * self.slots.len() as u128) >> 64) as usize;
        (slot, (hash as u32) << self.id_bits)
    }

    fn id_mask(&self) -> u32 {
        (1 << self.id_bits) - 1
    }

    /// The slot holding `piece` and its id, or the free slot where it would go; and its tag.
    fn find(&self, piece: &[u8]) -> (usize, u32, Option<u32>) {
        let (mut slot, tag) = self.slot_and_tag(self.hasher.hash_one(piece));
        let mask = self.id_mask();
        loop {
            let entry = self.slots[slot];
            // An id of all ones is never a real one (2^id_bits > pieces): a free slot.
            if entry & mask == mask {
                return (slot, tag, None);
            }
            if entry & !mask == tag && self.piece(entry & mask) == piece {
                return (slot, tag, Some(entry & mask));
            }
            slot = if slot + 1 == self.slots.len() {
                0
            } else {
                slot + 1
            };
        }
    }

    fn id_of(&self, piece: &[u8]) -> Option<u32> {
        self.find(piece).2
    }

    /// Puts every piece in `slots`, in id order (so a repeated piece ends with its last id).
    fn index(&mut self) {
        self.slots = vec![u32::MAX; self.len() + self.len() / 3 + 1];
        for id in 0..self.len() as u32 {
            let (slot, tag, _) = self.find(self.piece(id));
            self.slots[slot] = tag | id;
        }
    }

    fn len(&self) -> usize {
        self.scores.len()
    }

    fn score(&self, id: u32) -> f64 {
        let near = f64::from(self.scores[id as usize]).to_bits() as i64;
        f64::from_bits((near + i64::from(self.score_ulps[id as usize])) as u64)
    }

    /// The pieces of the best segmentation of `sentence`, runs of unknown characters fused.
    fn encode(&self, sentence: &str) -> tokenizers::Result<Vec<String>> {
        #[derive(Clone)]
        struct BestPath {
            id: u32,
            score: f64,
            /// Where the last piece of the best path ending here starts (None: not reached).
            start: Option<usize>,
        }
        let size = sentence.len();
        let unk_score = self.min_score - UNK_PENALTY;
        let missing_unk = || "Encountered an unknown token but `unk_id` is missing";
        let mut best = vec![
            BestPath {
                id: 0,
                score: 0.0,
                start: None,
            };
            size + 1
        ];
        let mut start = 0;
        while start < size {
            let here = best[start].score;
            let rest = &sentence[start..];
            let first_char_len = rest.chars().next().map_or(1, char::len_utf8);
            let mut single_char_piece = false;
            let ends = rest
                .char_indices()
                .skip(1)
                .map(|(i, _)| i)
                .chain(std::iter::once(rest.len()))
                .take_while(|&end| end <= self.max_piece_len);
            for end in ends {
                let Some(id) = self.id_of(&rest.as_bytes()[..end]) else {
                    continue;
                };
                let score = self.score(id) + here;
                let node = &mut best[start + end];
                if node.start.is_none() || score > node.score {
                    *node = BestPath {
                        id,
                        score,
                        start: Some(start),
                    };
                }
                single_char_piece |= end == first_char_len;
            }
            if !single_char_piece {
                let node = &mut best[start + first_char_len];
                let score = unk_score + here;
                if node.start.is_none() || score > node.score {
                    *node = BestPath {
                        id: self.unk_id.ok_or_else(missing_unk)?,
                        score,
                        start: Some(start),
                    };
                }
            }
            start += first_char_len;
        }

        let mut pieces = Vec::new();
        let mut unknown: Vec<&str> = Vec::new();
        let mut end = size;
        while end > 0 {
            let node = &best[end];
            let start = node.start.ok_or_else(missing_unk)?;
            if Some(node.id) == self.unk_id {
                unknown.push(&sentence[start..end]);
            } else {
                if !unknown.is_empty() {
                    unknown.reverse();
                    pieces.push(unknown.concat());
                    unknown.clear();
                }
                pieces.push(sentence[start..end].to_owned());
            }
            end = start;
        }
        if !unknown.is_empty() {
            unknown.reverse();
            pieces.push(unknown.concat());
        }
        pieces.reverse();
        Ok(pieces)
    }
}

impl Model for CompactUnigram {
    type Trainer = UnigramTrainer;

    fn tokenize(&self, sentence: &str) -> tokenizers::Result<Vec<Token>> {
        let mut offset = 0;
        let mut tokens = Vec::new();
        for piece in self.encode(sentence)? {
            // Fused unknown characters are no piece: they map to unk_id.
            let id = match self.id_of(piece.as_bytes()) {
                Some(id) => id,
                None => self
                    .unk_id
                    .ok_or("Encountered an unknown token but `unk_id` is missing")?,
            };
            let len = piece.len();
            tokens.push(Token::new(id, piece, (offset, offset + len)));
            offset += len;
        }
        Ok(tokens)
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.id_of(token.as_bytes())
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        ((id as usize) < self.len()).then(|| String::from_utf8_lossy(self.piece(id)).into_owned())
    }

    fn get_vocab(&self) -> HashMap<String, u32> {
        // In id order, so that a repeated piece maps to its last id.
        (0..self.len() as u32)
            .map(|id| (String::from_utf8_lossy(self.piece(id)).into_owned(), id))
            .collect()
    }

    fn get_vocab_size(&self) -> usize {
        self.len()
    }

    fn save(&self, _folder: &Path, _prefix: Option<&str>) -> tokenizers::Result<Vec<PathBuf>> {
        Err("the compact Unigram model is read-only".into())
    }

    fn get_trainer(&self) -> UnigramTrainer {
        UnigramTrainer::default()
    }
}

/// tokenizer.json with a compact Unigram model, the rest of the pipeline as tokenizers reads it
/// (the same steps as its own deserializer). An error when the model is not a Unigram model
/// this one covers (another type, byte fallback, a piece over 255 bytes, a score far from any
/// f32): the caller then loads the file with tokenizers' own model.
pub fn load(json: Mmap) -> Result<CompactTokenizer, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(&json);
    let file = FileSeed {
        base: json.as_ptr() as usize,
    }
    .deserialize(&mut deserializer)
    .and_then(|file| deserializer.end().map(|()| file))
    .map_err(|e| e.to_string())?;
    let parts = file.model.ok_or("no model")?;
    let mut model = CompactUnigram {
        json,
        escaped: parts.escaped,
        offsets: parts.offsets,
        lens: parts.lens,
        scores: parts.scores,
        score_ulps: parts.score_ulps,
        slots: Vec::new(),
        id_bits: 0,
        hasher: DefaultHashBuilder::default(),
        unk_id: parts.unk_id,
        min_score: parts.min_score,
        max_piece_len: parts.max_piece_len,
    };
    // Ids up to len() - 1, and all ones left free: 2^id_bits > len().
    model.id_bits = (model.len() as u32 + 1)
        .next_power_of_two()
        .trailing_zeros();
    if model.id_bits > 24 {
        return Err("the vocabulary has over 16 million pieces".into());
    }
    model.index();
    let mut tokenizer = TokenizerBuilder::new()
        .with_model(model)
        .with_normalizer(file.normalizer)
        .with_pre_tokenizer(file.pre_tokenizer)
        .with_post_processor(file.post_processor)
        .with_decoder(file.decoder)
        .build()
        .map_err(|e| e.to_string())?;
    tokenizer
        .add_tokens(file.added_tokens.into_iter().map(|t| t.token))
        .map_err(|e| e.to_string())?;
    Ok(tokenizer)
}

/// An entry of tokenizer.json's "added_tokens". Its "id" is not used: the model's id for the
/// token is (tokenizers only warns when the two differ).
#[derive(Deserialize)]
struct AddedTokenWithId {
    #[serde(flatten)]
    token: AddedToken,
}

#[derive(Default)]
struct TokenizerFile {
    added_tokens: Vec<AddedTokenWithId>,
    normalizer: Option<NormalizerWrapper>,
    pre_tokenizer: Option<PreTokenizerWrapper>,
    post_processor: Option<PostProcessorWrapper>,
    decoder: Option<DecoderWrapper>,
    model: Option<ModelParts>,
}

/// The Unigram model as read, before it owns the mapping.
struct ModelParts {
    escaped: Vec<u8>,
    offsets: Vec<u32>,
    lens: Vec<u8>,
    scores: Vec<f32>,
    score_ulps: Vec<i8>,
    unk_id: Option<u32>,
    min_score: f64,
    max_piece_len: usize,
}

/// Reads the whole file; `base` is the address of its first byte, from which the pieces'
/// offsets are counted.
struct FileSeed {
    base: usize,
}

impl<'de> DeserializeSeed<'de> for FileSeed {
    type Value = TokenizerFile;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<TokenizerFile, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FileSeed {
    type Value = TokenizerFile;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a tokenizer.json object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TokenizerFile, A::Error> {
        let mut file = TokenizerFile::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "version" => {
                    let version: String = map.next_value()?;
                    if version != "1.0" {
                        return Err(A::Error::custom(format!(
                            "unknown tokenizer version {version}"
                        )));
                    }
                }
                "added_tokens" => file.added_tokens = map.next_value()?,
                "normalizer" => file.normalizer = map.next_value()?,
                "pre_tokenizer" => file.pre_tokenizer = map.next_value()?,
                "post_processor" => file.post_processor = map.next_value()?,
                "decoder" => file.decoder = map.next_value()?,
                "model" => file.model = Some(map.next_value_seed(ModelSeed { base: self.base })?),
                // truncation and padding: the caller sets its own.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(file)
    }
}

/// tokenizer.json's "model" object, when it is a Unigram model without byte fallback.
struct ModelSeed {
    base: usize,
}

impl<'de> DeserializeSeed<'de> for ModelSeed {
    type Value = ModelParts;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<ModelParts, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ModelSeed {
    type Value = ModelParts;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Unigram model")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ModelParts, A::Error> {
        let mut parts = ModelParts {
            escaped: Vec::new(),
            offsets: Vec::new(),
            lens: Vec::new(),
            scores: Vec::new(),
            score_ulps: Vec::new(),
            unk_id: None,
            min_score: f64::INFINITY,
            max_piece_len: 0,
        };
        let mut kind = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "type" => kind = Some(map.next_value::<String>()?),
                "unk_id" => parts.unk_id = map.next_value::<Option<u32>>()?,
                "vocab" => map.next_value_seed(Vocab {
                    base: self.base,
                    parts: &mut parts,
                })?,
                "byte_fallback" => {
                    if map.next_value::<bool>()? {
                        return Err(A::Error::custom("byte fallback is not supported"));
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if kind.as_deref() != Some("Unigram") {
            return Err(A::Error::custom("not a Unigram model"));
        }
        if parts.scores.is_empty() {
            return Err(A::Error::custom("the vocabulary is empty"));
        }
        if parts
            .unk_id
            .is_some_and(|id| id as usize >= parts.scores.len())
        {
            return Err(A::Error::custom("unk_id is outside the vocabulary"));
        }
        Ok(parts)
    }
}

/// The "vocab" array of [piece, score] pairs, appended to the parts as it is read.
struct Vocab<'a> {
    base: usize,
    parts: &'a mut ModelParts,
}

impl<'de> DeserializeSeed<'de> for Vocab<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Vocab<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of [piece, score] pairs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let base = self.base;
        while seq
            .next_element_seed(Entry {
                base,
                parts: &mut *self.parts,
            })?
            .is_some()
        {}
        Ok(())
    }
}

struct Entry<'a> {
    base: usize,
    parts: &'a mut ModelParts,
}

impl<'de> DeserializeSeed<'de> for Entry<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Entry<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a [piece, score] pair")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let parts = self.parts;
        let pair = || A::Error::invalid_length(0, &"a [piece, score] pair");
        seq.next_element_seed(Piece {
            base: self.base,
            parts: &mut *parts,
        })?
        .ok_or_else(pair)?;
        let score: f64 = seq.next_element()?.ok_or_else(pair)?;
        let near = score as f32;
        let ulps = i8::try_from(score.to_bits() as i64 - f64::from(near).to_bits() as i64)
            .map_err(|_| A::Error::custom("a score is not close to an f32"))?;
        parts.scores.push(near);
        parts.score_ulps.push(ulps);
        parts.min_score = parts.min_score.min(score);
        Ok(())
    }
}

/// A piece: where it stands in the file, or (when the file escapes it) its unescaped bytes.
struct Piece<'a> {
    base: usize,
    parts: &'a mut ModelParts,
}

impl<'de> DeserializeSeed<'de> for Piece<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Piece<'_> {
    /// Records a piece of `len` bytes at `offset` in the file, or in `escaped`.
    fn push<E: Error>(self, offset: usize, len: usize, escaped: bool) -> Result<(), E> {
        let offset = u32::try_from(offset)
            .ok()
            .filter(|o| o & ESCAPED == 0)
            .ok_or_else(|| E::custom("tokenizer.json is over 2 GB"))?;
        let len = u8::try_from(len).map_err(|_| E::custom("a piece is over 255 bytes"))?;
        self.parts
            .offsets
            .push(if escaped { offset | ESCAPED } else { offset });
        self.parts.lens.push(len);
        self.parts.max_piece_len = self.parts.max_piece_len.max(usize::from(len));
        Ok(())
    }
}

impl<'de> Visitor<'de> for Piece<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a piece")
    }

    /// A piece with no escapes: serde_json hands out the file's own bytes.
    fn visit_borrowed_str<E: Error>(self, piece: &'de str) -> Result<(), E> {
        let offset = piece.as_ptr() as usize - self.base;
        self.push(offset, piece.len(), false)
    }

    /// A piece the file escapes: kept unescaped in `escaped`.
    fn visit_str<E: Error>(self, piece: &str) -> Result<(), E> {
        let at = self.parts.escaped.len();
        self.parts.escaped.extend_from_slice(piece.as_bytes());
        self.push(at, piece.len(), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every score comes back as the f64 serde_json (and so tokenizers) reads from the file.
    #[test]
    fn scores_are_exact() {
        let path = crate::test_model_file("multilingual-e5-small-fixture", "tokenizer.json");
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: a test fixture nobody rewrites.
        let tokenizer = load(unsafe { Mmap::map(&file) }.unwrap()).unwrap();
        let model = tokenizer.get_model();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let vocab = json["model"]["vocab"].as_array().unwrap();
        assert_eq!(vocab.len(), model.len());
        for (id, entry) in vocab.iter().enumerate() {
            let expected = entry[1].as_f64().unwrap();
            assert_eq!(
                model.score(id as u32).to_bits(),
                expected.to_bits(),
                "piece {id}"
            );
            assert_eq!(
                model.piece(id as u32),
                entry[0].as_str().unwrap().as_bytes()
            );
        }
    }
}
