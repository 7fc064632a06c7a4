//! One function per command. Each returns the exit code; its result goes to the console as
//! text or, with `--json`, as the one JSON shape the README's "JSON output" lists.

use super::console::{self, describe_outcome, destroy_plan_text, display, human, Console};
use super::{Args, DeployArgs};
use crate::aws::Clients;
use crate::constructs;
use crate::deploy::{self, destroy, Outcome, Reporter as _};
use crate::error::{exit, Error};
use crate::stage::{self, CapacityReport, StageFile};
use crate::synth::{self, Synthesized};
use serde_json::json;
use std::path::Path;

/// `schema`: the stage file's JSON Schema (JSON in either mode).
pub fn schema(console: &Console) -> Result<i32, Error> {
    console.print_json(&schemars::schema_for!(StageFile));
    Ok(exit::OK)
}

/// `list`: `{"stages": [{"stage", "valid", "stackName", "region", "account"} or
/// {"stage", "valid": false, "problems"}]}`.
pub fn list(args: &Args, console: &Console) -> Result<i32, Error> {
    let names = stage::list_stages(&args.root)
        .map_err(crate::error::io(args.root.join(stage::STAGES_DIR)))?;
    let mut text = format!(
        "{:<12} {:<30} {:<16} {}\n",
        "STAGE", "STACK", "REGION", "ACCOUNT"
    );
    let mut stages = Vec::new();
    for name in names {
        match stage::load(&args.root, &name) {
            Ok(s) => {
                let targets: Vec<String> = s.targets().iter().map(|t| t.label()).collect();
                let (region, account) = match s.targets() {
                    [one] => (one.region.clone(), one.account.clone()),
                    many => (format!("{} targets", many.len()), None),
                };
                text.push_str(&format!(
                    "{:<12} {:<30} {:<16} {}\n",
                    name,
                    s.stack_name,
                    region,
                    match (account, targets.len()) {
                        (_, n) if n > 1 => targets.join(", "),
                        (Some(a), _) => a,
                        (None, _) => "(any)".into(),
                    }
                ));
                stages.push(
                    json!({"stage": name, "valid": true, "stackName": s.stack_name,
                    "region": s.region, "account": s.account, "targets": targets}),
                );
            }
            Err(e) => {
                text.push_str(&format!(
                    "{:<12} invalid: {} problem(s); run `jitr-infra validate --stage {name}`\n",
                    name,
                    e.problems.len()
                ));
                stages.push(json!({"stage": name, "valid": false, "problems": e.problems.len()}));
            }
        }
    }
    console.result(&json!({ "stages": stages }), || text);
    Ok(exit::OK)
}

/// `validate`: `{"ok", "stages": [{"stage", "ok": true, "resources"} or {"stage", "ok":
/// false, "error"}]}`; exit 1 when any stage fails.
pub fn validate(args: &Args, all: bool, console: &Console) -> Result<i32, Error> {
    let names = if all {
        stage::list_stages(&args.root)
            .map_err(crate::error::io(args.root.join(stage::STAGES_DIR)))?
    } else {
        vec![args.stage.clone()]
    };
    let mut results = Vec::new();
    let mut failed = 0;
    for name in &names {
        match synth::validate(&args.root, name) {
            Ok((t, warnings)) => {
                for w in &warnings {
                    console.note(&format!("{w}\n"));
                }
                if !console.json() {
                    console.print(&format!("{name}: ok ({} resources)\n", t.resources.len()));
                }
                results.push(
                    json!({"stage": name, "ok": true, "resources": t.resources.len(),
                    "warnings": warnings}),
                );
            }
            Err(e) => {
                failed += 1;
                let text = e.to_string();
                if !console.json() {
                    console.note(&text);
                    if !text.ends_with('\n') {
                        console.note("\n");
                    }
                }
                results.push(json!({"stage": name, "ok": false, "error": text}));
            }
        }
    }
    if console.json() {
        console.print_json(&json!({"ok": failed == 0, "stages": results}));
    }
    Ok(if failed == 0 { exit::OK } else { exit::ERROR })
}

