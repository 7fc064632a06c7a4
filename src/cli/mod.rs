//! The command line. clap's low arguments ([`Cli`]) are resolved once into the high ones
//! ([`Args`]: project root, stage, output mode, AWS profile and region, the command's own
//! options); each command is one function in [`commands`]. Every byte of output goes through
//! the writers passed to [`run`] (see [`console::Console`]), so tests capture it; `main` only
//! maps the result to an exit code.

pub mod certs;
pub mod commands;
pub mod console;
mod low;
mod targets;

pub use low::{CaCommand, Cli, Command, DeviceCommand, KeyType, SmokeArgs};

use crate::deploy::{Options, RequireApproval};
use crate::error::Error;
use crate::stage::{self, DEFAULT_STAGE};
use console::Console;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How results are written on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Text for people; progress on stderr.
    Text,
    /// One JSON document per command (README "JSON output"); no progress on stderr.
    Json,
}

/// The command line, resolved: everything a command needs, decided once.
#[derive(Debug, Clone)]
pub struct Args {
    /// The project root (holding `stacks/`); unchecked for `schema`, which needs none, and
    /// `init`'s directory, which it makes.
    pub root: PathBuf,
    /// The stage the command is about (`dev` unless `--stage`).
    pub stage: String,
    pub output: OutputMode,
    /// `--profile`; otherwise the standard AWS chain decides.
    pub profile: Option<String>,
    /// `--region`; otherwise the stage's region (a one-target stage only).
    pub region: Option<String>,
    /// `--target`: the stage's targets to work on (empty: all).
    pub targets: Vec<String>,
    /// `--concurrency`: how many targets at once.
    pub concurrency: usize,
    pub action: Action,
}

/// What to do, with the options of that command only.
#[derive(Debug, Clone)]
pub enum Action {
    Schema,
    Init { dir: PathBuf, name: Option<String> },
    List,
    Synth { out: Option<PathBuf> },
    Validate { all: bool },
    Diff,
    Deploy(DeployArgs),
    Destroy { yes: bool, detach_devices: bool },
    Status { max_pages: u32 },
    Redrive(crate::ops::redrive::Options),
    CaCreate(certs::CaCreate),
    CaInspect { file: PathBuf },
    DeviceIssue(certs::DeviceIssue),
    Smoke(crate::smoke::Options),
    Revoke(crate::ops::revoke_find::Options),
}

#[derive(Debug, Clone)]
pub struct DeployArgs {
    pub require_approval: RequireApproval,
    pub execute: bool,
    pub outputs_file: Option<PathBuf>,
}

impl Args {
    /// Resolves the parsed command line: the project root is checked (except for `schema`),
    /// defaults are applied.
    pub fn resolve(cli: Cli) -> Result<Args, Error> {
        let (stage, action) = stage_and_action(cli.command, cli.project.as_ref());
        let root = match &action {
            // The CA commands read and write the files they are given; no project needed.
            Action::Schema | Action::CaCreate(_) | Action::CaInspect { .. } => {
                cli.project.unwrap_or_default()
            }
            // init makes the project; it needs none.
            Action::Init { dir, .. } => dir.clone(),
            _ => project_root(cli.project.as_deref())?,
        };
        Ok(Args {
            root,
            stage,
            output: if cli.json {
                OutputMode::Json
            } else {
                OutputMode::Text
            },
            profile: cli.profile,
            region: cli.region,
            targets: cli.targets,
            concurrency: usize::from(cli.concurrency),
            action,
        })
    }

    pub fn json(&self) -> bool {
        self.output == OutputMode::Json
    }

    /// The stage's targets this run works on: every target, or those `--target` picks. For
    /// a one-target stage `--region` overrides its region (as it always has); a stage with
    /// `targets:` refuses `--region`.
    pub fn stage_targets(&self, st: &stage::Stage) -> Result<Vec<stage::Target>, Error> {
        if st.lists_targets() {
            if let Some(r) = &self.region {
                return Err(Error::Usage(format!(
                    "--region {r}: stage {} lists its targets ({}); pick some with --target \
                     REGION[/ACCOUNT] instead (--region overrides the region of a one-target \
                     stage only)",
                    st.name,
                    st.target_labels()
                )));
            }
        }
        let mut picked = st.select_targets(&self.targets).map_err(Error::Usage)?;
        if let (Some(region), [one]) = (&self.region, picked.as_mut_slice()) {
            one.region = region.clone();
            one.partition = crate::partition::partition_of(region).unwrap_or(one.partition);
        }
        Ok(picked)
    }

