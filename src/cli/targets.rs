//! `diff`, `deploy`, `destroy` and `status` for a stage that lists its `targets:`: each runs on
//! every target (or those `--target` picks), `--concurrency` at once, with progress lines
//! prefixed by the target, one grouped diff, one question, and a summary table (the result
//! on stdout). With `--json` the result is `{"ok", "stage", "stackName", "targets": [...]}`,
//! one entry per target (README "Several regions and accounts").

use super::console::{self, Console};
use super::{Args, DeployArgs};
use crate::deploy::{self, destroy, Outcome, Reporter as _};
use crate::error::{exit, Error};
use crate::fanout::{self, deploy::Finished, Prefixed, Row, TargetRun};
use crate::stage::{CapacityReport, Stage, Target};
use crate::synth::Synthesized;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The targets this run works on, each with how to reach it.
fn access(args: &Args, st: &Stage) -> Result<Vec<(Target, crate::aws::Target)>, Error> {
    let targets = args.stage_targets(st)?;
    Ok(targets
        .into_iter()
        .map(|t| {
            let a = args.aws_target(&st.name, &t);
            (t, a)
        })
        .collect())
}

fn announce(
    console: &Console,
    verb: &str,
    st: &Stage,
    targets: &[(Target, crate::aws::Target)],
    args: &Args,
) {
    let labels: Vec<String> = targets.iter().map(|(t, _)| t.label()).collect();
    console.progress(&format!(
        "{verb} stack {} in {} target{} ({} at a time): {}",
        st.stack_name,
        labels.len(),
        if labels.len() == 1 { "" } else { "s" },
        args.concurrency.min(labels.len().max(1)),
        labels.join(", ")
    ));
}

/// What each target's run says: a word for the table (`deployed`), its resource changes
/// (`+1 ~2 -0`) and its own `--json` fields.
struct Said {
    word: &'static str,
    changes: Option<String>,
    json: Value,
}

/// The table rows and the `--json` entries of `runs`, each told by `say` (a failed target:
/// `FAILED` or `not approved`, with its error).
fn report<T>(runs: &[TargetRun<T>], say: impl Fn(&T) -> Said) -> (Vec<Row>, Vec<Value>) {
    let mut rows = Vec::new();
    let mut entries = Vec::new();
    for run in runs {
        let mut v = json!({
            "target": run.label(),
            "region": run.target.region,
            "account": run.target.account,
            "durationSeconds": (run.duration.as_secs_f64() * 10.0).round() / 10.0,
        });
        let (word, changes) = match &run.result {
            Ok(t) => {
                let said = say(t);
                if let (Value::Object(m), Value::Object(e)) = (&mut v, said.json) {
                    m.extend(e);
                }
                (said.word, said.changes)
            }
            Err(e) => {
                v["error"] = json!({"message": e.to_string(), "exitCode": e.exit_code()});
                (failed(e), None)
            }
        };
        v["result"] = json!(word);
        rows.push(Row {
            target: run.label(),
            result: word.to_string(),
            changes: changes.unwrap_or_else(|| "-".into()),
            duration: run.duration,
            error: run.result.as_ref().err().map(|e| e.to_string()),
        });
        entries.push(v);
    }
    (rows, entries)
}

/// Prints the result (the table, or `{"ok", "stage", "stackName", "targets"}`) and returns
/// the exit code: [`fanout::exit_code`], or `when_ok` when every target succeeded.
fn finish<T>(
    console: &Console,
    st: &Stage,
    runs: &[TargetRun<T>],
    text: String,
    entries: Vec<Value>,
    when_ok: i32,
) -> i32 {
    let code = match fanout::exit_code(runs) {
        exit::OK => when_ok,
        c => c,
    };
    console.result(
        &json!({"ok": code == exit::OK, "stage": st.name, "stackName": st.stack_name,
            "targets": entries}),
        || text,
    );
    code
}

/// What a failed target reads as in the table.
fn failed(e: &Error) -> &'static str {
    match e {
        Error::ApprovalRequired(_) => "not approved",
        _ => "FAILED",
    }
}

