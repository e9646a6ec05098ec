//! The numeric kernels of the BERT forward pass (bert.rs), in fp32 on row-major slices.
//!
//! The hot one is `linear` with few rows (a query is ~5-15 tokens): y = x W^T + b where W is
//! stored [out, in], so each output is a dot product of two contiguous rows. With AVX2+FMA (the
//! common x86-64 server) the dot product runs 32 lanes at a time; elsewhere a portable version
//! with independent lanes that the compiler vectorises. Many rows go to the gemm crate, whose
//! packing pays off there.

/// Rows at or above which `linear` uses gemm instead of row dot products. For batches the
/// packing pays: 350 names in chunks of 32 ran at 382 texts/s through gemm and 246/s through
/// the row kernel (e5 shape, one thread).
const GEMM_MIN_ROWS: usize = 32;

/// `y[rows, out] = x[rows, inp] * w[out, inp]^T + b[out]`.
pub fn linear(x: &[f32], rows: usize, inp: usize, w: &[f32], b: &[f32], out: usize, y: &mut [f32]) {
    debug_assert_eq!(
        (x.len(), w.len(), b.len(), y.len()),
        (rows * inp, out * inp, out, rows * out)
    );
    if rows >= GEMM_MIN_ROWS {
        // SAFETY: the strides describe x as [rows, inp] row-major, w^T as [inp, out] (element
        // (k, n) at n * inp + k) and y as [rows, out] row-major; the debug_assert above states
        // the lengths those shapes need.
        unsafe {
            gemm::gemm(
                rows,
                out,
                inp,
                y.as_mut_ptr(),
                1,
                out as isize,
                false,
                x.as_ptr(),
                1,
                inp as isize,
                w.as_ptr(),
                inp as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism(),
            );
        }
        for row in y.chunks_exact_mut(out) {
            add_assign(row, b);
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if inp.is_multiple_of(8)
            && out.is_multiple_of(4)
            && std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
        {
            // SAFETY: AVX2 and FMA are present (checked just above); shapes as debug-asserted.
            unsafe { linear_few_rows_avx2_fma(x, rows, inp, w, b, out, y) };
            return;
        }
    }
    // Each weight row is read from memory once and used for every input row while in L1.
    for (o, (w_row, bias)) in w.chunks_exact(inp).zip(b).enumerate() {
        for r in 0..rows {
            y[r * out + o] = dot(&x[r * inp..][..inp], w_row) + bias;
        }
    }
}

/// `linear` for few rows: four weight rows at a time against each input row, so each 8-float
/// load of x feeds four FMAs and each weight row is streamed from memory once. One call per
/// matrix, not per dot product: dispatching per dot product cost ~1.7 ms of a 7 ms MiniLM query.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn linear_few_rows_avx2_fma(
    x: &[f32],
    rows: usize,
    inp: usize,
    w: &[f32],
    b: &[f32],
    out: usize,
    y: &mut [f32],
) {
    use std::arch::x86_64::*;
    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        // SAFETY: register-only SSE/AVX operations, available under this function's features.
        unsafe {
            let half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            let quad = _mm_add_ps(half, _mm_movehl_ps(half, half));
            _mm_cvtss_f32(_mm_add_ss(quad, _mm_shuffle_ps(quad, quad, 1)))
        }
    }
    // SAFETY (whole block): inp % 8 == 0 and out % 4 == 0 (the caller checked), so every 8-float
    // load at k < inp stays inside row r of x and rows o..o+3 of w, and y[r * out + o + 3] exists.
    unsafe {
        let (px, pw) = (x.as_ptr(), w.as_ptr());
        for o in (0..out).step_by(4) {
            let w0 = pw.add(o * inp);
            let (w1, w2, w3) = (w0.add(inp), w0.add(2 * inp), w0.add(3 * inp));
            for r in 0..rows {
                let xr = px.add(r * inp);
                let (mut a0, mut a1, mut a2, mut a3) = (
                    _mm256_setzero_ps(),
                    _mm256_setzero_ps(),
                    _mm256_setzero_ps(),
                    _mm256_setzero_ps(),
                );
                let mut k = 0;
                while k < inp {
                    if r == 0 && k % 16 == 0 && o + 8 <= out {
                        // Prefetch the next four weight rows, a cache line each time this
                        // row's loop crosses one: one query streams every weight from memory,
                        // and this took '갈비탕' from 6.95 to 4.7 ms (e5 shape) and 5.15 to
                        // 4.2 ms (MiniLM-L6). Eight rows ahead was slower (5.3 ms).
                        let next = w0.add(4 * inp + k) as *const i8;
                        _mm_prefetch::<_MM_HINT_T0>(next);
                        _mm_prefetch::<_MM_HINT_T0>(next.add(4 * inp));
                        _mm_prefetch::<_MM_HINT_T0>(next.add(8 * inp));
                        _mm_prefetch::<_MM_HINT_T0>(next.add(12 * inp));
                    }
                    let xv = _mm256_loadu_ps(xr.add(k));
                    a0 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w0.add(k)), a0);
                    a1 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w1.add(k)), a1);
                    a2 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w2.add(k)), a2);
                    a3 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w3.add(k)), a3);
                    k += 8;
                }
                let yr = &mut y[r * out + o..][..4];
                yr[0] = hsum(a0) + b[o];
                yr[1] = hsum(a1) + b[o + 1];
                yr[2] = hsum(a2) + b[o + 2];
                yr[3] = hsum(a3) + b[o + 3];
            }
        }
    }
}

