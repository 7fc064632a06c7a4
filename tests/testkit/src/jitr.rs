//! The JITR flow's steps as the end-to-end tests take them, and how a CLI run reads in a
//! failure message.

use crate::pki::TestCa;
use aws_sdk_iot::types::CertificateStatus;
use serde_json::{json, Value};
use std::process::Output;

/// A finished process's exit code, stdout and stderr, for an assertion's message.
pub fn output_text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The event AWS IoT publishes on `$aws/events/certificates/registered/<caCertificateId>`
/// (AWS IoT Developer Guide, "Just-in-time registration"), as the topic rule hands it on.
pub fn registered_event(cert_id: &str, ca_id: &str) -> Value {
    json!({"certificateId": cert_id, "caCertificateId": ca_id, "timestamp": 1764000000000u64,
           "certificateStatus": "PENDING_ACTIVATION", "awsAccountId": crate::ACCOUNT})
}

/// What an activator needs in AWS IoT before its first event: `ca` registered ACTIVE with
/// auto-registration (SNI_ONLY), and a device policy named `unique(policy_prefix)`:
/// (CA certificate id, policy name).
pub async fn register_ca_and_policy(
    iot: &aws_sdk_iot::Client,
    ca: &TestCa,
    policy_prefix: &str,
) -> (String, String) {
    let ca_id = iot
        .register_ca_certificate()
        .ca_certificate(&ca.pem)
        .set_as_active(true)
        .allow_auto_registration(true)
        .certificate_mode(aws_sdk_iot::types::CertificateMode::SniOnly)
        .send()
        .await
        .unwrap()
        .certificate_id()
        .unwrap()
        .to_string();
    let policy = crate::unique(policy_prefix);
    iot.create_policy()
        .policy_name(&policy)
        .policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}"#,
        )
        .send()
        .await
        .unwrap();
    (ca_id, policy)
}

/// A device certificate for `cn` signed by `ca`, registered `PENDING_ACTIVATION` as AWS IoT
/// registers it on the device's first connection: (certificate id, ARN).
pub async fn register_pending(
    iot: &aws_sdk_iot::Client,
    ca: &TestCa,
    cn: &str,
) -> (String, String) {
    let cert = iot
        .register_certificate()
        .certificate_pem(ca.issue(cn))
        .ca_certificate_pem(&ca.pem)
        .status(CertificateStatus::PendingActivation)
        .send()
        .await
        .unwrap();
    (
        cert.certificate_id().unwrap().to_string(),
        cert.certificate_arn().unwrap().to_string(),
    )
}

/// The names of the IoT policies attached to the certificate `arn`.
pub async fn attached_policies(iot: &aws_sdk_iot::Client, arn: &str) -> Vec<String> {
    let out = iot
        .list_attached_policies()
        .target(arn)
        .send()
        .await
        .unwrap();
    out.policies()
        .iter()
        .filter_map(|p| p.policy_name().map(str::to_string))
        .collect()
}

/// The certificate is ACTIVE and the Thing `thing` has exactly it as its principal.
pub async fn assert_onboarded(iot: &aws_sdk_iot::Client, cert_id: &str, thing: &str, arn: &str) {
    let d = iot
        .describe_certificate()
        .certificate_id(cert_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        d.certificate_description().unwrap().status(),
        Some(&CertificateStatus::Active)
    );
    let principals = iot
        .list_thing_principals()
        .thing_name(thing)
        .send()
        .await
        .unwrap();
    assert_eq!(principals.principals(), [arn.to_string()]);
}

/// The record Lambda sends to an asynchronous invocation's on-failure destination after the
/// last attempt failed in the function (AWS Lambda Developer Guide, "Capturing records of
/// Lambda asynchronous invocations"): `event` is the `requestPayload`, the error document
/// (`errorType`, `errorMessage`) the `responsePayload`.
pub fn invocation_record(
    function_arn: &str,
    event: &Value,
    error_type: &str,
    error_message: &str,
) -> Value {
    json!({
        "version": "1.0",
        "timestamp": "2026-11-29T10:00:00.000Z",
        "requestContext": {
            "requestId": crate::unique("request"),
            "functionArn": format!("{function_arn}:$LATEST"),
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3
        },
        "requestPayload": event,
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled"
        },
        "responsePayload": {"errorType": error_type, "errorMessage": error_message}
    })
}
