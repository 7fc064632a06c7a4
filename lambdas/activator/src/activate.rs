//! The decision for one certificate, from the registry: the same path for a registered
//! event and for the sweep. The registry is the truth (the event is a hint): the certificate's
//! status and CA, then our CA's signature, the stage's acceptance checks, and only then the
//! Thing, the policy and, last, the activation. Every AWS IoT call goes through the limiter.

use crate::limiter::CallError;
use crate::{aws, Activator, ActivatorError, Invocation};
use aws_sdk_iot::types::CertificateStatus;
use jitr_contract::activator::is_thing_name;
use jitr_contract::activator::{
    ActivationReport, Outcome, ReasonCode, RejectAction, ThingNameSource,
};
use jitr_contract::event::{RegisteredEvent, PENDING_ACTIVATION};
use jitr_contract::rates::IotApi;
use jitr_lambda_common::pki::{unix_now, Certificate, NotIssuedBy};

impl Activator {
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
        if !self.config.accepts_ca(&event.ca_certificate_id) {
            return ignored(ReasonCode::OtherCa, self.not_our_ca(event));
        }

        // The event is a hint; the registry is the truth. The event's CA certificate (for the
        // signature check) is read at the same time on a cold start.
        let (described, ca) = tokio::join!(
            self.iot_call(inv, IotApi::DescribeCertificate, || self
                .iot
                .describe_certificate()
                .certificate_id(id)
                .send()),
            self.our_ca(inv, &event.ca_certificate_id)
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
        // Both ours, but the registry names another of our CAs than the event: it wins.
        let ca = match desc
            .ca_certificate_id()
            .filter(|c| *c != event.ca_certificate_id)
        {
            Some(registry_ca) => self.our_ca(inv, registry_ca).await,
            None => ca,
        };
        if let Some(not_ours) = not_issued_by(id, &cert, ca?)? {
            return Ok(not_ours);
        }
        // Ours. Listed as revoked (for the CA that issued it): never let in, before any check.
        let issuer = desc.ca_certificate_id().unwrap_or(&event.ca_certificate_id);
        if self.revocation.is_revoked(&cert.serial_hex(), issuer) {
            return self.revoke_listed(inv, id, &cert).await;
        }
        // Now the stage's acceptance checks.
        if let Err((code, reason)) = self.acceptance_checks(&cert) {
            return self.reject(inv, id, code, reason).await;
        }
        self.provision(inv, id, arn, &cert).await
    }

    fn not_our_ca(&self, event: &RegisteredEvent) -> String {
        format!(
            "event is for CA {}, this activator serves CA {}",
            event.ca_certificate_id,
            self.config.ca_certificate_ids.join(", ")
        )
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
            if !self.config.accepts_ca(ca) {
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

    /// CA `ca_id`'s certificate (one of ours), read once per container.
    async fn our_ca(
        &self,
        inv: &Invocation<'_>,
        ca_id: &str,
    ) -> Result<&Certificate, ActivatorError> {
        let cell = self
            .config
            .ca_certificate_ids
            .iter()
            .position(|c| c == ca_id)
            .and_then(|i| self.cas.get(i))
            .ok_or_else(|| ActivatorError::CaCertificate(format!("{ca_id} is not ours")))?;
        cell.get_or_try_init(|| async {
            let out = self
                .iot_call(inv, IotApi::DescribeCACertificate, || {
                    self.iot
                        .describe_ca_certificate()
                        .certificate_id(ca_id)
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

    /// The serial is on the stage's revocation list: REVOKED, whatever `on_reject` says.
    async fn revoke_listed(
        &self,
        inv: &Invocation<'_>,
        id: &str,
        cert: &Certificate,
    ) -> Result<ActivationReport, ActivatorError> {
        self.set_revoked(inv, id).await?;
        inv.tally.count(jitr_contract::metrics::REVOKED_BY_LIST);
        Ok(ActivationReport::new(id, Outcome::Revoked).because(
            ReasonCode::RevokedList,
            format!(
                "serial {} is on the stage's revocation list",
                cert.serial_hex()
            ),
        ))
    }

    async fn set_revoked(&self, inv: &Invocation<'_>, id: &str) -> Result<(), ActivatorError> {
        self.iot_call(inv, IotApi::UpdateCertificate, || {
            self.iot
                .update_certificate()
                .certificate_id(id)
                .new_status(CertificateStatus::Revoked)
                .send()
        })
        .await
        .map(|_| ())
        .map_err(|e| aws("UpdateCertificate(REVOKED)", e))
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
                self.set_revoked(inv, id).await?;
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
