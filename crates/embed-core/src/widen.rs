//! fp16 and bf16 weights widened to fp32 once, into the snapshot store, so that such models run
//! the fast forward pass like fp32 ones.
//!
//! Why: bert.rs uses the weights in place from the mapped file, which needs fp32. Before, a
//! model.safetensors in fp16 or bf16 went to candle's BertModel, which converts the weights into
//! each backend's private memory (an fp16 copy of the 470 MB multilingual model: ~470 MB per
//! backend) and runs passes padded to their longest text, with unbounded attention buffers and a
//! cancel only between passes. Here the first loader writes `pgsql_tmp.<sha256>.fp32` beside the
//! snapshot (a safetensors file with every fp16/bf16 tensor as fp32, the others as they are), and
//! every backend maps that one copy through the page cache. The version stays the source's (its
//! SHA-256 names the file the user installed), and the vectors are those of the fp32 arithmetic
//! on the exactly widened weights, as candle's were.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::error::{EmbedError, Result};
use crate::snapshot::Snapshot;

/// None when the snapshot's tensors need no widening, else the widened copy (written by the
/// first caller, found by the others). `weights` is the user's file, for messages.
pub fn to_fp32(
    weights: &Path,
    snapshot: &Snapshot,
    store: &Path,
    poll: &mut dyn FnMut(),
) -> Result<Option<Snapshot>> {
    let map = snapshot.map()?;
    let tensors =
        SafeTensors::deserialize(&map).map_err(|e| EmbedError::weights(weights, e.to_string()))?;
    let narrow = |d: Dtype| matches!(d, Dtype::F16 | Dtype::BF16);
    let mut list = tensors.tensors();
    if !list.iter().any(|(_, t)| narrow(t.dtype())) {
        return Ok(None);
    }
    let out_dtype = |d: Dtype| if narrow(d) { Dtype::F32 } else { d };
    let out_bytes = |d: Dtype, data: &[u8]| {
        if narrow(d) {
            data.len() * 2
        } else {
            data.len()
        }
    };
    // Widest elements first, so that every tensor starts aligned to its element size (bert.rs
    // reads fp32 tensors in place and needs 4-byte alignment); then by name, for a stable file.
    list.sort_by(|(a, x), (b, y)| {
        out_dtype(y.dtype())
            .bitsize()
            .cmp(&out_dtype(x.dtype()).bitsize())
            .then_with(|| a.cmp(b))
    });
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, t) in &list {
        let bytes = out_bytes(t.dtype(), t.data());
        header.insert(
            name.clone(),
            serde_json::json!({
                "dtype": out_dtype(t.dtype()),
                "shape": t.shape(),
                "data_offsets": [offset, offset + bytes],
            }),
        );
        offset += bytes;
    }
    let mut json =
        serde_json::to_vec(&header).map_err(|e| EmbedError::weights(weights, e.to_string()))?;
    // The data starts 8-byte aligned, as safetensors' own writer pads it.
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let size = (8 + json.len() + offset) as u64;
    snapshot
        .derived(
            store,
            "fp32",
            size,
            poll,
            &mut |out: &mut File, poll: &mut dyn FnMut()| {
                let mut w = BufWriter::with_capacity(1 << 20, out);
                w.write_all(&(json.len() as u64).to_le_bytes())?;
                w.write_all(&json)?;
                let mut buf = crate::error::reserved(1 << 20, "widening the weights")
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
                for (_, t) in &list {
                    let widen: fn([u8; 2]) -> f32 = match t.dtype() {
                        Dtype::F16 => |b| f16_to_f32(u16::from_le_bytes(b)),
                        // bf16 is the upper half of an f32.
                        Dtype::BF16 => |b| f32::from_bits(u32::from(u16::from_le_bytes(b)) << 16),
                        _ => {
                            w.write_all(t.data())?;
                            continue;
                        }
                    };
                    for chunk in t.data().chunks(1 << 19) {
                        poll();
                        buf.clear();
                        for pair in chunk.chunks_exact(2) {
                            buf.extend_from_slice(&widen([pair[0], pair[1]]).to_le_bytes());
                        }
                        w.write_all(&buf)?;
                    }
                }
                w.flush()
            },
        )
        .map(Some)
}

/// IEEE half precision to single, exactly (every f16 is an f32): normals rebias the exponent,
/// subnormals are normalised, infinities and NaNs keep their payload.
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exponent = u32::from((h >> 10) & 0x1f);
    let mantissa = u32::from(h & 0x3ff);
    let bits = match (exponent, mantissa) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: m x 2^-24, normalised.
            let shift = m.leading_zeros() - 21;
            let m = (m << shift) & 0x3ff;
            sign | ((127 - 15 + 1 - shift) << 23) | (m << 13)
        }
        (0x1f, m) => sign | (0xff << 23) | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::f16_to_f32;

    /// Every one of the 65,536 halves against the definition.
    #[test]
    fn f16_widening_is_exact() {
        for h in 0..=u16::MAX {
            let sign = if h >> 15 == 1 { -1.0f64 } else { 1.0 };
            let e = i32::from((h >> 10) & 0x1f);
            let m = f64::from(h & 0x3ff);
            let expected = match e {
                0 => sign * m * 2f64.powi(-24),
                0x1f if m == 0.0 => sign * f64::INFINITY,
                0x1f => f64::NAN,
                _ => sign * (1.0 + m / 1024.0) * 2f64.powi(e - 15),
            };
            let got = f64::from(f16_to_f32(h));
            if expected.is_nan() {
                assert!(got.is_nan(), "{h:#06x}");
            } else {
                assert_eq!(got, expected, "{h:#06x}");
                assert_eq!(got.is_sign_negative(), sign < 0.0, "{h:#06x}");
            }
        }
    }
}
