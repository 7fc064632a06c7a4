//! The JITR activator: the target of the topic rule on
//! `$aws/events/certificates/registered/<caCertificateId>`.
//!
//! For a certificate AWS IoT just auto-registered as `PENDING_ACTIVATION`, it checks that the
//! certificate really is ours (our CA id, and our CA's signature), applies the stage's
//! acceptance checks, then creates the Thing, attaches it, attaches the shared device policy,
//! and **activates last**, so a device is never ACTIVE without its Thing and permissions.
//!
//! The event is re-published every time a pending device reconnects, and Lambda retries
//! asynchronous invocations, so every step is idempotent: "already exists" and "already
//! attached" are success, and an ACTIVE certificate is left alone; a duplicate this container
//! settled lately is answered from its memory ([`recent`]) without any call. Every AWS IoT
//! call is paced and retried by the [`limiter`] within the invocation's time (the SDK's own
//! retries are off); a failure that outlives it is returned as an error, so Lambda's retry and
//! the on-failure destination see it, and the [`sweep`] activates whatever is still pending.
//!
//! The same function serves the sweep: a [`SweepRequest`] payload runs [`sweep`] instead.

use jitr_contract::activator::{anchored_subject_pattern, ENV_SUBJECT_PATTERN};
use jitr_contract::activator::{ActivationReport, ActivatorConfig, Outcome, ReasonCode};
use jitr_contract::event::RegisteredEvent;
use jitr_contract::metrics as m;
use jitr_contract::rates::{IotApi, RateConfig};
use jitr_contract::revocation::{RevocationList, ENV_REVOCATION_FILE};
use jitr_contract::sweep::{SweepConfig, SweepRequest};
use jitr_lambda_common::pki::Certificate;
use limiter::{CallError, Clock, Deadline, Limiter, TokioClock};
use metrics::Tally;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

mod activate;
mod error;
pub mod limiter;
pub mod metrics;
pub mod recent;
pub mod sweep;
pub mod sweep_marker;

use error::SdkError;
pub use error::{aws, ActivatorError};

/// The activator, built once per container.
pub struct Activator {
    iot: aws_sdk_iot::Client,
    config: ActivatorConfig,
    subject_pattern: Option<regex_lite::Regex>,
    /// Our CA certificates (one per id of the configuration, in its order), each read once
    /// from AWS IoT on first use.
    cas: Vec<OnceCell<Certificate>>,
    metrics: Arc<metrics::Emf>,
    limiter: Limiter,
    recent: recent::Recent,
    sweep: Option<sweep::Sweeper>,
    /// Serials never to let in (the stage's `revocation`), read once per container.
    revocation: RevocationList,
}

/// The revocation list the function's environment names ([`ENV_REVOCATION_FILE`], a file
/// the stack ships in a Lambda layer); an empty list when the variable is unset. A set
/// variable whose file is missing or malformed is a configuration error: the list means
/// "never let in", so the activator must not run without it.
pub fn revocation_from_env(
    get: impl Fn(&str) -> Option<String>,
) -> Result<RevocationList, ActivatorError> {
    let Some(path) = get(ENV_REVOCATION_FILE).filter(|p| !p.trim().is_empty()) else {
        return Ok(RevocationList::default());
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ActivatorError::Config(format!(
            "{ENV_REVOCATION_FILE}={path}: cannot read the revocation list ({e}); the \
             function's revocation layer is missing or does not hold it"
        ))
    })?;
    RevocationList::from_json(&text)
        .map_err(|e| ActivatorError::Config(format!("{ENV_REVOCATION_FILE}={path}: {e}")))
}

/// One invocation: its deadline and what it did (written as EMF when it ends).
pub struct Invocation<'a> {
    pub deadline: Deadline,
    pub tally: &'a Tally,
    pub started: Instant,
}

/// The time [`Activator::handle`] gives an invocation (outside Lambda, which sets its own).
pub const LOCAL_TIMEOUT: Duration = Duration::from_secs(60);

