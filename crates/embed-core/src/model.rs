//! The transformer: token ids -> contextual token embeddings.
//!
//! Two implementations of the same BERT forward pass:
//! - bert.rs (`Backend::Fast`, the default): fp32 weights used in place from the memory-mapped
//!   file, kernels for few-token inputs, no padding.
//! - candle-transformers' BertModel (`Backend::Candle`): any weight dtype (it converts), and the
//!   reference the benchmarks compare against. Used automatically when the weights are not fp32.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};

use crate::bert::{FastBert, PackedTokens};
use crate::error::{EmbedError, Result};
use crate::snapshot::Snapshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Fast,
    /// bert.rs with the layers' products in bf16 (opt-in: faster, less exact).
    FastBf16,
    Candle,
}

impl Backend {
    /// As uhok_embed_info() reports it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Fast => "fast",
            Backend::FastBf16 => "fast-bf16",
            Backend::Candle => "candle",
        }
    }
}

pub enum Encoder {
    Fast(FastBert),
    Candle {
        model: BertModel,
        hidden_size: usize,
    },
}

impl Encoder {
    /// Loads the weights from `snapshot`, the private copy of `weights` (snapshot.rs).
    pub fn load(
        weights: &Path,
        snapshot: &Snapshot,
        bert: &BertConfig,
        backend: Backend,
    ) -> Result<Self> {
        if backend != Backend::Candle {
            if let Some(fast) =
                FastBert::load(weights, snapshot.map()?, bert, backend == Backend::FastBf16)?
            {
                return Ok(Self::Fast(fast));
            }
        }
        // candle reads the mapped snapshot (nobody rewrites it) and copies the weights out;
        // safetensors checks the header and that every tensor lies inside the file, so a
        // truncated file is an error here, not a fault later.
        let map = snapshot.map()?;
        let vb = VarBuilder::from_slice_safetensors(&map, DType::F32, &Device::Cpu)
            .map_err(|e| weights_error(&snapshot.path, weights, e))?;
        // Fails with "shape mismatch for ..." when a tensor does not fit config.json.
        let model =
            BertModel::load(vb, bert).map_err(|e| weights_error(&snapshot.path, weights, e))?;
        Ok(Self::Candle {
            model,
            hidden_size: bert.hidden_size,
        })
    }

    pub fn backend(&self) -> Backend {
        match self {
            Self::Fast(fast) if fast.is_bf16() => Backend::FastBf16,
            Self::Fast(_) => Backend::Fast,
            Self::Candle { .. } => Backend::Candle,
        }
    }

    /// Last hidden states of every real token, rows back to back: `[sum of lengths, hidden]`.
    pub fn forward(&self, rows: &[&[u32]]) -> Result<Vec<f32>> {
        let lengths: Vec<usize> = rows.iter().map(|r| r.len()).collect();
        match self {
            Self::Fast(fast) => {
                let ids: Vec<u32> = rows.concat();
                fast.forward(&PackedTokens {
                    ids: &ids,
                    lengths: &lengths,
                })
            }
            Self::Candle { model, hidden_size } => {
                // candle's products use rayon: inside our pool they run on its threads (which
                // block signals), never on rayon's global pool.
                let padded = match crate::threads::pool_for_candle() {
                    Some(pool) => pool.install(|| candle_forward(model, rows)),
                    None => candle_forward(model, rows),
                }
                .map_err(EmbedError::inference)?;
                // Keep each row's real tokens only.
                let seq_len = lengths.iter().copied().max().unwrap_or(0);
                let mut packed = Vec::with_capacity(lengths.iter().sum::<usize>() * hidden_size);
                for (r, &len) in lengths.iter().enumerate() {
                    packed.extend_from_slice(
                        &padded[r * seq_len * hidden_size..][..len * hidden_size],
                    );
                }
                Ok(packed)
            }
        }
    }
}

/// Pads rows to the longest (id 0, masked out of attention) and runs candle's BertModel.
fn candle_forward(model: &BertModel, rows: &[&[u32]]) -> candle_core::Result<Vec<f32>> {
    let seq_len = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len() * seq_len);
    let mut mask = Vec::with_capacity(rows.len() * seq_len);
    for row in rows {
        ids.extend_from_slice(row);
        ids.resize(ids.len() + seq_len - row.len(), 0);
        mask.extend((0..seq_len).map(|i| u32::from(i < row.len())));
    }
    let shape = (rows.len(), seq_len);
    let ids = Tensor::from_slice(&ids, shape, &Device::Cpu)?;
    let mask = Tensor::from_slice(&mask, shape, &Device::Cpu)?;
    let hidden = model.forward(&ids, &ids.zeros_like()?, Some(&mask))?;
    hidden.flatten_all()?.to_vec1::<f32>()
}

/// candle prefixes some errors with the path it opened (the snapshot's); our message names
/// the user's file instead.
fn weights_error(opened: &Path, weights: &Path, e: candle_core::Error) -> EmbedError {
    let text = e.to_string();
    let prefix = format!("path: {opened:?} ");
    EmbedError::weights(weights, text.strip_prefix(&prefix).unwrap_or(&text))
}
