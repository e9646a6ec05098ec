//! The numeric kernels of the BERT forward pass (bert.rs), in fp32 on row-major slices:
//! `linear` (the matrix products, in linear.rs; the opt-in bf16 ones in linear_bf16.rs) and the
//! small row-wise steps around it.

mod linear;
mod linear_bf16;
mod linear_packed;

pub use linear::linear;
pub use linear_bf16::{linear_bf16, Bf16Matrix};

/// `pub fn $name(args)` running `$portable(args)`, a plain-Rust loop, compiled for AVX-512 or
/// AVX2+FMA when the CPU has them: the same code, which the compiler then vectorises 16 or 8
/// wide instead of SSE's 4 (the crate itself is built for baseline x86-64).
macro_rules! wider_where_available {
    ($(#[$doc:meta])* pub fn $name:ident = $portable:ident($($arg:ident: $ty:ty),* $(,)?);) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) {
                    $portable($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2_fma($($arg: $ty),*) {
                    $portable($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: AVX-512F is present (checked just above).
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: AVX2 and FMA are present (checked just above).
                    return unsafe { avx2_fma($($arg),*) };
                }
            }
            $portable($($arg),*)
        }
    };
}

#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked just above; std caches the check).
            return unsafe { dot_avx2_fma(a, b) };
        }
    }
    dot_portable(a, b)
}

#[inline(always)]
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    // Sixteen independent sums: the compiler may vectorise these (it may not reorder one sum).
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2_fma(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    // SAFETY (whole block): every load reads 8 floats at i < n - 7, inside both slices.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (l, acc) in acc.iter_mut().enumerate() {
                *acc = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i + 8 * l)),
                    _mm256_loadu_ps(pb.add(i + 8 * l)),
                    *acc,
                );
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i)),
                _mm256_loadu_ps(pb.add(i)),
                acc[0],
            );
            i += 8;
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
        let quad = _mm_add_ps(half, _mm_movehl_ps(half, half));
        let one = _mm_add_ss(quad, _mm_shuffle_ps(quad, quad, 1));
        let mut total = _mm_cvtss_f32(one);
        while i < n {
            total += *pa.add(i) * *pb.add(i);
            i += 1;
        }
        total
    }
}

pub fn add_assign(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

wider_where_available! {
    /// LayerNorm of the rows of x (each `weight.len()` long), statistics accumulated in f64.
    pub fn layer_norm = layer_norm_portable(x: &mut [f32], weight: &[f32], bias: &[f32], eps: f32);
}

#[inline(always)]
fn layer_norm_portable(x: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    let n = weight.len() as f64;
    for row in x.chunks_exact_mut(weight.len()) {
        let mean = sum_f64(row, |v| v) / n;
        let var = sum_f64(row, |v| (v - mean) * (v - mean)) / n;
        let inv = 1.0 / (var + f64::from(eps)).sqrt();
        for ((v, w), b) in row.iter_mut().zip(weight).zip(bias) {
            *v = ((f64::from(*v) - mean) * inv) as f32 * w + b;
        }
    }
}

/// Sum of f(x) over x in f64, in eight independent partial sums: one running sum waits on the
/// add latency at every element, and LayerNorm was ~5% of a batch's time that way.
#[inline(always)]
fn sum_f64(x: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            acc[l] += f(f64::from(c[l]));
        }
    }
    acc.iter().sum::<f64>() + rest.iter().map(|&v| f(f64::from(v))).sum::<f64>()
}

wider_where_available! {
    /// GELU, exact erf form (Hugging Face's "gelu"): x/2 (1 + erf(x/sqrt 2)). The tanh
    /// approximation moves components by up to 4e-4, over the exactness budget; the erf below is
    /// within 6e-7 of the true erf (1.5e-7 of formula, the rest f32 rounding), and branch-free so
    /// the loop vectorises (libm's erff, called per element, took about a tenth of a query's
    /// time). It runs 16 wide where it can: 2.5% of a batch's time (e5 shape, 3,000 names).
    pub fn gelu_erf = gelu_erf_portable(x: &mut [f32]);
}

#[inline(always)]
fn gelu_erf_portable(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

wider_where_available! {
    /// GELU, tanh approximation (candle's `gelu`, config.json's "geluapproximate"):
    /// x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), tanh from exp_neg below (~2e-7).
    pub fn gelu_tanh = gelu_tanh_portable(x: &mut [f32]);
}

#[inline(always)]
fn gelu_tanh_portable(x: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for v in x.iter_mut() {
        let y = SQRT_2_OVER_PI * (*v + 0.044_715 * *v * *v * *v);
        // tanh(y) = (1 - e^-2|y|) / (1 + e^-2|y|), with y's sign: no overflow, no branch.
        let e = exp_neg(2.0 * y.abs());
        let tanh = ((1.0 - e) / (1.0 + e)).copysign(y);
        *v = 0.5 * *v * (1.0 + tanh);
    }
}

/// ReLU (config.json's "relu").
pub fn relu(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = v.max(0.0);
    }
}

