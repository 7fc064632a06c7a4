//! The command line: clap definitions and dispatch. Output goes to the writers passed in, so
//! tests capture it; `main` only maps the result to an exit code.

use crate::assets::BuildOptions;
use crate::deploy::{Reporter as _, RequireApproval};
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

  jitr-infra diff --stage prod           what a deploy would change; exit 3 if anything
  jitr-infra deploy --stage prod --require-approval never   (CI, after a reviewed diff)
  jitr-infra destroy --stage dev --yes

Exit codes: 0 success, 1 error, 2 usage error, 3 changes found (diff),
4 approval required but not given (deploy, destroy).";

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
    /// AWS profile (else AWS_PROFILE or the default chain: env, SSO, role profiles)
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// AWS region [default: the stage's region]
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,
    /// Machine-readable JSON on stdout; no progress on stderr
    #[arg(long, global = true)]
    pub json: bool,
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
    /// Show what a deploy would change: resources, properties, replacements, and the
    /// security view. Exit 0 when nothing would change, 3 when something would.
    #[command(after_help = "Example: jitr-infra diff --stage prod")]
    Diff {
        /// Stage name: stacks/<STAGE>.yaml
        #[arg(long, short, default_value = DEFAULT_STAGE)]
        stage: String,
    },
    /// Deploy a stage through a CloudFormation change set.
    #[command(after_help = "Examples:
  jitr-infra deploy --stage dev
  jitr-infra deploy --stage prod --require-approval never --outputs-file outputs.json
  jitr-infra deploy --stage prod --no-execute     create the change set for review only")]
    Deploy {
        /// Stage name: stacks/<STAGE>.yaml
        #[arg(long, short, default_value = DEFAULT_STAGE)]
        stage: String,
        /// When to ask before executing. Without a terminal nothing is asked: a deploy that
        /// needs approval is refused (exit 4).
        #[arg(long, value_enum, default_value_t = RequireApproval::Broadening)]
        require_approval: RequireApproval,
        /// Create the change set and stop (review it in the console or with `diff`)
        #[arg(long)]
        no_execute: bool,
        /// Write the stack outputs as JSON to this file
        #[arg(long, value_name = "FILE")]
        outputs_file: Option<PathBuf>,
    },
    /// Delete a stage's stack (the CA stays registered if the stage retains it).
    #[command(after_help = "Example: jitr-infra destroy --stage dev --yes")]
    Destroy {
        /// Stage name: stacks/<STAGE>.yaml
        #[arg(long, short, default_value = DEFAULT_STAGE)]
        stage: String,
        /// Do not ask (required without a terminal)
        #[arg(long)]
        yes: bool,
        /// Detach the device policy from the device certificates still using it (those
        /// devices lose access). Without it, destroy refuses while devices are attached:
        /// AWS will not delete an attached policy and the deletion would fail halfway.
        #[arg(long)]
        detach_devices: bool,
    },
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
            let mut build = build_options(&root);
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
        Command::Diff { stage } => {
            let rt = runtime()?;
            let (s, clients) = synthesize_for_aws(
                &rt,
                (&cli.profile, &cli.region, cli.json),
                &root,
                &stage,
                err,
            )?;
            let d = rt.block_on(crate::deploy::diff_stack(&clients, &s))?;
            if cli.json {
                print_json(out, &d);
            } else {
                print(out, &crate::diff::render_text(&d, color(false)));
            }
            step_summary(&crate::diff::render_markdown(
                &d,
                &format!("jitr-infra diff: {}", s.stage.stack_name),
            ));
            Ok(if d.is_empty() {
                exit::OK
            } else {
                exit::CHANGES
            })
        }
        Command::Deploy {
            stage,
            require_approval,
            no_execute,
            outputs_file,
        } => {
            let rt = runtime()?;
            let (s, clients) = synthesize_for_aws(
                &rt,
                (&cli.profile, &cli.region, cli.json),
                &root,
                &stage,
                err,
            )?;
            let opts = crate::deploy::Options {
                require_approval,
                execute: !no_execute,
                interactive: interactive(),
                ..Default::default()
            };
            let reporter = CliReporter::new(cli.json);
            let outcome =
                rt.block_on(crate::deploy::deploy(&clients, &root, &s, &opts, &reporter))?;
            if let Some(d) = reporter.last_diff() {
                step_summary(&crate::diff::render_markdown(
                    &d,
                    &format!("jitr-infra deploy: {}", s.stage.stack_name),
                ));
            }
            if let (Some(path), crate::deploy::Outcome::Deployed { outputs, .. }) =
                (&outputs_file, &outcome)
            {
                let text = serde_json::to_string_pretty(outputs).expect("outputs serialize") + "\n";
                std::fs::write(path, text).map_err(crate::error::io(path))?;
            }
            if cli.json {
                print_json(out, &outcome);
            } else {
                print(out, &describe_outcome(&outcome));
            }
            Ok(exit::OK)
        }
        Command::Destroy {
            stage,
            yes,
            detach_devices,
        } => {
            let rt = runtime()?;
            let st = stage::load(&root, &stage)?;
            let region = cli.region.clone().unwrap_or_else(|| st.region.clone());
            let clients = rt.block_on(crate::aws::Clients::new(&crate::aws::Target {
                profile: cli.profile.clone(),
                region,
            }));
            rt.block_on(crate::deploy::check_account(&clients, &st))?;
            let Some(plan) = rt.block_on(crate::destroy::destroy_plan(&clients, &st))? else {
                print(
                    out,
                    &format!(
                        "stack {} does not exist: nothing to destroy\n",
                        st.stack_name
                    ),
                );
                return Ok(exit::OK);
            };
            let text = destroy_plan_text(&plan, detach_devices);
            let reporter = CliReporter::new(cli.json);
            if !cli.json {
                let _ = write!(err, "{text}");
            }
            if let Some(refused) = crate::destroy::refusal(&plan) {
                return Err(refused);
            }
            if !plan.attached_certificates.is_empty() && !detach_devices {
                return Err(Error::StackState {
                    stack: plan.stack_name.clone(),
                    status: plan.stack_status.clone(),
                    advice: format!(
                        "{} device certificate(s) are attached to its device policy, and AWS \
                         refuses to delete an attached policy, so the deletion would fail \
                         halfway. Decommission those devices first, or rerun with \
                         --detach-devices (they lose access)",
                        plan.attached_certificates.len()
                    ),
                });
            }
            if !yes {
                if !interactive() {
                    return Err(Error::ApprovalRequired(
                        "destroy deletes the stack; no terminal to ask on: rerun with --yes".into(),
                    ));
                }
                if !reporter.confirm(&format!("Delete stack {}?", plan.stack_name)) {
                    return Err(Error::ApprovalRequired("not confirmed".into()));
                }
            }
            let opts = crate::deploy::Options::default();
            let settled = rt.block_on(crate::destroy::destroy(
                &clients,
                &plan,
                detach_devices,
                &opts,
                &reporter,
            ))?;
            if cli.json {
                print(
                    out,
                    &format!(
                        "{}\n",
                        serde_json::json!({"outcome": "destroyed", "stackName": plan.stack_name, "stackStatus": settled.status, "caRetained": plan.ca_retained})
                    ),
                );
            } else {
                print(out, &format!("stack {} destroyed\n", plan.stack_name));
            }
            Ok(exit::OK)
        }
    }
}

