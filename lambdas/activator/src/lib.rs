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

use aws_sdk_iot::types::CertificateStatus;
use jitr_contract::activator::{is_thing_name, ENV_SUBJECT_PATTERN};
use jitr_contract::activator::{
    ActivationReport, ActivatorConfig, Outcome, ReasonCode, RejectAction, ThingNameSource,
};
use jitr_contract::event::{RegisteredEvent, PENDING_ACTIVATION};
use jitr_contract::metrics as m;
use jitr_contract::rates::{IotApi, RateConfig};
use jitr_contract::sweep::{SweepConfig, SweepRequest};
use jitr_lambda_common::describe_sdk_error;
use jitr_lambda_common::pki::{unix_now, Certificate, NotIssuedBy};
use limiter::{CallError, Clock, Deadline, Limiter, TokioClock};
use metrics::Tally;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

pub mod limiter;
pub mod metrics;
pub mod recent;
pub mod sweep;

/// An invocation that failed and should be retried or land in the on-failure destination.
#[derive(Debug, Clone)]
pub enum ActivatorError {
    /// The function's environment is wrong; every invocation fails until it is fixed.
    Config(String),
    /// An AWS call failed for good, or kept failing for transient reasons until the
    /// invocation's time ran out.
    Aws { step: &'static str, message: String },
    /// AWS IoT kept throttling a call until the invocation's time ran out.
    IotThrottled { step: &'static str, message: String },
    /// Our own CA could not be read back from AWS IoT.
    CaCertificate(String),
    /// The sweep's marker parameter could not be read.
    Marker(String),
    /// The certificate's signature cannot be checked here (an algorithm or key this
    /// activator does not support): whether it is ours is unknown, so it is neither
    /// activated nor ignored but failed, for Lambda's retries and then the failure queue.
    UnsupportedSignature(String),
}

impl fmt::Display for ActivatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivatorError::Config(m) => write!(f, "activator misconfigured: {m}"),
            ActivatorError::Aws { step, message } => write!(f, "{step} failed: {message}"),
            ActivatorError::IotThrottled { step, message } => write!(
                f,
                "{step} throttled until the invocation's time ran out: {message}"
            ),
            ActivatorError::CaCertificate(m) => write!(f, "cannot read our CA certificate: {m}"),
            ActivatorError::Marker(m) => write!(f, "cannot read the sweep's marker: {m}"),
            ActivatorError::UnsupportedSignature(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ActivatorError {}

impl ActivatorError {
    /// A short, stable error type for Lambda's `errorType` and for alarms.
    pub fn kind(&self) -> &'static str {
        match self {
            ActivatorError::Config(_) => "ActivatorConfigError",
            ActivatorError::Aws { .. } => "AwsIotError",
            ActivatorError::IotThrottled { .. } => "IotThrottled",
            ActivatorError::CaCertificate(_) => "CaCertificateError",
            ActivatorError::Marker(_) => "SweepMarkerError",
            ActivatorError::UnsupportedSignature(_) => "UnsupportedSignatureAlgorithm",
        }
    }
}

impl From<ActivatorError> for lambda_runtime::Diagnostic {
    fn from(e: ActivatorError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.kind().to_string(),
            error_message: e.to_string(),
        }
    }
}

/// The activator, built once per container.
pub struct Activator {
    iot: aws_sdk_iot::Client,
    config: ActivatorConfig,
    subject_pattern: Option<regex_lite::Regex>,
    /// Our CA certificate, read once from AWS IoT on first use.
    ca: OnceCell<Certificate>,
    metrics: Arc<metrics::Emf>,
    limiter: Limiter,
    recent: recent::Recent,
    sweep: Option<sweep::Sweeper>,
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
            Some(p) => Some(regex_lite::Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                ActivatorError::Config(format!("{ENV_SUBJECT_PATTERN} is not a valid regex: {e}"))
            })?),
        };
        Ok(Activator {
            iot,
            config,
            subject_pattern,
            ca: OnceCell::new(),
            metrics: Arc::new(metrics::Emf::stdout()),
            limiter: Limiter::new(&RateConfig::default(), Arc::new(TokioClock)),
            recent: recent::Recent::default(),
            sweep: None,
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
        let deadline = Deadline::from_epoch_ms(deadline_ms, self.clock());
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

    /// The whole decision for one certificate, from the registry: the same path for an
    /// event and for the sweep (which passes a certificate it listed under our CA).
    pub async fn activate(
        &self,
        inv: &Invocation<'_>,
        event: &RegisteredEvent,
    ) -> Result<ActivationReport, ActivatorError> {
        let id = event.certificate_id.as_str();
        let ignored = |code, reason: String| {
            Ok(ActivationReport::new(id, Outcome::Ignored).because(code, reason))
        };
        if event.ca_certificate_id != self.config.ca_certificate_id {
            return ignored(
                ReasonCode::OtherCa,
                format!(
                    "event is for CA {}, this activator serves CA {}",
                    event.ca_certificate_id, self.config.ca_certificate_id
                ),
            );
        }

        // The event is a hint; the registry is the truth. Our CA certificate (for the
        // signature check) is read at the same time on a cold start.
        let (described, ca) = tokio::join!(
            self.iot_call(inv, IotApi::DescribeCertificate, || self
                .iot
                .describe_certificate()
                .certificate_id(id)
                .send()),
            self.our_ca(inv)
        );
        let described = match described {
            Ok(out) => out,
            Err(CallError::Final(e))
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                return ignored(
                    ReasonCode::CertificateNotFound,
                    "certificate no longer exists".into(),
                )
            }
            Err(e) => return Err(aws("DescribeCertificate", e)),
        };
        let desc = described
            .certificate_description
            .ok_or_else(|| ActivatorError::Aws {
                step: "DescribeCertificate",
                message: "response has no certificateDescription".into(),
            })?;
        if let Some(done) = self.settled_by_registry(id, &desc) {
            return Ok(done);
        }
        let arn = desc.certificate_arn().ok_or_else(|| ActivatorError::Aws {
            step: "DescribeCertificate",
            message: "response has no certificateArn".into(),
        })?;
        let cert = match Certificate::from_pem(desc.certificate_pem().unwrap_or_default()) {
            Ok(c) => c,
            Err(e) => {
                return ignored(
                    ReasonCode::UnparsableCertificate,
                    format!("registered certificate does not parse: {e}"),
                )
            }
        };
        if let Some(not_ours) = not_issued_by(id, &cert, ca?)? {
            return Ok(not_ours);
        }
        // Ours: now the stage's acceptance checks.
        if let Err((code, reason)) = self.acceptance_checks(&cert) {
            return self.reject(inv, id, code, reason).await;
        }
        self.provision(inv, id, arn, &cert).await
    }

    /// The registry's word, before any signature check: another CA's certificate, one that
    /// is already active, or one that is not pending needs nothing from us.
    fn settled_by_registry(
        &self,
        id: &str,
        desc: &aws_sdk_iot::types::CertificateDescription,
    ) -> Option<ActivationReport> {
        let ignored = |code, reason: String| {
            Some(ActivationReport::new(id, Outcome::Ignored).because(code, reason))
        };
        if let Some(ca) = desc.ca_certificate_id() {
            if ca != self.config.ca_certificate_id {
                return ignored(
                    ReasonCode::OtherCa,
                    format!("certificate belongs to CA {ca}"),
                );
            }
        }
        match desc.status() {
            Some(CertificateStatus::Active) => {
                Some(ActivationReport::new(id, Outcome::AlreadyActive))
            }
            Some(CertificateStatus::PendingActivation) => None,
            other => {
                let status = other.map_or("unknown", |s| s.as_str());
                ignored(
                    ReasonCode::NotPending,
                    format!(
                        "certificate status is {status}, only {PENDING_ACTIVATION} is activated"
                    ),
                )
            }
        }
    }

    /// Thing, policy, then activation: the certificate is ours and passed the checks.
    async fn provision(
        &self,
        inv: &Invocation<'_>,
        id: &str,
        arn: &str,
        cert: &Certificate,
    ) -> Result<ActivationReport, ActivatorError> {
        let thing_name = self.thing_name(id, cert);
        // The Thing and the policy are independent: do them at the same time.
        let thing = async {
            if self.config.create_thing {
                self.ensure_thing(inv, &thing_name, arn).await
            } else {
                Ok(())
            }
        };
        let policy = async {
            self.iot_call(inv, IotApi::AttachPolicy, || {
                self.iot
                    .attach_policy()
                    .policy_name(&self.config.device_policy_name)
                    .target(arn)
                    .send()
            })
            .await
            .map(|_| ())
            .map_err(|e| aws("AttachPolicy", e))
        };
        tokio::try_join!(thing, policy)?;
        // Last: only now can the device connect, and it has everything it needs.
        self.iot_call(inv, IotApi::UpdateCertificate, || {
            self.iot
                .update_certificate()
                .certificate_id(id)
                .new_status(CertificateStatus::Active)
                .send()
        })
        .await
        .map_err(|e| aws("UpdateCertificate(ACTIVE)", e))?;
        let mut report = ActivationReport::new(id, Outcome::Activated);
        report.thing_name = self.config.create_thing.then_some(thing_name);
        Ok(report)
    }

    async fn our_ca(&self, inv: &Invocation<'_>) -> Result<&Certificate, ActivatorError> {
        self.ca
            .get_or_try_init(|| async {
                let out = self
                    .iot_call(inv, IotApi::DescribeCACertificate, || {
                        self.iot
                            .describe_ca_certificate()
                            .certificate_id(&self.config.ca_certificate_id)
                            .send()
                    })
                    .await
                    .map_err(|e| match aws("DescribeCACertificate", e) {
                        throttled @ ActivatorError::IotThrottled { .. } => throttled,
                        other => ActivatorError::CaCertificate(other.to_string()),
                    })?;
                let pem = out
                    .certificate_description()
                    .and_then(|d| d.certificate_pem())
                    .ok_or_else(|| ActivatorError::CaCertificate("response has no PEM".into()))?;
                Certificate::from_pem(pem).map_err(|e| ActivatorError::CaCertificate(e.to_string()))
            })
            .await
    }

    fn acceptance_checks(&self, cert: &Certificate) -> Result<(), (ReasonCode, String)> {
        cert.check_validity_at(unix_now())
            .map_err(|e| (ReasonCode::Validity, e.to_string()))?;
        if let Some(pattern) = &self.subject_pattern {
            match cert.subject_cn() {
                Some(cn) if pattern.is_match(&cn) => {}
                Some(cn) => {
                    return Err((
                        ReasonCode::SubjectPattern,
                        format!(
                            "subject CN {cn:?} does not match the acceptance pattern {:?}",
                            self.config.subject_pattern.as_deref().unwrap_or_default()
                        ),
                    ))
                }
                None => {
                    return Err((
                        ReasonCode::SubjectPattern,
                        "certificate subject has no CN to check".into(),
                    ))
                }
            }
        }
        Ok(())
    }

    async fn reject(
        &self,
        inv: &Invocation<'_>,
        id: &str,
        code: ReasonCode,
        reason: String,
    ) -> Result<ActivationReport, ActivatorError> {
        let outcome = match self.config.reject_action {
            RejectAction::LeavePending => Outcome::Rejected,
            RejectAction::Revoke => {
                self.iot_call(inv, IotApi::UpdateCertificate, || {
                    self.iot
                        .update_certificate()
                        .certificate_id(id)
                        .new_status(CertificateStatus::Revoked)
                        .send()
                })
                .await
                .map_err(|e| aws("UpdateCertificate(REVOKED)", e))?;
                Outcome::Revoked
            }
        };
        Ok(ActivationReport::new(id, outcome).because(code, reason))
    }

    /// The Thing name: the subject CN when configured and valid, else the certificate id.
    pub fn thing_name(&self, certificate_id: &str, cert: &Certificate) -> String {
        match self.config.thing_name_source {
            ThingNameSource::SubjectCn => cert
                .subject_cn()
                .filter(|cn| is_thing_name(cn))
                .unwrap_or_else(|| certificate_id.to_string()),
            ThingNameSource::CertificateId => certificate_id.to_string(),
        }
    }

    async fn ensure_thing(
        &self,
        inv: &Invocation<'_>,
        thing_name: &str,
        certificate_arn: &str,
    ) -> Result<(), ActivatorError> {
        let created = self
            .iot_call(inv, IotApi::CreateThing, || {
                self.iot.create_thing().thing_name(thing_name).send()
            })
            .await;
        match created {
            Ok(_) => {}
            Err(CallError::Final(e))
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_already_exists_exception()) => {}
            Err(e) => return Err(aws("CreateThing", e)),
        }
        // Attaching an attached principal is a no-op in AWS IoT.
        self.iot_call(inv, IotApi::AttachThingPrincipal, || {
            self.iot
                .attach_thing_principal()
                .thing_name(thing_name)
                .principal(certificate_arn)
                .send()
        })
        .await
        .map_err(|e| aws("AttachThingPrincipal", e))?;
        if let Some(group) = &self.config.thing_group {
            self.iot_call(inv, IotApi::AddThingToThingGroup, || {
                self.iot
                    .add_thing_to_thing_group()
                    .thing_group_name(group)
                    .thing_name(thing_name)
                    .send()
            })
            .await
            .map_err(|e| aws("AddThingToThingGroup", e))?;
        }
        Ok(())
    }
}

