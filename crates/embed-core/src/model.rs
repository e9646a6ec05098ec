//! The transformer: token ids -> contextual token embeddings, with candle-transformers' BERT.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};

use crate::error::{EmbedError, Result};
use crate::tokenize::TokenBatch;

pub struct Encoder {
    model: BertModel,
    hidden_size: usize,
    vocab_size: usize,
}

impl Encoder {
    pub fn load(weights: &Path, bert: &BertConfig) -> Result<Self> {
        crate::config::require_file(weights)?;
        // SAFETY: the weights stay memory-mapped for the life of the model; the file must not be
        // rewritten in place meanwhile (replacing it with a new file, as installers do, is safe).
        // safetensors checks the header and that every tensor lies inside the file, so a
        // truncated file is an error here, not a fault later.
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu) }
                .map_err(|e| weights_error(weights, e))?;
        // Fails with "shape mismatch for ..." when a tensor does not fit config.json.
        let model = BertModel::load(vb, bert).map_err(|e| weights_error(weights, e))?;
        Ok(Self {
            model,
            hidden_size: bert.hidden_size,
            vocab_size: bert.vocab_size,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Row-major `[rows, seq_len, hidden_size]` last hidden states. Pads are masked out of
    /// attention, so each row's real tokens come out as if the row were alone.
    pub fn forward(&self, batch: &TokenBatch) -> Result<Vec<f32>> {
        let shape = (batch.rows(), batch.seq_len);
        let run = || -> candle_core::Result<Vec<f32>> {
            let ids = Tensor::from_slice(&batch.ids, shape, &Device::Cpu)?;
            let mask = Tensor::from_slice(&batch.attention_mask, shape, &Device::Cpu)?;
            let type_ids = ids.zeros_like()?;
            let hidden = self.model.forward(&ids, &type_ids, Some(&mask))?;
            hidden.flatten_all()?.to_vec1::<f32>()
        };
        let hidden = run().map_err(EmbedError::inference)?;
        debug_assert_eq!(
            hidden.len(),
            batch.rows() * batch.seq_len * self.hidden_size
        );
        Ok(hidden)
    }
}

/// candle prefixes some errors with the file's path, which our message already names.
fn weights_error(weights: &Path, e: candle_core::Error) -> EmbedError {
    let text = e.to_string();
    let prefix = format!("path: {weights:?} ");
    EmbedError::weights(weights, text.strip_prefix(&prefix).unwrap_or(&text))
}
