//! `deploy` over many targets, in two rounds so approval is asked once: every target is
//! planned (its change set created and computed, nothing executed) at once; the caller shows
//! one grouped diff and asks; then the approved change sets execute at once. A target that
//! fails in either round is reported and the others go on.

use super::{each_with, Prefixed, TargetRun};
use crate::aws::{self, Clients};
use crate::deploy::{self, Options, Outcome, Planned, Reporter};
use crate::error::Error;
use crate::stage::{CapacityReport, Target};
use crate::synth::Synthesized;
use std::collections::BTreeMap;
use std::path::Path;

/// One target planned: its clients, its narrowed stage, and what the plan found.
pub struct PlannedTarget {
    pub clients: Clients,
    pub synthesized: Synthesized,
    pub planned: Planned,
    /// The reservation deploy decided for this target's account.
    pub capacity: Option<CapacityReport>,
}

impl PlannedTarget {
    /// The change set waiting for approval, if this target has one.
    pub fn ready(&self) -> Option<&deploy::Ready> {
        match &self.planned {
            Planned::Ready(r) => Some(r),
            Planned::NoChanges(_) => None,
        }
    }
}

/// `synthesized` narrowed to one target (its stage's region, partition and account).
pub fn for_target(synthesized: &Synthesized, target: &Target) -> Synthesized {
    Synthesized {
        stage: synthesized.stage.for_target(target),
        ..synthesized.clone()
    }
}

/// Round one: every target's clients (its role assumed), then [`deploy::plan`].
pub async fn plan_all(
    targets: Vec<(Target, aws::Target)>,
    root: &Path,
    synthesized: &Synthesized,
    opts: &Options,
    concurrency: usize,
    reporter: &dyn Reporter,
) -> Vec<TargetRun<PlannedTarget>> {
    each_with(targets, concurrency, |target, access| async move {
        let prefixed = Prefixed::new(target.label(), reporter);
        let clients = Clients::for_target(&access).await?;
        let s = for_target(synthesized, &target);
        let planned = deploy::plan(&clients, root, &s, opts, &prefixed).await?;
        Ok(PlannedTarget {
            clients,
            synthesized: s,
            planned,
            capacity: prefixed.capacity(),
        })
    })
    .await
}

/// What a target ends with: its outcome, or why not; the plan's capacity kept.
pub struct Finished {
    pub outcome: Outcome,
    pub capacity: Option<CapacityReport>,
    /// The resource changes of its change set (`+1 ~2 -0`), when it had one.
    pub changes: Option<String>,
    /// The stack's outputs: of the deployed stack, or read from the unchanged one.
    pub outputs: Option<BTreeMap<String, String>>,
}

/// Round two: every ready change set executed (at most `concurrency` at once); targets
/// without changes and failed targets are passed through. Durations are both rounds'.
pub async fn apply_all(
    planned: Vec<TargetRun<PlannedTarget>>,
    opts: &Options,
    concurrency: usize,
    reporter: &dyn Reporter,
) -> Vec<TargetRun<Finished>> {
    finish_all(planned, concurrency, |p, label| async move {
        let Planned::Ready(ready) = &p.planned else {
            unreachable!("finish_all passes only ready targets")
        };
        let prefixed = Prefixed::new(label, reporter);
        let stage = &p.synthesized.stage;
        deploy::apply(&p.clients, stage, ready, opts, &prefixed).await
    })
    .await
}

/// Round two when the change sets are not to execute: each discarded, the target failing
/// with `why` (approval refused).
pub async fn discard_all(
    planned: Vec<TargetRun<PlannedTarget>>,
    concurrency: usize,
    why: &(dyn Fn() -> Error + Sync),
) -> Vec<TargetRun<Finished>> {
    finish_all(planned, concurrency, |p, _| async move {
        if let Planned::Ready(ready) = &p.planned {
            deploy::discard(&p.clients, ready).await;
        }
        Err(why())
    })
    .await
}

/// Round two for `--no-execute`: the change sets are left for review.
pub async fn leave_all(planned: Vec<TargetRun<PlannedTarget>>) -> Vec<TargetRun<Finished>> {
    finish_all(planned, 1, |p, _| async move {
        let Planned::Ready(ready) = &p.planned else {
            unreachable!("finish_all passes only ready targets")
        };
        Ok(deploy::created(ready))
    })
    .await
}

/// Runs `op` on every ready target; the others keep their result.
async fn finish_all<F, Fut>(
    planned: Vec<TargetRun<PlannedTarget>>,
    concurrency: usize,
    op: F,
) -> Vec<TargetRun<Finished>>
where
    F: Fn(PlannedTarget, String) -> Fut,
    Fut: std::future::Future<Output = Result<Outcome, Error>>,
{
    let plan_durations: Vec<std::time::Duration> = planned.iter().map(|r| r.duration).collect();
    let items: Vec<(Target, Result<PlannedTarget, Error>)> = planned
        .into_iter()
        .map(|run| (run.target, run.result))
        .collect();
    let op = &op;
    let mut runs = each_with(items, concurrency, |target, result| async move {
        let p = result?;
        let capacity = p.capacity.clone();
        let changes = p.ready().map(|r| super::Row::changes_of(&r.diff));
        let (outcome, outputs) = match &p.planned {
            Planned::NoChanges(o) => {
                let stack = p.synthesized.stage.stack_name.as_str();
                let outputs = deploy::stack::outputs(&p.clients, stack).await?;
                (o.clone(), Some(outputs))
            }
            Planned::Ready(_) => {
                let o = op(p, target.label()).await?;
                let outputs = match &o {
                    Outcome::Deployed { outputs, .. } => Some(outputs.clone()),
                    _ => None,
                };
                (o, outputs)
            }
        };
        Ok(Finished {
            outcome,
            capacity,
            changes,
            outputs,
        })
    })
    .await;
    for (run, planning) in runs.iter_mut().zip(plan_durations) {
        run.duration += planning;
    }
    runs
}
