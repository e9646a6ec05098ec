//! `linear`: y = x W^T + b, the matrix products that are nearly all of a forward pass.
//!
//! Hugging Face stores W as [out, in], so each output is the dot product of two contiguous rows,
//! and the mmap'd weights are used in place (no packed or transposed copy per backend). The
//! kernels work on tiles: `MR` input rows against four weight rows, `MR x 4` dot products
//! accumulated in registers, each group of four reduced into one 4-float store. Each weight
//! row is streamed from memory once per call and reused from L1 by every tile, and every tile
//! prefetches a share of the weights 16 KiB ahead (`x86::Prefetch`). Input rows too long to
//! stay in L1 are taken in passes over their columns (`x86::column_passes`).
//!
//! Measured on the 2-core EPYC (AVX-512, 1 thread, '갈비탕', 350 names in chunks of 32), each
//! step on top of the previous one:
//! - one input row x four weight rows (four accumulators, bound by FMA latency): MiniLM-L6
//!   4.05 ms, e5 shape 4.73 ms; batches through the gemm crate 607 and 378 names/s.
//! - 4 x 4 tiles in AVX-512 registers: MiniLM 2.74 ms, e5 4.14 ms; batches through the same
//!   tiles 767 and 513 names/s, so gemm (AVX2 only on stable Rust) is no longer used.
//! - loads that do not straddle cache lines (see `tile_avx512`): MiniLM 2.16 ms, e5 3.2 ms;
//!   batches 910 and 630 names/s.
//! - (later, with the tokenizer and batch kernels changed in between) the prefetch spread over
//!   the tiles and column passes for long input rows: e5 '갈비탕' ~3.2 -> ~2.4 ms, MiniLM-L6's
//!   (10 tokens there) ~1.9 -> ~1.45 ms; the steps' own figures are at `x86::Prefetch` and
//!   `x86::PASS_MAX_BYTES`.
//!
//! The floors on this machine: streaming MiniLM's 42 MB of layer weights at the 33 GB/s one
//! core reads takes 1.3 ms (e5: 85 MB, 2.6 ms); its AVX-512 FMAs peak at 265 GFLOP/s.

/// Rows from which a product is split across `uhok_embed.threads` threads (by rows, so each
/// thread streams the weights itself; below this a query is bound by memory, not arithmetic).
const PARALLEL_MIN_ROWS: usize = 32;

/// Input floats per row block (512 KiB, half of this CPU's L2). A batch of 32 texts is ~300
/// rows, 1.9 MB of input for the FFN's second product, and every block of four weight rows
/// re-reads all of it; in blocks that stay in L2, 3,000 long names ran at 430/s instead of 406
/// (256 KiB blocks: 414/s, 1 MiB: 426/s).
const ROW_BLOCK_FLOATS: usize = 128 * 1024;

/// `y[rows, out] = x[rows, inp] * w[out, inp]^T + b[out]`.
pub fn linear(x: &[f32], rows: usize, inp: usize, w: &[f32], b: &[f32], out: usize, y: &mut [f32]) {
    assert_eq!(
        (x.len(), w.len(), b.len(), y.len()),
        (rows * inp, out * inp, out, rows * out),
        "linear: shapes do not match"
    );
    if super::linear_packed::applies(rows, inp, out) {
        // Batches: packed panels, each packed once per call, so the rows are not cut into
        // blocks (every block would pack all the weights again).
        in_row_blocks(x, rows, inp, out, y, rows, |x, rows, y| {
            super::linear_packed::linear_packed(x, rows, inp, w, b, out, y)
        });
        return;
    }
    in_row_blocks(x, rows, inp, out, y, rows_per_block(inp), |x, rows, y| {
        linear_one_thread(x, rows, inp, w, b, out, y)
    });
}

/// Rows of `inp` floats per `ROW_BLOCK_FLOATS` block, a multiple of the tiles' 4.
pub(super) fn rows_per_block(inp: usize) -> usize {
    (ROW_BLOCK_FLOATS / inp).max(4) / 4 * 4
}

