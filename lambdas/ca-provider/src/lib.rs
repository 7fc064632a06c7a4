//! The CA registration custom resource provider (`Custom::JitrCaRegistration`).
//!
//! CloudFormation sends Create, Update and Delete requests; the provider registers, updates
//! or deregisters the device CA in AWS IoT and **always** answers the request's presigned
//! `ResponseURL`: on success, on error, on panic, and before the Lambda deadline. A provider
//! that never answers leaves the stack waiting until the resource's `ServiceTimeout`.
//!
//! - Create registers the CA (status and auto-registration from the properties) and returns
//!   the CA id as the physical resource id. A CA that is already registered belongs to
//!   someone else (a hand registration, another stage): it is taken over only with `Adopt`,
//!   and then its physical id is marked (`adopted:<id>`) so that Delete leaves it registered.
//!   A Create that fails after registering answers FAILED with the CA's id, so the Delete
//!   of CloudFormation's rollback deregisters it.
//! - Update changes status and auto-registration in place (an adopted CA keeps its marked
//!   physical id). A different CA certificate (by DER) or certificate mode is a replacement:
//!   the new CA is registered and its id returned; CloudFormation then sends Delete for the
//!   old id.
//! - Delete decides from the physical id first, before reading any property: not a CA id
//!   (a failed Create's placeholder) or an adopted CA: success, nothing done. Otherwise it
//!   reads only `RetainOnDelete`, then sets the CA INACTIVE with auto-registration off and
//!   deletes it (AWS IoT refuses to delete an ACTIVE CA). A CA already gone: success.

pub mod cfn;
pub mod respond;

pub use respond::{answer, answer_within, ResponseSender};

use aws_sdk_iot::operation::register_ca_certificate::RegisterCACertificateError;
use aws_sdk_iot::types::{AutoRegistrationStatus, CaCertificateStatus, CertificateMode as IotMode};
use jitr_contract::ca_registration::{
    adopted_physical_id, retain_on_delete, CaPhysicalId, CaRegistrationProperties, CaStatus,
    CertificateMode, ATTR_CA_CERTIFICATE_ARN, ATTR_CA_CERTIFICATE_ID,
};
use jitr_lambda_common::describe_sdk_error;
use jitr_lambda_common::pki::{needs_new_registration, unix_now, Certificate};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A successful outcome: the physical id and the attributes `Fn::GetAtt` can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Success {
    pub physical_resource_id: String,
    pub data: BTreeMap<String, String>,
}

/// The physical id a Create has to report even when it fails afterwards.
///
/// Set as soon as the CA is registered. The FAILED answer then names the real CA (whether
/// the work failed, panicked or ran out of time), and the Delete CloudFormation sends while
/// rolling back deregisters it; a placeholder would leave it registered, owned by no stack.
#[derive(Debug, Clone, Default)]
pub struct Registered(Arc<Mutex<Option<String>>>);

impl Registered {
    pub fn set(&self, physical_id: &str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(physical_id.to_string());
    }

    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What RegisterCACertificate did.
enum Registration {
    /// Registered now, by this request.
    New(String),
    /// The same certificate was registered before (AWS: ResourceAlreadyExists).
    Existing(String),
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

    /// Carries out one request. Errors are the `Reason` CloudFormation will show. A Create
    /// records the CA it registered in `registered` before doing anything else.
    pub async fn handle(
        &self,
        request: &cfn::Request,
        registered: &Registered,
    ) -> Result<Success, String> {
        let props = || CaRegistrationProperties::from_value(request.resource_properties.clone());
        match request.request_type {
            // Before any property is parsed: a stack must always be deletable, whatever its
            // properties have become.
            cfn::RequestType::Delete => self.delete(request).await,
            cfn::RequestType::Create => {
                let props = props()?;
                match self.register(&props).await? {
                    Registration::New(id) => {
                        registered.set(&id);
                        self.success(&id, &id).await
                    }
                    Registration::Existing(id) => self.adopt(&id, &props).await,
                }
            }
            cfn::RequestType::Update => self.update(request, &props()?).await,
        }
    }