/// `diff` over the targets: one grouped diff (each change once, with the targets it is in);
/// exit 3 when any target would change, 1 when any failed.
pub fn diff(args: &Args, s: &Synthesized, console: &Console) -> Result<i32, Error> {
    let rt = super::commands::runtime()?;
    let targets = access(args, &s.stage)?;
    announce(console, "comparing", &s.stage, &targets, args);
    let runs = rt.block_on(fanout::each_with(
        targets,
        args.concurrency,
        |t, a| async move {
            let clients = crate::aws::Clients::for_target(&a).await?;
            deploy::diff_stack(&clients, &fanout::deploy::for_target(s, &t)).await
        },
    ));
    let (rows, entries) = report(&runs, |(d, cas)| Said {
        word: if d.is_empty() {
            "no changes"
        } else {
            "changes"
        },
        changes: Some(Row::changes_of(d)),
        json: json!({"diff": d, "cas": cas}),
    });
    let mut diffs = Vec::new();
    let (mut ca_lines, mut ca_warnings) = (Vec::new(), Vec::new());
    for run in &runs {
        if let Ok((d, cas)) = &run.result {
            diffs.push((run.label(), d.clone()));
            ca_lines.push((run.label(), cas.lines()));
            ca_warnings.push((run.label(), cas.warnings()));
        }
    }
    // As for one stack: warnings on stderr; the diff, the CA lines and the capacity are the
    // result on stdout (before the table), so `diff > file` keeps them.
    for line in collapse(&ca_warnings) {
        console.note(&format!("{line}\n"));
    }
    let grouped = crate::diff::group_by_targets(&diffs);
    let title = format!("jitr-infra diff: {}", s.stage.stack_name);
    console::step_summary(&crate::diff::render_grouped_markdown(&grouped, &title));
    let mut text = crate::diff::render_grouped_text(&grouped, console::color(false));
    for line in collapse(&ca_lines) {
        text.push_str(&format!("{line}\n"));
    }
    text.push_str(&format!(
        "{}\n\n{}",
        CapacityReport::of(&s.stage, None).line(),
        fanout::summary(&rows)
    ));
    let changed = diffs.iter().any(|(_, d)| !d.is_empty());
    let when_ok = if changed { exit::CHANGES } else { exit::OK };
    Ok(finish(console, &s.stage, &runs, text, entries, when_ok))
}

/// The grouped diff on stderr (text mode) and in the job summary.
fn show_grouped(console: &Console, diffs: &[(String, crate::diff::StackDiff)], title: &str) {
    let grouped = crate::diff::group_by_targets(diffs);
    if !console.json() && !diffs.is_empty() {
        console.note(&crate::diff::render_grouped_text(
            &grouped,
            console::color(true),
        ));
    }
    console::step_summary(&crate::diff::render_grouped_markdown(&grouped, title));
}

/// Each target's lines, each distinct line once: `line (in all N targets)` when every target
/// has it, else `[target, target] line`; in the order they first appear.
fn collapse(per_target: &[(String, Vec<String>)]) -> Vec<String> {
    let mut seen: Vec<(&str, Vec<&str>)> = Vec::new();
    for (label, lines) in per_target {
        for line in lines {
            match seen.iter_mut().find(|(l, _)| l == line) {
                Some((_, labels)) => labels.push(label),
                None => seen.push((line, vec![label])),
            }
        }
    }
    seen.into_iter()
        .map(|(line, labels)| match labels.len() {
            n if n == per_target.len() && n > 1 => format!("{line} (in all {n} targets)"),
            _ => format!("[{}] {line}", labels.join(", ")),
        })
        .collect()
}

