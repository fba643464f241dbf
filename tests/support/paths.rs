//! Where the tests of every crate find the workspace, the shared corpus and
//! the project-local Python with the oracles. Included by path from each
//! crate's test helpers (`crates/*/tests/*/mod.rs`), which sit two levels
//! below the workspace root.

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate sits two levels below the workspace root")
        .to_path_buf()
}

/// The shared corpus of real third-party files: `$OTTER_CORPUS`, else
/// `../shared/corpus` beside the workspace. Panics loudly when missing: tests
/// that need it must not pass quietly without it.
pub fn corpus() -> PathBuf {
    let dir = match std::env::var_os("OTTER_CORPUS") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join("../shared/corpus"),
    };
    assert!(
        dir.join("README.md").is_file(),
        "the test corpus is missing at {} (set OTTER_CORPUS to its folder)",
        dir.display()
    );
    dir
}

/// A file in the corpus, by path relative to the corpus root.
pub fn corpus_file(rel: &str) -> PathBuf {
    let p = corpus().join(rel);
    assert!(p.is_file(), "corpus file missing: {}", p.display());
    p
}

/// The project-local Python with the oracles installed
/// (`scripts/setup-oracles.sh`; `$OTTER_PYTHON` overrides). Panics loudly
/// when it is missing.
pub fn python() -> PathBuf {
    let py = match std::env::var_os("OTTER_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join(".venv/bin/python"),
    };
    assert!(
        py.is_file(),
        "the Python oracles are not installed at {}: run scripts/setup-oracles.sh (scripts/test.sh does)",
        py.display()
    );
    py
}
