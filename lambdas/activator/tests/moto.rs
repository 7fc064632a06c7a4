//! The activator against moto (a real AWS API emulator) through the real AWS SDK.
//!
//! moto does not check that a device certificate was signed by the CA it names; the
//! activator's own signature check is what keeps another CA's certificate untouched here and
//! on real AWS alike. (Our moto server returns `caCertificateId` and the certificate's own
//! validity from DescribeCertificate, as AWS does: see tests/moto_server.py.)

use aws_sdk_iot::types::{CertificateMode, CertificateStatus};
use jitr_activator::metrics::Emf;
use jitr_activator::Activator;
use jitr_contract::activator::{
    ActivatorConfig, Outcome, ReasonCode, RejectAction, ThingNameSource,
};
use serde_json::json;
use std::sync::{Arc, Mutex};
use testkit::http::{HttpRequest, HttpResponse};
use testkit::openssl::{Key, OpensslCa};
use testkit::pki::TestCa;
use testkit::{moto, unique, Recorder};

const DEVICE_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:eu-west-1:123456789012:client/${iot:Connection.Thing.ThingName}"}]}"#;

struct Fixture {
    iot: aws_sdk_iot::Client,
    ca: TestCa,
    ca_id: String,
    policy: String,
}

impl Fixture {
    async fn new() -> Fixture {
        let iot = moto().iot().await;
        let ca = TestCa::new(&unique("Acme Device CA"));
        let ca_id = register_ca(&iot, &ca).await;
        let policy = unique("jitr-device");
        iot.create_policy()
            .policy_name(&policy)
            .policy_document(DEVICE_POLICY)
            .send()
            .await
            .unwrap();
        Fixture {
            iot,
            ca,
            ca_id,
            policy,
        }
    }

    fn config(&self) -> ActivatorConfig {
        ActivatorConfig {
            ca_certificate_ids: vec![self.ca_id.clone()],
            device_policy_name: self.policy.clone(),
            create_thing: true,
            thing_name_source: ThingNameSource::SubjectCn,
            thing_group: None,
            subject_pattern: None,
            reject_action: RejectAction::LeavePending,
        }
    }

    fn activator(&self, config: ActivatorConfig) -> Activator {
        Activator::new(self.iot.clone(), config).unwrap()
    }

    /// Through `endpoint`, with the SDK's retries off as in the function: every retry is the
    /// activator's own.
    async fn activator_via(&self, endpoint: &str, config: ActivatorConfig) -> Activator {
        let iot = testkit::iot_client(endpoint).await;
        let conf = iot
            .config()
            .to_builder()
            .retry_config(aws_sdk_iot::config::retry::RetryConfig::disabled())
            .build();
        Activator::new(aws_sdk_iot::Client::from_conf(conf), config).unwrap()
    }

    /// Registers `pem` as AWS IoT's auto-registration would: PENDING_ACTIVATION.
    async fn register_pending(&self, ca: &TestCa, pem: &str) -> (String, String) {
        self.register_pending_under(&ca.pem, pem).await
    }

    /// The same, under the CA certificate `ca_pem` (registered already).
    async fn register_pending_under(&self, ca_pem: &str, pem: &str) -> (String, String) {
        let out = self
            .iot
            .register_certificate()
            .certificate_pem(pem)
            .ca_certificate_pem(ca_pem)
            .status(CertificateStatus::PendingActivation)
            .send()
            .await
            .unwrap();
        (
            out.certificate_id().unwrap().to_string(),
            out.certificate_arn().unwrap().to_string(),
        )
    }

    fn event(&self, certificate_id: &str) -> serde_json::Value {
        json!({
            "certificateId": certificate_id,
            "caCertificateId": self.ca_id,
            "timestamp": 1_764_000_000_000u64,
            "certificateStatus": "PENDING_ACTIVATION",
            "awsAccountId": testkit::ACCOUNT,
            "certificateRegistrationTimestamp": "1764000000000"
        })
    }

    async fn status(&self, certificate_id: &str) -> CertificateStatus {
        self.iot
            .describe_certificate()
            .certificate_id(certificate_id)
            .send()
            .await
            .unwrap()
            .certificate_description()
            .unwrap()
            .status()
            .unwrap()
            .clone()
    }

    async fn policies_of(&self, arn: &str) -> Vec<String> {
        self.iot
            .list_attached_policies()
            .target(arn)
            .send()
            .await
            .unwrap()
            .policies()
            .iter()
            .map(|p| p.policy_name().unwrap().to_string())
            .collect()
    }

