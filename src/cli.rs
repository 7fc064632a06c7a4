//! The command line: clap definitions and dispatch. Output goes to the writers passed in, so
//! tests capture it; `main` only maps the result to an exit code.

use crate::assets::BuildOptions;
use crate::error::{exit, Error};
use crate::stage::{self, StageFile, DEFAULT_STAGE};
use crate::synth::{self, Progress};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};

const EXAMPLES: &str = "\
Examples:
  jitr-infra synth                      synthesize the default stage (dev) into jitr.out/dev
  jitr-infra synth --stage prod --out cdk.out/prod
  jitr-infra validate --all             check every stage file, write nothing
  jitr-infra list                       the stages and their stacks
  jitr-infra schema > stage.schema.json JSON Schema for editors

Exit codes: 0 success, 1 error, 2 usage error, 3 changes found (diff).";

#[derive(Debug, Parser)]
#[command(
    name = "jitr-infra",
    version,
    about = "Synthesizes, diffs and deploys the AWS IoT Just-In-Time Registration stack",
    after_help = EXAMPLES
)]
pub struct Cli {
    /// Project root holding stacks/, templates/ and lambdas/ [default: current directory]
    #[arg(long, global = true, value_name = "DIR")]
    pub project: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Synthesize a stage: CloudFormation template, manifest and Lambda zips, offline.
    #[command(after_help = "Example: jitr-infra synth --stage prod")]
    Synth {
        /// Stage name: stacks/<STAGE>.yaml
        #[arg(long, short, default_value = DEFAULT_STAGE)]
        stage: String,
        /// Output directory [default: jitr.out/<STAGE>]
        #[arg(long, short, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// List the stages and their stacks.
    List,
    /// Run every check of a stage (stage file, certificates, device policy, template)
    /// without building or writing anything.
    #[command(after_help = "Example: jitr-infra validate --all")]
    Validate {
        /// Stage name: stacks/<STAGE>.yaml
        #[arg(long, short, default_value = DEFAULT_STAGE, conflicts_with = "all")]
        stage: String,
        /// Validate every stage in stacks/
        #[arg(long)]
        all: bool,
    },
    /// Print the JSON Schema of the stage file format.
    Schema,
}

struct StderrProgress<'a>(&'a mut dyn Write);

impl Progress for std::cell::RefCell<StderrProgress<'_>> {
    fn message(&self, text: &str) {
        let _ = writeln!(self.borrow_mut().0, "{text}");
    }
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

/// Runs a parsed command; returns the exit code.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<i32, Error> {
    if let Command::Schema = cli.command {
        let schema = schemars::schema_for!(StageFile);
        let text = serde_json::to_string_pretty(&schema).expect("schema serializes");
        print(out, &format!("{text}\n"));
        return Ok(exit::OK);
    }
    let root = project_root(cli.project.as_deref())?;
    match cli.command {
        Command::Synth { stage, out: dir } => {
            let mut build = BuildOptions::new(&root);
            build.show_progress = true;
            let progress = std::cell::RefCell::new(StderrProgress(err));
            let s = synth::synthesize(&root, &stage, &build, &progress)?;
            let dir = dir.unwrap_or_else(|| synth::default_out(&root, &stage));
            synth::write(&s, &dir)?;
            let mut text = format!(
                "synthesized stage {} into {}\n  {:<40} {:>9}  sha256 {}\n",
                s.stage.name,
                display(&dir),
                s.template_file(),
                human(s.template_json.len()),
                &s.template_sha256[..16],
            );
            if s.needs_template_upload() {
                text.push_str("  (over 51,200 bytes: deploy uploads the template to S3)\n");
            }
            for b in &s.bundles {
                text.push_str(&format!(
                    "  {:<40} {:>9}  {}{}\n",
                    format!("asset.{}.zip", &b.sha256[..12]).replace(".zip", "….zip"),
                    human(b.size as usize),
                    b.package,
                    if b.built { " (built)" } else { "" }
                ));
            }
            print(out, &text);
            Ok(exit::OK)
        }
        Command::List => {
            let names = stage::list_stages(&root)
                .map_err(crate::error::io(root.join(stage::STAGES_DIR)))?;
            let mut text = format!(
                "{:<12} {:<30} {:<16} {}\n",
                "STAGE", "STACK", "REGION", "ACCOUNT"
            );
            for name in names {
                match stage::load(&root, &name) {
                    Ok(s) => text.push_str(&format!(
                        "{:<12} {:<30} {:<16} {}\n",
                        name,
                        s.stack_name,
                        s.region,
                        s.account.as_deref().unwrap_or("(any)")
                    )),
                    Err(e) => text.push_str(&format!(
                        "{:<12} invalid: {} problem(s); run `jitr-infra validate --stage {name}`\n",
                        name,
                        e.problems.len()
                    )),
                }
            }
            print(out, &text);
            Ok(exit::OK)
        }
        Command::Validate { stage, all } => {
            let names = if all {
                stage::list_stages(&root).map_err(crate::error::io(root.join(stage::STAGES_DIR)))?
            } else {
                vec![stage]
            };
            let mut failed = 0;
            for name in &names {
                match synth::validate(&root, name) {
                    Ok(t) => print(
                        out,
                        &format!("{name}: ok ({} resources)\n", t.resources.len()),
                    ),
                    Err(e) => {
                        failed += 1;
                        let _ = write!(err, "{e}");
                        if !e.to_string().ends_with('\n') {
                            let _ = writeln!(err);
                        }
                    }
                }
            }
            Ok(if failed == 0 { exit::OK } else { exit::ERROR })
        }
        Command::Schema => unreachable!("handled above"),
    }
}

/// Writes to stdout; a closed pipe (`jitr-infra list | head`) is not an error.
fn print(out: &mut dyn Write, text: &str) {
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

fn display(p: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| p.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| p.to_path_buf())
        .display()
        .to_string()
}

fn human(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}
