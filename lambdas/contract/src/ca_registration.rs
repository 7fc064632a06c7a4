//! The CA registration custom resource: `Custom::JitrCaRegistration`.
//!
//! The template sets [`CaRegistrationProperties`] on the resource; CloudFormation hands them
//! (as strings) to the provider Lambda, which answers with the attributes named here.

use serde::{Deserialize, Serialize};

/// The custom resource type the template declares.
pub const RESOURCE_TYPE: &str = "Custom::JitrCaRegistration";

/// `Fn::GetAtt` attribute: the AWS IoT CA certificate id (also the physical resource id).
pub const ATTR_CA_CERTIFICATE_ID: &str = "CaCertificateId";
/// `Fn::GetAtt` attribute: the CA certificate's ARN.
pub const ATTR_CA_CERTIFICATE_ARN: &str = "CaCertificateArn";

/// How AWS IoT registers the CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateMode {
    /// Needs a verification certificate proving possession of the CA key; the CA may be
    /// registered in only one account per region.
    Default,
    /// No verification certificate; devices must send SNI. The same CA may be registered in
    /// several accounts.
    SniOnly,
}

impl CertificateMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateMode::Default => "DEFAULT",
            CertificateMode::SniOnly => "SNI_ONLY",
        }
    }
}

/// The CA's status in AWS IoT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaStatus {
    #[default]
    Active,
    Inactive,
}

impl CaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CaStatus::Active => "ACTIVE",
            CaStatus::Inactive => "INACTIVE",
        }
    }
}

fn yes() -> bool {
    true
}

/// The resource's properties. `ServiceToken` (added by CloudFormation) and unknown
/// properties are rejected by name so a template/provider mismatch fails loudly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CaRegistrationProperties {
    /// Set by CloudFormation on every custom resource: the provider function's ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_token: Option<String>,
    /// Set on the resource so CloudFormation gives up if the provider never answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_timeout: Option<String>,
    /// The CA certificate, PEM.
    pub ca_certificate_pem: String,
    pub certificate_mode: CertificateMode,
    /// Required in `DEFAULT` mode: a certificate whose CN is the account's registration code,
    /// signed by the CA's private key. It proves possession and holds no secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_certificate_pem: Option<String>,
    #[serde(default)]
    pub status: CaStatus,
    /// Auto-registration of device certificates signed by this CA; JITR needs it on.
    #[serde(default = "yes", with = "crate::cfn_bool")]
    pub auto_registration: bool,
    /// Leave the CA registered when the resource is deleted (production fleets).
    #[serde(default, with = "crate::cfn_bool")]
    pub retain_on_delete: bool,
}

impl CaRegistrationProperties {
    /// Parses CloudFormation's `ResourceProperties` and checks the cross-field rules.
    pub fn from_value(value: serde_json::Value) -> Result<Self, String> {
        let props: Self =
            serde_json::from_value(value).map_err(|e| format!("invalid properties: {e}"))?;
        if props.certificate_mode == CertificateMode::Default
            && props
                .verification_certificate_pem
                .as_deref()
                .is_none_or(|p| p.trim().is_empty())
        {
            return Err(
                "invalid properties: CertificateMode DEFAULT needs VerificationCertificatePem"
                    .into(),
            );
        }
        Ok(props)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_strings() {
        let p = CaRegistrationProperties::from_value(json!({
            "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:p",
            "CaCertificatePem": "pem",
            "CertificateMode": "SNI_ONLY",
            "RetainOnDelete": "true"
        }))
        .unwrap();
        assert!(p.auto_registration);
        assert!(p.retain_on_delete);
        assert_eq!(p.status, CaStatus::Active);
    }

    #[test]
    fn default_mode_needs_verification_certificate() {
        let err = CaRegistrationProperties::from_value(json!({
            "CaCertificatePem": "pem",
            "CertificateMode": "DEFAULT"
        }))
        .unwrap_err();
        assert!(err.contains("VerificationCertificatePem"), "{err}");
    }

    #[test]
    fn unknown_property_is_named() {
        let err = CaRegistrationProperties::from_value(json!({
            "CaCertificatePem": "pem",
            "CertificateMode": "SNI_ONLY",
            "CaPrivateKey": "nope"
        }))
        .unwrap_err();
        assert!(err.contains("CaPrivateKey"), "{err}");
    }
}
