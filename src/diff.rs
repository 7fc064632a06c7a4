//! The stack diff as the CLI runs it: the pure engine and renderers of `jitr_cfn::diff`,
//! given the CA registration's replacement rule, the one its provider applies
//! ([`needs_new_registration`]), and the check that needs the certificates' DER
//! ([`check_ca_mode`]).

pub use jitr_cfn::diff::*;
use jitr_contract::ca_registration::{CaIdentity, RESOURCE_TYPE as CA_RESOURCE_TYPE};
use jitr_lambda_common::pki::{needs_new_registration, Certificate};
use serde_json::Value;

/// `Custom::JitrCaRegistration` is replaced exactly when its provider registers a new CA:
/// a different certificate by DER (a re-wrapped PEM is the same CA) or a different mode,
/// [`needs_new_registration`], the rule the provider itself applies.
pub const CA_REGISTRATION_RULE: CustomRule = CustomRule {
    resource_type: CA_RESOURCE_TYPE,
    identity: &CaIdentity::PROPERTIES,
    replaces: ca_replaces,
};

fn ca_replaces(old: &[&str], new: &[&str]) -> bool {
    needs_new_registration(old[0], old[1], new[0], new[1])
}

/// [`jitr_cfn::diff::diff`] with this stack's custom resource rule.
pub fn diff(
    deployed: Option<&Value>,
    synthesized: &Value,
    change_set: Option<&[ChangeSetChange]>,
) -> StackDiff {
    let rules = Rules {
        custom: &[CA_REGISTRATION_RULE],
    };
    jitr_cfn::diff::diff(deployed, synthesized, change_set, rules)
}

/// The CA registration asked to change mode with the same CA certificate.
///
/// AWS IoT cannot change a registered CA's mode, and registering the same certificate again
/// in the account answers ResourceAlreadyExists, so the provider's replacement can only fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaModeChange {
    /// The stage whose deploy would make the change (for the commands that work).
    pub stage: String,
    pub logical_id: String,
    /// The AWS IoT id of the CA (the SHA-256 of its DER).
    pub certificate_id: String,
    pub from: String,
    pub to: String,
}

