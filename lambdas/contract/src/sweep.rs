//! The reconciler ("sweep"): a scheduled run of the activator that finds our CA's certificates
//! still `PENDING_ACTIVATION` (their events dropped or failed) and activates them through the
//! same code path as an event.
//!
//! The schedule (an EventBridge rule in the stack) and `jitr-infra redrive` invoke the
//! activator with a [`SweepRequest`] payload; the activator tells it apart from a registered
//! event by its `kind`, answers it with a [`SweepReport`], and reads its bounds from the
//! environment ([`SweepConfig`]).

use serde::{Deserialize, Serialize};

/// `kind` of a sweep payload.
pub const SWEEP_KIND: &str = "jitr-sweep";
/// The payload version this activator understands.
pub const SWEEP_VERSION: u32 = 1;

/// Certificates younger than this are left to their event (seconds).
pub const ENV_GRACE_SECONDS: &str = "JITR_SWEEP_GRACE_SECONDS";
/// Certificates older than this are not listed (seconds).
pub const ENV_HORIZON_SECONDS: &str = "JITR_SWEEP_HORIZON_SECONDS";
/// At most this many `ListCertificatesByCA` pages per run.
pub const ENV_MAX_PAGES: &str = "JITR_SWEEP_MAX_PAGES";
/// Certificates per page (1..=250, AWS's limit); tests set it low to exercise paging.
pub const ENV_PAGE_SIZE: &str = "JITR_SWEEP_PAGE_SIZE";
/// Name of the SSM parameter that keeps where an unfinished run stopped (`-`: at the start).
pub const ENV_MARKER_PARAMETER: &str = "JITR_SWEEP_MARKER_PARAMETER";
/// The marker value meaning "start at the newest certificate".
pub const MARKER_START: &str = "-";

/// The payload that asks the activator for a sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepRequest {
    pub kind: String,
    pub version: u32,
    /// Who asked: `schedule` (the stack's rule) or `redrive`; for the log only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
}

impl SweepRequest {
    pub fn new(trigger: &str) -> SweepRequest {
        SweepRequest {
            kind: SWEEP_KIND.into(),
            version: SWEEP_VERSION,
            trigger: Some(trigger.into()),
        }
    }

    /// Whether `payload` asks for a sweep (its `kind` is [`SWEEP_KIND`]).
    pub fn is_sweep(payload: &serde_json::Value) -> bool {
        payload.get("kind").and_then(serde_json::Value::as_str) == Some(SWEEP_KIND)
    }
}

/// The sweep's bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepConfig {
    pub grace_seconds: u64,
    pub horizon_seconds: u64,
    pub max_pages: u32,
    pub page_size: u32,
    /// `None`: no marker is kept, every run starts at the newest certificate.
    pub marker_parameter: Option<String>,
}

impl Default for SweepConfig {
    fn default() -> Self {
        SweepConfig {
            grace_seconds: 15 * 60,
            horizon_seconds: 7 * 86_400,
            max_pages: 20,
            page_size: 250,
            marker_parameter: None,
        }
    }
}

impl SweepConfig {
    /// Reads the variables through `get`; unset ones take their defaults.
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<SweepConfig, crate::activator::ConfigError> {
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let number = |name: &'static str, default: u64, range: std::ops::RangeInclusive<u64>| {
            match get(name) {
                None => Ok(default),
                Some(text) => match text.parse::<u64>() {
                    Ok(n) if range.contains(&n) => Ok(n),
                    _ => Err(crate::activator::ConfigError {
                        variable: name,
                        message: format!(
                            "must be a whole number in {}..={}, got {text:?}",
                            range.start(),
                            range.end()
                        ),
                    }),
                },
            }
        };
        let d = SweepConfig::default();
        Ok(SweepConfig {
            grace_seconds: number(ENV_GRACE_SECONDS, d.grace_seconds, 0..=86_400)?,
            horizon_seconds: number(ENV_HORIZON_SECONDS, d.horizon_seconds, 60..=400 * 86_400)?,
            max_pages: number(ENV_MAX_PAGES, d.max_pages.into(), 1..=10_000)? as u32,
            page_size: number(ENV_PAGE_SIZE, d.page_size.into(), 1..=250)? as u32,
            marker_parameter: get(ENV_MARKER_PARAMETER),
        })
    }

    /// The environment the template sets (the inverse of [`SweepConfig::from_lookup`]); the
    /// page size is left at AWS's maximum.
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            (ENV_GRACE_SECONDS, self.grace_seconds.to_string()),
            (ENV_HORIZON_SECONDS, self.horizon_seconds.to_string()),
            (ENV_MAX_PAGES, self.max_pages.to_string()),
        ];
        if let Some(p) = &self.marker_parameter {
            env.push((ENV_MARKER_PARAMETER, p.clone()));
        }
        env
    }
}

