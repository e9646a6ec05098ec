//! A BERT encoder forward pass written for sentence embedding on a CPU, reading its weights in
//! place from the memory-mapped private snapshot of model.safetensors (snapshot.rs: the user's
//! file itself is never mapped, so no copy over it can fault a backend).
//!
//! Why not candle's BertModel (still used for non-fp32 weights, see model.rs):
//! - Memory: candle copies every weight out of the mapping into its own buffers, so each
//!   PostgreSQL backend holds a private 470 MB copy of the multilingual model. Here the weights are
//!   slices of a read-only shared mapping: every backend on the server shares one copy in the page
//!   cache, and the 384 MB word-embedding table is only gathered from, never touched in full.
//! - Speed: a query is a handful of tokens, so every matrix product is [few rows] x [weights].
//!   Those are dot products of contiguous rows (HF stores linear weights [out, in]), done here
//!   in register tiles with no packing, for queries and batches alike (kernels/linear.rs).
//!   Sequences are packed without padding, so no work is spent on pad tokens, and each
//!   sequence attends only to itself, which is exactly what the padding mask would do.
//!
//! Numerics follow Hugging Face's BertModel in fp32: exact-erf GELU, LayerNorm with the config's
//! eps, softmax with max subtraction, scores divided by sqrt(head_dim).

use std::path::Path;

use candle_transformers::models::bert::{Config as BertConfig, HiddenAct};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::error::{EmbedError, Result};
use crate::kernels;

/// A weight: a range of f32s inside the mapping.
#[derive(Clone, Copy)]
struct W {
    offset: usize,
    len: usize,
}

struct Linear {
    weight: W, // [out, in]
    bias: W,   // [out]
    out: usize,
    inp: usize,
    /// The weight rounded to bf16 when the model was loaded with `bf16` (opt-in).
    weight_bf16: Option<kernels::Bf16Matrix>,
}

struct LayerNorm {
    weight: W,
    bias: W,
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

impl Layer {
    fn linears(&self) -> [&Linear; 6] {
        [
            &self.query,
            &self.key,
            &self.value,
            &self.attention_out,
            &self.intermediate,
            &self.output,
        ]
    }

    fn linears_mut(&mut self) -> [&mut Linear; 6] {
        [
            &mut self.query,
            &mut self.key,
            &mut self.value,
            &mut self.attention_out,
            &mut self.intermediate,
            &mut self.output,
        ]
    }
}

pub struct FastBert {
    mmap: Mmap,
    word: W,
    position: W,
    token_type: W,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    eps: f32,
    vocab_size: usize,
    max_positions: usize,
    /// The feed-forward activation, as config.json's hidden_act names it.
    activation: HiddenAct,
    /// Where the weights start relative to a 64-byte line; activations are placed the same
    /// way so that the linear kernels' loads of both line up (see kernels/linear.rs).
    line_offset: usize,
}

/// Token ids of several sequences back to back, no padding.
pub struct PackedTokens<'a> {
    pub ids: &'a [u32],
    pub lengths: &'a [usize],
}