/// Refuses, before any change set, a CA registration whose certificate stays the same (by
/// DER) while its `CertificateMode` changes. Pure: the deployed template (`None`: no stack)
/// against the synthesized one (JSON text, as synth wrote it).
pub fn check_ca_mode(
    stage: &str,
    deployed: Option<&Value>,
    synthesized: &str,
) -> Result<(), CaModeChange> {
    let Ok(synthesized) = serde_json::from_str::<Value>(synthesized) else {
        return Ok(());
    };
    let resources = |t: Option<&Value>| t.and_then(|t| t.get("Resources")?.as_object().cloned());
    let identity = |r: &Value| -> Option<(Certificate, String)> {
        if r.get("Type")?.as_str()? != CA_RESOURCE_TYPE {
            return None;
        }
        let id = CaIdentity::from_properties(r.get("Properties")?)?;
        Some((
            Certificate::from_pem(&id.ca_certificate_pem).ok()?,
            id.certificate_mode,
        ))
    };
    let old_resources = resources(deployed).unwrap_or_default();
    for (id, new) in resources(Some(&synthesized)).unwrap_or_default() {
        let Some(old) = old_resources.get(&id) else {
            continue;
        };
        let (Some((old_ca, from)), Some((new_ca, to))) = (identity(old), identity(&new)) else {
            continue;
        };
        if old_ca.der() == new_ca.der() && from != to {
            return Err(CaModeChange {
                stage: stage.to_string(),
                logical_id: id,
                certificate_id: old_ca.aws_iot_id(),
                from,
                to,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEV: &str = include_str!("../tests/snapshots/dev.snap.template.json");

    fn dev() -> Value {
        serde_json::from_str(DEV).unwrap()
    }

    fn template(resources: Value) -> Value {
        json!({ "AWSTemplateFormatVersion": "2010-09-09", "Resources": resources })
    }

    fn ca(pem: &str) -> Value {
        template(json!({
            "CaRegistration": {
                "Type": "Custom::JitrCaRegistration",
                "Properties": {
                    "ServiceToken": { "Fn::GetAtt": ["CaProviderFunction", "Arn"] },
                    "CaCertificatePem": pem,
                    "CertificateMode": "SNI_ONLY",
                    "Status": "ACTIVE"
                }
            }
        }))
    }

    const DEV_CA: &str = include_str!("../certs/dev-ca.pem");
    const PROD_CA: &str = include_str!("../certs/prod-ca.pem");

    /// The same certificate, its base64 wrapped at 76 columns with CRLF line ends.
    fn rewrapped(pem: &str) -> String {
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let lines: Vec<String> = b64
            .as_bytes()
            .chunks(76)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\r\n{}\r\n-----END CERTIFICATE-----\r\n",
            lines.join("\r\n")
        )
    }

    fn with_ca_prop(template: &Value, name: &str, value: Value) -> Value {
        let mut t = template.clone();
        t["Resources"]["CaRegistration"]["Properties"][name] = value;
        t
    }

    #[test]
    fn ca_replacement_follows_the_providers_rule() {
        let deployed = ca(DEV_CA);
        let cs = vec![ChangeSetChange {
            logical_id: "CaRegistration".into(),
            resource_type: CA_RESOURCE_TYPE.into(),
            action: "Modify".into(),
            replacement: Some("True".into()),
        }];
        // A re-wrapped PEM is the same CA: updated in place, nothing fleet-breaking, whatever
        // the change set guesses.
        let same = ca(&rewrapped(DEV_CA));
        assert_ne!(same, deployed);
        for change_set in [None, Some(&cs[..])] {
            let d = diff(Some(&deployed), &same, change_set);
            let r = &d.resources[0];
            assert_eq!((r.replacement, r.impact), (Replacement::No, Impact::Update));
            assert_eq!(r.properties[0].path, "CaCertificatePem");
            assert!(!r.properties[0].causes_replacement);
            assert!(d.fleet_breaking().is_empty(), "{:?}", d.fleet_breaking());
        }
        // A new certificate (DER) or a new mode is a new registration: replaced.
        let mode = with_ca_prop(&deployed, "CertificateMode", json!("DEFAULT"));
        for new in [ca(PROD_CA), mode] {
            let d = diff(Some(&deployed), &new, None);
            assert_eq!(d.resources[0].replacement, Replacement::Yes);
            assert!(d.resources[0].properties[0].causes_replacement);
            assert_eq!(d.fleet_breaking().len(), 1);
        }
        // Known only at deploy time: may be replaced.
        let by_parameter = ca_with_pem(json!({ "Ref": "CaPem" }));
        let d = diff(Some(&deployed), &by_parameter, None);
        assert_eq!(d.resources[0].replacement, Replacement::Conditional);
        // Unchanged templates but a parameter changed (the verification certificate): the
        // provider keeps the same CA.
        let d = diff(Some(&deployed), &deployed, Some(&cs));
        assert_eq!(d.resources[0].replacement, Replacement::No);
        assert_eq!(d.resources[0].impact, Impact::Update);
    }

    fn ca_with_pem(pem: Value) -> Value {
        with_ca_prop(&ca(DEV_CA), "CaCertificatePem", pem)
    }

    #[test]
    fn a_mode_change_of_the_same_ca_is_refused() {
        let deployed = ca(DEV_CA);
        let json = |t: &Value| t.to_string();
        let to_default = |t: &Value| with_ca_prop(t, "CertificateMode", json!("DEFAULT"));
        let err = check_ca_mode("dev", Some(&deployed), &json(&to_default(&deployed))).unwrap_err();
        assert_eq!(
            err,
            CaModeChange {
                stage: "dev".into(),
                logical_id: "CaRegistration".into(),
                certificate_id: Certificate::from_pem(DEV_CA).unwrap().aws_iot_id(),
                from: "SNI_ONLY".into(),
                to: "DEFAULT".into(),
            }
        );
        // Also with the PEM re-wrapped: the same CA by DER.
        let rewrapped = to_default(&ca(&rewrapped(DEV_CA)));
        assert!(check_ca_mode("dev", Some(&deployed), &json(&rewrapped)).is_err());
        // What can work: a new stack, the same mode, a new CA in the new mode.
        assert!(check_ca_mode("dev", None, &json(&to_default(&deployed))).is_ok());
        assert!(check_ca_mode("dev", Some(&deployed), &json(&deployed)).is_ok());
        let rotated = to_default(&ca(PROD_CA));
        assert!(check_ca_mode("dev", Some(&deployed), &json(&rotated)).is_ok());
        // The shipped dev template deploys over itself.
        assert!(check_ca_mode("dev", Some(&dev()), DEV).is_ok());
    }
}