    /// The one target a command that works on one stack at a time (smoke, revoke, redrive)
    /// runs on: the stage's only target, or the one `--target` picks.
    pub fn single_target(&self, st: &stage::Stage) -> Result<stage::Target, Error> {
        let mut picked = self.stage_targets(st)?;
        if picked.len() != 1 {
            return Err(Error::Usage(format!(
                "stage {} has {} targets here ({}); this command works on one: name it with \
                 --target REGION/ACCOUNT",
                st.name,
                picked.len(),
                picked
                    .iter()
                    .map(|t| t.label())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(picked.remove(0))
    }

    /// How to reach AWS for `t`: `--profile`, the target's region, and its role (assumed
    /// with the session name `jitr-infra-<stage>`).
    pub fn aws_target(&self, stage_name: &str, t: &stage::Target) -> crate::aws::Target {
        crate::aws::Target {
            profile: self.profile.clone(),
            region: t.region.clone(),
            assume: t.role_arn.as_ref().map(|arn| crate::aws::AssumeRole {
                role_arn: arn.clone(),
                session_name: session_name(stage_name),
            }),
        }
    }

    /// The deploy options for `deploy` (and the defaults `destroy` waits with).
    pub fn deploy_options(&self) -> Options {
        match &self.action {
            Action::Deploy(d) => Options {
                require_approval: d.require_approval,
                execute: d.execute,
                interactive: interactive(),
                ..Default::default()
            },
            _ => Options::default(),
        }
    }
}

/// `jitr-infra-<stage>`, as STS accepts a role session name: `[\w+=,.@-]`, 2 to 64
/// characters.
fn session_name(stage: &str) -> String {
    let name: String = format!("jitr-infra-{stage}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    name
}

fn ca_action(command: CaCommand) -> Action {
    match command {
        CaCommand::Create(c) => Action::CaCreate(c),
        CaCommand::Inspect { file } => Action::CaInspect { file },
    }
}

fn device_action(command: DeviceCommand) -> (String, Action) {
    let DeviceCommand::Issue { stage, issue } = command;
    (stage, Action::DeviceIssue(issue))
}

/// The project root: `--project`, else the current directory; it must hold `stacks/`.
pub fn project_root(arg: Option<&Path>) -> Result<PathBuf, Error> {
    let root = match arg {
        Some(p) => p.to_path_buf(),
        None => std::env::current_dir().map_err(crate::error::io("."))?,
    };
    if !root.join(stage::STAGES_DIR).is_dir() {
        return Err(Error::Project(format!(
            "{}: no {}/ directory here; run jitr-infra from the project root or pass --project DIR",
            root.display(),
            stage::STAGES_DIR
        )));
    }
    Ok(root)
}

/// The stage a command names (the default for those that name none) and what it does.
fn stage_and_action(command: Command, project: Option<&PathBuf>) -> (String, Action) {
    match command {
        Command::Schema => (DEFAULT_STAGE.to_string(), Action::Schema),
        Command::Init { dir, name } => (
            crate::init::STAGE.to_string(),
            Action::Init {
                dir: dir
                    .or_else(|| project.cloned())
                    .unwrap_or_else(|| PathBuf::from(".")),
                name,
            },
        ),
        Command::List => (DEFAULT_STAGE.to_string(), Action::List),
        Command::Synth { stage, out } => (stage, Action::Synth { out }),
        Command::Validate { stage, all } => (stage, Action::Validate { all }),
        Command::Diff { stage } => (stage, Action::Diff),
        Command::Deploy {
            stage,
            require_approval,
            no_execute,
            outputs_file,
        } => (
            stage,
            Action::Deploy(DeployArgs {
                require_approval,
                execute: !no_execute,
                outputs_file,
            }),
        ),
        Command::Destroy {
            stage,
            yes,
            detach_devices,
        } => (
            stage,
            Action::Destroy {
                yes,
                detach_devices,
            },
        ),
        Command::Status { stage, max_pages } => (stage, Action::Status { max_pages }),
        Command::Redrive {
            stage,
            dry_run,
            max,
            no_sweep,
        } => (
            stage,
            Action::Redrive(crate::ops::redrive::Options {
                dry_run,
                max,
                sweep: !no_sweep,
            }),
        ),
        Command::Ca { command } => (DEFAULT_STAGE.to_string(), ca_action(command)),
        Command::Device { command } => device_action(command),
        Command::Smoke(a) => (a.stage.clone(), Action::Smoke(a.options())),
        cmd @ Command::Revoke { .. } => revoke_action(cmd),
    }
}

/// `revoke`'s stage and action: clap's group makes exactly one of the three present.
fn revoke_action(cmd: Command) -> (String, Action) {
    use crate::ops::revoke_find::{Options, Target};
    let Command::Revoke {
        stage,
        certificate_id,
        serial,
        cn,
        dry_run,
    } = cmd
    else {
        unreachable!("called for revoke only")
    };
    let target = match (certificate_id, serial, cn) {
        (Some(id), _, _) => Target::CertificateId(id),
        (_, Some(serial), _) => Target::Serial(serial),
        (_, _, Some(cn)) => Target::Cn(cn),
        _ => unreachable!("clap requires one of --certificate-id, --serial, --cn"),
    };
    (stage, Action::Revoke(Options { target, dry_run }))
}

/// Runs a parsed command; returns the exit code.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<i32, Error> {
    let args = Args::resolve(cli)?;
    let console = Console::new(out, err, args.json());
    match &args.action {
        Action::Schema => commands::schema(&console),
        Action::Init { dir, name } => commands::init(&args, dir, name.as_deref(), &console),
        Action::List => commands::list(&args, &console),
        Action::Synth { out } => commands::synth(&args, out.as_deref(), &console),
        Action::Validate { all } => commands::validate(&args, *all, &console),
        Action::Diff => commands::diff(&args, &console),
        Action::Deploy(d) => commands::deploy(&args, d, &console),
        Action::Destroy {
            yes,
            detach_devices,
        } => commands::destroy(&args, *yes, *detach_devices, &console),
        Action::Status { max_pages } => commands::status(&args, *max_pages, &console),
        Action::Redrive(opts) => commands::redrive(&args, opts, &console),
        Action::CaCreate(c) => certs::ca_create(c, &console),
        Action::CaInspect { file } => certs::ca_inspect(file, &console),
        Action::DeviceIssue(d) => certs::device_issue(&args, d, &console),
        Action::Smoke(opts) => commands::smoke(&args, opts, &console),
        Action::Revoke(opts) => commands::revoke(&args, opts, &console),
    }
}

impl SmokeArgs {
    /// The options `smoke` runs with (clap makes sure one of the key flags is there).
    fn options(self) -> crate::smoke::Options {
        let ca_key = match (self.ca_key, self.ca_key_env) {
            (Some(f), _) => crate::smoke::KeySource::File(f),
            (None, v) => crate::smoke::KeySource::Env(v.unwrap_or_default()),
        };
        crate::smoke::Options {
            ca: self.ca,
            ca_key,
            cn: self.cn,
            endpoint: self.endpoint,
            trust_root: self.trust_root,
            timeout: std::time::Duration::from_secs(self.timeout),
            keep: self.keep,
        }
    }
}

/// Both stdin (for the answer) and stderr (for the question) are terminals, and CI is not set.
pub fn interactive() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("CI").is_none()
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn root() -> String {
        env!("CARGO_MANIFEST_DIR").to_string()
    }

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("jitr-infra").chain(args.iter().copied())).unwrap()
    }

    /// Runs a command; (exit code, stdout, stderr).
    fn run_captured(args: &[&str]) -> (i32, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(cli(args), &mut out, &mut err).unwrap();
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn the_command_line_is_resolved_once_into_args() {
        let r = root();
        let args = Args::resolve(cli(&[
            "deploy",
            "--stage",
            "prod",
            "--no-execute",
            "--require-approval",
            "never",
            "--json",
            "--profile",
            "ci",
            "--region",
            "eu-central-1",
            "--project",
            &r,
        ]))
        .unwrap();
        assert_eq!(args.root, PathBuf::from(&r));
        assert_eq!(args.stage, "prod");
        assert_eq!(args.output, OutputMode::Json);
        assert_eq!(args.profile.as_deref(), Some("ci"));
        let dev = stage::load(Path::new(env!("CARGO_MANIFEST_DIR")), "dev").unwrap();
        assert_eq!(args.stage_targets(&dev).unwrap()[0].region, "eu-central-1");
        let opts = args.deploy_options();
        assert!(!opts.execute);
        assert_eq!(opts.require_approval, RequireApproval::Never);

        let list = Args::resolve(cli(&["list", "--project", &r])).unwrap();
        assert_eq!(list.stage, DEFAULT_STAGE);
        let region = &list.stage_targets(&dev).unwrap()[0].region;
        assert_eq!(region, "eu-west-1", "the stage's");
        // schema needs no project.
        let schema = Args::resolve(cli(&["schema", "--project", "/nonexistent"])).unwrap();
        assert!(matches!(schema.action, Action::Schema));
        // Nor does init: it makes one (in DIR, else --project, else here).
        let init = Args::resolve(cli(&["init", "--project", "/nonexistent"])).unwrap();
        assert!(
            matches!(&init.action, Action::Init { dir, name: None } if dir == Path::new("/nonexistent"))
        );
        let init = Args::resolve(cli(&["init", "new", "--name", "acme"])).unwrap();
        assert!(matches!(&init.action, Action::Init { dir, name: Some(n) }
            if dir == Path::new("new") && n == "acme"));
        assert!(Args::resolve(cli(&["list", "--project", "/nonexistent"])).is_err());

        let status = Args::resolve(cli(&["status", "-s", "prod", "--project", &r])).unwrap();
        assert_eq!(status.stage, "prod");
        assert!(matches!(status.action, Action::Status { max_pages: 4 }));
        let redrive = Args::resolve(cli(&[
            "redrive",
            "--dry-run",
            "--max",
            "5",
            "--no-sweep",
            "--project",
            &r,
        ]))
        .unwrap();
        assert!(matches!(
            redrive.action,
            Action::Redrive(crate::ops::redrive::Options {
                dry_run: true,
                max: Some(5),
                sweep: false
            })
        ));
        assert!(Cli::try_parse_from(["jitr-infra", "redrive", "--max", "0"]).is_err());
        let smoke = Args::resolve(cli(&[
            "smoke",
            "--ca-key-env",
            "K",
            "--cn",
            "d-1",
            "--timeout",
            "5",
            "--project",
            &r,
        ]))
        .unwrap();
        let Action::Smoke(o) = smoke.action else {
            panic!("{smoke:?}")
        };
        assert_eq!(o.ca_key, crate::smoke::KeySource::Env("K".into()));
        assert_eq!(
            (o.cn.as_deref(), o.timeout.as_secs(), o.keep),
            (Some("d-1"), 5, false)
        );
        for bad in [
            &["smoke"][..],                                   // no key
            &["smoke", "--ca-key", "k", "--ca-key-env", "K"], // both
            &["smoke", "--ca-key", "k", "--timeout", "0"],
        ] {
            let args = std::iter::once("jitr-infra").chain(bad.iter().copied());
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
        assert!(Cli::try_parse_from(["jitr-infra", "status", "--max-pages", "0"]).is_err());
    }

    #[test]
    fn list_and_validate_answer_in_json() {
        let r = root();
        let stages = stage::list_stages(Path::new(&r)).unwrap();
        let (code, out, err) = run_captured(&["list", "--json", "--project", &r]);
        assert_eq!(code, crate::error::exit::OK);
        assert!(err.is_empty(), "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let listed = v["stages"].as_array().unwrap();
        assert_eq!(listed.len(), stages.len());
        for s in listed {
            assert_eq!(s["valid"], true, "{s}");
            assert!(s["stackName"].is_string() && s["region"].is_string(), "{s}");
        }

        let (code, out, err) = run_captured(&["validate", "--all", "--json", "--project", &r]);
        assert_eq!(code, crate::error::exit::OK, "{out}");
        assert!(err.is_empty(), "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["ok"], true);
        assert_eq!(v["stages"].as_array().unwrap().len(), stages.len());
        assert!(v["stages"][0]["resources"].as_u64().unwrap() > 0, "{v}");

        let (code, out, err) =
            run_captured(&["validate", "--stage", "nope", "--json", "--project", &r]);
        assert_eq!(code, crate::error::exit::ERROR);
        assert!(err.is_empty(), "the error is in the result: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["stages"][0]["ok"], false);
        assert!(
            v["stages"][0]["error"].as_str().unwrap().contains("nope"),
            "{v}"
        );

        // Text mode still writes text, to the writers given.
        let (code, out, _) = run_captured(&["list", "--project", &r]);
        assert_eq!(code, crate::error::exit::OK);
        assert!(out.starts_with("STAGE"), "{out}");
    }
}
