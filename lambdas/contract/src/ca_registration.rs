//! The CA registration custom resource: `Custom::JitrCaRegistration`.
//!
//! The template sets [`CaRegistrationProperties`] on the resource; CloudFormation hands them
//! (as strings) to the provider Lambda, which answers with the attributes named here.

use serde::{Deserialize, Serialize};

/// The custom resource type the template declares.
pub const RESOURCE_TYPE: &str = "Custom::JitrCaRegistration";

/// `Fn::GetAtt` attribute: the AWS IoT CA certificate id, always the plain id (the physical
/// resource id of an adopted CA carries a marker, see [`CaPhysicalId`]).
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

fn is_false(b: &bool) -> bool {
    !*b
}

/// The resource's properties, as the template writes them and the provider reads them: synth
/// serializes this type into the template, and the provider parses CloudFormation's
/// `ResourceProperties` with it. `ServiceToken` (required by CloudFormation) is named here
/// too, and unknown properties are rejected by name, so a template/provider mismatch fails
/// loudly.
///
/// `T` is the type of the values the template computes at deploy time (the provider's ARN,
/// the verification certificate parameter): a template value for synth (an `Fn::GetAtt`, a
/// `Ref`), a `String` for the provider, which gets them resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CaRegistrationProperties<T = String> {
    /// Set on every custom resource: the provider function's ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_token: Option<T>,
    /// Seconds CloudFormation waits for the provider before giving up (instead of an hour).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::cfn_number"
    )]
    pub service_timeout: Option<u32>,
    /// The CA certificate, PEM.
    pub ca_certificate_pem: String,
    pub certificate_mode: CertificateMode,
    /// Required in `DEFAULT` mode: a certificate whose CN is the account's registration code,
    /// signed by the CA's private key. It proves possession and holds no secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_certificate_pem: Option<T>,
    #[serde(default)]
    pub status: CaStatus,
    /// Auto-registration of device certificates signed by this CA; JITR needs it on.
    #[serde(default = "yes", with = "crate::cfn_bool")]
    pub auto_registration: bool,
    /// Leave the CA registered when the resource is deleted (production fleets).
    #[serde(default, with = "crate::cfn_bool")]
    pub retain_on_delete: bool,
    /// Take over the CA when it is already registered (by hand, by another stack or stage).
    /// Without it that is refused. An adopted CA is never deregistered by this resource.
    /// Written only when set: stacks deployed before adoption existed see no change.
    #[serde(default, skip_serializing_if = "is_false", with = "crate::cfn_bool")]
    pub adopt: bool,
}

/// The two properties that say which CA is registered and how: the provider registers a new
/// CA exactly when one of them changes (by the rule in `jitr-lambda-common`), so the CLI's
/// diff and deploy read them from templates, by these names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CaIdentity {
    pub ca_certificate_pem: String,
    /// As written (not parsed: a template may hold a mode this version does not know).
    pub certificate_mode: String,
}

