//! The CA registration: the custom resource that registers the stage's CA with AWS IoT, and the
//! provider Lambda (with its role and log group) that CloudFormation calls for it.

use super::iam::{arn, role, Statement};
use super::{
    function, log_group, logs_statement, scanner, AssetRef, Names, CA_PROVIDER_FUNCTION,
    CA_PROVIDER_LOG_GROUP, CA_PROVIDER_ROLE, CA_PROVIDER_TIMEOUT_SECONDS, CA_REGISTRATION,
    CA_SERVICE_TIMEOUT_SECONDS, VERIFICATION_PARAMETER,
};
use crate::cfn::{Parameter, Resource, Template, Value};
use crate::stage::Stage;
use jitr_contract::ca_registration::RESOURCE_TYPE as CA_RESOURCE_TYPE;

pub(super) fn ca_registration(t: &mut Template, stage: &Stage, names: &Names, asset: &AssetRef) {
    provider(t, stage, names, asset);
    if let Some(v) = &stage.ca.verification {
        t.parameters.push(Parameter {
            name: VERIFICATION_PARAMETER,
            kind: "String",
            description: format!(
                "DEFAULT-mode verification certificate (PEM, public): {}",
                v.describe()
            ),
            default: None,
            no_echo: false,
        });
    }
    t.add(registration(stage));
}

/// The provider Lambda, its log group and its role.
fn provider(t: &mut Template, stage: &Stage, names: &Names, asset: &AssetRef) {
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
}

/// The `Custom::JitrCaRegistration` resource itself.
fn registration(stage: &Stage) -> Resource {
    let ca = &stage.ca;
    let mut r = Resource::new(CA_REGISTRATION, CA_RESOURCE_TYPE)
        .prop("ServiceToken", CA_PROVIDER_FUNCTION.get_att("Arn"))
        .prop("ServiceTimeout", CA_SERVICE_TIMEOUT_SECONDS)
        .prop("CaCertificatePem", ca.pem.as_str())
        .prop("CertificateMode", ca.mode.as_str());
    if ca.verification.is_some() {
        r = r.prop(
            "VerificationCertificatePem",
            Value::Ref(VERIFICATION_PARAMETER.to_string()),
        );
    }
    let r = r
        .prop("Status", ca.status.as_str())
        // Custom resource properties reach the provider as strings; write them as such.
        .prop("AutoRegistration", ca.auto_registration.to_string())
        .prop("RetainOnDelete", ca.retain_on_delete.to_string());
    // Written only when set: stacks deployed before adoption existed see no change.
    if ca.adopt {
        r.prop("Adopt", "true")
    } else {
        r
    }
}