/// `synth`: `{"stage", "stackName", "outDir", "template": {"file", "bytes", "sha256"},
/// "templateUpload", "assets": [{"package", "file", "bytes", "sha256"}]}`.
pub fn synth(args: &Args, out: Option<&Path>, console: &Console) -> Result<i32, Error> {
    let s = synth::synthesize(&args.root, &args.stage)?;
    for w in synth::warning_lines(&s.stage) {
        console.note(&format!("{w}\n"));
    }
    let dir = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| synth::default_out(&args.root, &args.stage));
    synth::write(&s, &dir)?;
    console.result(&synth_json(&s, &dir), || synth_text(&s, &dir));
    Ok(exit::OK)
}

fn synth_json(s: &Synthesized, dir: &Path) -> serde_json::Value {
    let mut assets: Vec<_> = s
        .bundles
        .iter()
        .map(|b| {
            json!({"package": b.package, "file": format!("asset.{}.zip", b.sha256),
                "bytes": b.zip.len(), "sha256": b.sha256})
        })
        .collect();
    assets.extend(s.layer.iter().map(|l| {
        json!({"layer": constructs::REVOCATION_LIST_LAYER.as_str(),
            "file": format!("asset.{}.zip", l.sha256), "bytes": l.zip.len(), "sha256": l.sha256})
    }));
    json!({
        "stage": s.stage.name,
        "stackName": s.stage.stack_name,
        "outDir": display(dir),
        "template": {"file": s.template_file(), "bytes": s.template_json.len(),
            "sha256": s.template_sha256},
        "templateUpload": s.needs_template_upload(),
        "assets": assets,
    })
}

fn synth_text(s: &Synthesized, dir: &Path) -> String {
    let mut text = format!(
        "synthesized stage {} into {}\n  {:<40} {:>9}  sha256 {}\n",
        s.stage.name,
        display(dir),
        s.template_file(),
        human(s.template_json.len()),
        &s.template_sha256[..16],
    );
    if s.needs_template_upload() {
        text.push_str("  (over 51,200 bytes: deploy uploads the template to S3)\n");
    }
    let layer = s.layer.iter().map(|l| {
        let serials = s.stage.revocation.as_ref().map_or(0, |r| r.list.len());
        let what = format!("revocation list layer ({serials} serials)");
        (l.sha256.as_str(), l.zip.len(), what)
    });
    let bundles = s
        .bundles
        .iter()
        .map(|b| (b.sha256, b.zip.len(), b.package.to_string()));
    for (sha256, bytes, what) in bundles.chain(layer) {
        text.push_str(&format!(
            "  {:<40} {:>9}  {what}\n",
            format!("asset.{}.zip", &sha256[..12]).replace(".zip", "….zip"),
            human(bytes),
        ));
    }
    text
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(crate::error::io("tokio runtime"))
}

/// Synthesizes the stage (its warnings on stderr).
fn synthesize(args: &Args, console: &Console) -> Result<Synthesized, Error> {
    let s = synth::synthesize(&args.root, &args.stage)?;
    for w in synth::warning_lines(&s.stage) {
        console.note(&format!("{w}\n"));
    }
    Ok(s)
}

/// The stage's one target (`--region` applied): the stage narrowed to it, and its clients.
fn one_target(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    st: &stage::Stage,
) -> Result<(stage::Stage, Clients), Error> {
    let target = args.single_target(st)?;
    let clients = rt.block_on(Clients::for_target(&args.aws_target(&st.name, &target)))?;
    Ok((st.for_target(&target), clients))
}

/// A command's JSON result with the stage's `capacity` object beside its own fields.
#[derive(serde::Serialize)]
struct WithCapacity<'a, T: serde::Serialize> {
    #[serde(flatten)]
    result: &'a T,
    #[serde(skip_serializing_if = "Option::is_none")]
    capacity: Option<CapacityReport>,
    /// `diff`: the CAs added and removed, and CAs moving between logical ids.
    #[serde(skip_serializing_if = "Option::is_none")]
    cas: Option<&'a crate::ca_summary::CaSummary>,
}