impl FastBert {
    /// Takes the mapped snapshot of model.safetensors (`path` is the user's file, for messages)
    /// and checks every tensor against config.json. Returns Ok(None) when
    /// the weights are not fp32 (the caller widens them, widen.rs, or falls back to candle,
    /// which converts them). Every activation candle's BertModel reads from config.json runs
    /// here (gelu, geluapproximate, relu), so no model is left to candle for that. With
    /// `bf16`, the layers' matrix products run in bf16 on a rounded copy of their weights.
    pub fn load(path: &Path, mmap: Mmap, config: &BertConfig, bf16: bool) -> Result<Option<Self>> {
        let bad = |reason: String| EmbedError::weights(path, reason);
        let tensors = SafeTensors::deserialize(&mmap).map_err(|e| bad(e.to_string()))?;
        let prefix = if tensors.names().iter().any(|n| n.starts_with("bert.")) {
            "bert."
        } else {
            ""
        };
        // Only fp32 weights can be used in place; others (fp16, bf16) go to candle, which
        // converts them. Extra tensors (position_ids is int64 in older checkpoints) don't matter.
        let used_are_f32 = tensors
            .tensors()
            .iter()
            .filter(|(name, _)| !name.ends_with("position_ids") && !name.contains("pooler"))
            .all(|(_, t)| t.dtype() == Dtype::F32);
        if !used_are_f32 {
            return Ok(None);
        }
        let base = mmap.as_ptr() as usize;
        let get = |name: &str, shape: &[usize]| -> Result<W> {
            let full = format!("{prefix}{name}");
            let t = tensors
                .tensor(&full)
                .map_err(|_| bad(format!("cannot find tensor {full}")))?;
            if t.shape() != shape {
                // The same wording as candle's loader, which the error tests were written against.
                return Err(bad(format!(
                    "shape mismatch for {full}, expected: {shape:?}, got: {:?}",
                    t.shape()
                )));
            }
            let offset = t.data().as_ptr() as usize - base;
            if !offset.is_multiple_of(4) {
                return Err(bad(format!("tensor {full} is not 4-byte aligned")));
            }
            Ok(W {
                offset,
                len: shape.iter().product(),
            })
        };
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let linear = |name: &str, out: usize, inp: usize| -> Result<Linear> {
            Ok(Linear {
                weight: get(&format!("{name}.weight"), &[out, inp])?,
                bias: get(&format!("{name}.bias"), &[out])?,
                out,
                inp,
                weight_bf16: None,
            })
        };
        let norm = |name: &str| -> Result<LayerNorm> {
            Ok(LayerNorm {
                weight: get(&format!("{name}.weight"), &[h])?,
                bias: get(&format!("{name}.bias"), &[h])?,
            })
        };
        // Checked in candle's order, so the first mismatch reported is the same.
        let word = get("embeddings.word_embeddings.weight", &[config.vocab_size, h])?;
        let position = get(
            "embeddings.position_embeddings.weight",
            &[config.max_position_embeddings, h],
        )?;
        let token_type = get(
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, h],
        )?;
        let embedding_norm = norm("embeddings.LayerNorm")?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            layers.push(Layer {
                query: linear(&format!("{p}.attention.self.query"), h, h)?,
                key: linear(&format!("{p}.attention.self.key"), h, h)?,
                value: linear(&format!("{p}.attention.self.value"), h, h)?,
                attention_out: linear(&format!("{p}.attention.output.dense"), h, h)?,
                attention_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                intermediate: linear(&format!("{p}.intermediate.dense"), i, h)?,
                output: linear(&format!("{p}.output.dense"), h, i)?,
                output_norm: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        drop(tensors);
        let line_offset = layers
            .first()
            .map_or(0, |l| (mmap.as_ptr() as usize + l.query.weight.offset) % 64);
        let mut fast = Self {
            line_offset,
            mmap,
            word,
            position,
            token_type,
            embedding_norm,
            layers,
            hidden: h,
            heads: config.num_attention_heads,
            eps: config.layer_norm_eps as f32,
            vocab_size: config.vocab_size,
            max_positions: config.max_position_embeddings,
            activation: config.hidden_act,
        };
        if bf16 {
            let rounded: Vec<Vec<kernels::Bf16Matrix>> = fast
                .layers
                .iter()
                .map(|l| {
                    l.linears()
                        .into_iter()
                        .map(|lin| kernels::Bf16Matrix::from_f32(fast.w(lin.weight)))
                        .collect()
                })
                .collect();
            for (layer, rounded) in fast.layers.iter_mut().zip(rounded) {
                for (lin, m) in layer.linears_mut().into_iter().zip(rounded) {
                    lin.weight_bf16 = Some(m);
                }
            }
        }
        Ok(Some(fast))
    }

    pub fn is_bf16(&self) -> bool {
        self.layers.iter().any(|l| l.query.weight_bf16.is_some())
    }

    fn w(&self, w: W) -> &[f32] {
        // SAFETY: `load` checked that [offset, offset + 4 * len) lies inside the mapping (the
        // safetensors header validation) and that offset is 4-byte aligned; the bytes are
        // little-endian f32, which is this target's layout. The mapping is of a private
        // snapshot that nobody writes or truncates, so reading it cannot fault.
        unsafe { std::slice::from_raw_parts(self.mmap.as_ptr().add(w.offset) as *const f32, w.len) }
    }

    fn linear(&self, lin: &Linear, x: &[f32], rows: usize, y: &mut [f32]) {
        let bias = self.w(lin.bias);
        match &lin.weight_bf16 {
            Some(w) => kernels::linear_bf16(x, rows, lin.inp, w, bias, lin.out, y),
            None => kernels::linear(x, rows, lin.inp, self.w(lin.weight), bias, lin.out, y),
        }
    }

    fn layer_norm(&self, norm: &LayerNorm, x: &mut [f32]) {
        kernels::layer_norm(x, self.w(norm.weight), self.w(norm.bias), self.eps);
    }

    /// Last hidden states of the packed tokens, row-major `[ids.len(), hidden]`.
    pub fn forward(&self, tokens: &PackedTokens) -> Result<Vec<f32>> {
        let (h, n) = (self.hidden, tokens.ids.len());
        if let Some(&id) = tokens
            .ids
            .iter()
            .find(|&&id| id as usize >= self.vocab_size)
        {
            return Err(EmbedError::inference(format!(
                "token id {id} is outside the vocabulary"
            )));
        }
        if tokens.lengths.iter().any(|&l| l > self.max_positions) {
            return Err(EmbedError::inference(
                "a sequence is longer than max_position_embeddings",
            ));
        }
        // Embeddings: word + position + token type 0, then LayerNorm.
        let (word, pos, typ) = (
            self.w(self.word),
            self.w(self.position),
            self.w(self.token_type),
        );
        // Every buffer is allocated fallibly: a failure is an error, never an abort (the caller
        // bounds tokens per pass, so this is a last line of defence).
        let buffer = |len| LineOffsetBuf::zeros(len, self.line_offset);
        let mut x = buffer(n * h)?;
        let mut t = 0;
        for &len in tokens.lengths {
            for p in 0..len {
                let id = tokens.ids[t] as usize;
                let row = &mut x[t * h..][..h];
                let (wr, pr, tr) = (&word[id * h..][..h], &pos[p * h..][..h], &typ[..h]);
                for j in 0..h {
                    row[j] = wr[j] + pr[j] + tr[j];
                }
                t += 1;
            }
        }
        self.layer_norm(&self.embedding_norm, &mut x);

        let inter = self.layers.first().map_or(0, |l| l.intermediate.out);
        let (mut q, mut k, mut v) = (buffer(n * h)?, buffer(n * h)?, buffer(n * h)?);
        let mut ctx = buffer(n * h)?;
        let mut tmp = buffer(n * h)?;
        let mut ffn = buffer(n * inter)?;
        let max_len = tokens.lengths.iter().copied().max().unwrap_or(0);
        let mut scratch = zeroed(kernels::attention_scratch_len(max_len, h / self.heads))?;
        // The caller may cancel between products (interrupt.rs), on this thread.
        let poll = crate::interrupt::poll;
        for layer in &self.layers {
            poll();
            self.linear(&layer.query, &x, n, &mut q);
            self.linear(&layer.key, &x, n, &mut k);
            self.linear(&layer.value, &x, n, &mut v);
            poll();
            let mut start = 0;
            for &len in tokens.lengths {
                kernels::attention(
                    &q[start * h..(start + len) * h],
                    &k[start * h..(start + len) * h],
                    &v[start * h..(start + len) * h],
                    len,
                    h,
                    self.heads,
                    &mut scratch,
                    &mut ctx[start * h..(start + len) * h],
                );
                start += len;
            }
            poll();
            self.linear(&layer.attention_out, &ctx, n, &mut tmp);
            kernels::add_assign(&mut x, &tmp);
            self.layer_norm(&layer.attention_norm, &mut x);
            poll();
            self.linear(&layer.intermediate, &x, n, &mut ffn);
            match self.activation {
                HiddenAct::Gelu => kernels::gelu_erf(&mut ffn),
                HiddenAct::GeluApproximate => kernels::gelu_tanh(&mut ffn),
                HiddenAct::Relu => kernels::relu(&mut ffn),
            }
            poll();
            self.linear(&layer.output, &ffn, n, &mut tmp);
            kernels::add_assign(&mut x, &tmp);
            self.layer_norm(&layer.output_norm, &mut x);
        }
        Ok(x.into_vec())
    }
}

/// Zeroed floats starting `line_offset` bytes past a 64-byte boundary.
struct LineOffsetBuf {
    buf: Vec<f32>,
    start: usize,
    len: usize,
}

/// `len` zeroed floats, or OutOfMemory instead of the abort that `vec!` gives on failure.
fn zeroed(len: usize) -> Result<Vec<f32>> {
    let mut buf = crate::error::reserved(len, "the forward pass")?;
    buf.resize(len, 0.0);
    Ok(buf)
}

impl LineOffsetBuf {
    fn zeros(len: usize, line_offset: usize) -> Result<Self> {
        let buf = zeroed(len + 16)?;
        let misplaced = (buf.as_ptr() as usize + 64 - line_offset) % 64;
        // Vec<f32> is 4-byte aligned and line_offset a multiple of 4 (checked at load).
        let start = (64 - misplaced) % 64 / 4;
        Ok(Self { buf, start, len })
    }

    fn into_vec(mut self) -> Vec<f32> {
        self.buf.drain(..self.start);
        self.buf.truncate(self.len);
        self.buf
    }
}

impl std::ops::Deref for LineOffsetBuf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[self.start..][..self.len]
    }
}

impl std::ops::DerefMut for LineOffsetBuf {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[self.start..][..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::LineOffsetBuf;

    #[test]
    fn line_offset_buf_starts_where_asked() {
        for offset in (0..64).step_by(4) {
            for len in [1, 17, 4096] {
                let mut b = LineOffsetBuf::zeros(len, offset).unwrap();
                assert_eq!((b.as_ptr() as usize % 64, b.len()), (offset, len));
                b[len - 1] = 1.0;
                let v = b.into_vec();
                assert_eq!((v.len(), v[len - 1]), (len, 1.0));
            }
        }
    }
}
