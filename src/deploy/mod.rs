//! `deploy`, `diff` and `destroy` through CloudFormation, one module per step.
//!
//! [`deploy`] reads as its steps: check the caller's account ([`account`]), bring the stack
//! into a state a change set can apply to ([`stack`]), decide the activator's reserved
//! concurrency ([`concurrency`]), make the verification certificate only when the CA is
//! registered ([`verification`]), publish the assets ([`publish`]), create the change set and
//! wait for it ([`change_set`]), show the diff, refuse what the stage's protection forbids
//! ([`protection`]), ask when the change needs approval ([`approval`]), execute, and watch the
//! stack's events until it settles ([`events`]). Everything is reported through [`Reporter`];
//! the result is a typed [`Outcome`]. [`destroy`] deletes a stage's stack.

pub mod account;
pub mod approval;
pub mod change_set;
pub mod concurrency;
pub mod destroy;
pub mod events;
pub mod protection;
pub mod publish;
pub mod stack;
pub mod verification;

pub use approval::{approval_needed, RequireApproval};
pub use change_set::{change_set_name, ChangeSetResult, MAX_CHANGE_SET_NAME};
pub use events::{Settled, StackEvent};
pub use verification::creates_registration;

use crate::aws::{self, Clients};
use crate::ca_summary::CaSummary;
use crate::diff::{self, ChangeSetChange, StackDiff};
use crate::error::Error;
use crate::stage::{CapacityReport, Stage};
use crate::synth::Synthesized;
pub use change_set::ChangeSet;
use change_set::ChangeSetRequest;
use events::EventWatcher;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// How often to look at CloudFormation while waiting: fast at first (most of our stacks
/// settle in seconds), then at most once a second.
#[derive(Debug, Clone, Copy)]
pub struct Poll {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Poll {
    fn default() -> Self {
        Poll {
            first: Duration::from_millis(100),
            max: Duration::from_secs(1),
        }
    }
}

impl Poll {
    fn next(&self, current: Duration) -> Duration {
        (current.mul_f64(1.5)).min(self.max)
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub require_approval: RequireApproval,
    /// `--no-execute`: create the change set and stop.
    pub execute: bool,
    /// A terminal is attached (stdin and stderr): prompting is allowed.
    pub interactive: bool,
    /// Longest wait for a stack another operation is changing.
    pub wait_for_other_operation: Duration,
    /// Longest wait for our own change set execution.
    pub timeout: Duration,
    pub poll: Poll,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            require_approval: RequireApproval::default(),
            execute: true,
            interactive: false,
            wait_for_other_operation: Duration::from_secs(30 * 60),
            timeout: Duration::from_secs(60 * 60),
            poll: Poll::default(),
        }
    }
}

/// Where progress, events, diffs and questions go. The CLI prints; tests record.
pub trait Reporter {
    /// A progress line (steps).
    fn progress(&self, line: &str);
    /// A stack event seen while watching an operation; printed as a progress line unless
    /// the reporter does otherwise.
    fn event(&self, event: &StackEvent) {
        self.progress(&event.line());
    }
    /// The change about to be made (or found, for `diff`).
    fn diff(&self, diff: &StackDiff);
    /// Asks a yes/no question; only called when [`Options::interactive`] is set.
    fn confirm(&self, question: &str) -> bool;
    /// How fast the stage onboards with the reservation deploy decided; a progress line unless
    /// the reporter does otherwise.
    fn capacity(&self, report: &CapacityReport) {
        self.progress(&report.line());
    }
}

/// What `deploy` did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum Outcome {
    /// The stack already matches: nothing was changed, no change set left behind.
    NoChanges { stack_name: String },
    /// The change set was executed and the stack settled in a good state.
    Deployed {
        stack_name: String,
        stack_status: String,
        outputs: BTreeMap<String, String>,
        /// The stack's events during the execution, oldest first.
        events: Vec<StackEvent>,
    },
    /// `--no-execute`: the change set is ready for review.
    ChangeSetCreated {
        stack_name: String,
        change_set_name: String,
        change_set_id: String,
    },
}

