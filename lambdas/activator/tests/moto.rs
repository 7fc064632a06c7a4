//! The activator against moto (a real AWS API emulator) through the real AWS SDK.
//!
//! moto does not return `caCertificateId` from DescribeCertificate and does not check that a
//! device certificate was signed by the CA it names; the activator's own signature check is
//! what keeps another CA's certificate untouched here and on real AWS alike.

use aws_sdk_iot::types::{CertificateMode, CertificateStatus};
use jitr_activator::Activator;
use jitr_contract::activator::{ActivatorConfig, Outcome, RejectAction, ThingNameSource};
use serde_json::json;
use testkit::http::{HttpRequest, HttpResponse};
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
            ca_certificate_id: self.ca_id.clone(),
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

    async fn activator_via(&self, endpoint: &str, config: ActivatorConfig) -> Activator {
        Activator::new(testkit::iot_client(endpoint).await, config).unwrap()
    }

    /// Registers `pem` as AWS IoT's auto-registration would: PENDING_ACTIVATION.
    async fn register_pending(&self, ca: &TestCa, pem: &str) -> (String, String) {
        let out = self
            .iot
            .register_certificate()
            .certificate_pem(pem)
            .ca_certificate_pem(&ca.pem)
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
    iot.register_ca_certificate()
        .ca_certificate(&ca.pem)
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

    // Misrouted: the event claims our CA, but our CA did not sign the certificate.
    let report = activator.handle(f.event(&id)).await.unwrap();
    assert_eq!(report.outcome, Outcome::Ignored, "{report:?}");
    assert!(report.reason.unwrap().contains("not by our CA"));

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
    // Re-delivery of the event: a revoked certificate stays revoked and is left alone.
    let again = activator.handle(f.event(&bad)).await.unwrap();
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

#[tokio::test]
async fn malformed_events_are_clear_errors() {
    let f = Fixture::new().await;
    let activator = f.activator(f.config());
    let cases = [
        (json!(null), "expected a JSON object, got null"),
        (
            f.event("x"),
            "`certificateId` must be 64 lowercase hex digits",
        ),
        (
            {
                let mut e = f.event(&"a".repeat(64));
                e.as_object_mut().unwrap().remove("caCertificateId");
                e
            },
            "missing field `caCertificateId`",
        ),
        (
            {
                let mut e = f.event(&"a".repeat(64));
                e["timestamp"] = json!({"ms": 1});
                e
            },
            "milliseconds",
        ),
    ];
    for (event, want) in cases {
        let err = activator
            .handle(event.clone())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("malformed registered-certificate event"),
            "{err}"
        );
        assert!(err.contains(want), "{event} -> {err}");
    }
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
    let activator = f.activator_via(&proxy.url(), f.config()).await;
    let report = activator.handle(f.event(&id)).await.unwrap();
    assert_eq!(report.outcome, Outcome::Activated);
    assert!(throttled.load(std::sync::atomic::Ordering::SeqCst) >= 3);
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
