//! The container's memory of certificates it settled lately.
//!
//! A pending device re-publishes its registered event on every reconnect, and Lambda delivers
//! an asynchronous event at least once, so the same certificate id arrives again and again,
//! often at the container that just activated it. Each of those would cost a
//! DescribeCertificate out of a quota the activations need. The memory answers them with
//! zero AWS calls: up to [`CAPACITY`] ids, each for [`TTL`], holding final outcomes only
//! (activated, already active, revoked, not pending, another CA's); a certificate that was
//! rejected and left pending may pass its checks later and is not remembered.
//!
//! It is per container and best effort: another container, or this one after a cold start,
//! pays the DescribeCertificate. The sweep never reads it (it reads the registry itself).

use jitr_contract::activator::{ActivationReport, Outcome, ReasonCode};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most certificate ids kept; the oldest go first.
pub const CAPACITY: usize = 10_000;
/// How long an id is kept.
pub const TTL: Duration = Duration::from_secs(15 * 60);

#[derive(Default)]
struct Entries {
    by_id: HashMap<String, (Instant, ActivationReport)>,
    /// Ids in the order they were remembered, with when (an id remembered again is only
    /// dropped when its latest entry expires).
    order: VecDeque<(String, Instant)>,
}

/// Recently settled certificates.
pub struct Recent {
    entries: Mutex<Entries>,
    capacity: usize,
    ttl: Duration,
}

impl Default for Recent {
    fn default() -> Self {
        Recent::new(CAPACITY, TTL)
    }
}

/// Whether `report` is final: the same certificate's next event cannot change it.
pub fn is_final(report: &ActivationReport) -> bool {
    match report.outcome {
        Outcome::Activated | Outcome::AlreadyActive | Outcome::Revoked => true,
        Outcome::Ignored => matches!(
            report.reason_code,
            Some(ReasonCode::NotPending | ReasonCode::OtherCa)
        ),
        Outcome::Rejected | Outcome::Malformed => false,
    }
}

impl Recent {
    pub fn new(capacity: usize, ttl: Duration) -> Recent {
        Recent {
            entries: Mutex::new(Entries::default()),
            capacity,
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers `report` at `now` if it is final.
    pub fn remember(&self, report: &ActivationReport, now: Instant) {
        if !is_final(report) || report.certificate_id.is_empty() {
            return;
        }
        let mut e = self.lock();
        self.expire(&mut e, now);
        let id = report.certificate_id.clone();
        e.by_id.insert(id.clone(), (now, report.clone()));
        e.order.push_back((id, now));
        while e.by_id.len() > self.capacity {
            let Some((old, at)) = e.order.pop_front() else {
                break;
            };
            if e.by_id.get(&old).is_some_and(|(t, _)| *t == at) {
                e.by_id.remove(&old);
            }
        }
    }

    /// What was decided for `certificate_id` within the TTL, answered from memory: an
    /// activation is now "already active"; the report is marked `from_memory`.
    pub fn recall(&self, certificate_id: &str, now: Instant) -> Option<ActivationReport> {
        let mut e = self.lock();
        self.expire(&mut e, now);
        let (_, report) = e.by_id.get(certificate_id)?;
        let mut report = report.clone();
        if report.outcome == Outcome::Activated {
            report.outcome = Outcome::AlreadyActive;
            report.thing_name = None;
        }
        report.from_memory = true;
        Some(report)
    }

    fn expire(&self, e: &mut Entries, now: Instant) {
        while let Some((id, at)) = e.order.front().cloned() {
            if now.saturating_duration_since(at) < self.ttl {
                break;
            }
            e.order.pop_front();
            if e.by_id.get(&id).is_some_and(|(t, _)| *t == at) {
                e.by_id.remove(&id);
            }
        }
    }

    /// How many ids are kept now.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &str, outcome: Outcome) -> ActivationReport {
        ActivationReport::new(id, outcome)
    }

    #[test]
    fn final_outcomes_are_recalled_within_the_ttl() {
        let recent = Recent::new(10, Duration::from_secs(60));
        let t0 = Instant::now();
        let mut activated = report("a", Outcome::Activated);
        activated.thing_name = Some("sensor".into());
        recent.remember(&activated, t0);
        let again = recent.recall("a", t0 + Duration::from_secs(59)).unwrap();
        assert_eq!(again.outcome, Outcome::AlreadyActive);
        assert!(again.from_memory);
        assert_eq!(
            serde_json::to_value(&again).unwrap()["fromMemory"],
            serde_json::json!(true)
        );
        assert!(recent.recall("a", t0 + Duration::from_secs(60)).is_none());
        assert!(recent.is_empty(), "expired ids are dropped");
    }

    #[test]
    fn only_final_outcomes_are_remembered() {
        let recent = Recent::new(10, Duration::from_secs(60));
        let now = Instant::now();
        let not_pending =
            report("n", Outcome::Ignored).because(ReasonCode::NotPending, "status is REVOKED");
        let other_issuer =
            report("i", Outcome::Ignored).because(ReasonCode::IssuerNotOurCa, "another CA");
        for r in [
            report("r", Outcome::Rejected).because(ReasonCode::Validity, "not yet valid"),
            report("m", Outcome::Malformed),
            other_issuer,
            not_pending.clone(),
            report("v", Outcome::Revoked),
        ] {
            recent.remember(&r, now);
        }
        assert_eq!(recent.len(), 2);
        assert_eq!(recent.recall("n", now).unwrap().reason, not_pending.reason);
        assert_eq!(recent.recall("v", now).unwrap().outcome, Outcome::Revoked);
        assert!(recent.recall("r", now).is_none());
    }

    #[test]
    fn the_oldest_ids_go_first_when_full() {
        let recent = Recent::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            recent.remember(
                &report(id, Outcome::AlreadyActive),
                t0 + Duration::from_millis(i as u64),
            );
        }
        assert_eq!(recent.len(), 3);
        assert!(recent.recall("a", t0).is_none());
        assert!(recent.recall("d", t0).is_some());
        // Remembering an id again renews it.
        recent.remember(
            &report("b", Outcome::AlreadyActive),
            t0 + Duration::from_secs(30),
        );
        let later = t0 + Duration::from_secs(70);
        assert!(recent.recall("c", later).is_none());
        assert!(recent.recall("b", later).is_some());
    }
}