/// erf(x), Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7), branch-free.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp_neg(a * a);
    y.copysign(x)
}

/// e^(-v) for v >= 0, relative error ~1e-7, branch-free: 2^n * e^r with |r| <= ln(2)/2.
#[inline(always)]
fn exp_neg(v: f32) -> f32 {
    let z = (-v).max(-87.0);
    let n = (z * std::f32::consts::LOG2_E).round_ties_even();
    let r = z - n * std::f32::consts::LN_2;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2^n built from bits: n + 127 in [1, 127] sits in the low mantissa bits of
    // n + 127 + 2^23 and moves to the exponent. (`n as i32` saturates, a scalar conversion per
    // element that kept GELU from vectorising: it took 6.2% of a batch's time instead of 2.5%.)
    let biased = (n + (127.0 + 8_388_608.0)).to_bits();
    p * f32::from_bits(biased << 23)
}

/// In-place softmax of one row.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in x.iter_mut() {
        *v = exp_neg(max - *v);
    }
    let sum: f32 = x.iter().sum();
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// Query rows whose attention is computed together: four independent sums per step instead
/// of one chain of dependent adds.
const ATTENTION_ROWS: usize = 4;

/// Floats of scratch `attention` needs for a sequence of `len` tokens: one head's keys
/// transposed, `[head_dim, len]` with len rounded up to whole 16-float groups, and
/// `ATTENTION_ROWS` rows of scores as long.
pub fn attention_scratch_len(len: usize, head_dim: usize) -> usize {
    (head_dim + ATTENTION_ROWS) * len.next_multiple_of(16)
}