impl Activator {
    /// Validates `config` (including compiling the subject pattern). Metrics go to stdout;
    /// AWS IoT calls are paced at the account's default rates for a single container
    /// (see [`Activator::with_rates`]).
    pub fn new(iot: aws_sdk_iot::Client, config: ActivatorConfig) -> Result<Self, ActivatorError> {
        let subject_pattern = match &config.subject_pattern {
            None => None,
            // Anchored: the pattern must match the whole CN, not a substring of it.
            Some(p) => Some(
                regex_lite::Regex::new(&anchored_subject_pattern(p)).map_err(|e| {
                    ActivatorError::Config(format!(
                        "{ENV_SUBJECT_PATTERN} is not a valid regex: {e}"
                    ))
                })?,
            ),
        };
        Ok(Activator {
            iot,
            subject_pattern,
            cas: config
                .ca_certificate_ids
                .iter()
                .map(|_| OnceCell::new())
                .collect(),
            metrics: Arc::new(metrics::Emf::stdout()),
            limiter: Limiter::new(&RateConfig::default(), Arc::new(TokioClock)),
            recent: recent::Recent::default(),
            sweep: None,
            revocation: RevocationList::default(),
            config,
        })
    }

    /// Sends the metrics to `emf` instead of stdout.
    pub fn with_metrics(mut self, emf: metrics::Emf) -> Self {
        self.metrics = Arc::new(emf);
        self
    }

    /// Paces AWS IoT calls at `rates` (the stage's rates, share and reserved concurrency).
    pub fn with_rates(mut self, rates: &RateConfig) -> Self {
        self.limiter = Limiter::new(rates, Arc::new(TokioClock));
        self
    }

    /// Serves sweep requests too, keeping the marker with `ssm`.
    pub fn with_sweep(mut self, ssm: aws_sdk_ssm::Client, config: SweepConfig) -> Self {
        self.sweep = Some(sweep::Sweeper::new(ssm, config));
        self
    }

    /// Sets REVOKED, and never activates, the certificates `list` names.
    pub fn with_revocation(mut self, list: RevocationList) -> Self {
        self.revocation = list;
        self
    }

    pub fn config(&self) -> &ActivatorConfig {
        &self.config
    }

    /// The container's AWS IoT pacing.
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    fn clock(&self) -> &dyn Clock {
        self.limiter.clock()
    }

    /// Handles one Lambda invocation, due at `deadline_ms` (milliseconds since the epoch,
    /// Lambda's deadline): a sweep request runs the sweep and answers its report; anything
    /// else is a registered event (see [`Activator::handle_until`]). Writes the invocation's
    /// metrics.
    pub async fn invoke(
        &self,
        payload: serde_json::Value,
        deadline_ms: u64,
    ) -> Result<serde_json::Value, ActivatorError> {
        // 0: no deadline given (lambda_runtime's `Context::default()`, a local run).
        let deadline = match deadline_ms {
            0 => Deadline::after(LOCAL_TIMEOUT, self.clock()),
            ms => Deadline::from_epoch_ms(ms, self.clock()),
        };
        if SweepRequest::is_sweep(&payload) {
            let report = self.sweep(deadline).await?;
            Ok(serde_json::to_value(report).expect("a report serializes"))
        } else {
            let report = self.handle_until(payload, deadline).await?;
            Ok(serde_json::to_value(report).expect("a report serializes"))
        }
    }

    /// Runs a sweep (see [`sweep`]) that must end by `deadline`; writes its metrics.
    pub async fn sweep(
        &self,
        deadline: Deadline,
    ) -> Result<jitr_contract::sweep::SweepReport, ActivatorError> {
        let sweeper = self.sweep.as_ref().ok_or_else(|| {
            ActivatorError::Config("this activator was built without the sweep".into())
        })?;
        let tally = Tally::with(&sweep::SWEEP_COUNTS);
        let inv = Invocation {
            deadline,
            tally: &tally,
            started: self.clock().now(),
        };
        let result = sweeper.run(self, &inv).await;
        if result.is_err() {
            tally.count(m::FAILED);
        }
        self.metrics.emit(&tally);
        result
    }

    /// Handles one registered event with [`LOCAL_TIMEOUT`] to do it.
    pub async fn handle(
        &self,
        payload: serde_json::Value,
    ) -> Result<ActivationReport, ActivatorError> {
        let deadline = Deadline::after(LOCAL_TIMEOUT, self.clock());
        self.handle_until(payload, deadline).await
    }