    async fn principals_of(&self, thing: &str) -> Vec<String> {
        self.iot
            .list_thing_principals()
            .thing_name(thing)
            .send()
            .await
            .unwrap()
            .principals()
            .to_vec()
    }

    async fn thing_exists(&self, thing: &str) -> bool {
        self.iot
            .describe_thing()
            .thing_name(thing)
            .send()
            .await
            .is_ok()
    }
}

async fn register_ca(iot: &aws_sdk_iot::Client, ca: &TestCa) -> String {
    register_ca_pem(iot, &ca.pem).await
}

async fn register_ca_pem(iot: &aws_sdk_iot::Client, pem: &str) -> String {
    iot.register_ca_certificate()
        .ca_certificate(pem)
        .set_as_active(true)
        .allow_auto_registration(true)
        .certificate_mode(CertificateMode::SniOnly)
        .send()
        .await
        .unwrap()
        .certificate_id()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn pending_certificate_becomes_active_with_thing_and_policy() {
    let f = Fixture::new().await;
    let cn = unique("sensor");
    let (id, arn) = f.register_pending(&f.ca, &f.ca.issue(&cn)).await;
    assert_eq!(f.status(&id).await, CertificateStatus::PendingActivation);

    let report = f.activator(f.config()).handle(f.event(&id)).await.unwrap();

    assert_eq!(report.outcome, Outcome::Activated, "{report:?}");
    assert_eq!(report.thing_name.as_deref(), Some(cn.as_str()));
    assert_eq!(f.status(&id).await, CertificateStatus::Active);
    assert_eq!(f.principals_of(&cn).await, vec![arn.clone()]);
    assert_eq!(f.policies_of(&arn).await, vec![f.policy.clone()]);
}

#[tokio::test]
async fn same_event_five_times_gives_one_thing_and_no_error() {
    let f = Fixture::new().await;
    let cn = unique("meter");
    let (id, arn) = f.register_pending(&f.ca, &f.ca.issue(&cn)).await;
    let activator = f.activator(f.config());
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        outcomes.push(activator.handle(f.event(&id)).await.unwrap().outcome);
    }
    assert_eq!(outcomes[0], Outcome::Activated);
    assert!(
        outcomes[1..].iter().all(|o| *o == Outcome::AlreadyActive),
        "{outcomes:?}"
    );
    let things = f
        .iot
        .list_principal_things()
        .principal(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(things.things(), std::slice::from_ref(&cn));
    assert_eq!(f.principals_of(&cn).await, vec![arn.clone()]);
    assert_eq!(f.policies_of(&arn).await, vec![f.policy.clone()]);
}

#[tokio::test]
async fn concurrent_deliveries_of_the_same_event_all_succeed() {
    let f = Fixture::new().await;
    let cn = unique("gateway");
    let (id, _) = f.register_pending(&f.ca, &f.ca.issue(&cn)).await;
    let activator = f.activator(f.config());
    let (a, b, c) = tokio::join!(
        activator.handle(f.event(&id)),
        activator.handle(f.event(&id)),
        activator.handle(f.event(&id))
    );
    for r in [a, b, c] {
        let outcome = r.unwrap().outcome;
        assert!(
            matches!(outcome, Outcome::Activated | Outcome::AlreadyActive),
            "{outcome:?}"
        );
    }
    assert_eq!(f.status(&id).await, CertificateStatus::Active);
    assert!(f.thing_exists(&cn).await);
}

/// CA rotation: one activator serves two CAs (`JITR_CA_CERTIFICATE_ID` lists both); each
/// CA's devices are checked against their own CA, whatever CA the event names.
#[tokio::test]
async fn an_activator_serving_two_cas_activates_the_devices_of_both() {
    let f = Fixture::new().await;
    let next = TestCa::new(&unique("Acme Device CA 2026"));
    let next_id = register_ca(&f.iot, &next).await;
    let env = format!("{},{}", f.ca_id, next_id);
    let config = ActivatorConfig::from_lookup(|k| match k {
        jitr_contract::activator::ENV_CA_CERTIFICATE_ID => Some(env.clone()),
        jitr_contract::activator::ENV_DEVICE_POLICY_NAME => Some(f.policy.clone()),
        _ => None,
    })
    .unwrap();
    assert_eq!(
        config.ca_certificate_ids,
        vec![f.ca_id.clone(), next_id.clone()]
    );
    let activator = f.activator(config);

    let (old_cn, new_cn) = (unique("old-fleet"), unique("new-fleet"));
    let (old_id, old_arn) = f.register_pending(&f.ca, &f.ca.issue(&old_cn)).await;
    let (new_id, new_arn) = f.register_pending(&next, &next.issue(&new_cn)).await;
    let report = activator.handle(f.event(&old_id)).await.unwrap();
    assert_eq!(report.outcome, Outcome::Activated, "{report:?}");
    let mut event = f.event(&new_id);
    event["caCertificateId"] = json!(next_id);
    let report = activator.handle(event).await.unwrap();
    assert_eq!(report.outcome, Outcome::Activated, "{report:?}");
    for (id, arn, cn) in [(&old_id, &old_arn, &old_cn), (&new_id, &new_arn, &new_cn)] {
        assert_eq!(f.status(id).await, CertificateStatus::Active);
        assert_eq!(f.policies_of(arn).await, vec![f.policy.clone()]);
        assert!(f.thing_exists(cn).await);
    }

    // The event names the old CA, the registry the new one (both ours): checked against the
    // registry's CA, so it activates.
    let late_cn = unique("new-fleet");
    let (late_id, _) = f.register_pending(&next, &next.issue(&late_cn)).await;
    let report = activator.handle(f.event(&late_id)).await.unwrap();
    assert_eq!(report.outcome, Outcome::Activated, "{report:?}");

    // Registered under the new CA but signed by the old one: refused by the signature check.
    let (forged_id, _) = f
        .register_pending(&next, &f.ca.issue(&unique("forged")))
        .await;
    let mut event = f.event(&forged_id);
    event["caCertificateId"] = json!(next_id);
    let report = activator.handle(event).await.unwrap();
    assert_eq!(
        report.reason_code,
        Some(ReasonCode::IssuerNotOurCa),
        "{report:?}"
    );
    assert_eq!(
        f.status(&forged_id).await,
        CertificateStatus::PendingActivation
    );
}

#[tokio::test]
async fn certificate_from_another_ca_is_untouched() {
    let f = Fixture::new().await;
    let other = TestCa::new(&unique("Someone Else CA"));
    let other_id = register_ca(&f.iot, &other).await;
    let cn = unique("intruder");
    let (id, arn) = f.register_pending(&other, &other.issue(&cn)).await;
    // Even configured to revoke, a certificate that is not ours must not be touched.
    let activator = f.activator(ActivatorConfig {
        reject_action: RejectAction::Revoke,
        ..f.config()
    });

    // Misrouted: the event claims our CA; the registry says whose it is.
    let report = activator.handle(f.event(&id)).await.unwrap();
    assert_eq!(report.outcome, Outcome::Ignored, "{report:?}");
    assert_eq!(report.reason_code, Some(ReasonCode::OtherCa));
    assert_eq!(
        report.reason.unwrap(),
        format!("certificate belongs to CA {other_id}")
    );

    // Registered under our CA (moto does not check the signature), issued by the other:
    // our own signature check refuses it.
    let cn2 = unique("intruder");
    let (id2, _) = f.register_pending(&f.ca, &other.issue(&cn2)).await;
    let report = activator.handle(f.event(&id2)).await.unwrap();
    assert_eq!(report.outcome, Outcome::Ignored, "{report:?}");
    assert_eq!(report.reason_code, Some(ReasonCode::IssuerNotOurCa));
    assert!(report.reason.unwrap().contains("not by our CA"));
    assert_eq!(f.status(&id2).await, CertificateStatus::PendingActivation);

    // Honest event naming the other CA.
    let mut event = f.event(&id);
    event["caCertificateId"] = json!(other_id);
    let report = activator.handle(event).await.unwrap();
    assert_eq!(report.outcome, Outcome::Ignored);

    assert_eq!(f.status(&id).await, CertificateStatus::PendingActivation);
    assert!(!f.thing_exists(&cn).await);
    assert!(f.policies_of(&arn).await.is_empty());
}

#[tokio::test]
async fn subject_not_matching_the_pattern_is_not_activated() {
    let f = Fixture::new().await;
    let pattern = "acme-[0-9]{4}";
    let (good, _) = f.register_pending(&f.ca, &f.ca.issue("acme-0042")).await;
    let (bad, bad_arn) = f.register_pending(&f.ca, &f.ca.issue("evil-0042")).await;
    // A substring match is not enough: the whole CN must match.
    let (sneaky, _) = f.register_pending(&f.ca, &f.ca.issue("xacme-00420")).await;
    let activator = f.activator(ActivatorConfig {
        subject_pattern: Some(pattern.into()),
        thing_name_source: ThingNameSource::CertificateId,
        ..f.config()
    });
    assert_eq!(
        activator.handle(f.event(&good)).await.unwrap().outcome,
        Outcome::Activated
    );
    let report = activator.handle(f.event(&bad)).await.unwrap();
    assert_eq!(report.outcome, Outcome::Rejected);
    assert!(report.reason.unwrap().contains("evil-0042"));
    assert_eq!(
        activator.handle(f.event(&sneaky)).await.unwrap().outcome,
        Outcome::Rejected
    );
    assert_eq!(f.status(&bad).await, CertificateStatus::PendingActivation);
    assert_eq!(
        f.status(&sneaky).await,
        CertificateStatus::PendingActivation
    );
    assert!(f.policies_of(&bad_arn).await.is_empty());
    assert!(!f.thing_exists(&bad).await);
}

#[tokio::test]
async fn rejected_certificate_is_revoked_when_so_configured() {
    let f = Fixture::new().await;
    let (bad, bad_arn) = f.register_pending(&f.ca, &f.ca.issue("evil-1")).await;
    let activator = f.activator(ActivatorConfig {
        subject_pattern: Some("acme-.*".into()),
        reject_action: RejectAction::Revoke,
        ..f.config()
    });
    let report = activator.handle(f.event(&bad)).await.unwrap();
    assert_eq!(report.outcome, Outcome::Revoked);
    assert_eq!(f.status(&bad).await, CertificateStatus::Revoked);
    assert!(f.policies_of(&bad_arn).await.is_empty());
    // Re-delivery of the event: answered from the container's memory...
    let again = activator.handle(f.event(&bad)).await.unwrap();
    assert_eq!(again.outcome, Outcome::Revoked);
    assert!(again.from_memory);
    // ...and by another container from the registry: revoked stays revoked, left alone.
    let cold = f.activator(ActivatorConfig {
        subject_pattern: Some("acme-.*".into()),
        reject_action: RejectAction::Revoke,
        ..f.config()
    });
    let again = cold.handle(f.event(&bad)).await.unwrap();
    assert_eq!(again.outcome, Outcome::Ignored);
    assert_eq!(f.status(&bad).await, CertificateStatus::Revoked);
}

#[tokio::test]
async fn expired_device_certificate_is_rejected() {
    let f = Fixture::new().await;
    let (id, _) = f
        .register_pending(&f.ca, &f.ca.issue_with(Some("old-device"), true))
        .await;
    let report = f.activator(f.config()).handle(f.event(&id)).await.unwrap();
    assert_eq!(report.outcome, Outcome::Rejected);
    assert!(report.reason.unwrap().contains("expired"));
    assert_eq!(f.status(&id).await, CertificateStatus::PendingActivation);
}

#[tokio::test]
async fn thing_name_falls_back_to_the_certificate_id() {
    let f = Fixture::new().await;
    let (no_cn, _) = f
        .register_pending(&f.ca, &f.ca.issue_with(None, false))
        .await;
    let (spaces, _) = f
        .register_pending(&f.ca, &f.ca.issue(&unique("has spaces")))
        .await;
    let activator = f.activator(f.config());
    for id in [no_cn, spaces] {
        let report = activator.handle(f.event(&id)).await.unwrap();
        assert_eq!(report.outcome, Outcome::Activated);
        assert_eq!(report.thing_name.as_deref(), Some(id.as_str()));
        assert!(f.thing_exists(&id).await);
    }
}

#[tokio::test]
async fn thing_group_and_no_thing_modes() {
    let f = Fixture::new().await;
    let group = unique("fleet");
    f.iot
        .create_thing_group()
        .thing_group_name(&group)
        .send()
        .await
        .unwrap();
    let cn = unique("grouped");
    let (id, _) = f.register_pending(&f.ca, &f.ca.issue(&cn)).await;
    let report = f
        .activator(ActivatorConfig {
            thing_group: Some(group.clone()),
            ..f.config()
        })
        .handle(f.event(&id))
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Activated);
    let members = f
        .iot
        .list_things_in_thing_group()
        .thing_group_name(&group)
        .send()
        .await
        .unwrap();
    assert_eq!(members.things(), std::slice::from_ref(&cn));

    let thingless = unique("thingless");
    let (id, arn) = f.register_pending(&f.ca, &f.ca.issue(&thingless)).await;
    let report = f
        .activator(ActivatorConfig {
            create_thing: false,
            ..f.config()
        })
        .handle(f.event(&id))
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Activated);
    assert_eq!(report.thing_name, None);
    assert!(!f.thing_exists(&thingless).await);
    assert_eq!(f.policies_of(&arn).await, vec![f.policy.clone()]);
}