type SdkError<E> = aws_sdk_iot::error::SdkError<E, aws_sdk_iot::config::http::HttpResponse>;

/// The invocation's error for a call that did not succeed: [`ActivatorError::IotThrottled`]
/// when it was still throttled when time ran out, else the AWS error.
pub fn aws<E>(step: &'static str, err: CallError<SdkError<E>>) -> ActivatorError
where
    E: aws_sdk_iot::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let out_of_time = "no time left in the invocation for another attempt";
    match err {
        CallError::Final(e) => ActivatorError::Aws {
            step,
            message: describe_sdk_error(&e),
        },
        CallError::OutOfTime { last, throttled } => {
            let message = last.map_or(out_of_time.into(), |e| describe_sdk_error(&e));
            if throttled {
                ActivatorError::IotThrottled { step, message }
            } else {
                ActivatorError::Aws { step, message }
            }
        }
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

/// `None` when our CA issued `cert`; else the report that says why it is not ours, or the
/// error when that cannot be told (a signature this activator cannot check: failing loudly
/// beats leaving one of our own devices pending without a word).
fn not_issued_by(
    id: &str,
    cert: &Certificate,
    ca: &Certificate,
) -> Result<Option<ActivationReport>, ActivatorError> {
    let ignored =
        |code, reason: String| ActivationReport::new(id, Outcome::Ignored).because(code, reason);
    match cert.check_issued_by(ca) {
        Ok(()) => Ok(None),
        Err(NotIssuedBy::OtherIssuer { issuer, ca_subject }) => {
            let mut report = ignored(
                ReasonCode::IssuerNotOurCa,
                format!(
                    "issued by `{issuer}`, not by our CA `{ca_subject}`: the CA certificate \
                     registered for this stage must be the one that signs the device \
                     certificates (with intermediate CAs, the intermediate that issues them)"
                ),
            );
            report.issuer = Some(issuer);
            report.ca_subject = Some(ca_subject);
            Ok(Some(report))
        }
        Err(e @ NotIssuedBy::Signature(_)) => Ok(Some(ignored(
            ReasonCode::SignatureNotByOurCa,
            e.to_string(),
        ))),
        Err(e @ NotIssuedBy::Unsupported(_)) => Err(ActivatorError::UnsupportedSignature(format!(
            "certificate {id}: {e}"
        ))),
    }
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
