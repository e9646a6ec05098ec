//! Entry points for the fuzz targets in crates/embed-core/fuzz (feature `fuzzing` only): each
//! takes arbitrary bytes where a model folder's reader or the tokenizer takes a file or a text,
//! and must return (Ok or an error), never panic, abort or read out of bounds.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_transformers::models::bert::Config as BertConfig;

use crate::config::{ModelFiles, PipelineConfig};
use crate::snapshot::Snapshot;
use crate::tokenize::{python_strip, TextTokenizer};
use crate::Result;

/// For a target's init: libFuzzer's panic hook aborts on every panic, even one the loader
/// catches and turns into an error on purpose (tokenize.rs's no_panic around tokenizers); this
/// hook lets those unwind and still aborts on every other.
pub fn install_panic_hook() {
    let abort = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !crate::tokenize::CATCHING_PANICS.get() {
            abort(info);
        }
    }));
}

/// A folder of this process's own for the files a target writes.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("embed-core-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
        dir
    })
}

fn write(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(bytes).unwrap();
}

/// Maps `bytes` written to a scratch file (no snapshot: the target owns the file).
fn mapped(name: &str, bytes: &[u8]) -> memmap2::Mmap {
    let path = scratch().join(name);
    write(&path, bytes);
    let file = std::fs::File::open(&path).unwrap();
    // SAFETY: a scratch file of this process that nothing else writes while it is mapped.
    unsafe { memmap2::Mmap::map(&file) }.unwrap()
}

/// The configuration of the tiny model the weights target loads (tests/fuzz seeds fit it).
pub const TINY_CONFIG: &str = r#"{"vocab_size": 16, "hidden_size": 8, "num_hidden_layers": 1,
 "num_attention_heads": 2, "intermediate_size": 16, "hidden_act": "gelu",
 "max_position_embeddings": 8, "type_vocab_size": 1, "layer_norm_eps": 1e-12,
 "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02,
 "pad_token_id": 0, "position_embedding_type": "absolute", "model_type": "bert"}"#;

/// model.safetensors: the fast pass's loader (header, shapes, alignment), then a forward pass.
pub fn weights(bytes: &[u8]) -> Result<()> {
    let config: BertConfig = serde_json::from_str(TINY_CONFIG).unwrap();
    let path = scratch().join("model.safetensors");
    let map = mapped("model.safetensors", bytes);
    if let Some(bert) = crate::bert::FastBert::load(&path, map, &config, false)? {
        let ids = [1u32, 5, 2];
        bert.forward(&crate::bert::PackedTokens {
            ids: &ids,
            lengths: &[3],
        })?;
    }
    Ok(())
}

/// tokenizer.json: the compact Unigram reader, else tokenizers' own (the loader's own parse,
/// panics turned into errors); then a few texts through a tokenizer built from it.
pub fn tokenizer_json(bytes: &[u8]) -> Result<()> {
    let path = scratch().join("tokenizer.json");
    write(&path, bytes);
    let map = || {
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: a scratch file of this process that nothing else writes while it is mapped.
        Ok(unsafe { memmap2::Mmap::map(&file) }.unwrap())
    };
    if let Ok(inner) = crate::tokenize::parse(&map) {
        if let Ok(t) = TextTokenizer::from_inner(inner, 16, false, None) {
            for text in ["갈비탕", "", "a b  c", "<s>x</s>"] {
                let _ = t.encode(text);
            }
        }
    }
    Ok(())
}

/// One of the JSON configuration files, chosen by the first byte, the others valid.
pub fn config_file(bytes: &[u8]) -> Result<()> {
    let Some((&which, content)) = bytes.split_first() else {
        return Ok(());
    };
    let dir = scratch();
    let files = [
        ("config.json", TINY_CONFIG),
        (
            "sentence_bert_config.json",
            r#"{"max_seq_length": 8, "do_lower_case": false}"#,
        ),
        (
            "modules.json",
            r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#,
        ),
        (
            "1_Pooling/config.json",
            r#"{"word_embedding_dimension": 8, "pooling_mode_mean_tokens": true}"#,
        ),
        (
            "config_sentence_transformers.json",
            r#"{"prompts": {"query": "query: "}, "default_prompt_name": null}"#,
        ),
    ];
    let chosen = usize::from(which) % files.len();
    for (i, (name, good)) in files.iter().enumerate() {
        write(
            &dir.join(name),
            if i == chosen {
                content
            } else {
                good.as_bytes()
            },
        );
    }
    write(&dir.join("tokenizer.json"), b"");
    write(&dir.join("model.safetensors"), b"");
    PipelineConfig::read(&ModelFiles::in_dir(dir)?)?;
    Ok(())
}

/// The two test models' tokenizers (UHOK_EMBED_TEST_MODELS, as the tests), loaded once.
fn real_tokenizers() -> &'static [TextTokenizer] {
    static LOADED: OnceLock<Vec<TextTokenizer>> = OnceLock::new();
    LOADED.get_or_init(|| {
        let models = std::env::var_os("UHOK_EMBED_TEST_MODELS")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/usr/share/postgresql/15/uhok_embed/models".into());
        let store = crate::LoadOptions::new(crate::Backend::Fast).snapshot_dir;
        ["all-MiniLM-L6-v2", "multilingual-e5-small-fixture"]
            .iter()
            .map(|m| {
                let files = ModelFiles::in_dir(&models.join(m))
                    .expect("test model (run scripts/install-models.sh)");
                let pipeline = PipelineConfig::read(&files).unwrap();
                let snapshot: Snapshot =
                    crate::snapshot::snapshot(&files.tokenizer, &store, &mut || {}).unwrap();
                TextTokenizer::load(&files.tokenizer, &snapshot, &pipeline, &store, &mut || {})
                    .unwrap()
            })
            .collect()
    })
}

/// Any text: tokenized from a prefix it gives exactly the whole text's tokens (tokenize.rs).
/// The first byte sets how far the text is repeated: up to ~48 KiB, past the first windows
/// (8 KiB for MiniLM's 256 tokens, 16 KiB for e5's 512) and their cuts.
pub fn tokenize(bytes: &[u8]) {
    let Some((&repeat, text)) = bytes.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(text);
    let times = (1 + usize::from(repeat) * 4)
        .min(48 * 1024 / text.len().max(1))
        .max(1);
    let text = text.repeat(times);
    for t in real_tokenizers() {
        let kept = t.encode(&text);
        let whole = t
            .encode_prepared(python_strip(&text))
            .map(|e| e.get_ids().to_vec());
        match (kept, whole) {
            (Ok(kept), Ok(whole)) => assert_eq!(kept, whole, "prefix tokens differ for {text:?}"),
            (kept, whole) => assert_eq!(kept.is_ok(), whole.is_ok()),
        }
    }
}