/// Issue 7, item 4: a malformed event is permanent. Before, it was an error (MalformedEvent),
/// which Lambda retried twice and then sent to the failure queue; now it is a handled
/// outcome, logged at ERROR and counted in the MalformedEvents metric (one EMF line each).
#[tokio::test]
async fn malformed_events_are_handled_not_retried_and_counted() {
    let f = Fixture::new().await;
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let activator = f
        .activator(f.config())
        .with_metrics(Emf::to("jitr-test-activator", move |l| {
            sink.lock().unwrap().push(l.to_string())
        }));
    let cases = [
        (json!(null), "", "expected a JSON object, got null"),
        (
            f.event("x"),
            "x",
            "field `certificateId` must be 64 lowercase hex digits, got \"x\"",
        ),
        (
            {
                let mut e = f.event(&"a".repeat(64));
                e.as_object_mut().unwrap().remove("caCertificateId");
                e
            },
            &"a".repeat(64),
            "missing field `caCertificateId`",
        ),
        (
            {
                let mut e = f.event(&"a".repeat(64));
                e["caCertificateId"] = json!(7);
                e
            },
            &"a".repeat(64),
            "field `caCertificateId` must be a string of 64 lowercase hex digits, got a number",
        ),
    ];
    let count = cases.len();
    for (event, id, want) in cases {
        let report = activator.handle(event.clone()).await.unwrap();
        assert_eq!(report.outcome, Outcome::Malformed, "{event}");
        assert_eq!(report.reason_code, Some(ReasonCode::MalformedEvent));
        assert_eq!(report.certificate_id, id);
        assert_eq!(
            report.reason.as_deref(),
            Some(format!("malformed registered-certificate event: {want}").as_str())
        );
    }
    let lines = lines.lock().unwrap();
    // One document per invocation, and no AWS call (so no per-operation document).
    assert_eq!(lines.len(), count, "one metric line per malformed event");
    for line in lines.iter() {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(doc["MalformedEvents"], 1);
        assert_eq!(doc["Activated"], 0);
        assert_eq!(doc["IotCalls"], 0);
        assert_eq!(doc["FunctionName"], "jitr-test-activator");
        let directives = doc["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1);
        assert_eq!(directives[0]["Namespace"], "JITR/Activator");
        assert_eq!(directives[0]["Dimensions"], json!([["FunctionName"]]));
        assert!(directives[0]["Metrics"]
            .as_array()
            .unwrap()
            .contains(&json!({"Name": "MalformedEvents", "Unit": "Count"})));
        assert!(doc["_aws"]["Timestamp"].is_u64());
    }
}

/// Issue 7, item 1: the event as AWS publishes it (a null registration timestamp, fields the
/// guide does not list, a string timestamp) activates. Before, the null failed every one.
#[tokio::test]
async fn the_event_as_aws_publishes_it_activates() {
    let f = Fixture::new().await;
    let cn = unique("captured");
    let (id, _) = f.register_pending(&f.ca, &f.ca.issue(&cn)).await;
    let mut event = f.event(&id);
    event["certificateRegistrationTimestamp"] = json!(null);
    event["timestamp"] = json!("1764000000000");
    event["sourceIp"] = json!("203.0.113.7");
    let report = f.activator(f.config()).handle(event).await.unwrap();
    assert_eq!(report.outcome, Outcome::Activated, "{report:?}");
    assert_eq!(f.status(&id).await, CertificateStatus::Active);
}

/// Issue 7, item 2: every signature AWS IoT accepts is checked. Before, x509-parser's check
/// could not verify P-521, ECDSA with SHA-512, RSASSA-PSS with a salt length other than the
/// hash's, or DSA, and the activator left those devices of our own fleet pending as "ignored".
#[tokio::test]
async fn every_signature_algorithm_aws_iot_accepts_activates() {
    let f = Fixture::new().await;
    let pss = |hash: &'static str, salt: &'static str| -> Vec<&'static str> {
        let salt = match salt {
            "0" => "rsa_pss_saltlen:0",
            "64" => "rsa_pss_saltlen:64",
            _ => "rsa_pss_saltlen:max",
        };
        vec![hash, "-sigopt", "rsa_padding_mode:pss", "-sigopt", salt]
    };
    let cases: Vec<(Key, Vec<&str>)> = vec![
        (Key::Ec("P-521"), vec!["-sha512"]),
        (Key::Ec("P-256"), vec!["-sha512"]),
        (Key::Ec("P-384"), vec!["-sha256"]),
        (Key::Rsa(2048), pss("-sha256", "0")),
        (Key::Rsa(2048), pss("-sha512", "64")),
        (Key::Rsa(3072), pss("-sha384", "max")),
        (Key::Dsa(2048), vec!["-sha256"]),
    ];
    for (key, sign) in cases {
        let ca = OpensslCa::root(&unique("Fleet CA"), key, &sign);
        let ca_id = register_ca_pem(&f.iot, &ca.pem).await;
        let (id, _) = f
            .register_pending_under(&ca.pem, &ca.issue(&unique("device"), &sign))
            .await;
        let mut event = f.event(&id);
        event["caCertificateId"] = json!(ca_id);
        let activator = f.activator(ActivatorConfig {
            ca_certificate_ids: vec![ca_id],
            ..f.config()
        });
        let report = activator.handle(event).await.unwrap();
        assert_eq!(
            report.outcome,
            Outcome::Activated,
            "{key:?} {sign:?}: {report:?}"
        );
        assert_eq!(f.status(&id).await, CertificateStatus::Active);
    }
}

