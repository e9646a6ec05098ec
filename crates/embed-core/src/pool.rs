//! Token embeddings -> one sentence embedding (sentence-transformers' Pooling and Normalize).
//!
//! Works on plain slices so it is testable without a model. Token states come packed: row `r`'s
//! `lengths[r]` tokens follow row `r - 1`'s, with no padding between them.

use crate::config::PoolingMode;

/// `hidden` is `[sum of lengths, hidden_size]`. Several modes are concatenated in the order
/// given, as sentence-transformers does.
pub fn pool(
    hidden: &[f32],
    hidden_size: usize,
    lengths: &[usize],
    modes: &[PoolingMode],
) -> Vec<Vec<f32>> {
    assert_eq!(
        hidden.len(),
        lengths.iter().sum::<usize>() * hidden_size,
        "hidden state shape"
    );
    let mut start = 0;
    lengths
        .iter()
        .map(|&len| {
            let tokens = &hidden[start * hidden_size..][..len * hidden_size];
            start += len;
            let mut out = Vec::with_capacity(hidden_size * modes.len());
            for mode in modes {
                match mode {
                    PoolingMode::Cls => {
                        out.extend_from_slice(&tokens[..hidden_size.min(tokens.len())])
                    }
                    PoolingMode::Max => out.extend(max_over_tokens(tokens, hidden_size)),
                    PoolingMode::Mean => {
                        // sentence-transformers clamps the token count at 1e-9 against empty rows.
                        let n = (len as f32).max(1e-9);
                        out.extend(
                            sum_over_tokens(tokens, hidden_size)
                                .into_iter()
                                .map(|s| s / n),
                        );
                    }
                    PoolingMode::MeanSqrtLen => {
                        let n = (len as f32).max(1e-9).sqrt();
                        out.extend(
                            sum_over_tokens(tokens, hidden_size)
                                .into_iter()
                                .map(|s| s / n),
                        );
                    }
                }
            }
            out
        })
        .collect()
}

fn sum_over_tokens(tokens: &[f32], hidden_size: usize) -> Vec<f32> {
    let mut sum = vec![0f32; hidden_size];
    for token in tokens.chunks_exact(hidden_size) {
        for (s, x) in sum.iter_mut().zip(token) {
            *s += x;
        }
    }
    sum
}

fn max_over_tokens(tokens: &[f32], hidden_size: usize) -> Vec<f32> {
    // sentence-transformers sets masked positions to -1e9 before taking the max.
    let mut max = vec![-1e9f32; hidden_size];
    for token in tokens.chunks_exact(hidden_size) {
        for (m, x) in max.iter_mut().zip(token) {
            *m = m.max(*x);
        }
    }
    max
}

/// In-place L2 normalisation, `x / max(‖x‖, 1e-12)` like torch.nn.functional.normalize.
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt()
        .max(1e-12);
    for x in v.iter_mut() {
        *x = (f64::from(*x) / norm) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two rows of hidden size 2, packed: three tokens, then two.
    const HIDDEN: [f32; 10] = [1., 2., 3., 4., 5., 6., /* row 1 */ 2., 0., 4., -2.];

    #[test]
    fn mean_over_each_rows_own_tokens() {
        let out = pool(&HIDDEN, 2, &[3, 2], &[PoolingMode::Mean]);
        assert_eq!(out, vec![vec![3., 4.], vec![3., -1.]]);
    }

    #[test]
    fn cls_max_and_concatenation() {
        let out = pool(&HIDDEN, 2, &[3, 2], &[PoolingMode::Cls, PoolingMode::Max]);
        assert_eq!(out, vec![vec![1., 2., 5., 6.], vec![2., 0., 4., 0.]]);
    }

    #[test]
    fn mean_sqrt_len() {
        let out = pool(&HIDDEN, 2, &[3, 2], &[PoolingMode::MeanSqrtLen]);
        let s = 2f32.sqrt();
        assert_eq!(out[1], vec![6. / s, -2. / s]);
    }

    #[test]
    fn normalize_gives_unit_norm_and_keeps_zero() {
        let mut v = vec![3., 4.];
        l2_normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut zero = vec![0f32; 4];
        l2_normalize(&mut zero);
        assert_eq!(zero, vec![0.; 4]);
    }
}
