//! The CA registration: its provider Lambda (role, log group, function) and the
//! `Custom::JitrCaRegistration` resource, whose properties are the contract's
//! [`CaRegistrationProperties`], the type the provider parses them with.

use super::iam::{arn, role, Statement};
use super::{
    function, log_group, logs_statement, scanner, sorted_cas, AssetRef, CaIds, Names,
    CA_PROVIDER_FUNCTION, CA_PROVIDER_LOG_GROUP, CA_PROVIDER_ROLE, CA_PROVIDER_TIMEOUT_SECONDS,
    CA_SERVICE_TIMEOUT_SECONDS,
};
use crate::cfn::{Parameter, Resource, Template, Value};
use crate::stage::{Ca, Stage};
use jitr_contract::ca_registration::{CaRegistrationProperties, RESOURCE_TYPE};
use serde_json::Value as Json;

pub(super) fn ca_registration(t: &mut Template, stage: &Stage, names: &Names, asset: &AssetRef) {
    t.add(log_group(
        stage,
        CA_PROVIDER_LOG_GROUP,
        format!("/aws/lambda/{}", names.ca_provider_function),
    ));
    t.add(role(
        CA_PROVIDER_ROLE,
        "Registers, updates and deregisters the JITR device CA",
        "lambda.amazonaws.com",
        None,
        &[
            // RegisterCACertificate and ListCACertificates have no resource type in the IAM
            // reference; they can only be granted on `*`.
            Statement::unscoped(
                "RegisterCa",
                &["iot:RegisterCACertificate", "iot:ListCACertificates"],
            ),
            // `cacert/*`, not the CA's own id: after a CA rotation CloudFormation deletes the
            // old CA with the updated role.
            Statement::new(
                "ManageCa",
                &[
                    "iot:DescribeCACertificate",
                    "iot:UpdateCACertificate",
                    "iot:DeleteCACertificate",
                ],
                vec![arn("iot", "cacert/*")],
            ),
            logs_statement(CA_PROVIDER_LOG_GROUP),
        ],
    ));
    t.add(
        function(
            CA_PROVIDER_FUNCTION,
            &names.ca_provider_function,
            "CloudFormation custom resource: registers the JITR device CA with AWS IoT",
            CA_PROVIDER_ROLE,
            asset,
            128,
            CA_PROVIDER_TIMEOUT_SECONDS,
        )
        .scanner_skip("CKV_AWS_116", scanner::PROVIDER_NO_DLQ)
        .scanner_skip("CKV_AWS_115", scanner::PROVIDER_NO_RESERVATION)
        .depends_on(CA_PROVIDER_LOG_GROUP),
    );
    for ca in sorted_cas(stage) {
        let ids = CaIds::new(&ca.name, names);
        if let Some(v) = &ca.verification {
            let of = match ids.suffix.is_empty() {
                true => String::new(),
                false => format!(" of CA {}", ca.name),
            };
            t.parameters.push(Parameter {
                name: ids.verification_parameter,
                kind: "String",
                description: format!(
                    "DEFAULT-mode verification certificate{of} (PEM, public): {}",
                    v.describe()
                ),
                default: None,
                no_echo: false,
            });
        }
        t.add(registration(ca, &ids));
    }
}

/// The resource, its properties serialized from [`CaRegistrationProperties`]: the names, the
/// order and the string forms the provider expects come from the type, not from here.
fn registration(ca: &Ca, ids: &CaIds) -> Resource {
    let properties = CaRegistrationProperties::<Json> {
        service_token: Some(CA_PROVIDER_FUNCTION.get_att("Arn").to_json()),
        service_timeout: Some(CA_SERVICE_TIMEOUT_SECONDS),
        ca_certificate_pem: ca.pem.clone(),
        certificate_mode: ca.mode,
        verification_certificate_pem: ca
            .verification
            .as_ref()
            .map(|_| Value::Ref(ids.verification_parameter.to_string()).to_json()),
        status: ca.status,
        auto_registration: ca.auto_registration,
        retain_on_delete: ca.retain_on_delete,
        adopt: ca.adopt,
    };
    let Ok(Json::Object(properties)) = serde_json::to_value(&properties) else {
        unreachable!("a struct of strings, numbers and JSON serializes to an object")
    };
    properties.into_iter().fold(
        Resource::new(ids.registration, RESOURCE_TYPE),
        |r, (name, value)| r.prop(&name, template_value(value)),
    )
}

