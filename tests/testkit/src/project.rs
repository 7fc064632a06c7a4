//! The one throwaway project the CLI tests work in: a directory under the system temp dir
//! with `stacks/`, `templates/` (the shipped device policy template) and `certs/`, filled with
//! what each test writes or copies from the repository, removed when dropped (also when the
//! test panics); and the CLI run in it through `assert_cmd`.

use crate::pki::TestCa;
use crate::{unique, workspace_root};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

/// The device policy template every stage file uses unless it names another.
pub const POLICY_TEMPLATE: &str = "templates/device-policy.json.hbs";

/// A unique CloudFormation stack name from `prefix`: letters, digits and dashes only, at most
/// 40 characters, no trailing dash.
pub fn stack_name(prefix: &str) -> String {
    unique(prefix)
        .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        .chars()
        .take(40)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string()
}

/// A temporary project directory.
pub struct Project {
    pub dir: PathBuf,
}

/// Every file and directory under a project, with file contents (`None` for a directory).
pub type Tree = BTreeMap<PathBuf, Option<Vec<u8>>>;

impl Project {
    /// A fresh project named after `prefix`, holding the repository's device policy template.
    pub fn new(prefix: &str) -> Project {
        let name = unique(prefix).replace(|c: char| !c.is_ascii_alphanumeric(), "-");
        let p = Project {
            dir: std::env::temp_dir().join(name),
        };
        for sub in ["stacks", "templates", "certs"] {
            std::fs::create_dir_all(p.dir.join(sub)).unwrap();
        }
        p.copy_from_repo(POLICY_TEMPLATE);
        p
    }

    /// Copies `rel` (e.g. `certs/dev-ca.pem`) from the repository to the same place here.
    pub fn copy_from_repo(&self, rel: &str) -> &Project {
        let to = self.path(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(workspace_root().join(rel), &to)
            .unwrap_or_else(|e| panic!("copy {rel} into the test project: {e}"));
        self
    }

    /// Writes `text` to `rel`, creating its directory.
    pub fn write(&self, rel: &str, text: impl AsRef<[u8]>) -> &Project {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    /// Writes `stacks/<name>.yaml`.
    pub fn stage(&self, name: &str, yaml: &str) -> &Project {
        self.write(&format!("stacks/{name}.yaml"), yaml)
    }

    /// `rel` inside the project.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// The project directory as a command-line argument.
    pub fn arg(&self) -> String {
        self.dir.to_str().expect("UTF-8 temp dir").to_string()
    }

    /// The CLI binary `bin` (an integration test's `env!("CARGO_BIN_EXE_jitr-infra")`),
    /// run in the project directory.
    pub fn cli(&self, bin: impl AsRef<Path>) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(bin.as_ref());
        cmd.current_dir(&self.dir);
        cmd
    }

    /// A fresh test CA named after `name`, its certificate written to `certs/ca.pem`.
    pub fn new_ca(&self, name: &str) -> TestCa {
        let ca = TestCa::new(&unique(name));
        self.write("certs/ca.pem", &ca.pem);
        ca
    }

    /// The CLI binary `bin` with `--project <dir> args`, set to run against AWS at `endpoint`
    /// as CI runs it: a cleared environment with only `cli_env`, the AWS settings for
    /// `endpoint`, `HOME` (the project) and `CI=true`; stdin empty and closed.
    pub fn aws_cli(
        &self,
        bin: impl AsRef<Path>,
        args: &[&str],
        endpoint: &str,
    ) -> assert_cmd::Command {
        let mut cmd = self.cli(bin);
        cmd.arg("--project").arg(&self.dir).args(args);
        cmd.env_clear()
            .envs(crate::cli_env())
            .envs(crate::aws_env(endpoint))
            .env("HOME", &self.dir)
            .env("CI", "true");
        cmd.write_stdin("");
        cmd
    }

    /// [`Project::aws_cli`] run to its end.
    pub fn run_aws(&self, bin: impl AsRef<Path>, args: &[&str], endpoint: &str) -> Output {
        self.aws_cli(bin, args, endpoint).output().unwrap()
    }

    /// [`Project::run_aws`] and the process's wall time (for benchmarks).
    pub fn run_aws_timed(
        &self,
        bin: impl AsRef<Path>,
        args: &[&str],
        endpoint: &str,
    ) -> (Output, std::time::Duration) {
        let mut cmd = self.aws_cli(bin, args, endpoint);
        let start = std::time::Instant::now();
        let out = cmd.output().unwrap();
        (out, start.elapsed())
    }

    /// `deploy --stage <stage> --require-approval never --json` against `endpoint`; asserts
    /// it succeeded and returns the JSON outcome.
    pub fn deploy(&self, bin: impl AsRef<Path>, stage: &str, endpoint: &str) -> Value {
        let args = [
            "deploy",
            "--stage",
            stage,
            "--require-approval",
            "never",
            "--json",
        ];
        let o = self.run_aws(bin, &args, endpoint);
        assert!(o.status.success(), "{}", crate::jitr::output_text(&o));
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "deploy printed no JSON ({e}): {}",
                crate::jitr::output_text(&o)
            )
        })
    }

    /// Every file and directory under the project, with file contents.
    pub fn tree(&self) -> Tree {
        fn walk(root: &Path, dir: &Path, into: &mut Tree) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                if path.is_dir() {
                    into.insert(rel, None);
                    walk(root, &path, into);
                } else {
                    into.insert(rel, Some(std::fs::read(&path).unwrap()));
                }
            }
        }
        let mut map = BTreeMap::new();
        walk(&self.dir, &self.dir, &mut map);
        map
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
