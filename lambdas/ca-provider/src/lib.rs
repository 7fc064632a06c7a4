//! The CA registration custom resource provider (`Custom::JitrCaRegistration`).
//!
//! CloudFormation sends Create, Update and Delete requests; the provider registers, updates
//! or deregisters the device CA in AWS IoT and **always** answers the request's presigned
//! `ResponseURL`: on success, on error, on panic, and before the Lambda deadline. A provider
//! that never answers leaves the stack waiting until the resource's `ServiceTimeout`.
//!
//! - Create registers the CA (status and auto-registration from the properties) and returns
//!   the CA id as the physical resource id. A CA that is already registered is adopted.
//! - Update changes status and auto-registration in place. A different CA certificate or
//!   certificate mode is a replacement: the new CA is registered and its id returned;
//!   CloudFormation then sends Delete for the old id.
//! - Delete sets the CA INACTIVE with auto-registration off, then deletes it (AWS IoT refuses
//!   to delete an ACTIVE CA). With `RetainOnDelete` it leaves the CA alone. A CA that does
//!   not exist (a Create that failed) is already deleted: success.

pub mod cfn;
pub mod respond;

pub use respond::{answer, answer_within, ResponseSender};

use aws_sdk_iot::types::{AutoRegistrationStatus, CaCertificateStatus, CertificateMode as IotMode};
use jitr_contract::ca_registration::{
    CaRegistrationProperties, CaStatus, CertificateMode, ATTR_CA_CERTIFICATE_ARN,
    ATTR_CA_CERTIFICATE_ID,
};
use jitr_contract::is_certificate_id;
use jitr_lambda_common::describe_sdk_error;
use jitr_lambda_common::pki::{needs_new_registration, unix_now, Certificate};
use std::collections::BTreeMap;

/// A successful outcome: the physical id and the attributes `Fn::GetAtt` can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Success {
    pub physical_resource_id: String,
    pub data: BTreeMap<String, String>,
}

/// The provider's AWS side. Cheap to clone (the client is reference-counted).
#[derive(Clone)]
pub struct Provider {
    iot: aws_sdk_iot::Client,
}

impl Provider {
    pub fn new(iot: aws_sdk_iot::Client) -> Self {
        Provider { iot }
    }

    /// Carries out one request. Errors are the `Reason` CloudFormation will show.
    pub async fn handle(&self, request: &cfn::Request) -> Result<Success, String> {
        let props = CaRegistrationProperties::from_value(request.resource_properties.clone())?;
        match request.request_type {
            cfn::RequestType::Create => self.register(&props).await,
            cfn::RequestType::Update => {
                let physical = request.physical_resource_id.as_deref().unwrap_or_default();
                let old = request
                    .old_resource_properties
                    .clone()
                    .map(CaRegistrationProperties::from_value)
                    .and_then(Result::ok);
                if !is_certificate_id(physical) || needs_replacement(old.as_ref(), &props)? {
                    tracing::info!(
                        old_ca = physical,
                        "CA certificate or mode changed: registering a new CA (replacement)"
                    );
                    self.register(&props).await
                } else {
                    self.set_state(physical, props.status, props.auto_registration)
                        .await?;
                    self.success(physical).await
                }
            }
            cfn::RequestType::Delete => {
                let physical = request.physical_resource_id.as_deref().unwrap_or_default();
                self.deregister(physical, props.retain_on_delete).await?;
                Ok(Success {
                    physical_resource_id: physical.to_string(),
                    data: BTreeMap::new(),
                })
            }
        }
    }

