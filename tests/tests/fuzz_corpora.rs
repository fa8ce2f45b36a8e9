//! Replays every committed fuzz corpus (`node/fuzz/corpus/TARGET/*`) through the same
//! harness the libFuzzer targets run (`node/fuzz/harness.rs`), on the stable toolchain: an
//! input that once found a crash, and every input that reached new code, is checked again on
//! every CI run. Fuzzing itself (`cargo +nightly fuzz run TARGET`) is in `node/fuzz/README.md`.

#[path = "../../node/fuzz/harness.rs"]
mod harness;

use std::path::Path;

#[test]
fn every_fuzz_corpus_replays_without_a_finding() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../node/fuzz/corpus");
    let mut total = 0;
    for target in harness::TARGETS {
        let dir = root.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no corpus for {target} at {}: {e}", dir.display()))
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "the corpus of {target} is empty");
        for file in &files {
            let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let replay = std::panic::catch_unwind(|| harness::run(target, &data));
            assert!(replay.is_ok(), "{target}: {} is a finding", file.display());
        }
        total += files.len();
    }
    assert!(total > 0);
}

/// Writes the seed inputs into the corpora (run once by hand when a target is added:
/// `cargo test -p cercle-tests --test fuzz_corpora -- --ignored write_seeds`).
#[test]
#[ignore = "writes into the source tree"]
fn write_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../node/fuzz/corpus");
    for (target, bytes) in harness::seeds() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let name = format!("seed-{}", &content_name(&bytes)[..16]);
        std::fs::write(dir.join(name), &bytes).unwrap_or_else(|e| panic!("{target}: {e}"));
    }
}

fn content_name(bytes: &[u8]) -> String {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    format!("{:016x}{:016x}", h.finish(), bytes.len())
}
