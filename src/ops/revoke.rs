//! Revoking one device certificate: AWS IoT status `REVOKED`, the stage's device policy
//! detached, the certificate detached from its Things. Every step reads first and reports
//! whether it did something or found it done, so a second revoke changes nothing and says
//! "already revoked".
//!
//! AWS behaviour relied on (AWS IoT API Reference, UpdateCertificate,
//! <https://docs.aws.amazon.com/iot/latest/apireference/API_UpdateCertificate.html>): the call
//! is idempotent; `REVOKED` is a valid new status from any status (only `PENDING_TRANSFER` and
//! `PENDING_ACTIVATION` may not be set), so a certificate still pending activation is revoked
//! too; within a few minutes of leaving `ACTIVE` AWS IoT disconnects the devices using it and
//! they cannot reconnect. DetachThingPrincipal is asynchronous: the Thing may list the
//! certificate for a few seconds after the call (DetachThingPrincipal, same reference).
//!
//! The Thing is detached, not deleted: it may carry attributes, groups, a shadow and other
//! certificates (a device's next certificate), which are the operator's to delete.

use crate::aws;
use crate::error::Error;
use aws_sdk_iot::types::CertificateStatus;
use jitr_lambda_common::pki::Certificate;
use serde::Serialize;

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// This run did it.
    Done,
    /// It was already so; nothing to do.
    Already,
    /// `--dry-run`: it would be done.
    WouldDo,
}

/// A device certificate as AWS IoT describes it (DescribeCertificate).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCertificate {
    pub certificate_id: String,
    pub certificate_arn: String,
    pub status: String,
    /// The CA AWS IoT registered it under (`caCertificateId`), if any.
    pub ca_certificate_id: Option<String>,
    /// Serial in normal form (lowercase hex, no leading zeros), when its PEM parses.
    pub serial: Option<String>,
    pub subject_cn: Option<String>,
}

/// One Thing the certificate was attached to.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThingStep {
    pub thing_name: String,
    pub step: Step,
}

/// What revoking one certificate did (`--json` prints it as part of the command's result).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokeReport {
    pub certificate: DeviceCertificate,
    /// `REVOKED` set (done), found (already) or planned (would-do).
    pub status: Step,
    pub policy_name: String,
    /// The stage's device policy: detached, not attached (already), or would be detached.
    pub policy: Step,
    /// Other policies attached to the certificate: not the stage's, left as they are.
    pub other_policies: Vec<String>,
    /// The Things it was attached to, each detached (the Things themselves stay).
    pub things: Vec<ThingStep>,
}

impl RevokeReport {
    /// Nothing was left to do: REVOKED, policy not attached, no Thing.
    pub fn already_revoked(&self) -> bool {
        self.status == Step::Already && self.policy == Step::Already && self.things.is_empty()
    }
}

/// Revokes `certificate_id`: UpdateCertificate `REVOKED`, DetachPolicy `policy_name`,
/// DetachThingPrincipal for each of its Things. Idempotent (see [`RevokeReport`]).
pub async fn revoke_certificate(
    iot: &aws_sdk_iot::Client,
    certificate_id: &str,
    policy_name: &str,
) -> Result<RevokeReport, Error> {
    let cert = describe(iot, certificate_id).await?;
    revoke(iot, cert, policy_name, false).await
}

/// Revokes the described certificate; with `dry_run`, reads only and reports what it would do.
pub async fn revoke(
    iot: &aws_sdk_iot::Client,
    cert: DeviceCertificate,
    policy_name: &str,
    dry_run: bool,
) -> Result<RevokeReport, Error> {
    let planned = |step| if dry_run { Step::WouldDo } else { step };
    let status = if cert.status == CertificateStatus::Revoked.as_str() {
        Step::Already
    } else {
        if !dry_run {
            iot.update_certificate()
                .certificate_id(&cert.certificate_id)
                .new_status(CertificateStatus::Revoked)
                .send()
                .await
                .map_err(|e| Error::Aws(aws::error("iot:UpdateCertificate", &e)))?;
        }
        planned(Step::Done)
    };
    let attached = attached_policies(iot, &cert.certificate_arn).await?;
    let policy = if attached.iter().any(|p| p == policy_name) {
        if !dry_run {
            iot.detach_policy()
                .policy_name(policy_name)
                .target(&cert.certificate_arn)
                .send()
                .await
                .map_err(|e| Error::Aws(aws::error("iot:DetachPolicy", &e)))?;
        }
        planned(Step::Done)
    } else {
        Step::Already
    };
    let mut things = Vec::new();
    for thing_name in principal_things(iot, &cert.certificate_arn).await? {
        if !dry_run {
            iot.detach_thing_principal()
                .thing_name(&thing_name)
                .principal(&cert.certificate_arn)
                .send()
                .await
                .map_err(|e| Error::Aws(aws::error("iot:DetachThingPrincipal", &e)))?;
        }
        things.push(ThingStep {
            thing_name,
            step: planned(Step::Done),
        });
    }
    let other_policies = attached.into_iter().filter(|p| p != policy_name).collect();
    Ok(RevokeReport {
        certificate: cert,
        status,
        policy_name: policy_name.to_string(),
        policy,
        other_policies,
        things,
    })
}