/// Issue 7, item 2: a signature the activator cannot check is an error (Lambda retries it,
/// then the failure queue has it) naming the algorithm, never "ignored". Before: ignored.
#[tokio::test]
async fn a_signature_that_cannot_be_checked_is_an_error_naming_the_algorithm() {
    let f = Fixture::new().await;
    let ed = OpensslCa::root(&unique("Ed25519 CA"), Key::Ed25519, &[]);
    let rsa = OpensslCa::root(&unique("RSA CA"), Key::Rsa(2048), &["-sha256"]);
    let cases: [(&OpensslCa, &[&str], &str); 2] = [
        (&ed, &[], "the issuer's key is an ed25519 (1.3.101.112) key"),
        (
            &rsa,
            &["-sha1"],
            "the signature algorithm is sha1WithRSAEncryption (1.2.840.113549.1.1.5)",
        ),
    ];
    for (ca, sign, names) in cases {
        let ca_id = register_ca_pem(&f.iot, &ca.pem).await;
        let (id, arn) = f
            .register_pending_under(&ca.pem, &ca.issue(&unique("device"), sign))
            .await;
        let mut event = f.event(&id);
        event["caCertificateId"] = json!(ca_id);
        let activator = f.activator(ActivatorConfig {
            ca_certificate_ids: vec![ca_id],
            reject_action: RejectAction::Revoke,
            ..f.config()
        });
        let err = activator.handle(event).await.unwrap_err();
        assert_eq!(err.kind(), "UnsupportedSignatureAlgorithm");
        assert!(
            err.to_string().starts_with(&format!(
                "certificate {id}: cannot check the signature: {names}; the activator verifies "
            )),
            "{err}"
        );
        assert_eq!(f.status(&id).await, CertificateStatus::PendingActivation);
        assert!(f.policies_of(&arn).await.is_empty());
    }
}

