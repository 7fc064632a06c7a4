//! Watching a stack operation: an [`EventWatcher`] yields the stack's new events as typed
//! [`StackEvent`]s (every page of `DescribeStackEvents`, none lost between pages, none from
//! before the operation began); [`watch`] follows them until the stack settles and hands each
//! to the [`Reporter`], which prints it (or, for `--json`, keeps it for the result).

use super::stack::{describe, in_progress, succeeded};
use super::{aws_error, Options, Poll, Reporter};
use crate::aws::Clients;
use crate::error::Error;
use aws_sdk_cloudformation::types::{ResourceStatus, StackStatus};
use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;
use serde::Serialize;
use std::time::{Duration, Instant};

/// The stack itself, as a resource in its own events.
const STACK_TYPE: &str = "AWS::CloudFormation::Stack";

/// One stack event, as the watcher saw it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StackEvent {
    pub event_id: String,
    /// When CloudFormation recorded it (RFC 3339).
    pub timestamp: Option<String>,
    pub logical_id: String,
    pub resource_type: String,
    #[serde(serialize_with = "as_str")]
    pub status: ResourceStatus,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Seconds since the watch began when the event was seen.
    pub elapsed_seconds: f64,
}

fn as_str<S: serde::Serializer>(s: &ResourceStatus, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}

impl StackEvent {
    /// The progress line: elapsed time, status, type, logical id and reason.
    pub fn line(&self) -> String {
        format!(
            "{:>7.1}s  {:<28} {:<32} {}{}",
            self.elapsed_seconds,
            self.status.as_str(),
            self.resource_type,
            self.logical_id,
            if self.reason.is_empty() {
                String::new()
            } else {
                format!("  {}", self.reason)
            }
        )
    }

    /// A resource failed for a reason of its own (not cancelled because another failed).
    pub fn is_root_failure(&self) -> bool {
        use ResourceStatus as R;
        let failed = matches!(
            self.status,
            R::CreateFailed
                | R::DeleteFailed
                | R::ExportFailed
                | R::ExportRollbackFailed
                | R::ImportFailed
                | R::ImportRollbackFailed
                | R::RollbackFailed
                | R::UpdateFailed
                | R::UpdateRollbackFailed
        );
        failed && !self.reason.contains("cancelled") && self.resource_type != STACK_TYPE
    }

    /// The root cause line of a failed resource.
    pub fn cause(&self) -> String {
        format!(
            "{} ({}) {}: {}",
            self.logical_id,
            self.resource_type,
            self.status.as_str(),
            self.reason
        )
    }

    /// The stack's own status, when this is an event of the stack `stack` itself.
    pub fn stack_status(&self, stack: &str) -> Option<StackStatus> {
        (self.resource_type == STACK_TYPE && self.logical_id == stack)
            .then(|| StackStatus::from(self.status.as_str()))
    }
}

/// Yields a stack's events newer than a boundary, oldest first.
pub struct EventWatcher<'a> {
    clients: &'a Clients,
    stack_id: String,
    /// The newest event already yielded (or the last one before the operation).
    seen: Option<String>,
    /// The time of the operation's first event boundary: anything older is history.
    not_before: Option<DateTime>,
    started: Instant,
}

impl<'a> EventWatcher<'a> {
    /// Marks the stack's newest event now, before an operation starts: only later events
    /// are yielded.
    pub async fn before_operation(clients: &'a Clients, stack_id: &str) -> EventWatcher<'a> {
        let newest = clients
            .cfn
            .describe_stack_events()
            .stack_name(stack_id)
            .send()
            .await
            .ok()
            .and_then(|o| o.stack_events().first().cloned());
        EventWatcher {
            clients,
            stack_id: stack_id.to_string(),
            seen: newest
                .as_ref()
                .and_then(|e| e.event_id().map(str::to_string)),
            not_before: newest.as_ref().and_then(|e| e.timestamp().copied()),
            started: Instant::now(),
        }
    }

    /// Yields every event after `seen` (all of them when `None`).
    pub fn after(clients: &'a Clients, stack_id: &str, seen: Option<String>) -> EventWatcher<'a> {
        EventWatcher {
            clients,
            stack_id: stack_id.to_string(),
            seen,
            not_before: None,
            started: Instant::now(),
        }
    }

    /// The events recorded since the last call, oldest first. Follows `NextToken` until it
    /// meets the last event seen, so a burst longer than a page loses nothing.
    pub async fn next_events(&mut self) -> Result<Vec<StackEvent>, Error> {
        let mut fresh = Vec::new();
        let mut token: Option<String> = None;
        let mut asked = std::collections::HashSet::new();
        'pages: loop {
            let out = self
                .clients
                .cfn
                .describe_stack_events()
                .stack_name(&self.stack_id)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| aws_error("DescribeStackEvents", &e))?;
            // Newest first.
            for e in out.stack_events() {
                let older = match (e.timestamp(), &self.not_before) {
                    (Some(t), Some(limit)) => t < limit,
                    _ => false,
                };
                if older || (self.seen.is_some() && e.event_id() == self.seen.as_deref()) {
                    break 'pages;
                }
                fresh.push(self.typed(e));
            }
            match out.next_token() {
                // A token repeated would page forever.
                Some(t) if !t.is_empty() && asked.insert(t.to_string()) => {
                    token = Some(t.to_string())
                }
                _ => break,
            }
        }
        fresh.reverse();
        if let Some(last) = fresh.last() {
            self.seen = Some(last.event_id.clone());
        }
        Ok(fresh)
    }