/// What one sweep did: the Lambda's result, one log line, and the `Sweep*` metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    /// `ListCertificatesByCA` pages read.
    pub pages: u32,
    /// Certificates listed.
    pub listed: u64,
    /// Of those, `PENDING_ACTIVATION`.
    pub pending: u64,
    /// Of those, older than the grace period (the ones the sweep handles).
    pub over_grace: u64,
    pub activated: u64,
    /// Found already ACTIVE when handled (an event got there first).
    pub already_active: u64,
    /// Rejected or revoked by the stage's checks.
    pub rejected: u64,
    pub ignored: u64,
    /// Handled with an error (left for the next run).
    pub failed: u64,
    /// Age of the oldest pending certificate listed, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_pending_age_seconds: Option<u64>,
    /// True when the run reached the horizon or the end of the list; false when it stopped
    /// on its page budget or its time, and left a marker for the next run.
    pub complete: bool,
    /// Where this run started (`-`: the newest certificate).
    pub marker_in: String,
    /// Where the next run starts.
    pub marker_out: String,
    /// The first errors, for the log and the operator (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl SweepReport {
    /// Pending certificates over the grace period this run did not settle: neither activated
    /// (or found active), nor rejected or ignored on purpose. Failed ones, and ones listed after
    /// the run's time ran out.
    pub fn unsettled(&self) -> u64 {
        self.over_grace
            .saturating_sub(self.activated + self.already_active + self.rejected + self.ignored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsettled_leaves_out_what_the_run_decided() {
        let report = SweepReport {
            over_grace: 10,
            activated: 4,
            already_active: 1,
            rejected: 2,
            ignored: 1,
            failed: 1,
            ..SweepReport::default()
        };
        // One failed, one never reached.
        assert_eq!(report.unsettled(), 2);
    }

    #[test]
    fn a_sweep_payload_is_told_from_an_event() {
        let request = serde_json::to_value(SweepRequest::new("schedule")).unwrap();
        assert_eq!(
            request,
            serde_json::json!({"kind": "jitr-sweep", "version": 1, "trigger": "schedule"})
        );
        assert!(SweepRequest::is_sweep(&request));
        assert!(!SweepRequest::is_sweep(
            &serde_json::json!({"certificateId": "x", "eventType": "CERTIFICATE_REGISTRATION"})
        ));
    }

    #[test]
    fn config_defaults_bounds_and_round_trip() {
        let d = SweepConfig::from_lookup(|_| None).unwrap();
        assert_eq!(d, SweepConfig::default());
        let c = SweepConfig {
            grace_seconds: 0,
            horizon_seconds: 3600,
            max_pages: 2,
            page_size: 250,
            marker_parameter: Some("/jitr-dev/sweep-marker".into()),
        };
        let env = c.to_env();
        let back =
            SweepConfig::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
                .unwrap();
        assert_eq!(back, c);
        let e =
            SweepConfig::from_lookup(|k| (k == ENV_PAGE_SIZE).then(|| "251".into())).unwrap_err();
        assert_eq!(e.variable, ENV_PAGE_SIZE);
    }
}