/// A deploy up to the decision: the change set is computed and shown, nothing is executed.
pub enum Planned {
    /// The stack already matches (the stage's protection was applied).
    NoChanges(Outcome),
    /// A change set waits for approval and execution.
    Ready(Box<Ready>),
}

/// A change set ready to execute, with what it changes.
pub struct Ready {
    pub stack: String,
    /// UPDATE of an existing stack, else CREATE (the stack is in REVIEW_IN_PROGRESS).
    pub update: bool,
    pub change_set: ChangeSet,
    /// The change, as the reporter was shown it.
    pub diff: StackDiff,
    /// The CAs the change adds and removes.
    pub cas: CaSummary,
}

/// Runs the whole deploy flow for a synthesized stage: [`plan`], approval, [`apply`].
pub async fn deploy(
    clients: &Clients,
    root: &Path,
    s: &Synthesized,
    opts: &Options,
    reporter: &dyn Reporter,
) -> Result<Outcome, Error> {
    let ready = match plan(clients, root, s, opts, reporter).await? {
        Planned::NoChanges(outcome) => return Ok(outcome),
        Planned::Ready(ready) => ready,
    };
    if !opts.execute {
        return Ok(created(&ready));
    }
    if let Err(refused) = approval::obtain(opts, &ready.diff, &ready.stack, reporter) {
        discard(clients, &ready).await;
        return Err(refused);
    }
    apply(clients, &s.stage, &ready, opts, reporter).await
}

/// Everything up to the decision: the account checked, the stack ready for a change set,
/// the reservation decided, the assets published, the change set created and computed, the
/// diff and the CA summary reported, the stage's protection checked.
pub async fn plan(
    clients: &Clients,
    root: &Path,
    s: &Synthesized,
    opts: &Options,
    reporter: &dyn Reporter,
) -> Result<Planned, Error> {
    let stage = &s.stage;
    let account = account::check(clients, stage).await?;
    let existing = stack::prepare(clients, &stage.stack_name, opts, reporter).await?;
    let reservation = concurrency::reserve(clients, root, stage, &account, reporter).await?;
    reporter.capacity(&CapacityReport::of(stage, Some(reservation.units())));
    let deployed =
        stack::deployed_template_of(clients, existing.as_ref(), &stage.stack_name).await?;
    diff::check_ca_mode(&stage.name, deployed.as_ref(), &s.template_json)?;
    let verification =
        verification::parameters(clients, root, stage, deployed.as_ref(), reporter).await?;
    let template_url = publish::publish(clients, &account, s, reporter).await?;

    let parameters = std::iter::once(reservation.parameter()).chain(verification);
    let request = ChangeSetRequest::new(s, existing.is_some(), parameters.collect(), template_url);
    let Some(change_set) = change_set::create(clients, s, &request, reporter).await? else {
        return no_changes(clients, stage, reporter).await;
    };
    let changes = match change_set::wait(clients, request.stack, &change_set.id, opts).await? {
        ChangeSetResult::Ready(changes) => changes,
        ChangeSetResult::NoChanges => {
            change_set::delete(clients, request.stack, &change_set.id).await;
            return no_changes(clients, stage, reporter).await;
        }
    };
    let d = diff_with(deployed.as_ref(), s, Some(&changes));
    reporter.diff(&d);
    // Before approval: what happens to the CAs, and the rename trap, loudly.
    let mut cas = ca_summary_of(deployed.as_ref(), s);
    crate::ca_summary::count_active(&clients.iot, &mut cas).await?;
    for line in cas.lines() {
        reporter.progress(&line);
    }
    let ready = Ready {
        stack: request.stack.to_string(),
        update: request.update,
        change_set,
        diff: d,
        cas,
    };
    protection::check_change(clients, stage, &ready.change_set.id, &ready.diff).await?;
    Ok(Planned::Ready(Box::new(ready)))
}

