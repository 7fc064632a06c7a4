//! Where every byte of output goes: the writers `run` was given. Results go to `out` (text,
//! or one JSON document with `--json`); progress, events, diffs and questions to `err`
//! (nothing but questions with `--json`). The [`Console`] is also the deploy [`Reporter`].

use crate::deploy::{destroy::DestroyPlan, Outcome, Reporter, StackEvent};
use crate::diff::StackDiff;
use crate::stage::CapacityReport;
use std::cell::RefCell;
use std::io::{IsTerminal, Write};
use std::path::Path;

pub struct Console<'a> {
    out: RefCell<&'a mut dyn Write>,
    err: RefCell<&'a mut dyn Write>,
    json: bool,
    /// Colour the diff on stderr (a terminal, no NO_COLOR, not CI).
    color: bool,
    last_diff: RefCell<Option<StackDiff>>,
    last_capacity: RefCell<Option<CapacityReport>>,
}

impl<'a> Console<'a> {
    pub fn new(out: &'a mut dyn Write, err: &'a mut dyn Write, json: bool) -> Console<'a> {
        Console {
            out: RefCell::new(out),
            err: RefCell::new(err),
            json,
            color: color(true),
            last_diff: RefCell::new(None),
            last_capacity: RefCell::new(None),
        }
    }

    pub fn json(&self) -> bool {
        self.json
    }

    /// Writes to stdout; a closed pipe (`jitr-infra list | head`) is not an error.
    pub fn print(&self, text: &str) {
        let mut out = self.out.borrow_mut();
        let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    }

    /// The command's result as one pretty JSON document on stdout.
    pub fn print_json(&self, value: &impl serde::Serialize) {
        let text = serde_json::to_string_pretty(value).expect("our types serialize");
        self.print(&format!("{text}\n"));
    }

    /// The result: JSON with `--json`, else the text.
    pub fn result(&self, value: &impl serde::Serialize, text: impl FnOnce() -> String) {
        if self.json {
            self.print_json(value);
        } else {
            self.print(&text());
        }
    }

    /// Writes to stderr as it is (an error's text, a plan), in either mode.
    pub fn note(&self, text: &str) {
        let mut err = self.err.borrow_mut();
        let _ = err.write_all(text.as_bytes()).and_then(|_| err.flush());
    }

    /// The capacity the reporter was last shown (for `deploy --json`).
    pub fn last_capacity(&self) -> Option<CapacityReport> {
        self.last_capacity.borrow().clone()
    }

    /// The diff the reporter was last shown (for the job summary).
    pub fn last_diff(&self) -> Option<StackDiff> {
        self.last_diff.borrow().clone()
    }
}

/// Progress on stderr (plain lines: they read well in CI logs too), diffs coloured on a
/// terminal, questions on the terminal.
impl Reporter for Console<'_> {
    fn progress(&self, line: &str) {
        if !self.json {
            self.note(&format!("{line}\n"));
        }
    }

    fn event(&self, event: &StackEvent) {
        // With --json the events are in the result.
        self.progress(&event.line());
    }

    fn diff(&self, d: &StackDiff) {
        *self.last_diff.borrow_mut() = Some(d.clone());
        if !self.json {
            self.note(&crate::diff::render_text(d, self.color));
        }
    }

    fn capacity(&self, report: &CapacityReport) {
        *self.last_capacity.borrow_mut() = Some(report.clone());
        self.progress(&report.line());
    }

    fn confirm(&self, question: &str) -> bool {
        self.note(&format!("{question} [y/N] "));
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).is_ok()
            && matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
    }
}

/// Colour on that stream: a terminal, and neither NO_COLOR nor CI set.
pub fn color(for_stderr: bool) -> bool {
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
pub fn step_summary(markdown: &str) {
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
        {
            let _ = writeln!(f, "{markdown}");
        }
    }
}

pub fn describe_outcome(o: &Outcome) -> String {
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
            ..
        } => {
            let mut t = format!("stack {stack_name}: {stack_status}\n");
            for (k, v) in outputs {
                t.push_str(&format!("  {k} = {v}\n"));
            }
            t
        }
    }
}

/// What `destroy` is about to do, for the operator to read before confirming.
pub fn destroy_plan_text(plan: &DestroyPlan, detach_devices: bool) -> String {
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
    for rule in &plan.registration_rules {
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

/// A path as the user would type it: relative to the current directory when inside it.
pub fn display(p: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| p.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| p.to_path_buf())
        .display()
        .to_string()
}

pub fn human(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}