    async fn register(&self, props: &CaRegistrationProperties) -> Result<Success, String> {
        let ca = Certificate::from_pem(&props.ca_certificate_pem)
            .map_err(|e| format!("CaCertificatePem: {e}"))?;
        if !ca.is_ca() {
            return Err(format!(
                "CaCertificatePem: `{}` is not a CA certificate (basicConstraints CA:TRUE is missing)",
                ca.subject()
            ));
        }
        ca.check_validity_at(unix_now())
            .map_err(|e| format!("CaCertificatePem: CA {e}"))?;
        let mut call = self
            .iot
            .register_ca_certificate()
            .ca_certificate(&props.ca_certificate_pem)
            .set_as_active(props.status == CaStatus::Active)
            .allow_auto_registration(props.auto_registration)
            .certificate_mode(iot_mode(props.certificate_mode));
        if props.certificate_mode == CertificateMode::Default {
            let pem = props
                .verification_certificate_pem
                .as_deref()
                .unwrap_or_default();
            let verification = Certificate::from_pem(pem)
                .map_err(|e| format!("VerificationCertificatePem: {e}"))?;
            // AWS checks this too; checking first gives a message that says which key is wrong.
            verification
                .verify_signed_by(&ca)
                .map_err(|e| format!("VerificationCertificatePem: {e}"))?;
            call = call.verification_certificate(pem);
        }
        match call.send().await {
            Ok(out) => {
                let id = out
                    .certificate_id()
                    .ok_or("RegisterCACertificate returned no certificateId")?;
                tracing::info!(ca_certificate_id = id, "CA registered");
                Ok(Success {
                    physical_resource_id: id.to_string(),
                    data: attributes(id, out.certificate_arn().unwrap_or_default()),
                })
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_already_exists_exception()) =>
            {
                let hinted = e
                    .as_service_error()
                    .and_then(|s| match s {
                        aws_sdk_iot::operation::register_ca_certificate::RegisterCACertificateError::ResourceAlreadyExistsException(x) => x.resource_id().map(str::to_string),
                        _ => None,
                    });
                let id = match hinted {
                    Some(id) => id,
                    None => self.find_registered(&ca).await?.ok_or_else(|| {
                        format!(
                            "RegisterCACertificate: {}; and no registered CA matches it",
                            describe_sdk_error(&e)
                        )
                    })?,
                };
                self.adopt(&id, props).await
            }
            Err(e) => Err(format!("RegisterCACertificate: {}", describe_sdk_error(&e))),
        }
    }

    /// Takes over a CA that was registered before (by hand, or by an earlier stack).
    async fn adopt(&self, id: &str, props: &CaRegistrationProperties) -> Result<Success, String> {
        let out = self
            .iot
            .describe_ca_certificate()
            .certificate_id(id)
            .send()
            .await
            .map_err(|e| format!("DescribeCACertificate {id}: {}", describe_sdk_error(&e)))?;
        if let Some(mode) = out
            .certificate_description()
            .and_then(|d| d.certificate_mode())
        {
            if mode.as_str() != props.certificate_mode.as_str() {
                return Err(format!(
                    "the CA is already registered as {id} in {} mode, but CertificateMode is {}: \
                     deregister it or change the stage's mode",
                    mode.as_str(),
                    props.certificate_mode.as_str()
                ));
            }
        }
        tracing::info!(ca_certificate_id = id, "CA already registered: adopting it");
        self.set_state(id, props.status, props.auto_registration)
            .await?;
        self.success(id).await
    }