/// `deploy` over the targets: plan all, one grouped diff, one approval, execute all.
pub fn deploy(
    args: &Args,
    d: &DeployArgs,
    s: &Synthesized,
    console: &Console,
) -> Result<i32, Error> {
    let rt = super::commands::runtime()?;
    let targets = access(args, &s.stage)?;
    let opts = args.deploy_options();
    announce(console, "deploying", &s.stage, &targets, args);
    let planned = rt.block_on(fanout::deploy::plan_all(
        targets,
        &args.root,
        s,
        &opts,
        args.concurrency,
        console,
    ));
    let diffs: Vec<(String, crate::diff::StackDiff)> = planned
        .iter()
        .filter_map(|r| {
            let ready = r.result.as_ref().ok()?.ready()?;
            Some((r.label(), ready.diff.clone()))
        })
        .collect();
    show_grouped(
        console,
        &diffs,
        &format!("jitr-infra deploy: {}", s.stage.stack_name),
    );
    let finished = rt.block_on(decide(&opts, &diffs, planned, args.concurrency, console));
    if let Some(path) = &d.outputs_file {
        write_outputs(path, &finished)?;
    }
    let (rows, entries) = report(&finished, |f| Said {
        word: outcome_word(&f.outcome),
        changes: f.changes.clone(),
        json: json!({"outcome": f.outcome, "capacity": f.capacity}),
    });
    let text = fanout::summary(&rows);
    Ok(finish(
        console,
        &s.stage,
        &finished,
        text,
        entries,
        exit::OK,
    ))
}

fn outcome_word(o: &Outcome) -> &'static str {
    match o {
        Outcome::NoChanges { .. } => "no changes",
        Outcome::Deployed { .. } => "deployed",
        Outcome::ChangeSetCreated { .. } => "change set created",
    }
}

/// Approval once for every target: the reasons, per target; then execute, leave (with
/// `--no-execute`) or discard every change set.
async fn decide(
    opts: &deploy::Options,
    diffs: &[(String, crate::diff::StackDiff)],
    planned: Vec<TargetRun<fanout::deploy::PlannedTarget>>,
    concurrency: usize,
    console: &Console<'_>,
) -> Vec<TargetRun<Finished>> {
    if !opts.execute {
        return fanout::deploy::leave_all(planned).await;
    }
    let reasons: Vec<String> = diffs
        .iter()
        .filter_map(|(label, d)| {
            deploy::approval_needed(opts.require_approval, d).map(|r| format!("  {label}: {r}"))
        })
        .collect();
    if reasons.is_empty() {
        return fanout::deploy::apply_all(planned, opts, concurrency, console).await;
    }
    console.note(&format!(
        "approval needed in {} of {} target(s) with changes:\n{}\n",
        reasons.len(),
        diffs.len(),
        reasons.join("\n")
    ));
    let question = format!("Deploy the changes above to {} target(s)?", diffs.len());
    if opts.interactive && console.confirm(&question) {
        return fanout::deploy::apply_all(planned, opts, concurrency, console).await;
    }
    let why = if opts.interactive {
        "not approved; every change set was deleted".to_string()
    } else {
        format!(
            "approval needed and no terminal to ask on: review the diff above and rerun with \
             --require-approval never (now: {:?}); every change set was deleted",
            opts.require_approval
        )
        .to_lowercase()
    };
    let refuse = move || Error::ApprovalRequired(why.clone());
    fanout::deploy::discard_all(planned, concurrency, &refuse).await
}