/// What `destroy` is about to do, for the operator to read before confirming.
fn destroy_plan_text(plan: &crate::destroy::DestroyPlan, detach_devices: bool) -> String {
    let mut text = format!(
        "stack {} ({}) will be deleted with its {} resources:\n",
        plan.stack_name,
        plan.stack_status,
        plan.resources.len()
    );
    for (id, kind) in &plan.resources {
        text.push_str(&format!("  - {id} ({kind})\n"));
    }
    text.push_str(if plan.ca_retained {
        "the CA stays registered in AWS IoT (RetainOnDelete, or adopted)\n"
    } else {
        "the CA will be DEREGISTERED: devices signed by it can no longer register\n"
    });
    let mut first = Vec::new();
    if let Some(rule) = &plan.registration_rule {
        first.push(format!("topic rule {rule} disabled"));
    }
    if let Some(f) = &plan.activator_function {
        first.push(format!("activator {f} throttled"));
    }
    if !first.is_empty() {
        text.push_str(&format!(
            "onboarding stops first ({}); an aborted destroy restores it\n",
            first.join(", ")
        ));
    }
    if !plan.attached_certificates.is_empty() {
        text.push_str(&format!(
            "{} device certificate(s) still use device policy {}{}\n",
            plan.attached_certificates.len(),
            plan.device_policy.as_deref().unwrap_or_default(),
            if detach_devices {
                ": it will be detached from them (they lose access)"
            } else {
                ""
            }
        ));
    }
    text
}

