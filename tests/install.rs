//! The install paths the README documents: `cargo install --locked --path .` from a checkout,
//! and `cargo install --locked --git URL jitr-infra` (a local clone stands in for the git
//! host: none is reachable here). Both install with `--debug` into the suite's own target
//! directory, so they reuse the suite's build (one feature set: `tests/repo.rs`) and the
//! Lambda build (`target/lambda`); the README's install is the same command in release.
//!
//! What is checked: the installed binary runs on its own and embeds the very Lambdas this
//! checkout builds (the digests `--version` prints): a build from another directory gives
//! the same bytes; and a build after a change to a Lambda's source embeds the changed Lambda.

use std::path::{Path, PathBuf};
use std::process::Command;
use testkit::jitr::output_text as text;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The suite's target directory (integration tests get `<target>/tmp`).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR has a parent")
        .to_path_buf()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jitr-install-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.env("CARGO_TARGET_DIR", target_dir())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    cmd
}

/// `--version` of `binary`, run with a `PATH` that holds no Rust toolchain.
fn version_of(binary: &Path) -> String {
    let o = Command::new(binary)
        .arg("--version")
        .env_clear()
        .envs(testkit::cli_env())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

/// The suite's own binary. `cargo install` of a git source *moves* the binary it built out of
/// the target directory, and with the suite's target directory that is the very file the
/// other tests run; [`keeping_ours`] puts it back, and both hold this lock.
fn ours() -> String {
    let _guard = lock();
    version_of(Path::new(env!("CARGO_BIN_EXE_jitr-infra")))
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `f` and then restores the suite's `jitr-infra` binary, whatever `f` did to it.
fn keeping_ours<T>(f: impl FnOnce() -> T) -> T {
    let _guard = lock();
    let bin = Path::new(env!("CARGO_BIN_EXE_jitr-infra"));
    let saved = bin.with_file_name(format!("jitr-infra.saved-{}", std::process::id()));
    std::fs::copy(bin, &saved).unwrap();
    let result = f();
    std::fs::rename(&saved, bin).unwrap();
    result
}

#[test]
fn version_names_the_embedded_lambdas() {
    let version = ours();
    assert!(
        version.starts_with(&format!("jitr-infra {}\n", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    for e in &jitr_infra::assets::EMBEDDED {
        assert!(
            version.contains(&format!("  {} {}\n", e.package, e.sha256)),
            "{version}"
        );
    }
}

#[test]
fn cargo_install_from_the_checkout() {
    let dir = scratch("path");
    let o = keeping_ours(|| {
        cargo()
            .args(["install", "--locked", "--debug", "--path"])
            .arg(root())
            .arg("--root")
            .arg(&dir)
            .output()
            .unwrap()
    });
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(version_of(&dir.join("bin/jitr-infra")), ours());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The clone is of HEAD: with uncommitted changes the Lambdas may differ from this build's.
fn checkout_is_clean() -> bool {
    Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(root())
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.is_empty())
}

/// `cargo install --locked --debug --git file://CLONE jitr-infra` into `root`; its `--version`.
fn install_from_git(clone: &Path, root: &Path) -> String {
    let url = format!("file://{}", clone.display());
    let o = keeping_ours(|| {
        cargo()
            .args([
                "install",
                "--locked",
                "--debug",
                "--force",
                "--git",
                &url,
                "jitr-infra",
            ])
            .arg("--root")
            .arg(root)
            .output()
            .unwrap()
    });
    assert!(o.status.success(), "{}", text(&o));
    version_of(&root.join("bin/jitr-infra"))
}

fn git(dir: &Path, args: &[&str]) {
    let o = Command::new("git")
        .args([
            "-c",
            "user.name=jitr-test",
            "-c",
            "user.email=jitr-test@example.invalid",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {}", text(&o));
}

/// The digest `--version` names for `package`.
fn digest(version: &str, package: &str) -> String {
    version
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{package} ")))
        .unwrap_or_else(|| panic!("{package} in {version}"))
        .to_string()
}

#[test]
fn cargo_install_from_a_git_clone_and_again_after_a_lambda_change() {
    if !root().join(".git").exists() {
        eprintln!("not a git checkout: nothing to clone");
        return;
    }
    let dir = scratch("git");
    let clone = dir.join("jitr-infra");
    git(
        &dir,
        &[
            "clone",
            "--quiet",
            "--no-hardlinks",
            &root().display().to_string(),
            "jitr-infra",
        ],
    );
    let installed = install_from_git(&clone, &dir.join("root"));
    if checkout_is_clean() {
        assert_eq!(
            installed,
            ours(),
            "a build from another directory must embed byte-identical Lambdas"
        );
    } else {
        eprintln!("uncommitted changes: the clone (HEAD) is not compared with this build");
    }

    // A change to the activator's source: the next build embeds a new activator, and the
    // same CA provider.
    let main = clone.join("lambdas/activator/src/main.rs");
    let source = std::fs::read_to_string(&main).unwrap();
    let edited = source.replace(
        "\"activator cannot start\"",
        "\"activator cannot start (edited)\"",
    );
    assert_ne!(
        edited,
        source,
        "the message to edit is in {}",
        main.display()
    );
    std::fs::write(&main, edited).unwrap();
    git(&clone, &["commit", "--quiet", "-am", "edit the activator"]);
    let again = install_from_git(&clone, &dir.join("root"));
    assert_ne!(
        digest(&again, "jitr-activator"),
        digest(&installed, "jitr-activator"),
        "the activator's source changed: {again}"
    );
    assert_eq!(
        digest(&again, "jitr-ca-provider"),
        digest(&installed, "jitr-ca-provider")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