/// `diff`: the `StackDiff` and the stage's `capacity`; exit 3 when anything would change.
pub fn diff(args: &Args, console: &Console) -> Result<i32, Error> {
    let s = synthesize(args, console)?;
    if s.stage.lists_targets() {
        return super::targets::diff(args, &s, console);
    }
    let rt = runtime()?;
    let (stage, clients) = one_target(&rt, args, &s.stage)?;
    let s = Synthesized { stage, ..s };
    let (d, cas) = rt.block_on(deploy::diff_stack(&clients, &s))?;
    let capacity = CapacityReport::of(&s.stage, None);
    let result = WithCapacity {
        result: &d,
        capacity: Some(capacity.clone()),
        cas: Some(&cas),
    };
    for warning in cas.warnings() {
        console.note(&format!("{warning}\n"));
    }
    console.result(&result, || {
        let ca_lines: String = cas.lines().iter().map(|l| format!("{l}\n")).collect();
        format!(
            "{}{ca_lines}{}\n",
            crate::diff::render_text(&d, console::color(false)),
            capacity.line()
        )
    });
    console::step_summary(&crate::diff::render_markdown(
        &d,
        &format!("jitr-infra diff: {}", s.stage.stack_name),
    ));
    Ok(if d.is_empty() {
        exit::OK
    } else {
        exit::CHANGES
    })
}

/// `deploy`: the `Outcome` (`{"outcome": "noChanges" | "deployed" | "changeSetCreated",
/// ...}`; a deployed one carries the stack's `events`) and the `capacity` with the
/// reservation deploy decided.
pub fn deploy(args: &Args, d: &DeployArgs, console: &Console) -> Result<i32, Error> {
    let s = synthesize(args, console)?;
    if s.stage.lists_targets() {
        return super::targets::deploy(args, d, &s, console);
    }
    let rt = runtime()?;
    let (stage, clients) = one_target(&rt, args, &s.stage)?;
    let s = Synthesized { stage, ..s };
    let opts = args.deploy_options();
    let outcome = rt.block_on(deploy::deploy(&clients, &args.root, &s, &opts, console))?;
    if let Some(diff) = console.last_diff() {
        console::step_summary(&crate::diff::render_markdown(
            &diff,
            &format!("jitr-infra deploy: {}", s.stage.stack_name),
        ));
    }
    if let (Some(path), Outcome::Deployed { outputs, .. }) = (&d.outputs_file, &outcome) {
        let text = serde_json::to_string_pretty(outputs).expect("outputs serialize") + "\n";
        std::fs::write(path, text).map_err(crate::error::io(path))?;
    }
    let result = WithCapacity {
        result: &outcome,
        capacity: console.last_capacity(),
        cas: None,
    };
    console.result(&result, || describe_outcome(&outcome));
    Ok(exit::OK)
}

/// `destroy`: `{"outcome": "destroyed", "stackName", "stackStatus", "caRetained", "events"}`,
/// or `{"outcome": "noStack", "stackName"}`.
pub fn destroy(
    args: &Args,
    yes: bool,
    detach_devices: bool,
    console: &Console,
) -> Result<i32, Error> {
    let st = stage::load(&args.root, &args.stage)?;
    if st.lists_targets() {
        return super::targets::destroy(args, &st, yes, detach_devices, console);
    }
    let rt = runtime()?;
    let (st, clients) = one_target(&rt, args, &st)?;
    rt.block_on(deploy::account::check(&clients, &st))?;
    let Some(plan) = rt.block_on(destroy::destroy_plan(&clients, &st))? else {
        console.result(
            &json!({"outcome": "noStack", "stackName": st.stack_name}),
            || {
                format!(
                    "stack {} does not exist: nothing to destroy\n",
                    st.stack_name
                )
            },
        );
        return Ok(exit::OK);
    };
    if !console.json() {
        console.note(&destroy_plan_text(&plan, detach_devices));
    }
    destroy::admissible(&plan, detach_devices)?;
    confirm_destroy(&plan.stack_name, yes, console)?;
    let settled = rt.block_on(destroy::destroy(
        &clients,
        &plan,
        detach_devices,
        &args.deploy_options(),
        console,
    ))?;
    console.result(
        &json!({"outcome": "destroyed", "stackName": plan.stack_name,
            "stackStatus": settled.status.as_str(), "caRetained": plan.ca_retained,
            "events": settled.events}),
        || format!("stack {} destroyed\n", plan.stack_name),
    );
    Ok(exit::OK)
}

