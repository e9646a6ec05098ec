//! `linear` for batches: broadcast-form products on packed weight panels (AVX-512).
//!
//! The in-place kernels (linear.rs) take dot products of an input row and a weight row, which
//! needs no copy of the weights and is right for a query (a few rows, bound by reading the
//! weights from memory). With hundreds of rows the arithmetic dominates, and there the dot
//! form loses to its horizontal sums and to the input rows it re-reads from L2 for every block
//! of four weight rows: ~200 GFLOP/s, 75% of this core's 265.
//!
//! Here each panel of 32 weight rows is transposed once per call into a buffer that stays in
//! L1/L2 (`pack_panel`, 16 x 16 register transposes) so that, for every input column k, the 32
//! weights are one contiguous pair of registers. An 8-row tile then broadcasts x[r, k] and
//! accumulates 8 x 32 outputs in 16 registers: 16 FMAs per 2 panel loads and 8 broadcasts, no
//! horizontal sums, and the results are stored as they are (y rows are contiguous).
//!
//! Measured with `crossover` (linear.rs tests; release, one thread, GFLOP/s, in place ->
//! packed): 256 rows 384 -> 384 206 -> 259, 384 -> 1536 204 -> 258, 1536 -> 384 186 -> 258;
//! 32 rows 194 -> 213, 189 -> 210, 178 -> 209; 16 rows 238 -> 178. Packing costs a few
//! percent (a panel reused without repacking ran 255-262 at 640 rows); tiles of 12 and 14 rows
//! (28 accumulators) ran 5-10% slower than 8. In the forward pass, 11-token names in chunks of
//! 32 (e5 shape): 380 -> 458 names/s, the products then 88% of the time at ~240 GFLOP/s.
//! Prefetching the next panel into L2 during the tiles changed nothing (the hardware
//! prefetcher already follows its contiguous 32 rows), and packing it a slice at a time between
//! the tiles, its columns prefetched into L1, L2 or non-temporally, was 0-6% slower.
//!
//! Each output is summed over k in order, in one lane, as BLAS's sgemm does (the in-place
//! kernels keep 16 partial sums): the two differ in the last bits, so a text inside a batch of
//! `PACKED_MIN_ROWS` tokens or more embeds within ~2e-6 of the same text alone, not bit for bit.

/// Rows from which the packed kernel is used: below this, packing every panel costs more than
/// the faster tiles save (24 rows: about even; 16: in place 238, packed 178 GFLOP/s).
pub const PACKED_MIN_ROWS: usize = 32;

/// Output columns per panel: two 16-float registers.
const NR: usize = 32;

/// Whether `linear_packed` can run this product on this CPU.
pub fn applies(rows: usize, inp: usize, out: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        rows >= PACKED_MIN_ROWS
            && out.is_multiple_of(NR)
            && inp > 0
            && std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (rows, inp, out);
        false
    }
}