wider_where_available! {
    /// Multi-head self-attention of one sequence: q, k, v and ctx are `[len, hidden]`, heads
    /// split `hidden` into equal slices; `scratch` holds at least
    /// `attention_scratch_len(len, hidden / heads)` floats.
    pub fn attention = attention_portable(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        len: usize,
        hidden: usize,
        heads: usize,
        scratch: &mut [f32],
        ctx: &mut [f32],
    );
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attention_portable(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    len: usize,
    hidden: usize,
    heads: usize,
    scratch: &mut [f32],
    ctx: &mut [f32],
) {
    const R: usize = ATTENTION_ROWS;
    let d = hidden / heads;
    let sqrt_d = (d as f32).sqrt();
    let padded = len.next_multiple_of(16);
    let (keys_t, scores) = scratch[..(d + R) * padded].split_at_mut(d * padded);
    for head in 0..heads {
        let off = head * d;
        // The head's keys transposed, so that the scores of a query against all keys are FMAs
        // 16 keys wide. (A dot product of head_dim floats per key, each ending in a horizontal
        // sum, and a scalar exp per score made attention 6.1% of a batch's time; 4.2% now.)
        // The padding columns hold whatever is there; their scores are never read.
        for (j, key) in k.chunks_exact(hidden).take(len).enumerate() {
            for (t, &kt) in key[off..off + d].iter().enumerate() {
                keys_t[t * padded + j] = kt;
            }
        }
        for first in (0..len).step_by(R) {
            // Query rows first..first + rows; a short last block repeats its last row.
            let rows = (len - first).min(R);
            let query: [&[f32]; R] =
                std::array::from_fn(|r| &q[(first + r.min(rows - 1)) * hidden + off..][..d]);
            for g in 0..padded / 16 {
                let mut acc = [[0f32; 16]; R];
                for t in 0..d {
                    let kt = &keys_t[t * padded + 16 * g..][..16];
                    for r in 0..R {
                        for l in 0..16 {
                            acc[r][l] += query[r][t] * kt[l];
                        }
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    for (s, a) in scores[r * padded + 16 * g..][..16].iter_mut().zip(acc) {
                        *s = a / sqrt_d;
                    }
                }
            }
            for r in 0..rows {
                softmax(&mut scores[r * padded..][..len]);
            }
            // The context in registers, 16 of the head's floats at a time.
            for g in 0..d / 16 {
                let mut acc = [[0f32; 16]; R];
                for j in 0..len {
                    let vj = &v[j * hidden + off + 16 * g..][..16];
                    for r in 0..R {
                        let p = scores[r * padded + j];
                        for l in 0..16 {
                            acc[r][l] += p * vj[l];
                        }
                    }
                }
                for (r, acc) in acc.iter().enumerate().take(rows) {
                    ctx[(first + r) * hidden + off + 16 * g..][..16].copy_from_slice(acc);
                }
            }
            // A head_dim that is not a multiple of 16: its last floats one by one.
            for r in 0..rows {
                for t in d / 16 * 16..d {
                    ctx[(first + r) * hidden + off + t] = (0..len)
                        .map(|j| scores[r * padded + j] * v[j * hidden + off + t])
                        .sum();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic test inputs in [-0.5, 0.5).
    pub(super) fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32
                    / (1 << 24) as f32)
                    - 0.5
            })
            .collect()
    }

    #[test]
    fn dot_kernels_agree() {
        for n in [0, 1, 8, 31, 32, 33, 384, 1536] {
            let (a, b) = (values(n, 4), values(n, 5));
            let exact: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            assert!((f64::from(dot(&a, &b)) - exact).abs() < 1e-4, "n={n}");
            assert!(
                (f64::from(dot_portable(&a, &b)) - exact).abs() < 1e-4,
                "n={n}"
            );
        }
    }

    #[test]
    fn softmax_and_layer_norm() {
        let mut s = vec![1.0, 2.0, 3.0];
        softmax(&mut s);
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-6 && s[2] > s[1] && s[1] > s[0]);
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        layer_norm(&mut x, &[1.0; 4], &[0.0; 4], 1e-12);
        assert!(x.iter().sum::<f32>().abs() < 1e-6);
        assert!((x.iter().map(|v| v * v).sum::<f32>() / 4.0 - 1.0).abs() < 1e-5);
    }

    #[test]
    fn attention_matches_the_definition() {
        // head_dim 32 (the models') and 20 (16 floats at a time and 4 one by one).
        for (hidden, heads, len) in [
            (64, 2, 1),
            (64, 2, 9),
            (64, 2, 16),
            (64, 2, 17),
            (64, 2, 40),
            (40, 2, 7),
        ] {
            let d = hidden / heads;
            let (q, k, v) = (
                values(len * hidden, 1),
                values(len * hidden, 2),
                values(len * hidden, 3),
            );
            let mut scratch = vec![f32::NAN; attention_scratch_len(len, d)];
            let mut ctx = vec![0f32; len * hidden];
            attention(&q, &k, &v, len, hidden, heads, &mut scratch, &mut ctx);
            for head in 0..heads {
                for i in 0..len {
                    let at =
                        |m: &[f32], r: usize, t: usize| f64::from(m[r * hidden + head * d + t]);
                    let scores: Vec<f64> = (0..len)
                        .map(|j| {
                            (0..d).map(|t| at(&q, i, t) * at(&k, j, t)).sum::<f64>()
                                / (d as f64).sqrt()
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let total: f64 = e.iter().sum();
                    for t in 0..d {
                        let expected: f64 = (0..len).map(|j| e[j] / total * at(&v, j, t)).sum();
                        let got = f64::from(ctx[i * hidden + head * d + t]);
                        assert!(
                            (got - expected).abs() < 1e-6,
                            "len {len} head {head} row {i}: {got} vs {expected}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn gelu_matches_erf_definition() {
        let mut x = vec![-3.0, -1.0, 0.0, 0.5, 2.0];
        let expected: Vec<f32> = x
            .iter()
            .map(|&v: &f32| {
                (0.5 * f64::from(v) * (1.0 + libm::erf(f64::from(v) / 2f64.sqrt()))) as f32
            })
            .collect();
        gelu_erf(&mut x);
        for (a, e) in x.iter().zip(&expected) {
            assert!((a - e).abs() < 1e-6);
        }
    }

    #[test]
    fn gelu_tanh_and_relu_match_their_definitions() {
        let points: Vec<f32> = (-8000..=8000).map(|i| i as f32 / 1000.0).collect();
        let mut x = points.clone();
        gelu_tanh(&mut x);
        let worst = points
            .iter()
            .zip(&x)
            .map(|(&v, &got)| {
                let v = f64::from(v);
                let want = 0.5
                    * v
                    * (1.0
                        + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v))
                            .tanh());
                (f64::from(got) - want).abs()
            })
            .fold(0.0, f64::max);
        assert!(worst <= 1e-6, "gelu_tanh: worst {worst}");
        let mut y = vec![-2.0, -0.0, 0.0, 3.5];
        relu(&mut y);
        assert_eq!(y, [0.0, 0.0, 0.0, 3.5]);
    }

    #[test]
    fn erf_is_within_6e_7() {
        let worst = (-6000..=6000)
            .map(|i| i as f32 / 1000.0)
            .map(|x| (f64::from(erf(x)) - libm::erf(f64::from(x))).abs())
            .fold(0.0, f64::max);
        assert!(worst <= 6e-7, "worst {worst}");
    }
}