/// Runs `product(x_part, rows_part, y_part)` over row ranges of x [rows, inp] and y [rows, out]:
/// one range per `uhok_embed.threads` thread when there are enough rows, each cut into blocks
/// of at most `block_rows` rows.
pub(super) fn in_row_blocks(
    x: &[f32],
    rows: usize,
    inp: usize,
    out: usize,
    y: &mut [f32],
    block_rows: usize,
    product: impl Fn(&[f32], usize, &mut [f32]) + Sync,
) {
    let block_rows = block_rows.max(1);
    let blocks = |x: &[f32], y: &mut [f32]| {
        for (x, y) in x
            .chunks(block_rows * inp)
            .zip(y.chunks_mut(block_rows * out))
        {
            product(x, x.len() / inp, y);
        }
    };
    // The pool of crate::threads, which the extension sizes from uhok_embed.threads (default 1:
    // no pool). The calling thread waits in the scope; only compute threads run `product`.
    let pool = if rows >= PARALLEL_MIN_ROWS {
        crate::threads::pool()
    } else {
        None
    };
    if let Some(pool) = pool {
        let threads = pool.current_num_threads();
        let per_thread = rows.div_ceil(threads).next_multiple_of(4);
        let blocks = &blocks;
        pool.scope(|scope| {
            for (x, y) in x
                .chunks(per_thread * inp)
                .zip(y.chunks_mut(per_thread * out))
            {
                scope.spawn(move |_| blocks(x, y));
            }
        });
    } else {
        blocks(x, y);
    }
}

fn linear_one_thread(
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
        if out.is_multiple_of(4) {
            if inp.is_multiple_of(16) && std::is_x86_feature_detected!("avx512f") {
                // SAFETY: AVX-512F is present; `linear` asserted the shapes, and inp % 16 == 0,
                // out % 4 == 0 as the kernel requires.
                unsafe { x86::linear_avx512(x, rows, inp, w, b, out, y) };
                return;
            }
            if inp.is_multiple_of(8)
                && std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
            {
                // SAFETY: AVX2 and FMA are present; shapes asserted, inp % 8 == 0, out % 4 == 0.
                unsafe { x86::linear_avx2(x, rows, inp, w, b, out, y) };
                return;
            }
        }
    }
    linear_portable(x, rows, inp, w, b, out, y);
}