/// One thread unless RAYON_NUM_THREADS says otherwise (the extension sets it from
/// uhok_embed.threads); only gemm's big products are split, the few-row path is one thread.
fn parallelism() -> gemm::Parallelism {
    match candle_core::utils::get_num_threads() {
        0 | 1 => gemm::Parallelism::None,
        n => gemm::Parallelism::Rayon(n),
    }
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

/// LayerNorm of one row, statistics accumulated in f64.
pub fn layer_norm(x: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = x
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    let inv = 1.0 / (var + f64::from(eps)).sqrt();
    for ((v, w), b) in x.iter_mut().zip(weight).zip(bias) {
        *v = ((f64::from(*v) - mean) * inv) as f32 * w + b;
    }
}

/// GELU, exact erf form (Hugging Face's "gelu"): x/2 (1 + erf(x/sqrt 2)). The tanh approximation
/// moves components by up to 4e-4, over the exactness budget; the erf below is within 6e-7 of
/// the true erf (1.5e-7 of formula, the rest f32 rounding), and branch-free so the loop vectorises (libm's erff, called per element, took
/// about a tenth of a query's time).
pub fn gelu_erf(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: AVX2 and FMA are present (checked just above).
            unsafe { gelu_erf_avx2_fma(x) };
            return;
        }
    }
    gelu_erf_portable(x);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_erf_avx2_fma(x: &mut [f32]) {
    // The same code, compiled with AVX2+FMA so the compiler vectorises it 8 wide.
    gelu_erf_portable(x);
}

#[inline(always)]
fn gelu_erf_portable(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
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
    let n = (z * std::f32::consts::LOG2_E).round();
    let r = z - n * std::f32::consts::LN_2;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// In-place softmax of one row.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// Multi-head self-attention of one sequence: q, k, v and ctx are `[len, hidden]`, heads split
/// `hidden` into equal slices; `scores` is scratch of at least len * len.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    len: usize,
    hidden: usize,
    heads: usize,
    scores: &mut [f32],
    ctx: &mut [f32],
) {
    let d = hidden / heads;
    let sqrt_d = (d as f32).sqrt();
    for head in 0..heads {
        let off = head * d;
        for i in 0..len {
            let qi = &q[i * hidden + off..][..d];
            let row = &mut scores[i * len..][..len];
            for (j, s) in row.iter_mut().enumerate() {
                *s = dot(qi, &k[j * hidden + off..][..d]) / sqrt_d;
            }
            softmax(row);
            let ci = &mut ctx[i * hidden + off..][..d];
            ci.fill(0.0);
            for (j, &p) in row.iter().enumerate() {
                for (c, vv) in ci.iter_mut().zip(&v[j * hidden + off..][..d]) {
                    *c += p * vv;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_linear(
        x: &[f32],
        rows: usize,
        inp: usize,
        w: &[f32],
        b: &[f32],
        out: usize,
    ) -> Vec<f32> {
        let mut y = vec![0f32; rows * out];
        for r in 0..rows {
            for o in 0..out {
                let s: f64 = (0..inp)
                    .map(|i| f64::from(x[r * inp + i]) * f64::from(w[o * inp + i]))
                    .sum();
                y[r * out + o] = s as f32 + b[o];
            }
        }
        y
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32
                    / (1 << 24) as f32)
                    - 0.5
            })
            .collect()
    }

    #[test]
    fn linear_matches_naive_for_few_and_many_rows() {
        for rows in [1, 7, GEMM_MIN_ROWS, 50] {
            let (inp, out) = (45, 13);
            let (x, w, b) = (values(rows * inp, 1), values(out * inp, 2), values(out, 3));
            let mut y = vec![0f32; rows * out];
            linear(&x, rows, inp, &w, &b, out, &mut y);
            let expected = naive_linear(&x, rows, inp, &w, &b, out);
            for (a, e) in y.iter().zip(&expected) {
                assert!((a - e).abs() < 1e-5, "rows={rows}: {a} vs {e}");
            }
        }
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
    fn erf_is_within_6e_7() {
        let worst = (-6000..=6000)
            .map(|i| i as f32 / 1000.0)
            .map(|x| (f64::from(erf(x)) - libm::erf(f64::from(x))).abs())
            .fold(0.0, f64::max);
        assert!(worst <= 6e-7, "worst {worst}");
    }
}