/// Issue 7, item 3: devices signed by an intermediate while the stage registered the root.
/// The outcome says so, with both names, instead of a bare "ignored".
#[tokio::test]
async fn a_device_of_an_intermediate_names_its_issuer_and_our_ca() {
    let f = Fixture::new().await;
    let root_name = unique("Acme Root CA");
    let intermediate_name = unique("Acme Device CA");
    let root = OpensslCa::root(&root_name, Key::Ec("P-384"), &["-sha384"]);
    let intermediate = root.intermediate(&intermediate_name, Key::Ec("P-256"), &["-sha384"]);
    let root_id = register_ca_pem(&f.iot, &root.pem).await;
    let (id, _) = f
        .register_pending_under(
            &root.pem,
            &intermediate.issue(&unique("sensor"), &["-sha256"]),
        )
        .await;
    let mut event = f.event(&id);
    event["caCertificateId"] = json!(root_id);
    let activator = f.activator(ActivatorConfig {
        ca_certificate_ids: vec![root_id],
        ..f.config()
    });
    let report = activator.handle(event).await.unwrap();
    assert_eq!(report.outcome, Outcome::Ignored);
    assert_eq!(report.reason_code, Some(ReasonCode::IssuerNotOurCa));
    assert_eq!(report.issuer, Some(format!("CN={intermediate_name}")));
    assert_eq!(report.ca_subject, Some(format!("CN={root_name}")));
    assert_eq!(
        report.reason.unwrap(),
        format!(
            "issued by `CN={intermediate_name}`, not by our CA `CN={root_name}`: the CA \
             certificate registered for this stage must be the one that signs the device \
             certificates (with intermediate CAs, the intermediate that issues them)"
        )
    );
    assert_eq!(f.status(&id).await, CertificateStatus::PendingActivation);
}

