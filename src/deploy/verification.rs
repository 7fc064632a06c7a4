//! The `DEFAULT`-mode verification certificates, one parameter per `DEFAULT`-mode CA: each
//! made (signed with the operator's CA key) only when this deploy registers that CA; otherwise
//! the deployed value is kept.

use super::{aws_error, Reporter};
use crate::aws::Clients;
use crate::constructs::{CaIds, Names};
use crate::error::Error;
use crate::pki::{issue_device, CaSigner, DeviceSpec};
use crate::stage::{Ca, Stage, Verification};
use aws_sdk_cloudformation::types::Parameter;
use std::path::Path;

/// Whether this deploy creates or replaces CA `ca`'s registration: no stack (or no such
/// registration in it) yet, or the provider's own replacement rule
/// ([`jitr_lambda_common::pki::needs_new_registration`]) applied to the deployed template's
/// properties and the stage's.
pub fn creates_registration(deployed: Option<&serde_json::Value>, stage: &Stage, ca: &Ca) -> bool {
    let Some(t) = deployed else { return true };
    let ids = CaIds::new(&ca.name, &Names::new(&stage.stack_name));
    if t["Parameters"].get(ids.verification_parameter).is_none() {
        // Nothing to keep with UsePreviousValue.
        return true;
    }
    let props = &t["Resources"][ids.registration.as_str()]["Properties"];
    match jitr_contract::ca_registration::CaIdentity::from_properties(props) {
        Some(deployed) => jitr_lambda_common::pki::needs_new_registration(
            &deployed.ca_certificate_pem,
            &deployed.certificate_mode,
            &ca.pem,
            ca.mode.as_str(),
        ),
        None => true,
    }
}

/// Every `DEFAULT`-mode CA's verification parameter (see [`parameter`]).
pub async fn parameters(
    clients: &Clients,
    root: &Path,
    stage: &Stage,
    deployed: Option<&serde_json::Value>,
    reporter: &dyn Reporter,
) -> Result<Vec<Parameter>, Error> {
    let mut out = Vec::new();
    for ca in stage.cas() {
        if let Some(p) = parameter(clients, root, stage, ca, deployed, reporter).await? {
            out.push(p);
        }
    }
    Ok(out)
}

/// CA `ca`'s `DEFAULT`-mode verification certificate parameter. Only a deploy that creates or
/// replaces its registration needs one (AWS IoT reads it when registering); any other keeps
/// the deployed value (`UsePreviousValue`), so an unchanged stage stays a no-op and needs
/// neither the CA key nor the certificate file.
pub async fn parameter(
    clients: &Clients,
    root: &Path,
    stage: &Stage,
    ca: &Ca,
    deployed: Option<&serde_json::Value>,
    reporter: &dyn Reporter,
) -> Result<Option<Parameter>, Error> {
    let Some(v) = &ca.verification else {
        return Ok(None);
    };
    let ids = CaIds::new(&ca.name, &Names::new(&stage.stack_name));
    let param = Parameter::builder().parameter_key(ids.verification_parameter);
    if !creates_registration(deployed, stage, ca) {
        reporter.progress(&format!(
            "CA {} registration unchanged: keeping its verification certificate (no CA key \
             needed)",
            ca.name
        ));
        return Ok(Some(param.use_previous_value(true).build()));
    }
    let at = &ca.field;
    let why = "it is needed because this deploy registers the CA (a first deploy, or a new CA \
               certificate or mode)";
    let pem = match v {
        Verification::CertificateFile { pem, .. } => pem.clone(),
        Verification::PrivateKeyFile(path) => {
            let key = std::fs::read_to_string(root.join(path)).map_err(|e| {
                Error::Verification(format!(
                    "{}: {at}.verification.private_key_file {path}: {e}; {why}",
                    stage.file.display()
                ))
            })?;
            certificate(clients, stage, ca, &key).await?
        }
        Verification::PrivateKeyEnv(var) => {
            let key = std::env::var(var).map_err(|_| {
                Error::Verification(format!(
                    "{}: {at}.verification.private_key_env: environment variable {var} is not \
                     set (it must hold the CA private key, PEM); {why}",
                    stage.file.display()
                ))
            })?;
            certificate(clients, stage, ca, &key).await?
        }
    };
    Ok(Some(param.parameter_value(pem).build()))
}

/// Signs the `DEFAULT`-mode verification certificate (CN = this account and region's
/// registration code) with the operator's CA key. The key stays in this process's memory.
async fn certificate(
    clients: &Clients,
    stage: &Stage,
    ca: &Ca,
    key_pem: &str,
) -> Result<String, Error> {
    let at = &ca.field;
    let code = clients
        .iot
        .get_registration_code()
        .send()
        .await
        .map_err(|e| aws_error("iot:GetRegistrationCode", &e))?
        .registration_code()
        .unwrap_or_default()
        .to_string();
    // The same checks as `device issue`: the key is the CA certificate's (a certificate
    // signed by another key would be refused by AWS), the CA can sign now.
    let signer = CaSigner::from_pem(&ca.pem, key_pem).map_err(|e| {
        Error::Verification(format!(
            "{}: {at}.verification: {e} (CA certificate {})",
            stage.file.display(),
            ca.certificate_file
        ))
    })?;
    let made = issue_device(&signer, &DeviceSpec::new(code))
        .map_err(|e| Error::Verification(format!("signing the verification certificate: {e}")))?;
    Ok(made.cert_pem)
}
