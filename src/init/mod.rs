//! `jitr-infra init [DIR]`: scaffolds a working project in an empty directory (or one holding
//! only `.git`): the `dev` stage, a fresh development CA (key mode 0600), the device policy
//! template, a `.gitignore` and the CI workflow. Everything is rendered in memory first; the
//! writes come last, through the same writer as `ca create` ([`pki::write_new_files`]: each
//! file created new, never overwriting, all or none), and a failed write removes the
//! directories this run made.

mod name;

pub use name::{sanitize, RegionSource, DEFAULT_REGION, STAGE};

use crate::pki::{self, CaSpec, KeyAlgorithm, NewFile, PkiError, WriteError};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The stage file `init` writes.
pub const STAGE_FILE: &str = "stacks/dev.yaml";
/// The development CA's certificate and key.
pub const CA_CERTIFICATE: &str = "certs/dev-ca.pem";
pub const CA_KEY: &str = "certs/dev-ca.key";
/// The device policy template (the same as the one this repository ships).
pub const POLICY_TEMPLATE: &str = crate::stage::DEFAULT_POLICY_TEMPLATE;
pub const GITIGNORE: &str = ".gitignore";
pub const WORKFLOW: &str = ".github/workflows/jitr-infra.yml";
/// How long the development CA is valid.
pub const CA_DAYS: u32 = 730;

const STAGE_TEXT: &str = include_str!("dev.yaml");
const POLICY_TEXT: &str = include_str!("../../templates/device-policy.json.hbs");
const GITIGNORE_TEXT: &str = include_str!("gitignore");
/// The CI recipe (the README's "CI" section says the same).
pub const WORKFLOW_TEXT: &str = include_str!("workflow.yml");

/// How many of a non-empty directory's entries the refusal names.
const LISTED: usize = 5;

/// Why `init` did nothing (or undid what it did).
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(
        "{}: not empty (holds {}{}); init writes only into an empty directory (or one \
         holding only .git) and changed nothing",
        .dir.display(), .entries.join(", "), and_more(*.more)
    )]
    NotEmpty {
        dir: PathBuf,
        entries: Vec<String>,
        more: usize,
    },
    #[error("{}: not a directory; init changed nothing", .0.display())]
    NotADirectory(PathBuf),
    #[error(
        "{origin} {name:?} cannot be made a CloudFormation stack name (a letter, then \
         letters, digits and hyphens); give the project a name with --name NAME"
    )]
    BadName { name: String, origin: String },
    #[error(
        "region {region:?} ({origin}) is not an AWS region name (like eu-west-1); pass \
         --region REGION"
    )]
    BadRegion {
        region: String,
        origin: &'static str,
    },
    #[error("{0}")]
    Pki(#[from] PkiError),
    #[error("{}: {source}; init removed what it had written", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}; init removed the directories it had made")]
    Files(WriteError),
}

fn and_more(n: usize) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" and {n} more")
    }
}

/// What to scaffold.
#[derive(Debug, Clone)]
pub struct Options {
    pub dir: PathBuf,
    /// `--name`; else the directory's name.
    pub name: Option<String>,
    /// `--region`; else the environment's, else [`DEFAULT_REGION`].
    pub region: Option<String>,
}

/// One file to write: its path relative to the directory, contents and mode.
pub struct Planned {
    pub path: &'static str,
    pub contents: String,
    pub mode: u32,
}

/// Everything `init` will write, rendered.
pub struct Plan {
    pub name: String,
    pub stack_name: String,
    pub region: String,
    pub region_source: RegionSource,
    pub files: Vec<Planned>,
}

/// What `init` made.
#[derive(Debug, Clone)]
pub struct Report {
    /// The directory, absolute.
    pub dir: PathBuf,
    pub name: String,
    pub stack_name: String,
    pub region: String,
    pub region_source: RegionSource,
    /// Each file made (relative to `dir`) and its mode, in the order written.
    pub created: Vec<(String, u32)>,
}

/// Scaffolds the project: checks the directory, renders every file, then writes them.
pub fn init(opts: &Options) -> Result<Report, InitError> {
    let dir = absolute(&opts.dir)?;
    check_empty(&dir)?;
    let (raw, origin) = match &opts.name {
        Some(n) => (n.clone(), "--name"),
        None => (dir_name(&dir), "the directory name"),
    };
    let name = sanitize(&raw, origin)?;
    let (region, region_source) = name::region(opts.region.as_deref(), |k| std::env::var(k).ok())?;
    let plan = render(&name, &region, region_source)?;
    let created = write(&dir, &plan.files)?;
    Ok(Report {
        dir,
        name: plan.name,
        stack_name: plan.stack_name,
        region: plan.region,
        region_source: plan.region_source,
        created,
    })
}

/// Renders every file in memory, making the development CA.
pub fn render(name: &str, region: &str, region_source: RegionSource) -> Result<Plan, InitError> {
    let stack_name = format!("{name}-{STAGE}");
    let ca = pki::make_ca(
        &CaSpec::new(
            KeyAlgorithm::EcP256,
            format!("{name} development CA"),
            CA_DAYS,
        )
        .organization(name),
    )?;
    let stage = STAGE_TEXT
        .replace("@STACK_NAME@", &stack_name)
        .replace("@REGION@", region)
        .replace("@PROJECT@", name);
    let workflow = WORKFLOW_TEXT
        .replace("@JITR_INFRA_VERSION@", env!("CARGO_PKG_VERSION"))
        .replace("@REGION@", region);
    let file = |path, contents: String, mode| Planned {
        path,
        contents,
        mode,
    };
    Ok(Plan {
        name: name.to_string(),
        stack_name,
        region: region.to_string(),
        region_source,
        files: vec![
            file(STAGE_FILE, stage, 0o644),
            file(CA_CERTIFICATE, ca.cert_pem, 0o644),
            file(CA_KEY, ca.key_pem, 0o600),
            file(POLICY_TEMPLATE, POLICY_TEXT.to_string(), 0o644),
            file(GITIGNORE, GITIGNORE_TEXT.to_string(), 0o644),
            file(WORKFLOW, workflow, 0o644),
        ],
    })
}