/// Any CPU: each weight row is read from memory once and used for every input row while in L1.
fn linear_portable(
    x: &[f32],
    rows: usize,
    inp: usize,
    w: &[f32],
    b: &[f32],
    out: usize,
    y: &mut [f32],
) {
    for (o, (w_row, bias)) in w.chunks_exact(inp).zip(b).enumerate() {
        for r in 0..rows {
            y[r * out + o] = super::dot(&x[r * inp..][..inp], w_row) + bias;
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    /// How far ahead of the block being multiplied the weights are prefetched, in bytes (the
    /// weights are one contiguous stream, so bytes ahead is time ahead whatever the shape).
    /// e5 shape, one thread, p50 ms for 5 / 10 / 17 tokens, alternating runs: one block ahead
    /// (6 KiB at 384 inputs, 24 KiB at 1536) 3.17-3.33 / 4.14-4.19 / 6.74-6.89; 16 KiB spread
    /// over the tiles 2.66-2.77 / 3.59-3.78 / 5.32-5.62; 12 KiB, 20 KiB and 24 KiB no better,
    /// 16 KiB all from the first tile 3.24-3.29 / 4.94-5.13 / 7.41-7.65.
    const PREFETCH_AHEAD_BYTES: usize = 16 * 1024;

    /// Software prefetch of the weights about `PREFETCH_AHEAD_BYTES` ahead of a block of four
    /// weight rows, a few lines per step of every tile of the block.
    ///
    /// Why spread: a query has a few input rows, so a block is multiplied by one to four tiles,
    /// and the later tiles reuse the block from L1. When the first tile issued all the
    /// prefetches, memory sat idle during the others and compute waited on memory after, the
    /// two adding up instead of overlapping: with the weights out of cache, 10 rows ran at
    /// ~100 GFLOP/s against ~180 with the same weights in L3 (the ignored `streaming` test).
    ///
    /// The lines walked are runs of `segment_bytes`, `stride` bytes apart: one run when the
    /// tiles multiply whole rows (the weights ahead are contiguous), four (one per row of the
    /// block ahead) when they multiply a range of columns (`column_passes`).
    pub(in crate::kernels) struct Prefetch {
        next: usize,
        segment_start: usize,
        segment_end: usize,
        segment_bytes: usize,
        stride: usize,
        segments_left: usize,
        lines_per_step: usize,
    }

    impl Prefetch {
        /// For the block of weight rows `o..o + 4` of w [out, inp] (f32 or bf16 bits), columns
        /// `cols`, which `tiles` tiles multiply in steps that each read one 64-byte line of
        /// every row.
        fn for_block<T>(
            w: &[T],
            inp: usize,
            out: usize,
            o: usize,
            cols: std::ops::Range<usize>,
            tiles: usize,
        ) -> Self {
            let size = std::mem::size_of::<T>();
            let (base, row_bytes) = (w.as_ptr() as usize, inp * size);
            let end_of_w = base + out * row_bytes;
            let segment_bytes = cols.len() * size;
            // A block has 4 segments of segment_bytes / 64 lines, and its tiles take about as
            // many steps each, so 4 / tiles lines per step cover the block ahead.
            let lines_per_step = 4usize.div_ceil(tiles.max(1));
            let (start, segment_bytes, segments) = if segment_bytes == row_bytes {
                // Whole rows: the weights ahead are one contiguous run.
                (
                    base + o * row_bytes + PREFETCH_AHEAD_BYTES,
                    4 * row_bytes,
                    1,
                )
            } else {
                // The same columns of the rows of a block far enough ahead.
                let blocks_ahead = PREFETCH_AHEAD_BYTES.div_ceil(4 * segment_bytes);
                let first = (o + 4 * blocks_ahead).min(out);
                let rows = (out - first).min(4);
                (
                    base + first * row_bytes + cols.start * size,
                    segment_bytes,
                    rows,
                )
            };
            let start = start.min(end_of_w);
            Self {
                next: start & !63,
                segment_start: start,
                segment_end: (start + segment_bytes).min(end_of_w),
                segment_bytes,
                stride: row_bytes,
                segments_left: segments.max(1) - 1,
                lines_per_step,
            }
        }

        /// Prefetches this step's lines into L1 (none once past the block or the weights).
        #[inline(always)]
        pub(in crate::kernels) fn step(&mut self) {
            for _ in 0..self.lines_per_step {
                if self.next >= self.segment_end {
                    if self.segments_left == 0 {
                        return;
                    }
                    // The next row's segment (segment mode only, so still inside w).
                    self.segments_left -= 1;
                    self.segment_start += self.stride;
                    self.segment_end = self.segment_start + self.segment_bytes;
                    self.next = self.segment_start & !63;
                }
                // SAFETY: a prefetch reads nothing and cannot fault; `next` is inside w.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(self.next as *const i8) };
                self.next += 64;
            }
        }
    }

    /// Bytes of input rows above which a product takes its columns in passes: a third of this
    /// core's 48 KiB L1, the rest being for the weight block and the lines prefetched. The
    /// 1536 -> 384 product per e5 pass (`streaming`): 4 rows (24 KiB) 1.09-1.15 ms in one
    /// pass, 0.86-0.87 in passes; 2 rows (12 KiB) 0.84-0.85 in one, 0.88-0.92 in passes.
    const INPUT_IN_L1_BYTES: usize = 16 * 1024;

    /// Bytes of a row per pass when the input rows are longer than `INPUT_IN_L1_BYTES`.
    ///
    /// Every block of four weight rows is multiplied by all the input rows; when those do not stay
    /// in L1 (the FFN's 1536 -> 384 product: 6 KiB a row), each block reloaded them from L2, and
    /// that product took 1.5-1.7x as long as the 384 -> 1536 one of the same size. In passes over
    /// at most 2 KiB of each row (512 fp32 columns, 3 passes at 1536), each adding its sums into y,
    /// the rows' slices stay in L1 across all the blocks. The products of an e5 pass, weights out
    /// of cache (`streaming`), 5 / 8 / 10 rows: 2.56-2.72 / 2.85-3.01 / 3.40-3.57 ms -> 2.35-2.41 /
    /// 2.45-2.55 / 2.95-3.13 ms. The forward pass, p50 ms, three alternating rounds of two builds:
    /// MiniLM-L6 at 7 / 10 tokens 1.18-1.26 / 1.69-1.79 -> 0.98-1.05 / 1.43-1.48; e5 at 5 / 10 / 17
    /// tokens 3.07-3.13 / 3.66-3.77 / 5.40-5.54 -> 2.36-2.53 / 2.98-3.04 / 4.66-4.77. Passes of 384
    /// columns gained a little less. The AVX2 and bf16 kernels take the same passes: AVX2
    /// (`KERNEL=avx2`, the same machine) 3.10-3.12 / 4.86-5.01 ms at 5 / 10 rows -> 2.75-2.89 /
    /// 4.25-4.26; bf16 e5 at 10 tokens 1.93-2.02 -> 1.67-1.75 ms.
    const PASS_MAX_BYTES: usize = 2048;

    /// The column ranges a product over `rows` input rows of `inp` values of `size` bytes is
    /// multiplied in: all at once when the rows fit in `INPUT_IN_L1_BYTES`, else passes of at
    /// most `PASS_MAX_BYTES` a row, each a whole number of 64-byte lines (so every pass starts
    /// at the same offset from a cache line). Passes after the first add into y.
    fn column_passes(
        rows: usize,
        inp: usize,
        size: usize,
    ) -> impl Iterator<Item = std::ops::Range<usize>> {
        let passes = if rows * inp * size > INPUT_IN_L1_BYTES {
            (inp * size).div_ceil(PASS_MAX_BYTES)
        } else {
            1
        };
        let width = inp.div_ceil(passes).next_multiple_of(64 / size);
        (0..inp)
            .step_by(width)
            .map(move |k| k..(k + width).min(inp))
    }

    /// Tiles of up to 4 input rows x 4 weight rows in 16-float registers: 16 accumulators,
    /// 4 + 4 loads per 16 FMAs, 24 of AVX-512's 32 registers. 6-row tiles (28 registers) ran
    /// batches at 570 names/s instead of 780 (MiniLM).
    ///
    /// SAFETY: AVX-512F present; shapes as `linear` asserts, inp % 16 == 0, out % 4 == 0.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn linear_avx512(
        x: &[f32],
        rows: usize,
        inp: usize,
        w: &[f32],
        b: &[f32],
        out: usize,
        y: &mut [f32],
    ) {
        for_each_tile(w, rows, inp, out, 4, |r, mr, o, cols, add, pf| {
            // SAFETY: every tile lies inside x, w, b and y (the caller's guarantee on the
            // shapes; `for_each_tile` keeps r + mr <= rows, o + 4 <= out, cols in 0..inp).
            unsafe {
                match mr {
                    4 => tile_avx512::<4>(x, r, inp, w, b, out, o, y, pf, cols, add),
                    3 => tile_avx512::<3>(x, r, inp, w, b, out, o, y, pf, cols, add),
                    2 => tile_avx512::<2>(x, r, inp, w, b, out, o, y, pf, cols, add),
                    _ => tile_avx512::<1>(x, r, inp, w, b, out, o, y, pf, cols, add),
                }
            }
        });
    }

    /// Calls `tile(r, mr, o, cols, add, prefetch)` for every tile of a product of `rows` input
    /// rows and w [out, inp] (out % 4 == 0): each pass over columns (`column_passes`, `add`
    /// after the first), each block of four weight rows (one `Prefetch` each), and the rows in
    /// tiles of `max_rows` (the last smaller). The in-place kernels differ only in their tiles.
    #[inline(always)]
    pub(in crate::kernels) fn for_each_tile<T>(
        w: &[T],
        rows: usize,
        inp: usize,
        out: usize,
        max_rows: usize,
        mut tile: impl FnMut(usize, usize, usize, std::ops::Range<usize>, bool, &mut Prefetch),
    ) {
        let tiles = rows.div_ceil(max_rows);
        for cols in column_passes(rows, inp, std::mem::size_of::<T>()) {
            let add = cols.start > 0;
            for o in (0..out).step_by(4) {
                let prefetch = &mut Prefetch::for_block(w, inp, out, o, cols.clone(), tiles);
                for r in (0..rows).step_by(max_rows) {
                    tile(r, (rows - r).min(max_rows), o, cols.clone(), add, prefetch);
                }
            }
        }
    }

    /// y[r..r+MR, o..o+4] from x rows r..r+MR and weight rows o..o+4 over columns `cols`
    /// (plus the bias), or added to y when `add`, prefetching on the way.
    ///
    /// SAFETY: x is [>= r + MR, inp], w is [>= o + 4, inp], y is [>= r + MR, out], b has
    /// >= o + 4 floats, cols lies in 0..inp, inp % 16 == 0.
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_avx512<const MR: usize>(
        x: &[f32],
        r: usize,
        inp: usize,
        w: &[f32],
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
            let n = cols.len();
            let mut acc = [[_mm512_setzero_ps(); 4]; MR];
            // Start at the weights' first 64-byte boundary so that no load straddles two cache
            // lines: safetensors data sits at an arbitrary offset (16 bytes past a line in the
            // e5 file, 24 in MiniLM's), and with every load split, copying the weights to an
            // aligned buffer made a MiniLM query 2.9 -> 2.2 ms. The floats before the
            // boundary and after the last full step go through masked loads.
            let lead = ((64 - pw as usize % 64) % 64 / 4).min(n);
            if lead > 0 {
                fma_step(&mut acc, px, pw, inp, 0, (1u16 << lead) - 1, prefetch);
            }
            let mut k = lead;
            while k + 16 <= n {
                fma_step(&mut acc, px, pw, inp, k, u16::MAX, prefetch);
                k += 16;
            }
            if k < n {
                fma_step(&mut acc, px, pw, inp, k, (1u16 << (n - k)) - 1, prefetch);
            }
            if add {
                add_tile(&acc, r, out, o, y);
            } else {
                store_tile(&acc, r, b, out, o, y);
            }
        }
    }

    /// y[r + i, o + j] += sum of acc[i][j]'s 16 lanes, for the MR x 4 tile.
    ///
    /// SAFETY: y is [>= r + MR, out].
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(in crate::kernels) unsafe fn add_tile<const MR: usize>(
        acc: &[[__m512; 4]; MR],
        r: usize,
        out: usize,
        o: usize,
        y: &mut [f32],
    ) {
        // SAFETY: the 4-float loads and stores lie inside y (the caller's guarantee).
        unsafe {
            for (i, acc) in acc.iter().enumerate() {
                let p = y.as_mut_ptr().add((r + i) * out + o);
                _mm_storeu_ps(p, _mm_add_ps(_mm_loadu_ps(p), tile_row_sums(acc)));
            }
        }
    }

    /// y[r + i, o + j] = sum of acc[i][j]'s 16 lanes + b[o + j], for the MR x 4 tile.
    ///
    /// SAFETY: y is [>= r + MR, out] and b has >= o + 4 floats.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(in crate::kernels) unsafe fn store_tile<const MR: usize>(
        acc: &[[__m512; 4]; MR],
        r: usize,
        b: &[f32],
        out: usize,
        o: usize,
        y: &mut [f32],
    ) {
        // SAFETY: the 4-float load and stores lie inside b and y (the caller's guarantee).
        unsafe {
            let bias = _mm_loadu_ps(b.as_ptr().add(o));
            for (i, acc) in acc.iter().enumerate() {
                _mm_storeu_ps(
                    y.as_mut_ptr().add((r + i) * out + o),
                    _mm_add_ps(tile_row_sums(acc), bias),
                );
            }
        }
    }

    /// The four 16-lane sums of one tile row.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn tile_row_sums(acc: &[__m512; 4]) -> __m128 {
        sum4([
            fold_halves(acc[0]),
            fold_halves(acc[1]),
            fold_halves(acc[2]),
            fold_halves(acc[3]),
        ])
    }

    /// acc[i][j] += x[r + i, k..k + 16] * w[o + j, k..k + 16] lane-wise, for the lanes in
    /// `mask` (others read as 0 and are not loaded).
    ///
    /// SAFETY: the masked lanes of the four weight rows at `pw` and of the MR input rows at
    /// `px` (rows `inp` floats apart) are readable.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn fma_step<const MR: usize>(
        acc: &mut [[__m512; 4]; MR],
        px: *const f32,
        pw: *const f32,
        inp: usize,
        k: usize,
        mask: u16,
        prefetch: &mut Prefetch,
    ) {
        unsafe {
            prefetch.step();
            let load = |p: *const f32| {
                if mask == u16::MAX {
                    _mm512_loadu_ps(p)
                } else {
                    _mm512_maskz_loadu_ps(mask, p)
                }
            };
            let wv = [
                load(pw.add(k)),
                load(pw.add(inp + k)),
                load(pw.add(2 * inp + k)),
                load(pw.add(3 * inp + k)),
            ];
            for (i, acc) in acc.iter_mut().enumerate() {
                let xv = load(px.add(i * inp + k));
                for (a, wv) in acc.iter_mut().zip(wv) {
                    *a = _mm512_fmadd_ps(xv, wv, *a);
                }
            }
        }
    }

    /// Tiles of up to 2 input rows x 4 weight rows in 8-float registers: 8 accumulators (as
    /// many as the FMA latency needs in flight), 4 weight + 2 input registers, of AVX2's 16.
    ///
    /// SAFETY: AVX2 and FMA present; shapes as `linear` asserts, inp % 8 == 0, out % 4 == 0.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn linear_avx2(
        x: &[f32],
        rows: usize,
        inp: usize,
        w: &[f32],
        b: &[f32],
        out: usize,
        y: &mut [f32],
    ) {
        for_each_tile(w, rows, inp, out, 2, |r, mr, o, cols, add, pf| {
            // SAFETY: every tile lies inside x, w, b and y (the caller's guarantee on the
            // shapes; `for_each_tile` keeps r + mr <= rows, o + 4 <= out, cols in 0..inp).
            unsafe {
                match mr {
                    2 => tile_avx2::<2>(x, r, inp, w, b, out, o, y, pf, cols, add),
                    _ => tile_avx2::<1>(x, r, inp, w, b, out, o, y, pf, cols, add),
                }
            }
        });
    }

    /// As `tile_avx512` with 8-float registers. SAFETY: as there, with inp % 8 == 0 and the
    /// columns' ends multiples of 8.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_avx2<const MR: usize>(
        x: &[f32],
        r: usize,
        inp: usize,
        w: &[f32],
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
            let mut acc = [[_mm256_setzero_ps(); 4]; MR];
            let mut k = 0;
            while k < cols.len() {
                if k % 16 == 0 {
                    // One 64-byte line of every row per two 8-float steps.
                    prefetch.step();
                }
                let wv = [
                    _mm256_loadu_ps(pw.add(k)),
                    _mm256_loadu_ps(pw.add(inp + k)),
                    _mm256_loadu_ps(pw.add(2 * inp + k)),
                    _mm256_loadu_ps(pw.add(3 * inp + k)),
                ];
                for (i, acc) in acc.iter_mut().enumerate() {
                    let xv = _mm256_loadu_ps(px.add(i * inp + k));
                    for (a, wv) in acc.iter_mut().zip(wv) {
                        *a = _mm256_fmadd_ps(xv, wv, *a);
                    }
                }
                k += 8;
            }
            // The bias with the first pass's sums, each later pass's sums added to them.
            let bias = _mm_loadu_ps(b.as_ptr().add(o));
            for (i, acc) in acc.iter().enumerate() {
                let p = y.as_mut_ptr().add((r + i) * out + o);
                let base = if add { _mm_loadu_ps(p) } else { bias };
                _mm_storeu_ps(p, _mm_add_ps(base, sum4(*acc)));
            }
        }
    }

    /// The low and high 8 floats of `v` added: a 16-float sum becomes an 8-float one.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn fold_halves(v: __m512) -> __m256 {
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        _mm256_add_ps(_mm512_castps512_ps256(v), hi)
    }

    /// [sum(a[0]), sum(a[1]), sum(a[2]), sum(a[3])] in 5 shuffles and adds rather than four
    /// separate horizontal sums.
    #[target_feature(enable = "avx")]
    #[inline]
    fn sum4(a: [__m256; 4]) -> __m128 {
        let h01 = _mm256_hadd_ps(a[0], a[1]);
        let h23 = _mm256_hadd_ps(a[2], a[3]);
        let h = _mm256_hadd_ps(h01, h23);
        _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::values;
    use super::*;

    fn naive(x: &[f32], rows: usize, inp: usize, w: &[f32], b: &[f32], out: usize) -> Vec<f32> {
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

    /// Row blocks and threads change where a row is computed, never how: the result equals one
    /// pass over all rows bit for bit, and the f64 reference closely.
    #[test]
    fn row_blocks_and_threads_change_nothing() {
        let (inp, out, rows) = (1536, 8, 200); // 84-row blocks at this width
        assert!(rows > ROW_BLOCK_FLOATS / inp);
        let (x, w, b) = (values(rows * inp, 4), values(out * inp, 5), values(out, 6));
        let (mut blocked, mut whole) = (vec![0f32; rows * out], vec![0f32; rows * out]);
        linear(&x, rows, inp, &w, &b, out, &mut blocked);
        linear_one_thread(&x, rows, inp, &w, &b, out, &mut whole);
        assert_eq!(blocked, whole);
        for (a, e) in blocked.iter().zip(naive(&x, rows, inp, &w, &b, out)) {
            assert!((a - e).abs() < 1e-4, "{a} vs {e}");
        }
    }

    /// The same for the packed kernel (batches): threads split the rows, and each output is
    /// computed the same way whichever tile it falls in.
    #[test]
    fn threads_change_nothing_in_packed_products() {
        let (inp, out, rows) = (384, 64, 203);
        if !super::super::linear_packed::applies(rows, inp, out) {
            return;
        }
        let (x, w, b) = (values(rows * inp, 4), values(out * inp, 5), values(out, 6));
        let (mut threaded, mut whole) = (vec![0f32; rows * out], vec![0f32; rows * out]);
        crate::threads::set_threads(2);
        linear(&x, rows, inp, &w, &b, out, &mut threaded);
        crate::threads::set_threads(1);
        super::super::linear_packed::linear_packed(&x, rows, inp, &w, &b, out, &mut whole);
        assert_eq!(threaded, whole);
        for (a, e) in threaded.iter().zip(naive(&x, rows, inp, &w, &b, out)) {
            assert!((a - e).abs() < 2e-6 * e.abs().max(10.0), "{a} vs {e}");
        }
    }

    /// Every kernel this CPU can run, on every tile remainder, against an f64 reference.
    #[test]
    fn every_path_matches_naive() {
        // (inp, out): odd shapes take the portable path, multiples of 8/16 the SIMD ones,
        // multiples of 32 outputs the packed one (inp 45: the packing's column remainder);
        // inputs of 1040 and 1536 floats take the AVX-512 kernel's column passes from 4 and 3
        // rows (1040: three passes, the last shorter).
        for (inp, out) in [
            (45, 13),
            (48, 12),
            (64, 20),
            (384, 8),
            (45, 32),
            (384, 64),
            (1040, 8),
            (1536, 4),
        ] {
            // Weights at every float offset from a cache line: the kernels' masked first and
            // last steps depend on it. 32 and more rows take the packed path in `linear`.
            for (rows, shift) in [1, 2, 3, 4, 5, 7, 8, 9, 33, 41]
                .into_iter()
                .zip((0..16).cycle())
            {
                let (x, b) = (values(rows * inp, 1), values(out, 3));
                let w_storage = values(out * inp + 16, 2);
                let w = &w_storage[shift..][..out * inp];
                let expected = naive(&x, rows, inp, w, &b, out);
                let mut paths: Vec<(&str, Vec<f32>)> = Vec::new();
                let mut run = |name, f: &dyn Fn(&mut [f32])| {
                    let mut y = vec![f32::NAN; rows * out];
                    f(&mut y);
                    paths.push((name, y));
                };
                run("linear", &|y| linear(&x, rows, inp, w, &b, out, y));
                run("portable", &|y| {
                    linear_portable(&x, rows, inp, w, &b, out, y)
                });
                run("one thread", &|y| {
                    linear_one_thread(&x, rows, inp, w, &b, out, y)
                });
                #[cfg(target_arch = "x86_64")]
                if out % 4 == 0 && inp % 16 == 0 && std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: feature checked, shapes as the kernel requires.
                    run("avx512", &|y| unsafe {
                        x86::linear_avx512(&x, rows, inp, w, &b, out, y)
                    });
                }
                #[cfg(target_arch = "x86_64")]
                if out % 32 == 0 && std::is_x86_feature_detected!("avx512f") {
                    run("packed", &|y| {
                        super::super::linear_packed::linear_packed(&x, rows, inp, w, &b, out, y)
                    });
                }
                #[cfg(target_arch = "x86_64")]
                if out % 4 == 0
                    && inp % 8 == 0
                    && std::is_x86_feature_detected!("avx2")
                    && std::is_x86_feature_detected!("fma")
                {
                    // SAFETY: features checked, shapes as the kernel requires.
                    run("avx2", &|y| unsafe {
                        x86::linear_avx2(&x, rows, inp, w, &b, out, y)
                    });
                }
                for (name, y) in &paths {
                    // The packed kernel sums over k in order, as sgemm does, and is up to
                    // ~1.2e-6 off relative (1.7e-5 at 13.9); the others' 16 partial sums stay
                    // within 1e-5, and 5e-7 relative for the long rows' sums of ~80 (AVX2:
                    // 3e-7 at 81.8).
                    let packed = *name == "packed"
                        || (*name == "linear"
                            && super::super::linear_packed::applies(rows, inp, out));
                    for (a, e) in y.iter().zip(&expected) {
                        let bound = if packed {
                            2e-6 * e.abs().max(10.0)
                        } else if inp >= 1024 {
                            (5e-7 * e.abs()).max(1e-5)
                        } else {
                            1e-5
                        };
                        assert!(
                            (a - e).abs() < bound,
                            "{name} {rows}x{inp}x{out}: {a} vs {e}"
                        );
                    }
                }
            }
        }
    }

    /// GFLOP/s of the in-place path (row blocks, as `linear` runs it) and the packed one by
    /// rows, one thread, for `linear_packed::PACKED_MIN_ROWS`:
    /// `RAYON_NUM_THREADS=1 cargo test --release -p embed-core --lib crossover -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn crossover() {
        use super::super::linear_packed::{applies, linear_packed};
        if !applies(640, 384, 384) {
            return;
        }
        for (inp, out) in [(384, 384), (384, 1536), (1536, 384)] {
            for rows in [8, 16, 24, 32, 48, 64, 128, 256, 640] {
                let (x, w, b) = (values(rows * inp, 1), values(out * inp, 2), values(out, 3));
                let mut y = vec![0f32; rows * out];
                let flops = 2.0 * (rows * inp * out) as f64;
                let reps = (2e9 / flops) as usize + 1;
                let mut best = [0f64; 2];
                for _ in 0..5 {
                    for (packed, best) in best.iter_mut().enumerate() {
                        let t = std::time::Instant::now();
                        for _ in 0..reps {
                            if packed == 1 {
                                linear_packed(&x, rows, inp, &w, &b, out, &mut y);
                            } else {
                                in_row_blocks(
                                    &x,
                                    rows,
                                    inp,
                                    out,
                                    &mut y,
                                    rows_per_block(inp),
                                    |x, rows, y| linear_one_thread(x, rows, inp, &w, &b, out, y),
                                );
                            }
                        }
                        *best = best.max(flops * reps as f64 / t.elapsed().as_secs_f64() / 1e9);
                    }
                }
                println!(
                    "{inp:>4} -> {out:>4}, {rows:>3} rows: in place {:.0}, packed {:.0} GFLOP/s",
                    best[0], best[1]
                );
            }
        }
    }

    /// ms and GB/s of the products of a 12-layer e5-shape pass by input rows, with the weights
    /// (85 MB) out of cache as a query finds them, GFLOP/s, and each kind of product's share:
    /// where streaming the weights and multiplying stop overlapping (`x86::Prefetch`,
    /// `x86::PASS_MAX_BYTES`). With `LAYERS=1` the same layer 12 times (from L3) for
    /// comparison; with `KERNEL=avx2` the AVX2 kernel instead of the best this CPU has:
    /// `RAYON_NUM_THREADS=1 cargo test --release -p embed-core --lib streaming -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn streaming() {
        let distinct: u32 = std::env::var("LAYERS").map_or(12, |v| v.parse().expect("LAYERS"));
        let avx2 = std::env::var("KERNEL").is_ok_and(|k| k == "avx2");
        let linear = |x: &[f32], rows, inp, w: &[f32], b: &[f32], out, y: &mut [f32]| {
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                assert!(
                    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
                );
                // SAFETY: features checked; the shapes are multiples of 8 and 4.
                return unsafe { x86::linear_avx2(x, rows, inp, w, b, out, y) };
            }
            linear(x, rows, inp, w, b, out, y)
        };
        let products = [
            (384, 384),
            (384, 384),
            (384, 384),
            (384, 384),
            (384, 1536),
            (1536, 384),
        ];
        let layers: Vec<Vec<(Vec<f32>, Vec<f32>)>> = (0..distinct)
            .map(|l| {
                let weights =
                    |&(inp, out): &(usize, usize)| (values(inp * out, 7 + l), values(out, 3));
                products.iter().map(weights).collect()
            })
            .collect();
        let bytes = 12.0 * 4.0 * products.iter().map(|(i, o)| i * o).sum::<usize>() as f64;
        for rows in [1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24] {
            let x = values(rows * 1536, 1);
            let mut y = vec![0f32; rows * 1536];
            let mut ms: Vec<f64> = (0..40)
                .map(|_| {
                    let t = std::time::Instant::now();
                    for layer in layers.iter().cycle().take(12) {
                        for (&(inp, out), (w, b)) in products.iter().zip(layer) {
                            linear(&x[..rows * inp], rows, inp, w, b, out, &mut y[..rows * out]);
                        }
                    }
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            ms.sort_by(f64::total_cmp);
            let p50 = ms[ms.len() / 2];
            // Each kind of product alone, summed over the 12 layers (mean of 20 passes).
            let mut each = [0f64; 6];
            for _ in 0..20 {
                for layer in layers.iter().cycle().take(12) {
                    for (e, (&(inp, out), (w, b))) in
                        each.iter_mut().zip(products.iter().zip(layer))
                    {
                        let t = std::time::Instant::now();
                        linear(&x[..rows * inp], rows, inp, w, b, out, &mut y[..rows * out]);
                        *e += t.elapsed().as_secs_f64() * 1e3 / 20.0;
                    }
                }
            }
            println!(
                "{rows:>2} rows: {p50:.2} ms, {:.1} GB/s, {:.0} GFLOP/s; q k v o / up / down: {:.2} {:.2} {:.2} {:.2} / {:.2} / {:.2} ms",
                bytes / p50 / 1e6,
                2.0 * rows as f64 * bytes / 4.0 / p50 / 1e6,
                each[0], each[1], each[2], each[3], each[4], each[5]
            );
        }
    }
}
