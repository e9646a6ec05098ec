//! A compact Unigram (SentencePiece) model for the tokenizers pipeline: the tokens of
//! `tokenizers::models::unigram::Unigram`, without its memory.
//!
//! tokenizers builds a byte trie with a hash map in every node; for the multilingual models'
//! 250,002 pieces that took 0.54 s and ~250 MB of private memory in every backend that loaded
//! the model itself (without shared_preload_libraries). Here the pieces sit in one string and
//! one hash table of ids finds them: the whole model folder loads in 30 ms with 10 MB of
//! private memory (examples/latency.rs prints the load time). The best path is computed as
//! tokenizers' `encode_optimized` does (sentencepiece's Viterbi), looking each candidate piece
//! up instead of walking the trie, in the same order (shorter pieces first, so that equal
//! scores keep the same winner), and unknown characters are fused as it fuses them.
//! tokenize.rs's tests check that the two give the same ids and offsets.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};

use hashbrown::{DefaultHashBuilder, HashTable};
use serde::de::{DeserializeSeed, Deserializer, Error, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use tokenizers::models::unigram::UnigramTrainer;
use tokenizers::{Model, Token};

/// tokenizers' score for a character no piece covers: the lowest piece score minus this.
const UNK_PENALTY: f64 = 10.0;

pub struct CompactUnigram {
    /// Every piece, one after another; piece i is `text[starts[i]..starts[i + 1]]`.
    text: String,
    starts: Vec<u32>,
    scores: Vec<f64>,
    /// Ids by piece. A piece listed twice keeps its last id, as tokenizers' map does.
    ids: HashTable<u32>,
    hasher: DefaultHashBuilder,
    unk_id: Option<u32>,
    min_score: f64,
    /// Bytes in the longest piece: no candidate is longer.
    max_piece_len: usize,
}

impl CompactUnigram {
    fn piece(&self, id: u32) -> &str {
        let id = id as usize;
        &self.text[self.starts[id] as usize..self.starts[id + 1] as usize]
    }

    fn id_of(&self, piece: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(piece);
        self.ids.find(hash, |&id| self.piece(id) == piece).copied()
    }

    fn len(&self) -> usize {
        self.scores.len()
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
                let Some(id) = self.id_of(&rest[..end]) else {
                    continue;
                };
                let score = self.scores[id as usize] + here;
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
            let id = match self.id_of(&piece) {
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
        self.id_of(token)
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        ((id as usize) < self.len()).then(|| self.piece(id).to_owned())
    }

    fn get_vocab(&self) -> HashMap<String, u32> {
        self.ids
            .iter()
            .map(|&id| (self.piece(id).to_owned(), id))
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

/// Reads tokenizer.json's "model" object when it is a Unigram model without byte fallback
/// (anything else is an error, and the caller loads the file with tokenizers' own model).
impl<'de> Deserialize<'de> for CompactUnigram {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ModelVisitor)
    }
}

struct ModelVisitor;

impl<'de> Visitor<'de> for ModelVisitor {
    type Value = CompactUnigram;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Unigram model")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CompactUnigram, A::Error> {
        let mut model = CompactUnigram {
            text: String::new(),
            starts: vec![0],
            scores: Vec::new(),
            ids: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            unk_id: None,
            min_score: f64::INFINITY,
            max_piece_len: 0,
        };
        let mut kind = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "type" => kind = Some(map.next_value::<String>()?),
                "unk_id" => model.unk_id = map.next_value::<Option<u32>>()?,
                "vocab" => map.next_value_seed(Vocab(&mut model))?,
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
        if model.len() == 0 {
            return Err(A::Error::custom("the vocabulary is empty"));
        }
        if model.unk_id.is_some_and(|id| id as usize >= model.len()) {
            return Err(A::Error::custom("unk_id is outside the vocabulary"));
        }
        model.ids = HashTable::with_capacity(model.len());
        for id in 0..model.len() as u32 {
            let hash = model.hasher.hash_one(model.piece(id));
            let (pieces, starts) = (&model.text, &model.starts);
            let piece_of =
                |id: u32| &pieces[starts[id as usize] as usize..starts[id as usize + 1] as usize];
            match model
                .ids
                .find_mut(hash, |&other| piece_of(other) == piece_of(id))
            {
                Some(existing) => *existing = id,
                None => {
                    model
                        .ids
                        .insert_unique(hash, id, |&other| model.hasher.hash_one(piece_of(other)));
                }
            }
        }
        Ok(model)
    }
}

/// The "vocab" array of [piece, score] pairs, appended to the model as it is read (no String
/// per piece).
struct Vocab<'a>(&'a mut CompactUnigram);

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
        while seq.next_element_seed(Entry(self.0))?.is_some() {}
        Ok(())
    }
}

struct Entry<'a>(&'a mut CompactUnigram);

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
        let model = self.0;
        let start = model.text.len();
        seq.next_element_seed(Piece(&mut model.text))?
            .ok_or_else(|| A::Error::invalid_length(0, &"a [piece, score] pair"))?;
        let score: f64 = seq
            .next_element()?
            .ok_or_else(|| A::Error::invalid_length(1, &"a [piece, score] pair"))?;
        let end = u32::try_from(model.text.len())
            .map_err(|_| A::Error::custom("the vocabulary is over 4 GB"))?;
        model.starts.push(end);
        model.scores.push(score);
        model.min_score = model.min_score.min(score);
        model.max_piece_len = model.max_piece_len.max(model.text.len() - start);
        Ok(())
    }
}

/// A piece, appended to the model's text.
struct Piece<'a>(&'a mut String);

impl<'de> DeserializeSeed<'de> for Piece<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for Piece<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a piece")
    }

    fn visit_str<E: Error>(self, piece: &str) -> Result<(), E> {
        self.0.push_str(piece);
        Ok(())
    }
}
