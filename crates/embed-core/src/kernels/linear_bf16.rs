//! `linear` in bf16, for the opt-in `Backend::FastBf16` (uhok_embed.precision = 'bf16').
//!
//! Weights and inputs are rounded to bf16 (8 significant bits) and their products summed in
//! fp32: AVX512_BF16's `vdpbf16ps` does 32 such multiply-adds per instruction where an fp32 FMA
//! does 16, and the weights take half the bytes, so a query, bound by streaming the weights,
//! reads half as much. The price is fidelity, which bench/vs_sentence_transformers.sh prints
//! beside the speed; the default stays fp32.
//!
//! The bf16 weights are a converted copy (half the size of the fp32 layer weights; the
//! embedding table stays in place), private to each backend unless the model is preloaded.

/// bf16 values in a 64-byte-aligned buffer (so that 32-value loads never straddle lines).
pub struct Bf16Matrix {
    buf: Vec<u16>,
    start: usize,
    len: usize,
}

impl Bf16Matrix {
    pub fn from_f32(values: &[f32]) -> Self {
        let mut m = Self::zeros(values.len());
        let start = m.start;
        for (d, &v) in m.buf[start..].iter_mut().zip(values) {
            *d = to_bf16(v);
        }
        m
    }

    fn zeros(len: usize) -> Self {
        let buf = vec![0u16; len + 32];
        // Vec<u16> is 2-byte aligned, so some start in the first 32 values is on a line.
        let start = (64 - buf.as_ptr() as usize % 64) % 64 / 2;
        Self { buf, start, len }
    }

    pub fn as_slice(&self) -> &[u16] {
        &self.buf[self.start..][..self.len]
    }
}

/// Round to nearest, ties to even (what `vcvtne2ps2bf16` does); NaN stays NaN.
pub fn to_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    if v.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

fn from_bf16(v: u16) -> f32 {
    f32::from_bits(u32::from(v) << 16)
}

/// `y[rows, out] = bf16(x)[rows, inp] * w[out, inp]^T + b[out]`, sums in fp32.
pub fn linear_bf16(
    x: &[f32],
    rows: usize,
    inp: usize,
    w: &Bf16Matrix,
    b: &[f32],
    out: usize,
    y: &mut [f32],
) {
    let w = w.as_slice();
    assert_eq!(
        (x.len(), w.len(), b.len(), y.len()),
        (rows * inp, out * inp, out, rows * out),
        "linear_bf16: shapes do not match"
    );
    let block_rows = super::linear::rows_per_block(inp);
    super::linear::in_row_blocks(x, rows, inp, out, y, block_rows, |x, rows, y| {
        linear_bf16_one_thread(&Bf16Matrix::from_f32(x), rows, inp, w, b, out, y)
    });
}

fn linear_bf16_one_thread(
    x: &Bf16Matrix,
    rows: usize,
    inp: usize,
    w: &[u16],
    b: &[f32],
    out: usize,
    y: &mut [f32],
) {
    let x = x.as_slice();
    #[cfg(target_arch = "x86_64")]
    {
        if inp.is_multiple_of(32)
            && out.is_multiple_of(4)
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bf16")
        {
            // SAFETY: the features are present; shapes asserted, inp % 32 == 0, out % 4 == 0.
            unsafe { x86::linear_avx512bf16(x, rows, inp, w, b, out, y) };
            return;
        }
    }
    linear_bf16_portable(x, rows, inp, w, b, out, y);
}

