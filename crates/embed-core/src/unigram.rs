//! A compact Unigram (SentencePiece) model for the tokenizers pipeline: the tokens of
//! `tokenizers::models::unigram::Unigram`, without its memory or its load time.
//!
//! tokenizers builds a byte trie with a hash map in every node; for the multilingual models'
//! 250,002 pieces that took 0.54 s and ~250 MB of private memory in every backend that loaded
//! the model itself (without shared_preload_libraries). Here the pieces, their scores and a
//! table of ids by piece are laid out once in an index file beside the tokenizer's snapshot
//! (`pgsql_tmp.<sha256>.unigram1`, snapshot.rs), which every backend maps: shared through the
//! page cache, and nothing to parse but the small pipeline. Building the index from
//! tokenizer.json took 33 ms of every new backend's first call when each backend built its own
//! (26 ms of JSON, 6 of hashing; a load of the multilingual tokenizer now takes ~2 ms,
//! `examples/load_phases.rs`); it is paid once per tokenizer content (bench/first_call.sh).
//! The best path is computed as tokenizers' `encode_optimized` does (sentencepiece's Viterbi),
//! looking each candidate piece up instead of walking the trie, in the same order (shorter
//! pieces first, so that equal scores keep the same winner), and unknown characters are fused
//! as it fuses them. tokenize.rs's tests check that the two give the same ids and offsets.
//!
//! The index (little-endian; [`INDEX_SUFFIX`] names the format, so another layout is never
//! read as this one, and [`CompactUnigram::over`] checks every offset and id before use):
//!
//! ```text
//! "UHOKUNI1", pieces n, slots, piece bytes, pipeline bytes, id_bits, unk_id (or u32::MAX),
//! max_piece_len, 0, min_score (f64)                                          48 bytes
//! offsets [u32; n]   where each piece starts in the piece bytes
//! slots [u32; slots] ids by piece (see CompactUnigram::find)
//! scores [f32; n], lens [u8; n], score_ulps [i8; n]
//! piece bytes, unescaped
//! pipeline: normalizer, pre-tokenizer, post-processor, decoder and added tokens, as JSON
//! ```

use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::de::{DeserializeSeed, Deserializer, Error, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
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

/// The index's format, the suffix of its file name in the snapshot store: change it with the
/// layout or with [`piece_hash`].
pub const INDEX_SUFFIX: &str = "unigram1";
const MAGIC: &[u8; 8] = b"UHOKUNI1";
const HEADER_BYTES: usize = 48;

/// tokenizers' score for a character no piece covers: the lowest piece score minus this.
const UNK_PENALTY: f64 = 10.0;

/// Marks an offset into `ModelParts::escaped` rather than into the file, while parsing.
const ESCAPED: u32 = 1 << 31;

/// The index's bytes: its file in the snapshot store, mapped (shared by every backend), or the
/// same bytes in memory (while building it, when the store has no room, and in tests).
pub enum IndexBytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Deref for IndexBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Mapped(m) => m,
            Self::Owned(v) => v,
        }
    }
}

/// The model over an index: where each section starts in it, and the header's numbers.
pub struct CompactUnigram {
    bytes: IndexBytes,
    len: usize,
    offsets: usize,
    slots: usize,
    slot_count: usize,
    /// Scores as tokenizers reads them: serde_json's f64 of the f32 sentencepiece wrote, which
    /// for a quarter of XLM-R's pieces is a few units in the last place off the f32 (rounding
    /// to f32 would change which of two nearly equal paths wins). Kept as the f32 and the
    /// distance in f64 units in the last place: exact, in 5 bytes instead of 8.
    scores: usize,
    lens: usize,
    score_ulps: usize,
    pieces: usize,
    pipeline: usize,
    /// Ids are the low `id_bits` of a slot; all ones there marks a free slot.
    id_bits: u32,
    unk_id: Option<u32>,
    min_score: f64,
    /// Bytes in the longest piece: no candidate is longer.
    max_piece_len: usize,
}

/// The hash of a piece, stable across processes and builds (the slots are written to disk):
/// a multiply-rotate over 8-byte words, then murmur3's finaliser, which spreads every input
/// bit over the high bits (the slot) and the low ones (the tag).
fn piece_hash(piece: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = piece.len() as u64;
    let mut words = piece.chunks_exact(8);
    for word in &mut words {
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word.try_into().unwrap())).wrapping_mul(K);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

