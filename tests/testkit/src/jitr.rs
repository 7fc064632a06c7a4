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