fn absolute(dir: &Path) -> Result<PathBuf, InitError> {
    let abs = if dir.exists() {
        dir.canonicalize()
    } else {
        std::path::absolute(dir)
    };
    abs.map_err(|source| InitError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A missing directory is fine (init makes it), and so is one holding only `.git`.
fn check_empty(dir: &Path) -> Result<(), InitError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) if dir.exists() && !dir.is_dir() => {
            return Err(InitError::NotADirectory(dir.to_path_buf()))
        }
        Err(source) => {
            return Err(InitError::Write {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut found: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".git")
        .collect();
    if found.is_empty() {
        return Ok(());
    }
    found.sort();
    let more = found.len().saturating_sub(LISTED);
    found.truncate(LISTED);
    Err(InitError::NotEmpty {
        dir: dir.to_path_buf(),
        entries: found,
        more,
    })
}

/// The directories this run made, to remove if the write fails.
#[derive(Default)]
struct Made {
    dirs: Vec<PathBuf>,
}

impl Made {
    /// Makes `dir` and its missing ancestors, recording each.
    fn dir_all(&mut self, dir: &Path) -> std::io::Result<()> {
        let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
        for d in missing.into_iter().rev() {
            std::fs::create_dir(d)?;
            self.dirs.push(d.to_path_buf());
        }
        Ok(())
    }

    /// Removes the directories, newest first.
    fn undo(self) {
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Makes the directories, then writes every file or none; on failure removes the
/// directories it made and reports the failure.
fn write(dir: &Path, files: &[Planned]) -> Result<Vec<(String, u32)>, InitError> {
    let mut made = Made::default();
    let new: Vec<NewFile<'_>> = files
        .iter()
        .map(|f| NewFile {
            path: dir.join(f.path),
            contents: f.contents.as_bytes(),
            mode: f.mode,
        })
        .collect();
    for f in &new {
        let parent = f.path.parent().unwrap_or(dir);
        if let Err(source) = made.dir_all(parent) {
            made.undo();
            return Err(InitError::Write {
                path: parent.to_path_buf(),
                source,
            });
        }
    }
    if let Err(e) = pki::write_new_files(&new) {
        made.undo();
        return Err(InitError::Files(e));
    }
    let mode = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.permissions().mode() & 0o7777);
    Ok(files
        .iter()
        .zip(&new)
        .map(|(f, n)| (f.path.to_string(), mode(&n.path)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("jitr-init-unit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn the_rendered_stage_and_workflow_parse() {
        let plan = render("acme", "eu-west-1", RegionSource::Flag).unwrap();
        let stage = &plan.files[0];
        assert_eq!(stage.path, STAGE_FILE);
        let raw: crate::stage::StageFile = serde_yaml::from_str(&stage.contents).unwrap();
        assert_eq!(raw.stack_name, "acme-dev");
        assert_eq!(raw.region.as_deref(), Some("eu-west-1"));
        assert_eq!(raw.tags["project"], "acme");
        let crate::stage::CaField::One(ca) = &raw.ca else {
            panic!("init writes one CA")
        };
        assert_eq!(ca.certificate, CA_CERTIFICATE);
        assert_eq!(raw.device_policy.template, POLICY_TEMPLATE);
        let wf = plan.files.iter().find(|f| f.path == WORKFLOW).unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&wf.contents).unwrap();
        assert_eq!(
            v["env"]["JITR_INFRA_VERSION"].as_str(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        for f in &plan.files {
            for placeholder in [
                "@STACK_NAME@",
                "@REGION@",
                "@PROJECT@",
                "@JITR_INFRA_VERSION@",
            ] {
                assert!(
                    !f.contents.contains(placeholder),
                    "{}: {placeholder}",
                    f.path
                );
            }
        }
        let key = plan.files.iter().find(|f| f.path == CA_KEY).unwrap();
        assert_eq!(key.mode, 0o600);
    }

    #[test]
    fn a_failed_write_removes_what_the_run_made() {
        let dir = temp("undo");
        // The second file needs "a" to be a directory, but the first made it a file.
        let files = [
            Planned {
                path: "sub/a",
                contents: "x".into(),
                mode: 0o644,
            },
            Planned {
                path: "sub/a/b",
                contents: "y".into(),
                mode: 0o644,
            },
        ];
        let e = write(&dir, &files).unwrap_err();
        assert!(e.to_string().contains("sub/a"), "{e}");
        assert!(!dir.exists(), "the directory this run made is gone too");

        std::fs::create_dir(&dir).unwrap();
        write(&dir, &files).unwrap_err();
        assert!(dir.exists(), "a directory that was there stays");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "and is empty");
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn only_an_empty_directory_or_a_git_checkout_is_accepted() {
        let dir = temp("empty");
        check_empty(&dir).unwrap();
        std::fs::create_dir_all(dir.join(".git")).unwrap();
        check_empty(&dir).unwrap();
        for n in 0..7 {
            std::fs::write(dir.join(format!("f{n}")), "").unwrap();
        }
        let e = check_empty(&dir).unwrap_err().to_string();
        assert!(e.contains("f0, f1, f2, f3, f4 and 2 more"), "{e}");
        assert!(e.contains("(holds f0,"), "{e}");
        let file = dir.join("f0");
        assert!(matches!(
            check_empty(&file),
            Err(InitError::NotADirectory(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