    /// Handles one registered event, due by `deadline`, and writes its metrics.
    ///
    /// A payload that is not a registered-certificate event is answered with
    /// [`Outcome::Malformed`], not an error: Lambda retries failed asynchronous invocations,
    /// and the same bytes would fail the same way each time, then fill the failure queue.
    /// It is logged at ERROR and counted in the `MalformedEvents` metric instead. AWS errors
    /// and signatures that cannot be checked stay errors, which Lambda retries.
    pub async fn handle_until(
        &self,
        payload: serde_json::Value,
        deadline: Deadline,
    ) -> Result<ActivationReport, ActivatorError> {
        let tally = Tally::with(&metrics::EVENT_COUNTS);
        let inv = Invocation {
            deadline,
            tally: &tally,
            started: self.clock().now(),
        };
        let result = self.handle_event(&inv, payload).await;
        match &result {
            Ok(report) => log(report),
            Err(_) => tally.count(m::FAILED),
        }
        self.metrics.emit(&tally);
        result
    }

    async fn handle_event(
        &self,
        inv: &Invocation<'_>,
        payload: serde_json::Value,
    ) -> Result<ActivationReport, ActivatorError> {
        // For the report and the log only: whatever the payload calls its certificate id.
        let claimed_id: String = payload
            .get("certificateId")
            .and_then(serde_json::Value::as_str)
            .map(|id| id.chars().take(128).collect())
            .unwrap_or_default();
        let event = match RegisteredEvent::from_value(payload) {
            Ok(event) => event,
            Err(e) => {
                inv.tally.count(m::MALFORMED_EVENTS);
                return Ok(ActivationReport::new(claimed_id, Outcome::Malformed)
                    .because(ReasonCode::MalformedEvent, e.to_string()));
            }
        };
        if let Some(known) = self
            .recent
            .recall(&event.certificate_id, self.clock().now())
        {
            inv.tally.count(m::DUPLICATE_SKIPPED);
            return Ok(known);
        }
        let report = self.activate(inv, &event).await?;
        count_outcome(inv.tally, &report);
        if report.outcome == Outcome::Activated {
            inv.tally
                .activation_latency(self.clock().now().saturating_duration_since(inv.started));
        }
        self.recent.remember(&report, self.clock().now());
        Ok(report)
    }

    /// Sends one AWS IoT call through the limiter: paced, retried within the invocation.
    async fn iot_call<T, E, Fut>(
        &self,
        inv: &Invocation<'_>,
        op: IotApi,
        send: impl FnMut() -> Fut,
    ) -> Result<T, CallError<SdkError<E>>>
    where
        E: aws_sdk_iot::error::ProvideErrorMetadata,
        Fut: std::future::Future<Output = Result<T, SdkError<E>>>,
    {
        self.limiter
            .call(op, inv.deadline, inv.tally, limiter::sdk_verdict, send)
            .await
    }
}

/// Counts a decided report's outcome.
pub fn count_outcome(tally: &Tally, report: &ActivationReport) {
    let metric = match report.outcome {
        Outcome::Activated => m::ACTIVATED,
        Outcome::AlreadyActive => m::ALREADY_ACTIVE,
        Outcome::Rejected => m::REJECTED,
        Outcome::Revoked => m::REVOKED,
        Outcome::Ignored => m::IGNORED,
        Outcome::Malformed => m::MALFORMED_EVENTS,
    };
    tally.count(metric);
}

/// One log line per handled invocation: INFO when activated or already active, WARN when
/// not activated, ERROR for a malformed event (nobody retries it, so the log must be loud).
fn log(report: &ActivationReport) {
    let code = report.reason_code.map_or("", |c| c.as_str());
    let reason = report.reason.as_deref().unwrap_or("");
    match report.outcome {
        Outcome::Activated | Outcome::AlreadyActive => tracing::info!(
            certificate_id = %report.certificate_id,
            outcome = ?report.outcome,
            thing = report.thing_name.as_deref().unwrap_or(""),
            from_memory = report.from_memory,
            "certificate handled"
        ),
        Outcome::Malformed => tracing::error!(
            certificate_id = %report.certificate_id,
            outcome = ?report.outcome,
            reason_code = code,
            reason,
            "malformed event: handled without retry and counted in the MalformedEvents metric"
        ),
        Outcome::Rejected | Outcome::Revoked | Outcome::Ignored => tracing::warn!(
            certificate_id = %report.certificate_id,
            outcome = ?report.outcome,
            reason_code = code,
            reason,
            issuer = report.issuer.as_deref().unwrap_or(""),
            ca_subject = report.ca_subject.as_deref().unwrap_or(""),
            "certificate not activated"
        ),
    }
}