    fn typed(&self, e: &aws_sdk_cloudformation::types::StackEvent) -> StackEvent {
        StackEvent {
            event_id: e.event_id().unwrap_or_default().to_string(),
            timestamp: e.timestamp().and_then(|t| t.fmt(Format::DateTime).ok()),
            logical_id: e.logical_resource_id().unwrap_or_default().to_string(),
            resource_type: e.resource_type().unwrap_or_default().to_string(),
            status: e
                .resource_status()
                .cloned()
                .unwrap_or_else(|| ResourceStatus::from("")),
            reason: e.resource_status_reason().unwrap_or_default().to_string(),
            elapsed_seconds: self.started.elapsed().as_secs_f64(),
        }
    }
}

/// How a watched operation ended.
#[derive(Debug, Clone)]
pub struct Settled {
    pub ok: bool,
    pub status: StackStatus,
    /// The first failures and their reasons, in order: the root cause, not the cascade.
    pub causes: Vec<String>,
    /// Every event of the operation, oldest first.
    pub events: Vec<StackEvent>,
}

/// Follows the stack's new events until the stack itself settles. Polls fast at first, then
/// once a second; every tenth look asks the stack itself instead, in case an event is missed.
pub async fn watch(
    stack: &str,
    watcher: &mut EventWatcher<'_>,
    timeout: Duration,
    poll: Poll,
    reporter: &dyn Reporter,
) -> Result<Settled, Error> {
    let started = Instant::now();
    let mut events: Vec<StackEvent> = Vec::new();
    let mut interval = poll.first;
    let mut ticks = 0u32;
    loop {
        ticks += 1;
        let mut settled = None;
        if ticks % 10 == 0 {
            match describe(watcher.clients, &watcher.stack_id).await? {
                None => settled = Some(StackStatus::DeleteComplete),
                Some(st) => match st.stack_status() {
                    Some(s) if !in_progress(s) => settled = Some(s.clone()),
                    _ => {
                        tokio::time::sleep(interval).await;
                        interval = poll.next(interval);
                        continue;
                    }
                },
            }
        }
        for e in watcher.next_events().await? {
            reporter.event(&e);
            if let Some(s) = e.stack_status(stack).filter(|s| !in_progress(s)) {
                settled = Some(s);
            }
            events.push(e);
        }
        if let Some(status) = settled {
            let causes = events
                .iter()
                .filter(|e| e.is_root_failure())
                .map(StackEvent::cause)
                .take(5)
                .collect();
            return Ok(Settled {
                ok: succeeded(&status),
                status,
                causes,
                events,
            });
        }
        if started.elapsed() >= timeout {
            return Err(Error::Timeout {
                what: format!("{stack}: not settled"),
                after: timeout,
                still_running: true,
            });
        }
        tokio::time::sleep(interval).await;
        interval = poll.next(interval);
    }
}

/// [`watch`]es until the stack settles; a bad final state is an error with its root causes.
pub async fn settle(
    stack: &str,
    watcher: &mut EventWatcher<'_>,
    opts: &Options,
    reporter: &dyn Reporter,
) -> Result<Settled, Error> {
    let settled = watch(stack, watcher, opts.timeout, opts.poll, reporter).await?;
    if !settled.ok {
        return Err(Error::DeployFailed {
            stack: stack.to_string(),
            status: settled.status.as_str().to_string(),
            causes: settled.causes,
        });
    }
    Ok(settled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: ResourceStatus, reason: &str) -> StackEvent {
        StackEvent {
            event_id: "e1".into(),
            timestamp: Some("2026-11-28T10:00:00Z".into()),
            logical_id: "CaRegistration".into(),
            resource_type: "Custom::JitrCaRegistration".into(),
            status,
            reason: reason.into(),
            elapsed_seconds: 1.5,
        }
    }

    #[test]
    fn an_event_prints_as_a_line_and_serializes_typed() {
        let e = event(ResourceStatus::CreateFailed, "expired");
        assert_eq!(
            e.line(),
            "    1.5s  CREATE_FAILED                Custom::JitrCaRegistration       CaRegistration  expired"
        );
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"eventId": "e1", "timestamp": "2026-11-28T10:00:00Z",
                "logicalId": "CaRegistration", "resourceType": "Custom::JitrCaRegistration",
                "status": "CREATE_FAILED", "reason": "expired", "elapsedSeconds": 1.5})
        );
        assert!(e.is_root_failure());
        assert!(
            !event(ResourceStatus::CreateFailed, "Resource creation cancelled").is_root_failure()
        );
        assert!(!event(ResourceStatus::CreateComplete, "").is_root_failure());
    }

    #[test]
    fn the_deploy_result_carries_its_events() {
        let outcome = crate::deploy::Outcome::Deployed {
            stack_name: "jitr-dev".into(),
            stack_status: "CREATE_COMPLETE".into(),
            outputs: Default::default(),
            events: vec![event(ResourceStatus::CreateComplete, "")],
        };
        let v = serde_json::to_value(&outcome).unwrap();
        assert_eq!(v["outcome"], "deployed");
        assert_eq!(v["events"][0]["status"], "CREATE_COMPLETE");
        assert!(v["events"][0].get("reason").is_none(), "no empty reason");
    }

    #[test]
    fn only_the_stacks_own_events_settle_it() {
        let mut e = event(ResourceStatus::UpdateComplete, "");
        assert_eq!(e.stack_status("jitr-dev"), None);
        e.resource_type = STACK_TYPE.into();
        e.logical_id = "jitr-dev".into();
        assert_eq!(
            e.stack_status("jitr-dev"),
            Some(StackStatus::UpdateComplete)
        );
        assert!(!in_progress(&StackStatus::UpdateComplete));
        assert!(in_progress(&StackStatus::UpdateCompleteCleanupInProgress));
        assert!(
            in_progress(&StackStatus::from("SOME_FUTURE_STATE")),
            "unknown: wait"
        );
    }
}