/// `y[rows, out] = x[rows, inp] * w[out, inp]^T + b[out]`, where `applies` (whatever the rows).
pub fn linear_packed(
    x: &[f32],
    rows: usize,
    inp: usize,
    w: &[f32],
    b: &[f32],
    out: usize,
    y: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        assert_eq!(
            (x.len(), w.len(), b.len(), y.len()),
            (rows * inp, out * inp, out, rows * out),
            "linear_packed: shapes do not match"
        );
        assert!(out.is_multiple_of(NR) && std::is_x86_feature_detected!("avx512f"));
        x86::PANEL.with_borrow_mut(|panel| {
            // One 64-byte line per 16 floats: the panel's loads never straddle two lines.
            panel.resize(inp * NR / 16, x86::Line([0.0; 16]));
            // SAFETY: AVX-512F is present, out % 32 == 0 and the shapes match (asserted
            // above), and the panel holds inp x 32 floats.
            unsafe { x86::linear_packed_avx512(x, rows, inp, w, b, out, y, panel) }
        });
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (x, rows, inp, w, b, out, y);
        unreachable!("linear_packed: applies() is false on this architecture");
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::cell::RefCell;

    use super::NR;

    /// Input rows per tile: 8 x 32 outputs in 16 accumulators.
    const MR: usize = 8;

    #[derive(Clone, Copy)]
    #[repr(C, align(64))]
    pub struct Line(pub [f32; 16]);

    thread_local! {
        /// The packed panel, kept between calls (up to 1536 x 32 floats, 192 KiB): allocating it
        /// per product would map and fault fresh pages every time.
        pub static PANEL: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
    }

    /// SAFETY: AVX-512F present; x [rows, inp], w [out, inp], b [out], y [rows, out],
    /// out % 32 == 0, panel holds inp * 32 floats.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn linear_packed_avx512(
        x: &[f32],
        rows: usize,
        inp: usize,
        w: &[f32],
        b: &[f32],
        out: usize,
        y: &mut [f32],
        panel: &mut [Line],
    ) {
        let panel = panel.as_mut_ptr() as *mut f32;
        // SAFETY: every tile and panel access lies inside x, w, b, y and the panel (the
        // caller's guarantee on the shapes).
        unsafe {
            for o in (0..out).step_by(NR) {
                pack_panel(w.as_ptr().add(o * inp), inp, panel);
                let bias = b.as_ptr().add(o);
                let mut r = 0;
                while r + MR <= rows {
                    tile::<MR>(
                        x.as_ptr().add(r * inp),
                        inp,
                        panel,
                        bias,
                        y.as_mut_ptr().add(r * out + o),
                        out,
                    );
                    r += MR;
                }
                let (px, py) = (x.as_ptr().add(r * inp), y.as_mut_ptr().add(r * out + o));
                match rows - r {
                    7 => tile::<7>(px, inp, panel, bias, py, out),
                    6 => tile::<6>(px, inp, panel, bias, py, out),
                    5 => tile::<5>(px, inp, panel, bias, py, out),
                    4 => tile::<4>(px, inp, panel, bias, py, out),
                    3 => tile::<3>(px, inp, panel, bias, py, out),
                    2 => tile::<2>(px, inp, panel, bias, py, out),
                    1 => tile::<1>(px, inp, panel, bias, py, out),
                    _ => {}
                }
            }
        }
    }

    /// panel[k * 32 + j] = w[j * inp + k] for the 32 weight rows at `w`.
    ///
    /// SAFETY: AVX-512F present; w points at 32 rows of inp floats, panel at inp * 32 floats.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn pack_panel(w: *const f32, inp: usize, panel: *mut f32) {
        unsafe {
            for j0 in [0, 16] {
                let rows = w.add(j0 * inp);
                let mut k = 0;
                while k + 16 <= inp {
                    let mut r = [_mm512_setzero_ps(); 16];
                    for (i, r) in r.iter_mut().enumerate() {
                        *r = _mm512_loadu_ps(rows.add(i * inp + k));
                    }
                    for (c, column) in transpose16(r).into_iter().enumerate() {
                        _mm512_store_ps(panel.add((k + c) * NR + j0), column);
                    }
                    k += 16;
                }
                for k in k..inp {
                    for i in 0..16 {
                        *panel.add(k * NR + j0 + i) = *rows.add(i * inp + k);
                    }
                }
            }
        }
    }

    /// The 16 x 16 transpose of `r` (r[i] is row i): 64 in-register shuffles.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
        // a[2i], a[2i+1]: rows 2i and 2i+1 interleaved within each 128-bit lane.
        let mut a = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        // b[4i + c], 128-bit lane l: rows 4i..4i+4 at column 4l + c.
        let mut b = [_mm512_setzero_ps(); 16];
        for i in 0..4 {
            let pd = |v: __m512| _mm512_castps_pd(v);
            let ps = |v: __m512d| _mm512_castpd_ps(v);
            b[4 * i] = ps(_mm512_unpacklo_pd(pd(a[4 * i]), pd(a[4 * i + 2])));
            b[4 * i + 1] = ps(_mm512_unpackhi_pd(pd(a[4 * i]), pd(a[4 * i + 2])));
            b[4 * i + 2] = ps(_mm512_unpacklo_pd(pd(a[4 * i + 1]), pd(a[4 * i + 3])));
            b[4 * i + 3] = ps(_mm512_unpackhi_pd(pd(a[4 * i + 1]), pd(a[4 * i + 3])));
        }
        // Column 4l + c gathers lane l of b[c], b[4 + c], b[8 + c], b[12 + c].
        let mut t = [_mm512_setzero_ps(); 16];
        for c in 0..4 {
            let t0 = _mm512_shuffle_f32x4::<0x44>(b[c], b[4 + c]);
            let t1 = _mm512_shuffle_f32x4::<0xEE>(b[c], b[4 + c]);
            let t2 = _mm512_shuffle_f32x4::<0x44>(b[8 + c], b[12 + c]);
            let t3 = _mm512_shuffle_f32x4::<0xEE>(b[8 + c], b[12 + c]);
            t[c] = _mm512_shuffle_f32x4::<0x88>(t0, t2);
            t[4 + c] = _mm512_shuffle_f32x4::<0xDD>(t0, t2);
            t[8 + c] = _mm512_shuffle_f32x4::<0x88>(t1, t3);
            t[12 + c] = _mm512_shuffle_f32x4::<0xDD>(t1, t3);
        }
        t
    }

    /// y[i, 0..32] = sum over k of x[i, k] * panel[k, 0..32] + bias[0..32], for M rows.
    ///
    /// SAFETY: x points at M rows of inp floats, panel at inp x 32 (64-byte aligned), bias at
    /// 32 floats, y at M rows `out` floats apart with 32 writable floats each.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const M: usize>(
        x: *const f32,
        inp: usize,
        panel: *const f32,
        bias: *const f32,
        y: *mut f32,
        out: usize,
    ) {
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); 2]; M];
            for k in 0..inp {
                let w0 = _mm512_load_ps(panel.add(k * NR));
                let w1 = _mm512_load_ps(panel.add(k * NR + 16));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let a = _mm512_set1_ps(*x.add(i * inp + k));
                    acc[0] = _mm512_fmadd_ps(a, w0, acc[0]);
                    acc[1] = _mm512_fmadd_ps(a, w1, acc[1]);
                }
            }
            let (b0, b1) = (_mm512_loadu_ps(bias), _mm512_loadu_ps(bias.add(16)));
            for (i, acc) in acc.iter().enumerate() {
                let y = y.add(i * out);
                _mm512_storeu_ps(y, _mm512_add_ps(acc[0], b0));
                _mm512_storeu_ps(y.add(16), _mm512_add_ps(acc[1], b1));
            }
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::super::tests::values;
    use super::*;

    #[test]
    fn packing_transposes() {
        if !std::is_x86_feature_detected!("avx512f") {
            return;
        }
        for inp in [16, 45, 384] {
            let w = values(NR * inp, 7);
            let mut panel = vec![x86::Line([f32::NAN; 16]); inp * NR / 16 + 1];
            // SAFETY: AVX-512F checked; w is 32 rows of inp, the panel holds inp * 32 floats.
            unsafe { x86::pack_panel(w.as_ptr(), inp, panel.as_mut_ptr() as *mut f32) };
            let flat: Vec<f32> = panel.iter().flat_map(|l| l.0).collect();
            for k in 0..inp {
                for j in 0..NR {
                    assert_eq!(flat[k * NR + j], w[j * inp + k], "inp {inp}, k {k}, j {j}");
                }
            }
        }
    }
}
