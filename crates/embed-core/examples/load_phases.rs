//! Where a model load spends its time, phase by phase, load after load (what a new backend's
//! first call pays without preloading). Run with optimisation:
//!
//!   cargo run --release -p embed-core --example load_phases -- MODEL_DIR [LOADS] [SNAPSHOT_DIR]
//!
//! The first load into an empty snapshot folder copies the mapped files there (snapshot.rs);
//! later loads find the copies through the index. SNAPSHOT_DIR defaults to a new folder under
//! the temporary directory, removed at the end.

use std::path::PathBuf;
use std::time::Instant;

use embed_core::config::{ModelFiles, PipelineConfig};
use embed_core::model::Encoder;
use embed_core::tokenize::TextTokenizer;
use embed_core::{snapshot, Backend};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .expect("usage: load_phases MODEL_DIR [LOADS] [SNAPSHOT_DIR]"),
    );
    let loads: usize = args.next().map_or(10, |n| n.parse().expect("LOADS"));
    let (store, remove) = match args.next() {
        Some(s) => (PathBuf::from(s), false),
        None => (
            std::env::temp_dir().join(format!("load-phases-{}", std::process::id())),
            true,
        ),
    };
    println!("load  config  tokenizer_snapshot  tokenizer_parse  weights_snapshot  weights_check  total (ms)");
    for n in 1..=loads {
        let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
        let all = Instant::now();
        let t = Instant::now();
        let dir = dir.canonicalize().expect("model folder");
        let files = ModelFiles::in_dir(&dir).expect("files");
        let pipeline = PipelineConfig::read(&files).expect("config");
        let config = ms(t);
        let t = Instant::now();
        let tok_snap = snapshot::snapshot(&files.tokenizer, &store, &mut || {}).expect("snapshot");
        let tok_snapshot = ms(t);
        let t = Instant::now();
        let tokenizer =
            TextTokenizer::load(&files.tokenizer, &tok_snap, &pipeline, &store, &mut || {})
                .expect("tokenizer");
        let tok_parse = ms(t);
        let t = Instant::now();
        let w_snap = snapshot::snapshot(&files.weights, &store, &mut || {}).expect("snapshot");
        let w_snapshot = ms(t);
        let t = Instant::now();
        let encoder =
            Encoder::load(&files.weights, &w_snap, &pipeline.bert, Backend::Fast).expect("weights");
        let w_check = ms(t);
        println!(
            "{n:4}  {config:6.1}  {tok_snapshot:18.1}  {tok_parse:15.1}  {w_snapshot:16.1}  {w_check:13.1}  {:5.1}",
            ms(all)
        );
        drop((tokenizer, encoder));
    }
    if remove {
        let _ = std::fs::remove_dir_all(&store);
    }
}
