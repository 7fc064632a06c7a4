//! The repository itself: what is tracked, and the size limits the house keeps.

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
