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
//! attached" are success, and an ACTIVE certificate is left alone. Transient and throttling
//! errors are retried by the SDK (see `jitr_lambda_common::aws_config`); a failure that
//! survives the retries is returned as an error, so Lambda's retry and the on-failure
//! destination see it.

use aws_sdk_iot::types::CertificateStatus;
use jitr_contract::activator::{is_thing_name, ENV_SUBJECT_PATTERN};
use jitr_contract::activator::{
    ActivationReport, ActivatorConfig, Outcome, RejectAction, ThingNameSource,
};
use jitr_contract::event::{RegisteredEvent, PENDING_ACTIVATION};
use jitr_lambda_common::describe_sdk_error;
use jitr_lambda_common::pki::{unix_now, Certificate};
use std::fmt;
use tokio::sync::OnceCell;

/// An invocation that failed and should be retried or land in the on-failure destination.
#[derive(Debug, Clone)]
pub enum ActivatorError {
    /// The function's environment is wrong; every invocation fails until it is fixed.
    Config(String),
    /// The payload is not a registered-certificate event.
    Event(String),
    /// An AWS IoT call failed after the SDK's retries.
    Aws { step: &'static str, message: String },
    /// Our own CA could not be read back from AWS IoT.
    CaCertificate(String),
}

impl fmt::Display for ActivatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivatorError::Config(m) => write!(f, "activator misconfigured: {m}"),
            ActivatorError::Event(m) => f.write_str(m),
            ActivatorError::Aws { step, message } => write!(f, "{step} failed: {message}"),
            ActivatorError::CaCertificate(m) => write!(f, "cannot read our CA certificate: {m}"),
        }
    }
}

impl std::error::Error for ActivatorError {}