/// DescribeCertificate, with the serial and CN read from its PEM. An unknown id is an error
/// naming it.
pub async fn describe(
    iot: &aws_sdk_iot::Client,
    certificate_id: &str,
) -> Result<DeviceCertificate, Error> {
    let out = match iot
        .describe_certificate()
        .certificate_id(certificate_id)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) if aws::code(&e).as_deref() == Some("ResourceNotFoundException") => {
            return Err(Error::Revoke(format!(
                "certificate {certificate_id}: AWS IoT has no certificate with this id in this \
                 account and region"
            )))
        }
        Err(e) => return Err(Error::Aws(aws::error("iot:DescribeCertificate", &e))),
    };
    let d = out.certificate_description().ok_or_else(|| {
        Error::Revoke(format!(
            "certificate {certificate_id}: DescribeCertificate answered without a description"
        ))
    })?;
    let parsed = d
        .certificate_pem()
        .and_then(|p| Certificate::from_pem(p).ok());
    Ok(DeviceCertificate {
        certificate_id: d.certificate_id().unwrap_or(certificate_id).to_string(),
        certificate_arn: d.certificate_arn().unwrap_or_default().to_string(),
        status: d.status().map(|s| s.as_str()).unwrap_or("").to_string(),
        ca_certificate_id: d.ca_certificate_id().map(str::to_string),
        serial: parsed.as_ref().map(Certificate::serial_hex),
        subject_cn: parsed.as_ref().and_then(Certificate::subject_cn),
    })
}

/// The names of the policies attached to the certificate `arn` (every page).
async fn attached_policies(iot: &aws_sdk_iot::Client, arn: &str) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    let mut pages = iot
        .list_attached_policies()
        .target(arn)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::Aws(aws::error("iot:ListAttachedPolicies", &e)))?;
        names.extend(
            page.policies()
                .iter()
                .filter_map(|p| p.policy_name().map(str::to_string)),
        );
    }
    Ok(names)
}

/// The Things the certificate `arn` is attached to (ListPrincipalThings, every page).
async fn principal_things(iot: &aws_sdk_iot::Client, arn: &str) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    let mut pages = iot
        .list_principal_things()
        .principal(arn)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::Aws(aws::error("iot:ListPrincipalThings", &e)))?;
        names.extend(page.things().iter().cloned());
    }
    Ok(names)
}

/// One certificate's report as text lines.
pub fn report_text(r: &RevokeReport, ca_name: &str) -> String {
    let c = &r.certificate;
    let mut text = format!(
        "certificate {} (serial {}, CN {}, CA {ca_name})\n",
        c.certificate_id,
        c.serial.as_deref().unwrap_or("?"),
        c.subject_cn.as_deref().unwrap_or("-"),
    );
    let status = match r.status {
        Step::Done => format!("REVOKED (was {})", c.status),
        Step::Already => "already REVOKED".to_string(),
        Step::WouldDo => format!("would be set REVOKED (now {})", c.status),
    };
    text.push_str(&format!("  status  {status}\n"));
    let policy = match r.policy {
        Step::Done => "detached",
        Step::Already => "not attached",
        Step::WouldDo => "would be detached",
    };
    text.push_str(&format!("  policy  {} {policy}\n", r.policy_name));
    for p in &r.other_policies {
        text.push_str(&format!(
            "  policy  {p} left attached (not the stage's device policy)\n"
        ));
    }
    for t in &r.things {
        let what = if t.step == Step::WouldDo {
            "would be detached"
        } else {
            "detached"
        };
        text.push_str(&format!(
            "  thing   {} {what} (the Thing stays: delete it if the device is retired)\n",
            t.thing_name
        ));
    }
    if r.things.is_empty() {
        text.push_str("  thing   none attached\n");
    }
    text
}