impl CompactUnigram {
    /// The model over `bytes`, or why they are no index this code can read. Every offset,
    /// length and id is checked here, so that a truncated or garbled file is an error, never a
    /// read out of bounds or an endless probe later. (Its content is trusted as the weights'
    /// copies are: the store is the server user's alone, and files there are never rewritten.)
    pub fn over(bytes: IndexBytes) -> Result<Self, String> {
        let b = &bytes[..];
        if b.len() < HEADER_BYTES || &b[..8] != MAGIC {
            return Err("not a uhok_embed Unigram index".into());
        }
        let field = |i: usize| u32_at(b, 8 + 4 * i) as usize;
        let (len, slot_count, piece_bytes, pipeline_bytes) =
            (field(0), field(1), field(2), field(3));
        let (id_bits, unk_id, max_piece_len) = (field(4) as u32, field(5) as u32, field(6));
        let min_score = f64::from_bits(u64::from_le_bytes(b[40..48].try_into().unwrap()));
        let offsets = HEADER_BYTES;
        let slots = offsets + 4 * len;
        let scores = slots + 4 * slot_count;
        let lens = scores + 4 * len;
        let score_ulps = lens + len;
        let pieces = score_ulps + len;
        let pipeline = pieces + piece_bytes;
        if pipeline + pipeline_bytes != b.len() {
            return Err("the index's sections do not add up to its size".into());
        }
        if len == 0
            || id_bits > 24
            || len >= 1 << id_bits
            || slot_count <= len
            || max_piece_len > 255
            || !min_score.is_finite()
        {
            return Err("the index's header is inconsistent".into());
        }
        let model = Self {
            len,
            offsets,
            slots,
            slot_count,
            scores,
            lens,
            score_ulps,
            pieces,
            pipeline,
            id_bits,
            unk_id: (unk_id != u32::MAX).then_some(unk_id),
            min_score,
            max_piece_len,
            bytes,
        };
        if model.unk_id.is_some_and(|id| id as usize >= len) {
            return Err("unk_id is outside the vocabulary".into());
        }
        for id in 0..len {
            let (at, n) = model.span(id as u32);
            if at + n > piece_bytes || n > max_piece_len {
                return Err(format!("piece {id} lies outside the index"));
            }
        }
        let mask = model.id_mask();
        let mut free = 0;
        for slot in 0..slot_count {
            let id = model.slot(slot) & mask;
            if id == mask {
                free += 1;
            } else if id as usize >= len {
                return Err(format!("slot {slot} names no piece"));
            }
        }
        // find() probes until a free slot.
        if free == 0 {
            return Err("the index has no free slot".into());
        }
        Ok(model)
    }

    /// Where piece `id` starts in the piece bytes, and its length.
    fn span(&self, id: u32) -> (usize, usize) {
        (
            u32_at(&self.bytes, self.offsets + 4 * id as usize) as usize,
            usize::from(self.bytes[self.lens + id as usize]),
        )
    }

    fn piece(&self, id: u32) -> &[u8] {
        let (at, n) = self.span(id);
        &self.bytes[self.pieces + at..][..n]
    }

    fn slot(&self, slot: usize) -> u32 {
        u32_at(&self.bytes, self.slots + 4 * slot)
    }

    /// The slot to start probing at for `hash`, and the tag its pieces carry.
    fn slot_and_tag(&self, hash: u64) -> (usize, u32) {
        let slot = ((u128::from(hash) * self.slot_count as u128) >> 64) as usize;
        (slot, (hash as u32) << self.id_bits)
    }

    fn id_mask(&self) -> u32 {
        (1 << self.id_bits) - 1
    }