/// The Lambdas are built from `JITR_LAMBDA_SOURCES` (a jitr-infra checkout) when set, else
/// from the project itself.
fn build_options(root: &Path) -> BuildOptions {
    match std::env::var_os("JITR_LAMBDA_SOURCES") {
        Some(dir) => BuildOptions::new(PathBuf::from(dir)),
        None => BuildOptions::new(root),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(crate::error::io("tokio runtime"))
}

/// Synthesizes the stage and builds the AWS clients for its region (or `--region`).
fn synthesize_for_aws(
    rt: &tokio::runtime::Runtime,
    (profile, region, json): (&Option<String>, &Option<String>, bool),
    root: &Path,
    stage: &str,
    err: &mut dyn Write,
) -> Result<(synth::Synthesized, crate::aws::Clients), Error> {
    let s = synthesize_quietly(root, stage, json, err)?;
    let clients = rt.block_on(crate::aws::Clients::new(&target(profile, region, &s)));
    Ok((s, clients))
}

fn target(
    profile: &Option<String>,
    region: &Option<String>,
    s: &synth::Synthesized,
) -> crate::aws::Target {
    crate::aws::Target {
        profile: profile.clone(),
        region: region.clone().unwrap_or_else(|| s.stage.region.clone()),
    }
}

/// Synth for diff and deploy: Lambda build progress still shows (it can take minutes).
fn synthesize_quietly(
    root: &Path,
    stage: &str,
    json: bool,
    err: &mut dyn Write,
) -> Result<synth::Synthesized, Error> {
    let mut build = build_options(root);
    build.show_progress = !json;
    let progress = std::cell::RefCell::new(StderrProgress(err));
    if json {
        synth::synthesize(root, stage, &build, &synth::Quiet)
    } else {
        synth::synthesize(root, stage, &build, &progress)
    }
}

/// Both stdin (for the answer) and stderr (for the question) are terminals, and CI is not set.
pub fn interactive() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("CI").is_none()
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal()
}

fn color(for_stderr: bool) -> bool {
    use std::io::IsTerminal;
    if std::env::var_os("NO_COLOR").is_some() || std::env::var_os("CI").is_some() {
        return false;
    }
    if for_stderr {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    }
}

/// Appends to the GitHub Actions job summary when running there.
fn step_summary(markdown: &str) {
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
        {
            let _ = writeln!(f, "{markdown}");
        }
    }
}

fn describe_outcome(o: &crate::deploy::Outcome) -> String {
    use crate::deploy::Outcome;
    match o {
        Outcome::NoChanges { stack_name } => format!("stack {stack_name}: no changes\n"),
        Outcome::ChangeSetCreated {
            stack_name,
            change_set_name,
            ..
        } => format!("stack {stack_name}: change set {change_set_name} created and not executed\n"),
        Outcome::Deployed {
            stack_name,
            stack_status,
            outputs,
        } => {
            let mut t = format!("stack {stack_name}: {stack_status}\n");
            for (k, v) in outputs {
                t.push_str(&format!("  {k} = {v}\n"));
            }
            t
        }
    }
}

/// Progress on stderr (plain lines: they read well in CI logs too), diffs coloured on a
/// terminal, questions on the terminal.
struct CliReporter {
    quiet: bool,
    color: bool,
    last_diff: std::sync::Mutex<Option<crate::diff::StackDiff>>,
}

impl CliReporter {
    fn new(json: bool) -> Self {
        CliReporter {
            quiet: json,
            color: color(true),
            last_diff: std::sync::Mutex::new(None),
        }
    }

    fn last_diff(&self) -> Option<crate::diff::StackDiff> {
        self.last_diff.lock().ok().and_then(|d| d.clone())
    }
}

impl crate::deploy::Reporter for CliReporter {
    fn progress(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }

    fn diff(&self, d: &crate::diff::StackDiff) {
        if let Ok(mut slot) = self.last_diff.lock() {
            *slot = Some(d.clone());
        }
        if !self.quiet {
            eprint!("{}", crate::diff::render_text(d, self.color));
        }
    }

    fn confirm(&self, question: &str) -> bool {
        eprint!("{question} [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).is_ok()
            && matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
    }
}

fn print_json(out: &mut dyn Write, value: &impl serde::Serialize) {
    let text = serde_json::to_string_pretty(value).expect("our types serialize");
    print(out, &format!("{text}\n"));
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
