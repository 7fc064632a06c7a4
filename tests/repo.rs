//! The repository itself: what is tracked, the size limits the house keeps, and one feature
//! set for the CLI's dependencies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn git(args: &[&str]) -> Option<std::process::Output> {
    let output = Command::new("git")
        .args(args)
        .current_dir(root())
        .output()
        .ok()?;
    // Outside a git checkout (a source tarball) there is nothing to check.
    output.status.success().then_some(output)
}

#[test]
fn no_build_output_is_tracked_and_synth_output_is_ignored() {
    let Some(tracked) = git(&["ls-files", "--", "jitr.out", "target"]) else {
        eprintln!("not a git checkout: skipped");
        return;
    };
    let tracked = String::from_utf8_lossy(&tracked.stdout);
    assert!(
        tracked.trim().is_empty(),
        "build output is tracked by git:\n{tracked}"
    );
    for path in ["jitr.out/dev/manifest.json", "jitr.out/prod/asset.x.zip"] {
        assert!(
            git(&["check-ignore", "--no-index", "-q", path]).is_some(),
            "{path} is not ignored by .gitignore"
        );
    }
}

#[test]
fn no_function_over_80_lines_and_no_file_over_600_outside_tests() {
    let output = Command::new("python3")
        .arg(root().join("scripts/sizes"))
        .arg("--check")
        .output()
        .expect("python3 runs scripts/sizes");
    let report = String::from_utf8_lossy(&output.stdout);
    let problems = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{report}{problems}");
}

/// Every package and feature set `cargo tree` reports for `args`: "name vX" -> features.
fn feature_sets(args: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["tree", "--locked", "--offline", "--prefix", "none"])
        .args(["--format", "{p}|{f}"])
        .args(args)
        .current_dir(root())
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut sets = BTreeMap::<String, BTreeSet<String>>::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some((package, features)) = line.split_once('|') else {
            continue;
        };
        // "name v1.2.3 (/path) (*)" -> "name v1.2.3"
        let id: Vec<&str> = package.split_whitespace().take(2).collect();
        let features = features.trim_end_matches(" (*)").to_string();
        sets.entry(id.join(" ")).or_default().insert(features);
    }
    sets
}

/// `cargo build`/`cargo install` and `cargo test --workspace` compile the CLI's dependencies
/// with the same features, so the suite reuses a user's build (and `tests/install.rs`'s
/// `cargo install` reuses the suite's): a feature that differs recompiles the AWS SDK.
#[test]
fn the_cli_build_and_the_test_build_ask_for_the_same_features() {
    let cli = feature_sets(&["-p", "jitr-infra", "-e", "normal,build"]);
    let tests = feature_sets(&["--workspace", "-e", "normal,build,dev"]);
    let differing: Vec<String> = cli
        .iter()
        .filter_map(|(package, features)| {
            let theirs = tests.get(package)?;
            (theirs != features).then(|| format!("{package}: {features:?} vs {theirs:?}"))
        })
        .collect();
    assert!(
        differing.is_empty(),
        "the test build turns on features the CLI's build does not; add them to the CLI's \
         one-feature-set block in Cargo.toml:\n{}",
        differing.join("\n")
    );
}
