//! One command over many targets: a stage's stack in several regions and accounts.
//!
//! [`each_with`] runs a per-target operation on every target with at most `concurrency` running
//! at once (one thread: the work is waiting on AWS); a target that fails does not stop the
//! others, and every target's result comes back, in the stage file's order, with how long it
//! took. [`Prefixed`] is the per-target [`Reporter`](crate::deploy::Reporter): progress lines
//! carry the target, diffs are kept for the one grouped diff. [`summary`] is the table every
//! fanned-out command ends with.

pub mod deploy;
mod reporter;
mod summary;

pub use reporter::Prefixed;
pub use summary::{summary, Row};

use crate::error::Error;
use crate::stage::Target;
use futures_util::stream::{self, StreamExt};
use std::future::Future;
use std::time::{Duration, Instant};

/// One target's result.
#[derive(Debug)]
pub struct TargetRun<T> {
    pub target: Target,
    pub result: Result<T, Error>,
    pub duration: Duration,
}

impl<T> TargetRun<T> {
    pub fn label(&self) -> String {
        self.target.label()
    }
}

/// Runs `op` for every target (with something of its own, which `op` gets by value), at
/// most `concurrency` at once; the results in the order of `items`, whatever order they
/// finished in.
pub async fn each_with<I, T, F, Fut>(
    items: Vec<(Target, I)>,
    concurrency: usize,
    op: F,
) -> Vec<TargetRun<T>>
where
    F: Fn(Target, I) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let op = &op;
    let mut runs: Vec<(usize, TargetRun<T>)> = stream::iter(items.into_iter().enumerate())
        .map(|(i, (target, item))| async move {
            let started = Instant::now();
            let result = op(target.clone(), item).await;
            let run = TargetRun {
                target,
                result,
                duration: started.elapsed(),
            };
            (i, run)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    runs.sort_by_key(|(i, _)| *i);
    runs.into_iter().map(|(_, run)| run).collect()
}

/// The exit code of a fanned-out command: 0 when every target succeeded; a failed target's
/// code when they all failed alike (4 for approvals), else 1.
pub fn exit_code<T>(runs: &[TargetRun<T>]) -> i32 {
    let codes: Vec<i32> = runs
        .iter()
        .filter_map(|r| r.result.as_ref().err().map(Error::exit_code))
        .collect();
    match codes.first() {
        None => crate::error::exit::OK,
        Some(&c) if codes.len() == runs.len() && codes.iter().all(|&o| o == c) => c,
        Some(_) => crate::error::exit::ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn target(region: &str) -> Target {
        Target {
            region: region.into(),
            partition: "aws",
            account: Some("111111111111".into()),
            role_arn: None,
            field: "targets[0]".into(),
        }
    }

    #[test]
    fn bounded_in_stage_order_and_a_failure_stops_nothing() {
        let targets: Vec<Target> = ["a-1", "b-1", "c-1", "d-1", "e-1"]
            .iter()
            .map(|r| target(r))
            .collect();
        let running = Cell::new(0);
        let most = Cell::new(0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let items = targets.iter().map(|t| (t.clone(), ())).collect();
        let runs = rt.block_on(each_with(items, 2, |t, ()| {
            let (running, most) = (&running, &most);
            async move {
                running.set(running.get() + 1);
                most.set(most.get().max(running.get()));
                // The first finishes last: order must still be the stage's.
                let ms = if t.region == "a-1" { 60 } else { 10 };
                tokio::time::sleep(Duration::from_millis(ms)).await;
                running.set(running.get() - 1);
                if t.region == "b-1" {
                    return Err(Error::Usage("b failed".into()));
                }
                Ok(t.region.clone())
            }
        }));
        assert_eq!(most.get(), 2, "at most the concurrency, and it is used");
        let labels: Vec<String> = runs.iter().map(|r| r.target.region.clone()).collect();
        assert_eq!(labels, ["a-1", "b-1", "c-1", "d-1", "e-1"]);
        assert!(runs[1].result.is_err());
        assert!(runs.iter().filter(|r| r.result.is_ok()).count() == 4);
        assert_eq!(exit_code(&runs), crate::error::exit::ERROR);
        assert!(runs[0].duration >= Duration::from_millis(60));
    }

    #[test]
    fn exit_codes_say_whether_all_succeeded() {
        let run = |result: Result<(), Error>| TargetRun {
            target: target("eu-west-1"),
            result,
            duration: Duration::ZERO,
        };
        assert_eq!(exit_code(&[run(Ok(())), run(Ok(()))]), 0);
        let refused = || Error::ApprovalRequired("no".into());
        assert_eq!(exit_code(&[run(Err(refused())), run(Err(refused()))]), 4);
        assert_eq!(exit_code(&[run(Ok(())), run(Err(refused()))]), 1);
    }
}
