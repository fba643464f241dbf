//! Helpers shared by otter-format's integration tests: the corpus, the Python
//! oracles (esptool in the project venv) and small utilities.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[path = "../../../../tests/support/paths.rs"]
mod paths;
pub use paths::*;

/// The files directly in `corpus/<sub>` whose names end with `suffix`,
/// sorted. Panics when there are none.
pub fn corpus_files(sub: &str, suffix: &str) -> Vec<PathBuf> {
    let dir = corpus().join(sub);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no {suffix} files in {}", dir.display());
    v
}

/// A corpus file's bytes, by path relative to the corpus root.
pub fn corpus_bytes(rel: &str) -> Vec<u8> {
    let p = corpus().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("corpus file {}: {e}", p.display()))
}

/// Every `.bin` under `corpus/<sub>`, sorted.
pub fn corpus_bins(sub: &str) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).expect("reading corpus dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "bin") {
                out.push(p);
            }
        }
    }
    let mut v = Vec::new();
    walk(&corpus().join(sub), &mut v);
    v.sort();
    assert!(!v.is_empty(), "no .bin files under corpus/{sub}");
    v
}

/// Path of a script in `tests/oracle/`.
pub fn oracle_script(name: &str) -> PathBuf {
    let p = workspace_root().join("tests/oracle").join(name);
    assert!(p.is_file(), "oracle script missing: {}", p.display());
    p
}

/// Runs `python args...` with `stdin`, returning stdout; panics with stderr on failure.
pub fn run_python(args: &[&std::ffi::OsStr], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(python())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("writing to python");
    let out = child.wait_with_output().expect("waiting for python");
    assert!(
        out.status.success(),
        "python {:?} failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// esptool's view of images, via tests/oracle/esptool_image.py.
pub fn esptool_describe(files: &[PathBuf]) -> Vec<serde_json::Value> {
    let script = oracle_script("esptool_image.py");
    let mut args: Vec<&std::ffi::OsStr> = vec![script.as_os_str()];
    args.extend(files.iter().map(|p| p.as_os_str()));
    let out = run_python(&args, b"");
    serde_json::from_slice(&out).expect("oracle JSON")
}

/// Lowercase hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