/// A serialized property back as a template value: `Ref` and `Fn::GetAtt` typed again, so the
/// template's reference checks see them.
fn template_value(json: Json) -> Value {
    if let Some(map) = json.as_object().filter(|m| m.len() == 1) {
        if let Some(Json::String(id)) = map.get("Ref") {
            return Value::Ref(id.clone());
        }
        if let Some([Json::String(id), Json::String(att)]) = map
            .get("Fn::GetAtt")
            .and_then(Json::as_array)
            .map(Vec::as_slice)
        {
            return Value::GetAtt(id.clone(), att.clone());
        }
    }
    match json {
        Json::String(s) => Value::Str(s),
        Json::Bool(b) => Value::Bool(b),
        Json::Number(n) if n.is_i64() => Value::Int(n.as_i64().unwrap_or_default()),
        other => Value::Json(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constructs::{jitr_stack, Assets, CA_REGISTRATION};
    use jitr_contract::ca_registration::CertificateMode;
    use serde_json::json;
    use std::path::Path;

    fn assets() -> Assets {
        let asset = || AssetRef {
            sha256: "0".repeat(64),
        };
        Assets {
            activator: asset(),
            ca_provider: asset(),
        }
    }

    /// The CA registration's properties as synth writes them into the template.
    fn template_properties(stage: &Stage) -> Json {
        let template = jitr_stack(stage, &assets()).unwrap().render();
        let template: Json = serde_json::from_str(&template).unwrap();
        template["Resources"][CA_REGISTRATION.as_str()]["Properties"].clone()
    }

    /// What CloudFormation hands the provider: intrinsics resolved, every scalar a string.
    fn delivered(properties: &Json) -> Json {
        match properties {
            Json::Object(m) if m.contains_key("Fn::GetAtt") => {
                json!("arn:aws:lambda:eu-west-1:123456789012:function:jitr-dev-ca-provider")
            }
            Json::Object(m) if m.contains_key("Ref") => json!("VERIFICATION PEM"),
            Json::Object(m) => m.iter().map(|(k, v)| (k.clone(), delivered(v))).collect(),
            Json::Number(n) => json!(n.to_string()),
            Json::Bool(b) => json!(b.to_string()),
            other => other.clone(),
        }
    }

    #[test]
    fn the_template_properties_are_what_the_provider_parses() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for name in ["dev", "prod"] {
            let mut stage = crate::stage::load(root, name).unwrap();
            for adopt in [false, true] {
                stage.cas_mut()[0].adopt = adopt;
                let written = template_properties(&stage);
                // Every property the template writes is one the provider knows, by name.
                serde_json::from_value::<CaRegistrationProperties<Json>>(written.clone())
                    .unwrap_or_else(|e| panic!("{name}: {e}\n{written:#}"));
                let got = CaRegistrationProperties::from_value(delivered(&written))
                    .unwrap_or_else(|e| panic!("{name}: {e}\n{written:#}"));
                let ca = &stage.cas()[0];
                assert_eq!(
                    got,
                    CaRegistrationProperties {
                        service_token: Some(
                            "arn:aws:lambda:eu-west-1:123456789012:function:jitr-dev-ca-provider"
                                .into()
                        ),
                        service_timeout: Some(CA_SERVICE_TIMEOUT_SECONDS),
                        ca_certificate_pem: ca.pem.clone(),
                        certificate_mode: ca.mode,
                        verification_certificate_pem: (ca.mode == CertificateMode::Default)
                            .then(|| "VERIFICATION PEM".into()),
                        status: ca.status,
                        auto_registration: ca.auto_registration,
                        retain_on_delete: ca.retain_on_delete,
                        adopt,
                    },
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn intrinsics_come_back_typed() {
        assert_eq!(
            template_value(json!({"Fn::GetAtt": ["F", "Arn"]})),
            Value::GetAtt("F".into(), "Arn".into())
        );
        assert_eq!(template_value(json!({"Ref": "P"})), Value::Ref("P".into()));
        assert_eq!(template_value(json!(300)), Value::Int(300));
        assert_eq!(template_value(json!("true")), Value::str("true"));
        let other = json!({"Fn::Sub": "x"});
        assert_eq!(template_value(other.clone()), Value::Json(other));
    }
}