#[tokio::test]
async fn already_active_certificate_makes_no_changing_call() {
    let f = Fixture::new().await;
    let cn = unique("veteran");
    let (id, _) = f.register_pending(&f.ca, &f.ca.issue(&cn)).await;
    f.activator(f.config()).handle(f.event(&id)).await.unwrap();

    let proxy = Recorder::proxy(moto().host_port());
    let activator = f.activator_via(&proxy.url(), f.config()).await;
    let report = activator.handle(f.event(&id)).await.unwrap();
    assert_eq!(report.outcome, Outcome::AlreadyActive);
    let calls: Vec<String> = proxy
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path()))
        .collect();
    // Reads only: the certificate, and (on this cold start) our CA for later checks.
    assert!(
        calls.contains(&format!("GET /certificates/{id}")),
        "{calls:?}"
    );
    assert!(calls.iter().all(|c| c.starts_with("GET ")), "{calls:?}");
}

#[tokio::test]
async fn throttling_is_retried_with_backoff() {
    let f = Fixture::new().await;
    let cn = unique("throttled");
    let (id, _) = f.register_pending(&f.ca, &f.ca.issue(&cn)).await;
    // The first two calls are throttled the way AWS IoT throttles: 429 ThrottlingException.
    let upstream = moto().host_port().to_string();
    let throttled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = throttled.clone();
    let proxy = Recorder::with_handler(std::sync::Arc::new(move |req: HttpRequest| {
        if count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
            return HttpResponse::json(429, &json!({"message": "Rate exceeded"}))
                .with_header("x-amzn-ErrorType", "ThrottlingException");
        }
        testkit::http::forward(&upstream, &req).unwrap()
    }));
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let activator = f
        .activator_via(&proxy.url(), f.config())
        .await
        .with_metrics(Emf::to("f", move |l| sink.lock().unwrap().push(l.into())));
    let report = activator.handle(f.event(&id)).await.unwrap();
    assert_eq!(report.outcome, Outcome::Activated);
    assert!(throttled.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    // The activator's own retry loop saw and counted both throttles.
    let doc: serde_json::Value = serde_json::from_str(&lines.lock().unwrap()[0]).unwrap();
    assert_eq!(doc["IotThrottled"], 2, "{doc}");
    assert_eq!(f.status(&id).await, CertificateStatus::Active);
}