/// Deletes a change set that will not be executed (and the stack a CREATE change set left
/// in REVIEW_IN_PROGRESS).
pub async fn discard(clients: &Clients, ready: &Ready) {
    change_set::discard(
        clients,
        ready.stack.as_str(),
        ready.update,
        &ready.change_set.id,
    )
    .await;
}

/// Executes the approved change set, watches the stack settle, and applies the stage's
/// protection.
pub async fn apply(
    clients: &Clients,
    stage: &Stage,
    ready: &Ready,
    opts: &Options,
    reporter: &dyn Reporter,
) -> Result<Outcome, Error> {
    let stack = ready.stack.as_str();
    let stack_id = stack::stack_id(clients, stack).await?;
    let mut watcher = EventWatcher::before_operation(clients, &stack_id).await;
    if ready.update {
        protection::before_execute(clients, stage, reporter).await?;
    }
    reporter.progress(&format!("executing {}", ready.change_set.name));
    change_set::execute(clients, stack, &ready.change_set.id).await?;
    let settled = events::settle(stack, &mut watcher, opts, reporter).await?;
    protection::apply(clients, stage, reporter).await?;
    Ok(Outcome::Deployed {
        stack_name: stack.to_string(),
        stack_status: settled.status.as_str().to_string(),
        outputs: stack::outputs(clients, stack).await?,
        events: settled.events,
    })
}

/// Nothing to change: the stage's protection is still applied (switching it on in the stage
/// file changes no template).
async fn no_changes(
    clients: &Clients,
    stage: &Stage,
    reporter: &dyn Reporter,
) -> Result<Planned, Error> {
    reporter.progress("no changes");
    protection::apply(clients, stage, reporter).await?;
    Ok(Planned::NoChanges(Outcome::NoChanges {
        stack_name: stage.stack_name.clone(),
    }))
}

/// `--no-execute`: the change set is left for review.
pub fn created(ready: &Ready) -> Outcome {
    Outcome::ChangeSetCreated {
        stack_name: ready.stack.clone(),
        change_set_name: ready.change_set.name.clone(),
        change_set_id: ready.change_set.id.clone(),
    }
}

fn diff_with(
    deployed: Option<&serde_json::Value>,
    s: &Synthesized,
    changes: Option<&[ChangeSetChange]>,
) -> StackDiff {
    let synthesized: serde_json::Value =
        serde_json::from_str(&s.template_json).expect("our own template is JSON");
    diff::diff(deployed, &synthesized, changes)
}

/// The template diff between the deployed stack (if any) and the synthesized one.
pub async fn diff_stack(
    clients: &Clients,
    s: &Synthesized,
) -> Result<(StackDiff, CaSummary), Error> {
    let name = s.stage.stack_name.as_str();
    let deployed = match stack::describe(clients, name).await? {
        Some(st)
            if st.stack_status()
                != Some(&aws_sdk_cloudformation::types::StackStatus::ReviewInProgress) =>
        {
            Some(stack::deployed_template(clients, name).await?)
        }
        _ => None,
    };
    diff::check_ca_mode(&s.stage.name, deployed.as_ref(), &s.template_json)?;
    let mut cas = ca_summary_of(deployed.as_ref(), s);
    crate::ca_summary::count_active(&clients.iot, &mut cas).await?;
    Ok((diff_with(deployed.as_ref(), s, None), cas))
}

/// The CAs the deploy adds and removes, against the deployed template.
fn ca_summary_of(deployed: Option<&serde_json::Value>, s: &Synthesized) -> CaSummary {
    let synthesized: serde_json::Value =
        serde_json::from_str(&s.template_json).expect("synth writes JSON");
    crate::ca_summary::ca_summary(deployed, &synthesized, &s.stage)
}

/// A failed AWS call as the library's error.
pub(crate) fn aws_error<E, R>(
    operation: &str,
    e: &aws_sdk_cloudformation::error::SdkError<E, R>,
) -> Error
where
    E: aws_sdk_cloudformation::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    Error::Aws(aws::error(operation, e))
}