impl CaIdentity {
    /// The properties [`CaIdentity`] reads, as [`CaRegistrationProperties`] names them.
    pub const PROPERTIES: [&'static str; 2] = ["CaCertificatePem", "CertificateMode"];

    /// The identity in a template's (or a request's) `Properties`, when both are literal
    /// strings; `None` when either is missing or computed (an intrinsic function).
    pub fn from_properties(properties: &serde_json::Value) -> Option<CaIdentity> {
        serde_json::from_value(properties.clone()).ok()
    }
}

impl CaRegistrationProperties<String> {
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

/// Prefix that marks the physical id of an adopted CA: `adopted:<CA id>`.
pub const ADOPTED_PREFIX: &str = "adopted:";

/// What a physical resource id says about the CA behind it.
///
/// A CA the resource registered itself has its plain id as physical id; an adopted one is
/// marked, so that Delete, which must always succeed and decides from the physical id first,
/// leaves it registered. Only adopted ones are marked: a changed physical id is a replacement
/// to CloudFormation, which then deletes the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaPhysicalId<'a> {
    /// Registered by this resource: deregistered on Delete (unless `RetainOnDelete`).
    Owned(&'a str),
    /// Registered before, taken over with `Adopt`: never deregistered by this resource.
    Adopted(&'a str),
    /// Not a CA: the placeholder of a failed Create, or an id CloudFormation made up.
    NotACa,
}

impl<'a> CaPhysicalId<'a> {
    pub fn parse(physical_id: &'a str) -> Self {
        match physical_id.strip_prefix(ADOPTED_PREFIX) {
            Some(id) if crate::is_certificate_id(id) => CaPhysicalId::Adopted(id),
            None if crate::is_certificate_id(physical_id) => CaPhysicalId::Owned(physical_id),
            _ => CaPhysicalId::NotACa,
        }
    }

    /// The plain AWS IoT CA id, if there is one.
    pub fn ca_id(self) -> Option<&'a str> {
        match self {
            CaPhysicalId::Owned(id) | CaPhysicalId::Adopted(id) => Some(id),
            CaPhysicalId::NotACa => None,
        }
    }

    /// An adopted CA stays registered when the resource is deleted, whatever its properties.
    pub fn is_adopted(self) -> bool {
        matches!(self, CaPhysicalId::Adopted(_))
    }
}

/// The physical id of an adopted CA.
pub fn adopted_physical_id(ca_id: &str) -> String {
    format!("{ADOPTED_PREFIX}{ca_id}")
}

/// `RetainOnDelete` as Delete reads it: from the raw properties, without parsing the others
/// (a Delete must succeed even when other properties no longer parse). `true` or `false`,
/// as a string (any case) or a boolean; absent is `false`. Any other value keeps the CA:
/// when in doubt, the fleet's CA is not deleted.
pub fn retain_on_delete(properties: &serde_json::Value) -> bool {
    match properties.get("RetainOnDelete") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        Some(_) => true,
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
    fn adopt_is_off_unless_asked() {
        let props = |extra: serde_json::Value| {
            let mut v = json!({"CaCertificatePem": "pem", "CertificateMode": "SNI_ONLY"});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            CaRegistrationProperties::from_value(v).unwrap()
        };
        assert!(!props(json!({})).adopt);
        assert!(props(json!({"Adopt": "true"})).adopt);
        assert!(props(json!({"Adopt": true})).adopt);
    }

    #[test]
    fn physical_ids_say_who_owns_the_ca() {
        let id = "ab".repeat(32);
        assert_eq!(CaPhysicalId::parse(&id), CaPhysicalId::Owned(&id));
        let adopted = adopted_physical_id(&id);
        assert_eq!(adopted, format!("adopted:{id}"));
        assert_eq!(CaPhysicalId::parse(&adopted), CaPhysicalId::Adopted(&id));
        assert_eq!(CaPhysicalId::parse(&adopted).ca_id(), Some(id.as_str()));
        assert!(CaPhysicalId::parse(&adopted).is_adopted());
        assert!(!CaPhysicalId::parse(&id).is_adopted());
        for other in [
            "CaRegistration-create-failed-1234abcd",
            "adopted:nope",
            "",
            "jitr-dev-CaRegistration-1A2B3C",
        ] {
            assert_eq!(CaPhysicalId::parse(other), CaPhysicalId::NotACa, "{other}");
        }
    }

    #[test]
    fn retain_on_delete_is_read_leniently() {
        for (props, want) in [
            (json!({"RetainOnDelete": "true"}), true),
            (json!({"RetainOnDelete": "TRUE"}), true),
            (json!({"RetainOnDelete": true}), true),
            (json!({"RetainOnDelete": "false"}), false),
            (json!({"RetainOnDelete": false}), false),
            (json!({}), false),
            (json!(null), false),
            (json!({"RetainOnDelete": "yes please"}), true),
            (json!({"RetainOnDelete": 1, "CertificateMode": 7}), true),
        ] {
            assert_eq!(retain_on_delete(&props), want, "{props}");
        }
    }

    #[test]
    fn identity_names_the_properties_the_type_writes() {
        let props = CaRegistrationProperties::<String> {
            service_token: None,
            service_timeout: None,
            ca_certificate_pem: "pem".into(),
            certificate_mode: CertificateMode::SniOnly,
            verification_certificate_pem: None,
            status: CaStatus::Active,
            auto_registration: true,
            retain_on_delete: false,
            adopt: false,
        };
        let value = serde_json::to_value(&props).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for name in CaIdentity::PROPERTIES {
            assert!(keys.contains(&name), "{name} not in {keys:?}");
        }
        assert_eq!(
            CaIdentity::from_properties(&value),
            Some(CaIdentity {
                ca_certificate_pem: "pem".into(),
                certificate_mode: "SNI_ONLY".into()
            })
        );
        // Computed by the template: not known before deploy.
        let computed = json!({"CaCertificatePem": {"Ref": "Pem"}, "CertificateMode": "SNI_ONLY"});
        assert_eq!(CaIdentity::from_properties(&computed), None);
        assert_eq!(
            CaIdentity::from_properties(&json!({"CertificateMode": "X"})),
            None
        );
    }

    #[test]
    fn serialized_as_the_template_writes_them() {
        let props = CaRegistrationProperties {
            service_token: Some(json!({"Fn::GetAtt": ["Provider", "Arn"]})),
            service_timeout: Some(300),
            ca_certificate_pem: "pem".into(),
            certificate_mode: CertificateMode::Default,
            verification_certificate_pem: Some(json!({"Ref": "Verification"})),
            status: CaStatus::Inactive,
            auto_registration: false,
            retain_on_delete: true,
            adopt: false,
        };
        assert_eq!(
            serde_json::to_string(&props).unwrap(),
            r#"{"ServiceToken":{"Fn::GetAtt":["Provider","Arn"]},"ServiceTimeout":300,"#.to_owned()
                + r#""CaCertificatePem":"pem","CertificateMode":"DEFAULT","#
                + r#""VerificationCertificatePem":{"Ref":"Verification"},"Status":"INACTIVE","#
                + r#""AutoRegistration":"false","RetainOnDelete":"true"}"#
        );
        let adopting = CaRegistrationProperties {
            adopt: true,
            ..props
        };
        assert!(serde_json::to_string(&adopting)
            .unwrap()
            .ends_with(r#""RetainOnDelete":"true","Adopt":"true"}"#));
    }

    #[test]
    fn service_timeout_arrives_as_a_string() {
        let p = CaRegistrationProperties::from_value(json!({
            "ServiceTimeout": "300", "CaCertificatePem": "pem", "CertificateMode": "SNI_ONLY"
        }))
        .unwrap();
        assert_eq!(p.service_timeout, Some(300));
        let err = CaRegistrationProperties::from_value(json!({
            "ServiceTimeout": "soon", "CaCertificatePem": "pem", "CertificateMode": "SNI_ONLY"
        }))
        .unwrap_err();
        assert!(
            err.contains("\"soon\"") && err.contains("whole number of seconds"),
            "{err}"
        );
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