    /// The slot holding `piece` and its id, or the free slot where it would go; and its tag.
    /// Ids by piece are open addressing, three quarters full, each slot an id in its low
    /// `id_bits` and a tag from the piece's hash above them, so that probing rarely reads a
    /// piece. (A hashbrown table of ids took 2.6 MB for 250,002 pieces, this one 1.3.)
    fn find(&self, piece: &[u8]) -> (usize, u32, Option<u32>) {
        let (mut slot, tag) = self.slot_and_tag(piece_hash(piece));
        let mask = self.id_mask();
        loop {
            let entry = self.slot(slot);
            // An id of all ones is never a real one (2^id_bits > pieces): a free slot.
            if entry & mask == mask {
                return (slot, tag, None);
            }
            if entry & !mask == tag && self.piece(entry & mask) == piece {
                return (slot, tag, Some(entry & mask));
            }
            slot = if slot + 1 == self.slot_count {
                0
            } else {
                slot + 1
            };
        }
    }

    fn id_of(&self, piece: &[u8]) -> Option<u32> {
        self.find(piece).2
    }

    /// Puts every piece in the slots of an index being built, in id order (so a repeated
    /// piece ends with its last id, as tokenizers' map does).
    fn index(&mut self) {
        for id in 0..self.len() as u32 {
            let (slot, tag, _) = self.find(self.piece(id));
            let at = self.slots + 4 * slot;
            let IndexBytes::Owned(bytes) = &mut self.bytes else {
                unreachable!("only an index being built is written")
            };
            bytes[at..at + 4].copy_from_slice(&(tag | id).to_le_bytes());
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn score(&self, id: u32) -> f64 {
        let near = f32::from_bits(u32_at(&self.bytes, self.scores + 4 * id as usize));
        let ulps = self.bytes[self.score_ulps + id as usize] as i8;
        f64::from_bits((f64::from(near).to_bits() as i64 + i64::from(ulps)) as u64)
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

/// The index of tokenizer.json (`json`), or why the compact model does not cover it (not a
/// Unigram model, byte fallback, a piece over 255 bytes, a score far from any f32): the caller
/// then loads the file with tokenizers' own model. The rest of the pipeline is read as
/// tokenizers' own deserializer reads it, and kept as JSON.
pub fn build(json: &[u8]) -> Result<Vec<u8>, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let file = FileSeed {
        base: json.as_ptr() as usize,
    }
    .deserialize(&mut deserializer)
    .and_then(|file| deserializer.end().map(|()| file))
    .map_err(|e| e.to_string())?;
    let parts = file.model.ok_or("no model")?;
    let len = parts.scores.len();
    // Ids up to len - 1, and all ones left free: 2^id_bits > len.
    let id_bits = (len as u32 + 1).next_power_of_two().trailing_zeros();
    if id_bits > 24 {
        return Err("the vocabulary has over 16 million pieces".into());
    }
    let slot_count = len + len / 3 + 1;
    let mut offsets = Vec::with_capacity(4 * len);
    let mut pieces = Vec::new();
    for (&offset, &n) in parts.offsets.iter().zip(&parts.lens) {
        let at = (offset & !ESCAPED) as usize;
        let piece = if offset & ESCAPED != 0 {
            &parts.escaped[at..][..usize::from(n)]
        } else {
            &json[at..][..usize::from(n)]
        };
        offsets.extend_from_slice(&(pieces.len() as u32).to_le_bytes());
        pieces.extend_from_slice(piece);
    }
    let pipeline = serde_json::to_vec(&Pipeline {
        added_tokens: file.added_tokens.into_iter().map(|t| t.token).collect(),
        normalizer: file.normalizer,
        pre_tokenizer: file.pre_tokenizer,
        post_processor: file.post_processor,
        decoder: file.decoder,
    })
    .map_err(|e| e.to_string())?;
    let size = |n: usize| u32::try_from(n).map_err(|_| "the tokenizer is over 4 GB".to_string());
    let mut index = Vec::new();
    index.extend_from_slice(MAGIC);
    for field in [
        size(len)?,
        size(slot_count)?,
        size(pieces.len())?,
        size(pipeline.len())?,
        id_bits,
        parts.unk_id.unwrap_or(u32::MAX),
        parts.max_piece_len as u32,
        0,
    ] {
        index.extend_from_slice(&field.to_le_bytes());
    }
    index.extend_from_slice(&parts.min_score.to_bits().to_le_bytes());
    index.extend_from_slice(&offsets);
    index.resize(index.len() + 4 * slot_count, 0xff);
    for score in &parts.scores {
        index.extend_from_slice(&score.to_bits().to_le_bytes());
    }
    index.extend_from_slice(&parts.lens);
    index.extend(parts.score_ulps.iter().map(|&u| u as u8));
    index.extend_from_slice(&pieces);
    index.extend_from_slice(&pipeline);
    let mut model = CompactUnigram::over(IndexBytes::Owned(index))?;
    model.index();
    let IndexBytes::Owned(index) = model.bytes else {
        unreachable!("built in memory")
    };
    Ok(index)
}

/// The tokenizer over an index that [`build`] made: nothing is parsed but the pipeline's JSON.
pub fn open(bytes: IndexBytes) -> Result<CompactTokenizer, String> {
    let model = CompactUnigram::over(bytes)?;
    let pipeline: Pipeline =
        serde_json::from_slice(&model.bytes[model.pipeline..]).map_err(|e| e.to_string())?;
    let mut tokenizer = TokenizerBuilder::new()
        .with_model(model)
        .with_normalizer(pipeline.normalizer)
        .with_pre_tokenizer(pipeline.pre_tokenizer)
        .with_post_processor(pipeline.post_processor)
        .with_decoder(pipeline.decoder)
        .build()
        .map_err(|e| e.to_string())?;
    tokenizer
        .add_tokens(pipeline.added_tokens)
        .map_err(|e| e.to_string())?;
    Ok(tokenizer)
}

/// tokenizer.json with a compact Unigram model, its index built in memory (what a load does
/// when the store cannot keep the index; tests and the fuzz targets).
pub fn load(json: &[u8]) -> Result<CompactTokenizer, String> {
    open(IndexBytes::Owned(build(json)?))
}

/// The pipeline around the model, as the index keeps it.
#[derive(Serialize, Deserialize)]
struct Pipeline {
    added_tokens: Vec<AddedToken>,
    normalizer: Option<NormalizerWrapper>,
    pre_tokenizer: Option<PreTokenizerWrapper>,
    post_processor: Option<PostProcessorWrapper>,
    decoder: Option<DecoderWrapper>,
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

/// The Unigram model as tokenizer.json has it, before build() lays it out.
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

    /// A damaged index is refused or read without a panic or an endless probe: bytes of a real
    /// index overwritten at random places, and cut. (The pipeline's JSON is left whole: it goes
    /// to tokenizers' deserializers, which panic on some malformed input, caught where the
    /// index is opened, tokenize.rs's compact(); fuzz_findings_are_errors covers those.)
    #[test]
    fn damaged_indexes_never_panic() {
        let path = crate::test_model_file("multilingual-e5-small-fixture", "tokenizer.json");
        let index = build(&std::fs::read(&path).unwrap()).unwrap();
        let pipeline_start = index.len() - u32_at(&index, 20) as usize;
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut refused, mut read) = (0, 0);
        for round in 0..300 {
            let mut bytes = index.clone();
            if round % 10 == 9 {
                bytes.truncate(next() as usize % bytes.len());
            } else {
                for _ in 0..1 + round % 4 {
                    // Half the hits in the header and the first sections, where damage matters most.
                    let within = if round % 2 == 0 { 4096 } else { pipeline_start };
                    let at = next() as usize % within;
                    bytes[at] = next() as u8;
                }
            }
            match std::panic::catch_unwind(|| {
                open(IndexBytes::Owned(bytes)).map(|t| {
                    for text in ["갈비탕", "chocolate cake", "▁▁x"] {
                        let _ = t.encode(text, true);
                    }
                })
            }) {
                Ok(Ok(())) => read += 1,
                Ok(Err(_)) => refused += 1,
                Err(_) => panic!("round {round}: a damaged index panicked"),
            }
        }
        println!("damaged indexes: {refused} refused, {read} read without a panic");
        assert!(refused > 0 && read > 0);
    }

    /// Every score comes back as the f64 serde_json (and so tokenizers) reads from the file.
    #[test]
    fn scores_are_exact() {
        let path = crate::test_model_file("multilingual-e5-small-fixture", "tokenizer.json");
        let tokenizer = load(&std::fs::read(&path).unwrap()).unwrap();
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
