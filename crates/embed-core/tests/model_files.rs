//! File operations on a loaded model's folder, and damaged model files.
//!
//! A loaded embedder maps private snapshots (snapshot.rs), so whatever happens to the user's
//! files afterwards, it keeps embedding with the weights it loaded, says the files changed, and
//! a new load reads the new files or fails with an error naming the file. A damaged file is an
//! error at load, never a crash. Each case runs in a copy of all-MiniLM-L6-v2 (90 MB) of its own.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use embed_core::{Backend, EmbedError, Embedder, LoadOptions};

fn models_dir() -> PathBuf {
    std::env::var_os("UHOK_EMBED_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/postgresql/15/uhok_embed/models"))
}

/// A fresh copy of a test model and a snapshot folder of its own, removed on drop.
struct Scratch {
    root: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Self {
        let root =
            std::env::temp_dir().join(format!("embed-core-files-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        copy_dir(&models_dir().join("all-MiniLM-L6-v2"), &root.join("model"));
        // Old enough to be indexed (snapshot.rs skips files changed in the last 2 s).
        Self { root }
    }
    fn model(&self) -> PathBuf {
        self.root.join("model")
    }
    fn options(&self) -> LoadOptions {
        LoadOptions {
            backend: Backend::Fast,
            snapshot_dir: self.root.join("snapshots"),
        }
    }
    fn load(&self) -> Result<Embedder, EmbedError> {
        Embedder::load_from(&self.model(), &self.options())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::set_permissions(
            self.model().join("model.safetensors"),
            fs::Permissions::from_mode(0o644),
        );
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let path = fs::canonicalize(entry.path()).unwrap();
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            fs::copy(&path, &target).unwrap();
        }
    }
}

/// Overwrites `path` in place the way `cp` does: same inode, truncated, then written.
fn cp_over(path: &Path, content: &[u8]) {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.write_all(content).unwrap();
}

const TEXT: &str = "kimchi stew";

#[test]
fn a_loaded_model_survives_every_file_operation_on_its_folder() {
    let s = Scratch::new("ops");
    let embedder = s.load().unwrap();
    let expected = embedder.embed(TEXT, true).unwrap();
    let version = embedder.version().unwrap();
    assert!(!embedder.files_changed());
    let weights = s.model().join("model.safetensors");
    let tokenizer = s.model().join("tokenizer.json");
    let original = fs::read(&weights).unwrap();

    let mut ops: Vec<(&str, Box<dyn Fn()>)> = vec![
        (
            "cp of other bytes over the weights",
            Box::new(|| cp_over(&weights, &original[..original.len() / 3])),
        ),
        (
            "truncate the weights to 0",
            Box::new(|| cp_over(&weights, b"")),
        ),
        (
            "half-copied weights",
            Box::new(|| cp_over(&weights, &original[..original.len() / 2])),
        ),
        (
            "weights back, then chmod 000",
            Box::new(|| {
                cp_over(&weights, &original);
                fs::set_permissions(&weights, fs::Permissions::from_mode(0o000)).unwrap();
            }),
        ),
        (
            "delete the weights",
            Box::new(|| {
                fs::set_permissions(&weights, fs::Permissions::from_mode(0o644)).unwrap();
                fs::remove_file(&weights).unwrap();
            }),
        ),
        (
            "replace the weights by rename",
            Box::new(|| {
                let tmp = s.root.join("new.safetensors");
                fs::write(&tmp, &original).unwrap();
                fs::rename(&tmp, &weights).unwrap();
            }),
        ),
        (
            "truncate the tokenizer in place",
            Box::new(|| cp_over(&tokenizer, b"{")),
        ),
    ];
    for (what, op) in ops.drain(..) {
        op();
        assert!(embedder.files_changed(), "{what}: not noticed");
        let got = embedder.embed(TEXT, true).unwrap();
        assert_eq!(got, expected, "{what}: the loaded model changed");
        assert_eq!(
            embedder.version().unwrap(),
            version,
            "{what}: the version changed"
        );
        // A new load sees the new files: an error that names one of them, or a model.
        if let Err(e) = s.load() {
            let path = e.path().expect("the error names a file").to_owned();
            assert!(path.starts_with(s.model()), "{what}: {e}");
        }
    }
}

#[test]
fn a_new_model_copied_over_the_old_is_a_new_version() {
    let s = Scratch::new("newversion");
    let old = s.load().unwrap();
    let weights = s.model().join("model.safetensors");
    let mut bytes = fs::read(&weights).unwrap();
    // Change one weight (the last byte of the file is inside the last tensor).
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    cp_over(&weights, &bytes);
    let new = s.load().unwrap();
    assert_ne!(new.version().unwrap(), old.version().unwrap());
    assert!(old.files_changed() && !new.files_changed());
    // sha256sum of the new file starts with the digits the version shows.
    let hex = new
        .version()
        .unwrap()
        .rsplit('@')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(hex.len(), 16);
}

/// A folder named through a symlink (`$sharedir/uhok_embed/model -> models/<name>`): pointing
/// the link at another model, at any level of the path, is a change; the old embedder keeps its
/// model and a new load names the new folder.
#[test]
fn a_symlink_switched_to_another_model_is_a_change() {
    let s = Scratch::new("symlink");
    copy_dir(&s.model(), &s.root.join("other"));
    let link = s.root.join("current");
    std::os::unix::fs::symlink("model", &link).unwrap();
    let options = s.options();
    let old = Embedder::load_from(&link, &options).unwrap();
    assert_eq!(old.name(), "model");
    assert!(!old.files_changed());

    // Switched atomically, as install-models.sh does: a new link renamed over the old one.
    let staged = s.root.join("current.new");
    std::os::unix::fs::symlink("other", &staged).unwrap();
    fs::rename(&staged, &link).unwrap();
    assert!(old.files_changed(), "the link's new target was not noticed");
    let new = Embedder::load_from(&link, &options).unwrap();
    assert_eq!(new.name(), "other");
    assert!(!new.files_changed());
    // Same weights, another folder: the version names the folder.
    assert_ne!(new.version().unwrap(), old.version().unwrap());

    // A link higher up the path (a parent folder that is a symlink) counts as well.
    let parent = s.root.join("parent");
    std::os::unix::fs::symlink(&s.root, &parent).unwrap();
    let through_parent = Embedder::load_from(&parent.join("model"), &options).unwrap();
    fs::remove_file(&parent).unwrap();
    std::os::unix::fs::symlink(s.root.join("other-root"), &parent).unwrap();
    fs::create_dir_all(s.root.join("other-root")).unwrap();
    std::os::unix::fs::symlink(s.root.join("other"), s.root.join("other-root/model")).unwrap();
    assert!(
        through_parent.files_changed(),
        "a parent link's new target was not noticed"
    );

    // A dangling link is a change too (the next load reports the missing folder).
    fs::remove_dir_all(s.root.join("other")).unwrap();
    assert!(new.files_changed());
    assert!(Embedder::load_from(&link, &options).is_err());
}

/// A bf16 copy of the model runs the fast forward pass from one fp32 copy in the snapshot store
/// (widen.rs), written by the first load and found by the next, with candle's vectors and the
/// source's version; before, it fell back to candle's private, padded pass.
#[test]
fn a_bf16_model_runs_the_fast_pass_from_one_widened_copy() {
    let s = Scratch::new("bf16");
    let fp32 = s.load().unwrap();
    let weights = s.model().join("model.safetensors");
    let bytes = fs::read(&weights).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    // Rounded to nearest even, as torch's .to(torch.bfloat16) does.
    let narrowed: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = tensors
        .tensors()
        .into_iter()
        .map(|(name, t)| {
            if t.dtype() != safetensors::Dtype::F32 {
                return (name, t.dtype(), t.shape().to_vec(), t.data().to_vec());
                // position_ids
            }
            let data = t
                .data()
                .chunks_exact(4)
                .flat_map(|c| {
                    let bits = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    let rounded = (bits + 0x7fff + ((bits >> 16) & 1)) >> 16;
                    (rounded as u16).to_le_bytes()
                })
                .collect();
            (name, safetensors::Dtype::BF16, t.shape().to_vec(), data)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = narrowed
        .iter()
        .map(|(name, dtype, shape, data)| {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap();
            (name.clone(), view)
        })
        .collect();
    drop(tensors);
    safetensors::serialize_to_file(views, None, &weights).unwrap();

    let fast = s.load().unwrap();
    assert_eq!(fast.info().backend, "fast");
    let widened = || -> Vec<(PathBuf, u64)> {
        fs::read_dir(s.root.join("snapshots"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".fp32"))
            .map(|e| {
                (
                    e.path(),
                    std::os::unix::fs::MetadataExt::ino(&e.metadata().unwrap()),
                )
            })
            .collect()
    };
    let first = widened();
    assert_eq!(first.len(), 1, "{first:?}");
    let again = s.load().unwrap();
    assert_eq!(widened(), first, "widened a second time");
    let candle = Embedder::load_from(
        &s.model(),
        &LoadOptions {
            backend: Backend::Candle,
            ..s.options()
        },
    )
    .unwrap();
    assert_eq!(fast.version().unwrap(), candle.version().unwrap());
    for text in [
        TEXT,
        "beef short rib soup",
        "a longer sentence about a chocolate cake",
    ] {
        let v = fast.embed(text, true).unwrap();
        assert_eq!(v, again.embed(text, true).unwrap());
        let c = candle.embed(text, true).unwrap();
        let diff = v
            .iter()
            .zip(&c)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff <= 1e-5, "{text}: fast vs candle {diff}");
        // bf16 weights move the vector a little from the fp32 model's.
        let e = fp32.embed(text, true).unwrap();
        let cosine: f32 = v.iter().zip(&e).map(|(a, b)| a * b).sum();
        assert!(cosine > 0.99, "{text}: cosine to fp32 {cosine}");
    }
}

/// Flipped and truncated bytes in every file of the folder: the load returns (Ok or an error
/// naming the folder's file), and a model that loads embeds without a crash.
#[test]
fn damaged_model_files_are_errors_not_crashes() {
    let s = Scratch::new("damage");
    let files = [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "sentence_bert_config.json",
        "modules.json",
        "1_Pooling/config.json",
    ];
    let mut state = 0x9e37_79b9_u32;
    let mut next = |n: usize| {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 8) as usize % n.max(1)
    };
    let (mut errors, mut loads) = (0, 0);
    for file in files {
        let path = s.model().join(file);
        let good = fs::read(&path).unwrap();
        // Damage within the first 64 KiB: headers and JSON structure, where parsing happens.
        let span = good.len().min(64 << 10);
        let mut cases: Vec<Vec<u8>> = Vec::new();
        for cut in [0, 1, 7, 8, 9, span / 3, span / 2, good.len() - 1] {
            cases.push(good[..cut.min(good.len())].to_vec());
        }
        for _ in 0..12 {
            let mut bad = good.clone();
            for _ in 0..1 + next(4) {
                let i = next(span);
                bad[i] ^= 1 << next(8);
            }
            cases.push(bad);
        }
        for bad in cases {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&path)
                .unwrap();
            f.write_all(&bad).unwrap();
            f.seek(SeekFrom::Start(0)).unwrap();
            match s.load() {
                Ok(embedder) => {
                    loads += 1;
                    let _ = embedder.embed(TEXT, true);
                }
                Err(e) => {
                    errors += 1;
                    let _ = e.to_string();
                }
            }
        }
        cp_over(&path, &good);
    }
    println!("damaged files: {errors} errors, {loads} loads, no crash");
    assert!(errors > 0);
}
