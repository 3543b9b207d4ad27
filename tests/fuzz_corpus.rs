//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/*`, and
//! `fuzz/regressions/<target>/*` where present) through the same entry points the
//! cargo-fuzz targets call (`configurapi_runner_ws::fuzzing`), so every input the fuzzers
//! kept, and every crash they found, is checked by `cargo test`.

use std::fs;
use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.expect("corpus entry").path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// Runs every corpus (and regression) file of `target` through `f`. Fails when the
/// corpus directory is missing or empty: a replay of nothing would always pass.
fn replay(target: &str, f: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = files(&root.join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target} is missing or empty"
    );
    let regressions = files(&root.join("regressions").join(target));
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&regressions) {
        let data = fs::read(path).expect("read corpus file");
        if std::panic::catch_unwind(|| f(&data)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: these inputs fail: {failed:#?}"
    );
}

#[test]
fn frame_corpus() {
    replay("frame", configurapi_runner_ws::fuzzing::frame);
}

#[test]
fn upgrade_corpus() {
    replay("upgrade", configurapi_runner_ws::fuzzing::upgrade);
}

#[test]
fn mgmt_http_corpus() {
    replay("mgmt_http", configurapi_runner_ws::fuzzing::mgmt_http);
}

#[test]
fn message_corpus() {
    replay("message", configurapi_runner_ws::fuzzing::message);
}

#[test]
fn config_corpus() {
    replay("config", configurapi_runner_ws::fuzzing::config);
}