fn linear_bf16_portable(
    x: &[u16],
    rows: usize,
    inp: usize,
    w: &[u16],
    b: &[f32],
    out: usize,
    y: &mut [f32],
) {
    for (o, (w_row, bias)) in w.chunks_exact(inp).zip(b).enumerate() {
        for r in 0..rows {
            let x_row = &x[r * inp..][..inp];
            let sum: f32 = x_row
                .iter()
                .zip(w_row)
                .map(|(&a, &c)| from_bf16(a) * from_bf16(c))
                .sum();
            y[r * out + o] = sum + bias;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::linear::x86::{add_tile, for_each_tile, store_tile, Prefetch};

    /// The fp32 kernel's structure (linear.rs) with 32 bf16 pairs per register: 4 x 4 tiles,
    /// the weights ahead prefetched a share per tile.
    ///
    /// SAFETY: AVX-512F and AVX512_BF16 present; x is [rows, inp], w [out, inp], b [out],
    /// y [rows, out]; inp % 32 == 0, out % 4 == 0.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn linear_avx512bf16(
        x: &[u16],
        rows: usize,
        inp: usize,
        w: &[u16],
        b: &[f32],
        out: usize,
        y: &mut [f32],
    ) {
        for_each_tile(w, rows, inp, out, 4, |r, mr, o, cols, add, pf| {
            // SAFETY: every tile lies inside x, w, b and y (the caller's guarantee on the
            // shapes; `for_each_tile` keeps r + mr <= rows, o + 4 <= out, cols in 0..inp).
            unsafe {
                match mr {
                    4 => tile::<4>(x, r, inp, w, b, out, o, y, pf, cols, add),
                    3 => tile::<3>(x, r, inp, w, b, out, o, y, pf, cols, add),
                    2 => tile::<2>(x, r, inp, w, b, out, o, y, pf, cols, add),
                    _ => tile::<1>(x, r, inp, w, b, out, o, y, pf, cols, add),
                }
            }
        });
    }

    /// SAFETY: as `linear_avx512bf16`, for rows r..r + MR, weight rows o..o + 4 and columns
    /// `cols` (ends multiples of 32); with `add` the sums go into y without the bias.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const MR: usize>(
        x: &[u16],
        r: usize,
        inp: usize,
        w: &[u16],
        b: &[f32],
        out: usize,
        o: usize,
        y: &mut [f32],
        prefetch: &mut Prefetch,
        cols: std::ops::Range<usize>,
        add: bool,
    ) {
        unsafe {
            let px = x.as_ptr().add(r * inp + cols.start);
            let pw = w.as_ptr().add(o * inp + cols.start);
            let load = |p: *const u16| -> __m512bh {
                std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(p as *const _))
            };
            let mut acc = [[_mm512_setzero_ps(); 4]; MR];
            let mut k = 0;
            while k < cols.len() {
                prefetch.step();
                let wv = [
                    load(pw.add(k)),
                    load(pw.add(inp + k)),
                    load(pw.add(2 * inp + k)),
                    load(pw.add(3 * inp + k)),
                ];
                for (i, acc) in acc.iter_mut().enumerate() {
                    let xv = load(px.add(i * inp + k));
                    for (a, wv) in acc.iter_mut().zip(wv) {
                        *a = _mm512_dpbf16_ps(*a, xv, wv);
                    }
                }
                k += 32;
            }
            if add {
                add_tile(&acc, r, out, o, y);
            } else {
                store_tile(&acc, r, b, out, o, y);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounding() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        assert_eq!(from_bf16(to_bf16(1.0 + 1.0 / 256.0)), 1.0); // a tie rounds to even
        assert_eq!(from_bf16(to_bf16(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        for v in [0.1f32, -3.7, 1e-20, 6.5e4] {
            assert!((from_bf16(to_bf16(v)) - v).abs() <= v.abs() / 256.0);
        }
    }

    /// Both paths against an f64 sum of the same bf16-rounded values.
    #[test]
    fn kernels_match_rounded_reference() {
        // Column passes: 1536 inputs from 6 rows (here 9), 2080 from 4 (three, the last shorter).
        for (inp, out) in [(64, 8), (384, 12), (40, 6), (1536, 8), (2080, 4)] {
            for rows in [1, 3, 4, 5, 9] {
                let x: Vec<f32> = (0..rows * inp)
                    .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
                    .collect();
                let wf: Vec<f32> = (0..out * inp)
                    .map(|i| ((i * 5 % 11) as f32 - 5.0) / 9.0)
                    .collect();
                let b: Vec<f32> = (0..out).map(|i| i as f32 / 10.0).collect();
                let w = Bf16Matrix::from_f32(&wf);
                let mut y = vec![f32::NAN; rows * out];
                linear_bf16(&x, rows, inp, &w, &b, out, &mut y);
                let mut portable = vec![f32::NAN; rows * out];
                let xb = Bf16Matrix::from_f32(&x);
                linear_bf16_portable(
                    xb.as_slice(),
                    rows,
                    inp,
                    w.as_slice(),
                    &b,
                    out,
                    &mut portable,
                );
                for r in 0..rows {
                    for o in 0..out {
                        let exact: f64 = (0..inp)
                            .map(|k| {
                                f64::from(from_bf16(to_bf16(x[r * inp + k])))
                                    * f64::from(from_bf16(to_bf16(wf[o * inp + k])))
                            })
                            .sum::<f64>()
                            + f64::from(b[o]);
                        for got in [y[r * out + o], portable[r * out + o]] {
                            assert!(
                                (f64::from(got) - exact).abs() < 1e-4,
                                "{rows}x{inp}x{out}: {got} vs {exact}"
                            );
                        }
                    }
                }
            }
        }
    }
}