#[tokio::test]
async fn a_failing_step_is_an_error_and_the_certificate_stays_pending() {
    let f = Fixture::new().await;
    let cn = unique("nopolicy");
    let (id, _) = f.register_pending(&f.ca, &f.ca.issue(&cn)).await;
    let activator = f.activator(ActivatorConfig {
        device_policy_name: unique("missing-policy"),
        ..f.config()
    });
    let err = activator
        .handle(f.event(&id))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("AttachPolicy failed"), "{err}");
    // Activation is last: a device never becomes ACTIVE without its policy.
    assert_eq!(f.status(&id).await, CertificateStatus::PendingActivation);
}

/// AWS IoT throttles every call: the activator gives up before the invocation's deadline with
/// the error kind `IotThrottled` (Lambda retries it; the sweep catches what is left).
#[tokio::test]
async fn endless_throttling_fails_as_iot_throttled_before_the_deadline() {
    let f = Fixture::new().await;
    let (id, _) = f
        .register_pending(&f.ca, &f.ca.issue(&unique("starved")))
        .await;
    let proxy = Recorder::with_handler(std::sync::Arc::new(|_req: HttpRequest| {
        HttpResponse::json(400, &json!({"message": "Rate exceeded"}))
            .with_header("x-amzn-ErrorType", "ThrottlingException")
    }));
    let activator = f.activator_via(&proxy.url(), f.config()).await;
    let clock = jitr_activator::limiter::TokioClock;
    let deadline =
        jitr_activator::limiter::Deadline::after(std::time::Duration::from_secs(3), &clock);
    let started = std::time::Instant::now();
    let err = activator
        .handle_until(f.event(&id), deadline)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "IotThrottled", "{err}");
    assert!(err.to_string().contains("DescribeCertificate"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert!(proxy.requests().len() >= 3, "it retried");
    assert_eq!(f.status(&id).await, CertificateStatus::PendingActivation);
}

/// A revocation list naming the serial of `pem`, for `ca_id`.
fn list_revoking(pem: &str, ca: &str) -> jitr_contract::revocation::RevocationList {
    let mut list = jitr_contract::revocation::RevocationList::default();
    let serial = jitr_lambda_common::pki::Certificate::from_pem(pem)
        .unwrap()
        .serial_hex();
    list.add(serial, ca);
    list
}

#[tokio::test]
async fn a_listed_serial_is_revoked_never_activated_even_when_redelivered() {
    let f = Fixture::new().await;
    let pem = f.ca.issue(&unique("listed"));
    let (id, arn) = f.register_pending(&f.ca, &pem).await;
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    // on_reject is leave-pending: the list revokes all the same.
    let activator = f
        .activator(f.config())
        .with_revocation(list_revoking(&pem, &f.ca_id))
        .with_metrics(Emf::to("jitr-test-activator", move |l| {
            sink.lock().unwrap().push(l.to_string())
        }));
    let report = activator.handle(f.event(&id)).await.unwrap();
    assert_eq!(report.outcome, Outcome::Revoked);
    assert_eq!(report.reason_code, Some(ReasonCode::RevokedList));
    assert_eq!(f.status(&id).await, CertificateStatus::Revoked);
    assert!(f.policies_of(&arn).await.is_empty());
    let things = f
        .iot
        .list_principal_things()
        .principal(&arn)
        .send()
        .await
        .unwrap();
    assert!(things.things().is_empty());
    let emf = lines.lock().unwrap().join("\n");
    assert!(emf.contains(r#""RevokedByList":1"#), "{emf}");
    // Re-delivered, to this container and to a cold one: never activated.
    for a in [
        &activator,
        &f.activator(f.config())
            .with_revocation(list_revoking(&pem, &f.ca_id)),
    ] {
        let again = a.handle(f.event(&id)).await.unwrap();
        assert_ne!(again.outcome, Outcome::Activated);
        assert_eq!(f.status(&id).await, CertificateStatus::Revoked);
    }
    // A list for another CA's id does not touch this CA's certificate with the same serial.
    let other = f.ca.issue(&unique("other"));
    let (other_id, _) = f.register_pending(&f.ca, &other).await;
    let report = f
        .activator(f.config())
        .with_revocation(list_revoking(&other, &"f".repeat(64)))
        .handle(f.event(&other_id))
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Activated);
}

#[tokio::test]
async fn the_sweep_revokes_a_listed_pending_certificate_and_activates_the_rest() {
    let f = Fixture::new().await;
    let listed = f.ca.issue(&unique("swept-listed"));
    let (listed_id, listed_arn) = f.register_pending(&f.ca, &listed).await;
    let (fine_id, _) = f
        .register_pending(&f.ca, &f.ca.issue(&unique("swept-fine")))
        .await;
    let ssm_conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(testkit::REGION))
        .endpoint_url(moto().endpoint())
        .credentials_provider(aws_sdk_iot::config::Credentials::new(
            "testing", "testing", None, None, "sweep",
        ))
        .load()
        .await;
    let sweep = jitr_contract::sweep::SweepConfig {
        grace_seconds: 0,
        ..Default::default()
    };
    let activator = f
        .activator(f.config())
        .with_revocation(list_revoking(&listed, jitr_contract::revocation::ANY_CA))
        .with_sweep(aws_sdk_ssm::Client::new(&ssm_conf), sweep);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let request = serde_json::to_value(jitr_contract::sweep::SweepRequest::new("test")).unwrap();
    let report = activator.invoke(request, 0).await.unwrap();
    assert_eq!(report["activated"], 1, "{report:#}");
    assert_eq!(f.status(&listed_id).await, CertificateStatus::Revoked);
    assert!(f.policies_of(&listed_arn).await.is_empty());
    assert_eq!(f.status(&fine_id).await, CertificateStatus::Active);
}

#[test]
fn a_revocation_file_that_is_missing_is_a_configuration_error() {
    use jitr_contract::revocation::ENV_REVOCATION_FILE;
    let none = jitr_activator::revocation_from_env(|_| None).unwrap();
    assert!(none.is_empty());
    let err = jitr_activator::revocation_from_env(|k| {
        (k == ENV_REVOCATION_FILE).then(|| "/nonexistent/jitr/revocation.json".to_string())
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("JITR_REVOCATION_FILE=/nonexistent/jitr/revocation.json")
            && err.contains("revocation layer"),
        "{err}"
    );
    let path = std::env::temp_dir().join(format!("{}.json", unique("jitr-revocation")));
    std::fs::write(&path, r#"{"revoked":{"1a":["*"]}}"#).unwrap();
    let list = jitr_activator::revocation_from_env(|k| {
        (k == ENV_REVOCATION_FILE).then(|| path.display().to_string())
    })
    .unwrap();
    assert!(list.is_revoked("1a", "any"));
    std::fs::write(&path, "not json").unwrap();
    assert!(jitr_activator::revocation_from_env(|k| {
        (k == ENV_REVOCATION_FILE).then(|| path.display().to_string())
    })
    .is_err());
    std::fs::remove_file(&path).unwrap();
}
