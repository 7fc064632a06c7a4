//! What the Lambda build reads from the workspace, and a digest of it.
//!
//! cargo decides freshness by file times, and it does not look at the times of files under
//! its own home: a workspace checked out there (`cargo install --git` does that) would reuse
//! a shared target directory's Lambdas built from other sources. The build therefore hands
//! the Lambda crates a digest of their sources ([`DIGEST_ENV`], read by `jitr-contract`,
//! which every Lambda crate depends on), and cargo rebuilds them whenever it changes.

use super::{io, BundleError};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The variable the Lambda build sets to [`digest`]; `jitr-contract` reads it at compile
/// time, so a change of the sources is a change of the crates' inputs.
pub const DIGEST_ENV: &str = "JITR_LAMBDA_SOURCE_DIGEST";

/// What the Lambda build reads from the workspace, relative to its root: a build script
/// reruns it when one of these changes (cargo decides what then recompiles).
pub const INPUTS: &[&str] = &[
    "lambdas",
    "Cargo.toml",
    "Cargo.lock",
    "rust-toolchain.toml",
    ".cargo/config.toml",
];

/// A digest of [`INPUTS`] under `root`: sorted relative paths and contents (`target`,
/// hidden entries and `tests` directories left out: they do not change the binaries).
pub fn digest(root: &Path) -> Result<String, BundleError> {
    let mut files = Vec::new();
    for input in INPUTS {
        let path = root.join(input);
        if path.is_dir() {
            collect_files(&path, &mut files)?;
        } else if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut hasher = Sha256::new();
    for path in files {
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let contents = std::fs::read(&path).map_err(io(&path))?;
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update((contents.len() as u64).to_le_bytes());
        hasher.update(&contents);
    }
    Ok(super::hex(&hasher.finalize()))
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), BundleError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        let kind = entry.file_type().map_err(io(&path))?;
        if kind.is_dir() {
            if name == "tests" {
                continue;
            }
            collect_files(&path, out)?;
        } else if kind.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_follows_the_contents_not_the_times() {
        let root = std::env::temp_dir().join(format!("jitr-digest-{}", std::process::id()));
        let src = root.join("lambdas/activator/src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(root.join("lambdas/activator/tests")).unwrap();
        std::fs::write(root.join("Cargo.toml"), "[workspace]\n").unwrap();
        std::fs::write(src.join("main.rs"), "fn main() {}\n").unwrap();
        let first = digest(&root).unwrap();
        std::fs::write(src.join("main.rs"), "fn main() {}\n").unwrap();
        std::fs::write(root.join("lambdas/activator/tests/t.rs"), "// a test\n").unwrap();
        assert_eq!(
            digest(&root).unwrap(),
            first,
            "same contents, tests ignored"
        );
        std::fs::write(src.join("main.rs"), "fn main() { println!(); }\n").unwrap();
        assert_ne!(digest(&root).unwrap(), first);
        let _ = std::fs::remove_dir_all(&root);
    }
}