impl ActivatorError {
    /// A short, stable error type for Lambda's `errorType` and for alarms.
    pub fn kind(&self) -> &'static str {
        match self {
            ActivatorError::Config(_) => "ActivatorConfigError",
            ActivatorError::Event(_) => "MalformedEvent",
            ActivatorError::Aws { .. } => "AwsIotError",
            ActivatorError::CaCertificate(_) => "CaCertificateError",
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
}

impl Activator {
    /// Validates `config` (including compiling the subject pattern).
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
        })
    }

    pub fn config(&self) -> &ActivatorConfig {
        &self.config
    }

    /// Handles one invocation payload.
    pub async fn handle(
        &self,
        payload: serde_json::Value,
    ) -> Result<ActivationReport, ActivatorError> {
        let event = RegisteredEvent::from_value(payload)
            .map_err(|e| ActivatorError::Event(e.to_string()))?;
        let report = self.activate(&event).await?;
        let level_warn = matches!(
            report.outcome,
            Outcome::Rejected | Outcome::Revoked | Outcome::Ignored
        );
        if level_warn {
            tracing::warn!(
                certificate_id = %report.certificate_id,
                outcome = ?report.outcome,
                reason = report.reason.as_deref().unwrap_or(""),
                "certificate not activated"
            );
        } else {
            tracing::info!(
                certificate_id = %report.certificate_id,
                outcome = ?report.outcome,
                thing = report.thing_name.as_deref().unwrap_or(""),
                "certificate handled"
            );
        }
        Ok(report)
    }

    async fn activate(&self, event: &RegisteredEvent) -> Result<ActivationReport, ActivatorError> {
        let id = event.certificate_id.as_str();
        let report =
            |outcome, thing_name: Option<String>, reason: Option<String>| ActivationReport {
                certificate_id: id.to_string(),
                outcome,
                thing_name,
                reason,
            };
        if event.ca_certificate_id != self.config.ca_certificate_id {
            return Ok(report(
                Outcome::Ignored,
                None,
                Some(format!(
                    "event is for CA {}, this activator serves CA {}",
                    event.ca_certificate_id, self.config.ca_certificate_id
                )),
            ));
        }

        // The event is a hint; the registry is the truth. Our CA certificate (for the
        // signature check) is read at the same time on a cold start.
        let (described, ca) = tokio::join!(
            self.iot.describe_certificate().certificate_id(id).send(),
            self.our_ca()
        );
        let described = match described {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                return Ok(report(
                    Outcome::Ignored,
                    None,
                    Some("certificate no longer exists".into()),
                ))
            }
            Err(e) => return Err(aws("DescribeCertificate", &e)),
        };
        let desc = described
            .certificate_description
            .ok_or_else(|| ActivatorError::Aws {
                step: "DescribeCertificate",
                message: "response has no certificateDescription".into(),
            })?;
        if let Some(ca) = desc.ca_certificate_id() {
            if ca != self.config.ca_certificate_id {
                return Ok(report(
                    Outcome::Ignored,
                    None,
                    Some(format!("certificate belongs to CA {ca}")),
                ));
            }
        }
        match desc.status() {
            Some(CertificateStatus::Active) => {
                return Ok(report(Outcome::AlreadyActive, None, None));
            }
            Some(CertificateStatus::PendingActivation) => {}
            other => {
                let status = other.map_or("unknown", |s| s.as_str());
                return Ok(report(
                    Outcome::Ignored,
                    None,
                    Some(format!(
                        "certificate status is {status}, only {PENDING_ACTIVATION} is activated"
                    )),
                ));
            }
        }
        let arn = desc.certificate_arn().ok_or_else(|| ActivatorError::Aws {
            step: "DescribeCertificate",
            message: "response has no certificateArn".into(),
        })?;
        let pem = desc.certificate_pem().unwrap_or_default();
        let cert = match Certificate::from_pem(pem) {
            Ok(c) => c,
            Err(e) => {
                return Ok(report(
                    Outcome::Ignored,
                    None,
                    Some(format!("registered certificate does not parse: {e}")),
                ))
            }
        };

        // Signed by our CA, or not ours: leave it untouched (never revoke someone else's).
        let ca = ca?;
        if let Err(e) = cert.verify_signed_by(ca) {
            return Ok(report(Outcome::Ignored, None, Some(e.to_string())));
        }

        // Ours: now the stage's acceptance checks.
        if let Err(reason) = self.acceptance_checks(&cert) {
            return self.reject(id, reason).await;
        }

        let thing_name = self.thing_name(id, &cert);
        // The Thing and the policy are independent: do them at the same time.
        let thing = async {
            if self.config.create_thing {
                self.ensure_thing(&thing_name, arn).await
            } else {
                Ok(())
            }
        };
        let policy = async {
            self.iot
                .attach_policy()
                .policy_name(&self.config.device_policy_name)
                .target(arn)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| aws("AttachPolicy", &e))
        };
        tokio::try_join!(thing, policy)?;
        // Last: only now can the device connect, and it has everything it needs.
        self.iot
            .update_certificate()
            .certificate_id(id)
            .new_status(CertificateStatus::Active)
            .send()
            .await
            .map_err(|e| aws("UpdateCertificate(ACTIVE)", &e))?;
        Ok(report(
            Outcome::Activated,
            self.config.create_thing.then_some(thing_name),
            None,
        ))
    }

    async fn our_ca(&self) -> Result<&Certificate, ActivatorError> {
        self.ca
            .get_or_try_init(|| async {
                let out = self
                    .iot
                    .describe_ca_certificate()
                    .certificate_id(&self.config.ca_certificate_id)
                    .send()
                    .await
                    .map_err(|e| ActivatorError::CaCertificate(describe_sdk_error(&e)))?;
                let pem = out
                    .certificate_description()
                    .and_then(|d| d.certificate_pem())
                    .ok_or_else(|| ActivatorError::CaCertificate("response has no PEM".into()))?;
                Certificate::from_pem(pem).map_err(|e| ActivatorError::CaCertificate(e.to_string()))
            })
            .await
    }

    fn acceptance_checks(&self, cert: &Certificate) -> Result<(), String> {
        cert.check_validity_at(unix_now())
            .map_err(|e| e.to_string())?;
        if let Some(pattern) = &self.subject_pattern {
            match cert.subject_cn() {
                Some(cn) if pattern.is_match(&cn) => {}
                Some(cn) => {
                    return Err(format!(
                        "subject CN {cn:?} does not match the acceptance pattern {:?}",
                        self.config.subject_pattern.as_deref().unwrap_or_default()
                    ))
                }
                None => return Err("certificate subject has no CN to check".into()),
            }
        }
        Ok(())
    }

    async fn reject(&self, id: &str, reason: String) -> Result<ActivationReport, ActivatorError> {
        let outcome = match self.config.reject_action {
            RejectAction::LeavePending => Outcome::Rejected,
            RejectAction::Revoke => {
                self.iot
                    .update_certificate()
                    .certificate_id(id)
                    .new_status(CertificateStatus::Revoked)
                    .send()
                    .await
                    .map_err(|e| aws("UpdateCertificate(REVOKED)", &e))?;
                Outcome::Revoked
            }
        };
        Ok(ActivationReport {
            certificate_id: id.to_string(),
            outcome,
            thing_name: None,
            reason: Some(reason),
        })
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
        thing_name: &str,
        certificate_arn: &str,
    ) -> Result<(), ActivatorError> {
        match self.iot.create_thing().thing_name(thing_name).send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_already_exists_exception()) => {}
            Err(e) => return Err(aws("CreateThing", &e)),
        }
        // Attaching an attached principal is a no-op in AWS IoT.
        self.iot
            .attach_thing_principal()
            .thing_name(thing_name)
            .principal(certificate_arn)
            .send()
            .await
            .map_err(|e| aws("AttachThingPrincipal", &e))?;
        if let Some(group) = &self.config.thing_group {
            self.iot
                .add_thing_to_thing_group()
                .thing_group_name(group)
                .thing_name(thing_name)
                .send()
                .await
                .map_err(|e| aws("AddThingToThingGroup", &e))?;
        }
        Ok(())
    }
}

fn aws<E, R>(step: &'static str, err: &aws_sdk_iot::error::SdkError<E, R>) -> ActivatorError
where
    E: aws_sdk_iot::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    ActivatorError::Aws {
        step,
        message: describe_sdk_error(err),
    }
}