    async fn update(
        &self,
        request: &cfn::Request,
        props: &CaRegistrationProperties,
    ) -> Result<Success, String> {
        let physical = request.physical_resource_id.as_deref().unwrap_or_default();
        let current = CaPhysicalId::parse(physical);
        let old = request
            .old_resource_properties
            .clone()
            .map(CaRegistrationProperties::from_value)
            .and_then(Result::ok);
        if let Some(id) = current.ca_id() {
            if !needs_replacement(old.as_ref(), props)? {
                // In place; an adopted CA keeps its marked physical id.
                self.set_state(id, props.status, props.auto_registration)
                    .await?;
                return self.success(physical, id).await;
            }
        }
        tracing::info!(
            old_ca = physical,
            "CA certificate or mode changed: registering a new CA (replacement)"
        );
        match self.register(props).await? {
            Registration::New(id) => match self.success(&id, &id).await {
                Ok(success) => Ok(success),
                Err(e) => {
                    // A failed update keeps the old physical id: CloudFormation never learns
                    // of this CA and would never delete it.
                    if let Err(cleanup) = self.deregister(&id).await {
                        tracing::error!(ca_certificate_id = %id, error = %cleanup, "could not deregister the new CA after the failed update");
                    }
                    Err(e)
                }
            },
            Registration::Existing(id) if current.ca_id() == Some(id.as_str()) => {
                // The CA this resource has now (e.g. back to it after a failed update):
                // still in place, marker and all. A mode change fails in take_over.
                self.take_over(&id, props).await?;
                self.success(physical, &id).await
            }
            Registration::Existing(id) => self.adopt(&id, props).await,
        }
    }

    async fn delete(&self, request: &cfn::Request) -> Result<Success, String> {
        let physical = request.physical_resource_id.as_deref().unwrap_or_default();
        match CaPhysicalId::parse(physical) {
            CaPhysicalId::NotACa => tracing::info!(
                physical_resource_id = physical,
                "not a CA id (a Create that failed before registering): nothing to deregister"
            ),
            CaPhysicalId::Adopted(id) => tracing::info!(
                ca_certificate_id = id,
                "adopted CA: leaving it registered for whoever registered it"
            ),
            CaPhysicalId::Owned(id) if retain_on_delete(&request.resource_properties) => {
                tracing::info!(
                    ca_certificate_id = id,
                    "RetainOnDelete: leaving the CA registered"
                )
            }
            CaPhysicalId::Owned(id) => self.deregister(id).await?,
        }
        Ok(Success {
            physical_resource_id: physical.to_string(),
            data: BTreeMap::new(),
        })
    }

    async fn register(&self, props: &CaRegistrationProperties) -> Result<Registration, String> {
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
        let e = match call.send().await {
            Ok(out) => {
                let id = out
                    .certificate_id()
                    .ok_or("RegisterCACertificate returned no certificateId")?;
                tracing::info!(ca_certificate_id = id, "CA registered");
                return Ok(Registration::New(id.to_string()));
            }
            Err(e) => e,
        };
        // AWS answers ResourceAlreadyExists for a certificate already registered in this
        // account, naming it in resourceId.
        let Some(RegisterCACertificateError::ResourceAlreadyExistsException(exists)) =
            e.as_service_error()
        else {
            return Err(format!("RegisterCACertificate: {}", describe_sdk_error(&e)));
        };
        let id = match exists.resource_id() {
            Some(id) => id.to_string(),
            None => self.find_registered(&ca).await?.ok_or_else(|| {
                format!(
                    "RegisterCACertificate: {}; and no registered CA matches it",
                    describe_sdk_error(&e)
                )
            })?,
        };
        Ok(Registration::Existing(id))
    }

    /// A CA registered before, not by this resource: taken over only when the stage says so.
    async fn adopt(&self, id: &str, props: &CaRegistrationProperties) -> Result<Success, String> {
        if !props.adopt {
            return Err(format!(
                "the CA certificate is already registered in this account and region as {id} \
                 (by hand, or by another stack or stage), and this stack does not take over a \
                 CA it did not register. To use that registration, set `ca.adopt: true` in the \
                 stage file (property Adopt): the stack then manages the CA's status and \
                 auto-registration and leaves it registered when the stack is deleted. Or \
                 deregister it first, if nothing else uses it"
            ));
        }
        self.take_over(id, props).await?;
        tracing::info!(ca_certificate_id = id, "CA already registered: adopted");
        self.success(&adopted_physical_id(id), id).await
    }

    /// Sets the requested status and auto-registration on a CA registered before, after
    /// checking that its mode is the requested one (AWS IoT cannot change a CA's mode).
    async fn take_over(&self, id: &str, props: &CaRegistrationProperties) -> Result<(), String> {
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
            let wanted = props.certificate_mode.as_str();
            if mode.as_str() != wanted {
                return Err(format!(
                    "the CA is registered as {id} in {} mode, but CertificateMode is {wanted}: \
                     AWS IoT cannot change a registered CA's mode, and registering the same \
                     certificate again fails. Deregister it (status INACTIVE, then \
                     DeleteCACertificate), then register it in {wanted} mode",
                    mode.as_str()
                ));
            }
        }
        self.set_state(id, props.status, props.auto_registration)
            .await
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

    /// The answer for CA `id` under `physical_id`, with the attributes as AWS IoT reports
    /// them (read back, so every path answers the same way).
    async fn success(&self, physical_id: &str, id: &str) -> Result<Success, String> {
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
            physical_resource_id: physical_id.to_string(),
            data: attributes(id, arn),
        })
    }

    async fn deregister(&self, id: &str) -> Result<(), String> {
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