    /// Finds a registered CA with the same DER encoding as `ca`.
    async fn find_registered(&self, ca: &Certificate) -> Result<Option<String>, String> {
        // Real AWS names a CA by the SHA-256 of its DER: try that first.
        let id = ca.aws_iot_id();
        if let Ok(out) = self
            .iot
            .describe_ca_certificate()
            .certificate_id(&id)
            .send()
            .await
        {
            if out.certificate_description().is_some() {
                return Ok(Some(id));
            }
        }
        let mut pages = self.iot.list_ca_certificates().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| format!("ListCACertificates: {}", describe_sdk_error(&e)))?;
            for listed in page.certificates() {
                let Some(id) = listed.certificate_id() else {
                    continue;
                };
                let out = self
                    .iot
                    .describe_ca_certificate()
                    .certificate_id(id)
                    .send()
                    .await
                    .map_err(|e| {
                        format!("DescribeCACertificate {id}: {}", describe_sdk_error(&e))
                    })?;
                let pem = out
                    .certificate_description()
                    .and_then(|d| d.certificate_pem())
                    .unwrap_or_default();
                if Certificate::from_pem(pem).is_ok_and(|c| c.der() == ca.der()) {
                    return Ok(Some(id.to_string()));
                }
            }
        }
        Ok(None)
    }

    async fn set_state(
        &self,
        id: &str,
        status: CaStatus,
        auto_registration: bool,
    ) -> Result<(), String> {
        self.iot
            .update_ca_certificate()
            .certificate_id(id)
            .new_status(match status {
                CaStatus::Active => CaCertificateStatus::Active,
                CaStatus::Inactive => CaCertificateStatus::Inactive,
            })
            .new_auto_registration_status(if auto_registration {
                AutoRegistrationStatus::Enable
            } else {
                AutoRegistrationStatus::Disable
            })
            .send()
            .await
            .map_err(|e| format!("UpdateCACertificate {id}: {}", describe_sdk_error(&e)))?;
        Ok(())
    }

    async fn success(&self, id: &str) -> Result<Success, String> {
        let out = self
            .iot
            .describe_ca_certificate()
            .certificate_id(id)
            .send()
            .await
            .map_err(|e| format!("DescribeCACertificate {id}: {}", describe_sdk_error(&e)))?;
        let arn = out
            .certificate_description()
            .and_then(|d| d.certificate_arn())
            .unwrap_or_default();
        Ok(Success {
            physical_resource_id: id.to_string(),
            data: attributes(id, arn),
        })
    }

    async fn deregister(&self, id: &str, retain: bool) -> Result<(), String> {
        if retain {
            tracing::info!(
                ca_certificate_id = id,
                "RetainOnDelete: leaving the CA registered"
            );
            return Ok(());
        }
        if !is_certificate_id(id) {
            // The Create failed before anything was registered; its placeholder id names nothing.
            return Ok(());
        }
        // AWS IoT will not delete an ACTIVE CA: deactivate and stop auto-registration first.
        match self.set_state(id, CaStatus::Inactive, false).await {
            Ok(()) => {}
            Err(_) if self.is_gone(id).await => return Ok(()),
            Err(e) => return Err(e),
        }
        match self.iot.delete_ca_certificate().certificate_id(id).send().await {
            Ok(_) => {
                tracing::info!(ca_certificate_id = id, "CA deregistered");
                Ok(())
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(format!(
                "DeleteCACertificate {id}: {} (the CA was set INACTIVE; set RetainOnDelete to keep it registered)",
                describe_sdk_error(&e)
            )),
        }
    }

    async fn is_gone(&self, id: &str) -> bool {
        match self
            .iot
            .describe_ca_certificate()
            .certificate_id(id)
            .send()
            .await
        {
            Err(e) => e
                .as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()),
            Ok(_) => false,
        }
    }
}

fn attributes(id: &str, arn: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (ATTR_CA_CERTIFICATE_ID.to_string(), id.to_string()),
        (ATTR_CA_CERTIFICATE_ARN.to_string(), arn.to_string()),
    ])
}

fn iot_mode(mode: CertificateMode) -> IotMode {
    match mode {
        CertificateMode::Default => IotMode::Default,
        CertificateMode::SniOnly => IotMode::SniOnly,
    }
}

/// A different CA (by DER) or certificate mode needs a new registration: the rule the CLI's
/// diff predicts with, [`jitr_lambda_common::pki::needs_new_registration`].
fn needs_replacement(
    old: Option<&CaRegistrationProperties>,
    new: &CaRegistrationProperties,
) -> Result<bool, String> {
    let Some(old) = old else { return Ok(true) };
    Certificate::from_pem(&new.ca_certificate_pem).map_err(|e| format!("CaCertificatePem: {e}"))?;
    Ok(needs_new_registration(
        &old.ca_certificate_pem,
        old.certificate_mode.as_str(),
        &new.ca_certificate_pem,
        new.certificate_mode.as_str(),
    ))
}