/// What the commands on a deployed stack start from.
struct OnStack {
    rt: tokio::runtime::Runtime,
    st: stage::Stage,
    clients: Clients,
    deployed: crate::ops::Deployed,
}

/// Loads the stage `args` names, its clients and its deployed stack (`what` names the command
/// in the error when there is none); with `check_account`, first checks that the credentials
/// are for the stage's account.
fn on_stack(args: &Args, what: &'static str, check_account: bool) -> Result<OnStack, Error> {
    let rt = runtime()?;
    let st = stage::load(&args.root, &args.stage)?;
    let (st, clients) = one_target(&rt, args, &st)?;
    if check_account {
        rt.block_on(deploy::account::check(&clients, &st))?;
    }
    let deployed = rt.block_on(crate::ops::deployed(&clients, &st, what))?;
    Ok(OnStack {
        rt,
        st,
        clients,
        deployed,
    })
}

/// `status`: the `Status` itself (README "status"); exit 5 when anything needs attention.
pub fn status(args: &Args, max_pages: u32, console: &Console) -> Result<i32, Error> {
    let st = stage::load(&args.root, &args.stage)?;
    if st.lists_targets() {
        return super::targets::status(args, &st, max_pages, console);
    }
    let OnStack {
        rt,
        clients,
        deployed,
        ..
    } = on_stack(args, "report", false)?;
    let s = rt.block_on(crate::ops::status::status(&clients, &deployed, max_pages))?;
    console.result(&s, || crate::ops::status_text::text(&s));
    Ok(if s.healthy { exit::OK } else { exit::ATTENTION })
}

/// `redrive`: the `Redrive` itself (README "redrive"); exit 5 when messages remain or the
/// sweep did not complete.
pub fn redrive(
    args: &Args,
    opts: &crate::ops::redrive::Options,
    console: &Console,
) -> Result<i32, Error> {
    let OnStack {
        rt,
        clients,
        deployed,
        ..
    } = on_stack(args, "redrive", true)?;
    let r = rt.block_on(crate::ops::redrive::redrive(
        &clients, &deployed, opts, console,
    ))?;
    console.result(&r, || crate::ops::redrive::text(&r));
    Ok(if r.complete(opts) {
        exit::OK
    } else {
        exit::ATTENTION
    })
}

/// `smoke`: the `smoke::Report` (README "Smoke test"); exit 0 only when the device was
/// activated, published and cleaned up, else 1 with the failed step in a sentence.
pub fn smoke(args: &Args, opts: &crate::smoke::Options, console: &Console) -> Result<i32, Error> {
    let OnStack {
        rt,
        st,
        clients,
        deployed,
    } = on_stack(args, "smoke-test", false)?;
    let progress = |line: &str| console.progress(line);
    let r = rt.block_on(crate::smoke::run(&clients, &st, &deployed, opts, &progress))?;
    console.result(&r, || crate::smoke::text::text(&r));
    Ok(if r.ok { exit::OK } else { exit::ERROR })
}

