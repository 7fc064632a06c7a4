//! The diff's replacement data (crates/cfn/data/create-only.json) agrees with the
//! CloudFormation resource schemas of the cfn-lint the test venv installs: runs
//! `scripts/gen-create-only --check` with the venv's python.

use std::path::Path;
use std::process::Command;

#[test]
fn vendored_create_only_lists_agree_with_cfn_lint() {
    let venv = std::env::var("JITR_VENV").expect(
        "JITR_VENV is not set: run the suite with scripts/test (it sets JITR_VENV to the venv \
         with the pinned cfn-lint)",
    );
    let python = Path::new(&venv).join("bin/python");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(&python)
        .arg(root.join("scripts/gen-create-only"))
        .arg("--check")
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "crates/cfn/data/create-only.json disagrees with cfn-lint's schemas:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
