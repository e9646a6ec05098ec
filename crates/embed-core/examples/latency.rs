//! In-process latency of one short query and batch throughput, for the fast forward pass and
//! candle's BertModel side by side (no PostgreSQL). Run with optimisation:
//!
//!   cargo run --release -p embed-core --example latency -- MODEL_DIR [REPEATS] [tsv]
//!
//! With `tsv` it prints `backend load_ms p50_ms p95_ms texts_per_s worst_cosine` lines for
//! scripts; worst_cosine compares each backend's vectors for the names with the fp32 pass's.
//! RAYON_NUM_THREADS=1 (the extension's default) is set unless already set.

use std::path::PathBuf;
use std::time::Instant;

use embed_core::{Backend, Embedder};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: latency MODEL_DIR [REPEATS]"));
    let repeats: usize = args.next().map_or(200, |r| r.parse().expect("repeats"));
    let tsv = args.next().as_deref() == Some("tsv");
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    let threads: usize = std::env::var("RAYON_NUM_THREADS")
        .unwrap()
        .parse()
        .expect("RAYON_NUM_THREADS");
    embed_core::threads::set_threads(threads);
    let names: Vec<String> = include_str!("../../../demo/recipes.txt")
        .lines()
        .map(str::to_owned)
        .collect();
    let batch: Vec<&str> = names.iter().map(String::as_str).collect();
    println!(
        "model {}, threads {}",
        dir.display(),
        std::env::var("RAYON_NUM_THREADS").unwrap()
    );
    println!(
        "| backend | load ms | '갈비탕' p50 ms | p95 ms | batch of {} names/s (chunks of 32) | worst cosine to fp32 |",
        batch.len()
    );
    println!("|---|---|---|---|---|---|");
    let mut fp32: Option<Vec<Vec<f32>>> = None;
    for backend in [Backend::Fast, Backend::FastBf16, Backend::Candle] {
        let started = Instant::now();
        let embedder = Embedder::load_with(&dir, backend).expect("load");
        let load_ms = started.elapsed().as_secs_f64() * 1e3;
        embedder.embed("warm up", true).unwrap();
        let mut times: Vec<f64> = (0..repeats)
            .map(|_| {
                let t = Instant::now();
                embedder.embed("갈비탕", true).unwrap();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let t = Instant::now();
        let vectors = embedder.embed_many(&batch, true, 32, || {}).unwrap();
        let per_s = batch.len() as f64 / t.elapsed().as_secs_f64();
        let fp32 = fp32.get_or_insert(vectors.clone());
        let worst = vectors
            .iter()
            .zip(fp32.iter())
            .map(|(a, b)| {
                a.iter()
                    .zip(b)
                    .map(|(x, y)| f64::from(*x) * f64::from(*y))
                    .sum()
            })
            .fold(1.0f64, f64::min);
        let (backend, p50, p95) = (
            embedder.info().backend,
            percentile(&times, 0.5),
            percentile(&times, 0.95),
        );
        if tsv {
            println!("{backend}\t{load_ms:.1}\t{p50:.3}\t{p95:.3}\t{per_s:.1}\t{worst:.6}");
        } else {
            println!(
                "| {backend} | {load_ms:.0} | {p50:.2} | {p95:.2} | {per_s:.0} | {worst:.6} |"
            );
        }
    }
}