/// `revoke`: `{"stage", "stack", "dryRun", "method", "scanned", "revoked": [RevokeReport]}`;
/// exit 1 (an error) when nothing matched.
pub fn revoke(
    args: &Args,
    opts: &crate::ops::revoke_find::Options,
    console: &Console,
) -> Result<i32, Error> {
    let OnStack {
        rt,
        st,
        clients,
        deployed,
    } = on_stack(args, "revoke", true)?;
    let progress = |text: &str| {
        if !console.json() {
            console.note(text);
        }
    };
    let r = rt.block_on(crate::ops::revoke_find::revoke_matching(
        &clients.iot,
        &st,
        &deployed,
        opts,
        &progress,
    ))?;
    console.result(&r, || crate::ops::revoke_find::text(&r));
    Ok(exit::OK)
}

/// `--yes`, or the operator's answer on a terminal.
pub(super) fn confirm_destroy(stack: &str, yes: bool, console: &Console) -> Result<(), Error> {
    if yes {
        return Ok(());
    }
    if !super::interactive() {
        return Err(Error::ApprovalRequired(
            "destroy deletes the stack; no terminal to ask on: rerun with --yes".into(),
        ));
    }
    if !console.confirm(&format!("Delete stack {stack}?")) {
        return Err(Error::ApprovalRequired("not confirmed".into()));
    }
    Ok(())
}

/// `init`: `{"dir", "stage": "dev", "stackName", "region", "regionSource", "created":
/// [{"path", "mode"}], "caCertificate", "caKey"}` (paths relative to `dir`; modes octal).
pub fn init(args: &Args, dir: &Path, name: Option<&str>, console: &Console) -> Result<i32, Error> {
    let report = crate::init::init(&crate::init::Options {
        dir: dir.to_path_buf(),
        name: name.map(str::to_string),
        region: args.region.clone(),
    })?;
    let created: Vec<_> = report
        .created
        .iter()
        .map(|(path, mode)| json!({"path": path, "mode": format!("{mode:04o}")}))
        .collect();
    console.result(
        &json!({
            "dir": report.dir.display().to_string(),
            "stage": crate::init::STAGE,
            "stackName": report.stack_name,
            "region": report.region,
            "regionSource": report.region_source.describe(),
            "created": created,
            "caCertificate": crate::init::CA_CERTIFICATE,
            "caKey": crate::init::CA_KEY,
        }),
        || init_text(&report, dir),
    );
    Ok(exit::OK)
}

fn init_text(r: &crate::init::Report, dir: &Path) -> String {
    use crate::init::{CA_CERTIFICATE, CA_DAYS, CA_KEY, STAGE};
    let mut text = format!(
        "initialized project {} in {}\n  stage {STAGE}: stack {}, region {} ({})\n",
        r.name,
        r.dir.display(),
        r.stack_name,
        r.region,
        r.region_source.describe()
    );
    for (path, mode) in &r.created {
        let what = match path.as_str() {
            CA_CERTIFICATE => format!(
                "development CA `{} development CA`, EC P-256, {} days",
                r.name, CA_DAYS
            ),
            CA_KEY => "its private key: secret, never committed".to_string(),
            _ => String::new(),
        };
        let line = format!("  created {path:<36} {mode:04o}  {what}");
        text.push_str(line.trim_end());
        text.push('\n');
    }
    let shown = display(dir);
    let cd = if shown.is_empty() || shown == "." {
        String::new()
    } else {
        format!("  cd {}\n", shell_word(&shown))
    };
    text.push_str(&format!(
        "\nnext steps:\n{cd}  jitr-infra validate     check the stage, write nothing\n  \
         jitr-infra synth        the CloudFormation template and Lambda zips, in jitr.out/{STAGE}\n  \
         jitr-infra deploy       deploy the stack (AWS credentials for {})\n\
         Keep {CA_KEY} out of git (.gitignore lists *.key): it signs your device certificates.\n\
         For CI, set JITR_INFRA_GIT in .github/workflows/jitr-infra.yml and the repository \
         variable JITR_DEPLOY_ROLE_ARN.\n",
        r.region
    ));
    text
}

/// `word` as one shell word: quoted when it holds anything but safe characters.
fn shell_word(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}