/// `--outputs-file`: `{"<region>/<account>": {"<output>": "<value>"}}`, one object per target
/// whose stack exists (a failed target has none), written to a temporary file and renamed.
fn write_outputs(path: &std::path::Path, runs: &[TargetRun<Finished>]) -> Result<(), Error> {
    let by_target: BTreeMap<String, &BTreeMap<String, String>> = runs
        .iter()
        .filter_map(|r| Some((r.label(), r.result.as_ref().ok()?.outputs.as_ref()?)))
        .collect();
    let text = serde_json::to_string_pretty(&by_target).expect("outputs serialize") + "\n";
    let tmp = path.with_extension("tmp-jitr");
    std::fs::write(&tmp, text).map_err(crate::error::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(crate::error::io(path))
}

/// `destroy` over the targets: every plan shown, one confirmation, then every stack deleted.
pub fn destroy(
    args: &Args,
    st: &Stage,
    yes: bool,
    detach: bool,
    console: &Console,
) -> Result<i32, Error> {
    let rt = super::commands::runtime()?;
    let targets = access(args, st)?;
    announce(console, "destroying", st, &targets, args);
    let plans = rt.block_on(destroy_plans(targets, st, detach, args.concurrency));
    for run in &plans {
        if let Ok((_, Some(plan))) = &run.result {
            for line in super::console::destroy_plan_text(plan, detach).lines() {
                console.progress(&format!("[{}] {line}", run.label()));
            }
        }
    }
    let stacks = plans
        .iter()
        .filter(|r| matches!(r.result, Ok((_, Some(_)))))
        .count();
    let what = format!(
        "{stacks} stacks named {} (every target above)",
        st.stack_name
    );
    let confirmed = match stacks {
        0 => Ok(()),
        _ => super::commands::confirm_destroy(&what, yes, console),
    };
    let opts = args.deploy_options();
    let planning: Vec<_> = plans.iter().map(|r| r.duration).collect();
    let items: Vec<_> = plans.into_iter().map(|r| (r.target, r.result)).collect();
    let mut runs = rt.block_on(fanout::each_with(items, args.concurrency, |t, planned| {
        let (opts, confirmed) = (&opts, &confirmed);
        async move {
            let (clients, plan) = planned?;
            let Some(plan) = plan else { return Ok(None) };
            if let Err(e) = confirmed {
                return Err(Error::ApprovalRequired(e.to_string()));
            }
            let prefixed = Prefixed::new(t.label(), console);
            let settled = destroy::destroy(&clients, &plan, detach, opts, &prefixed).await?;
            Ok(Some((plan, settled)))
        }
    }));
    for (run, planned) in runs.iter_mut().zip(planning) {
        run.duration += planned;
    }
    let (rows, entries) = report(&runs, |d| match d {
        None => Said {
            word: "no stack",
            changes: None,
            json: json!({}),
        },
        Some((plan, settled)) => Said {
            word: "destroyed",
            changes: Some(format!("-{}", plan.resources.len())),
            json: json!({"stackStatus": settled.status.as_str(),
                "caRetained": plan.ca_retained, "events": settled.events}),
        },
    });
    Ok(finish(
        console,
        st,
        &runs,
        fanout::summary(&rows),
        entries,
        exit::OK,
    ))
}

/// Every target's clients and destroy plan (`None`: no stack), its account checked and the
/// plan admissible (`--detach-devices` when devices still use the policy).
async fn destroy_plans(
    targets: Vec<(Target, crate::aws::Target)>,
    st: &Stage,
    detach: bool,
    concurrency: usize,
) -> Vec<TargetRun<(crate::aws::Clients, Option<destroy::DestroyPlan>)>> {
    fanout::each_with(targets, concurrency, |t, a| async move {
        let clients = crate::aws::Clients::for_target(&a).await?;
        let narrowed = st.for_target(&t);
        deploy::account::check(&clients, &narrowed).await?;
        let plan = destroy::destroy_plan(&clients, &narrowed).await?;
        if let Some(p) = &plan {
            destroy::admissible(p, detach)?;
        }
        Ok((clients, plan))
    })
    .await
}

/// `status` over the targets: each target's report under its name; exit 5 when any needs
/// attention, 1 when any failed.
pub fn status(args: &Args, st: &Stage, max_pages: u32, console: &Console) -> Result<i32, Error> {
    let rt = super::commands::runtime()?;
    let targets = access(args, st)?;
    let runs = rt.block_on(fanout::each_with(
        targets,
        args.concurrency,
        |t, a| async move {
            let clients = crate::aws::Clients::for_target(&a).await?;
            let deployed = crate::ops::deployed(&clients, &st.for_target(&t), "report").await?;
            crate::ops::status::status(&clients, &deployed, max_pages).await
        },
    ));
    let (rows, entries) = report(&runs, |s| Said {
        word: if s.healthy {
            "healthy"
        } else {
            "needs attention"
        },
        changes: None,
        json: json!({"status": s}),
    });
    let mut text = String::new();
    for run in &runs {
        if let Ok(s) = &run.result {
            let shown = crate::ops::status_text::text(s);
            text.push_str(&format!("== {} ==\n{shown}\n", run.label()));
        }
    }
    text.push_str(&fanout::summary(&rows));
    let attention = runs
        .iter()
        .any(|r| r.result.as_ref().is_ok_and(|s| !s.healthy));
    let when_ok = if attention { exit::ATTENTION } else { exit::OK };
    Ok(finish(console, st, &runs, text, entries, when_ok))
}
