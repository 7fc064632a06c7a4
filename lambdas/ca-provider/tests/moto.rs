//! The CA registration provider against moto, with CloudFormation's `ResponseURL` served by
//! the test on loopback and the provider's IoT calls recorded by a proxy in front of moto
//! (moto ignores `allowAutoRegistration` and `newAutoRegistrationStatus`, so those are
//! checked on the requests the provider sends, as real AWS would receive them).

use aws_sdk_iot::types::{CaCertificateStatus, CertificateMode};
use jitr_ca_provider::cfn::{Response, Status};
use jitr_ca_provider::respond::{answer, answer_within};
use jitr_ca_provider::{Provider, Registered, ResponseSender, Success};
use jitr_contract::ca_registration::{
    CaPhysicalId, ATTR_CA_CERTIFICATE_ARN, ATTR_CA_CERTIFICATE_ID,
};
use serde_json::{json, Value};
use std::time::Duration;
use testkit::http::{HttpRequest, HttpResponse};
use testkit::pki::{leaf_self_signed, TestCa};
use testkit::{moto, unique, Blackhole, Recorder};
use tokio::time::Instant;

struct Harness {
    /// Records the provider's calls on their way to moto.
    proxy: Recorder,
    /// Plays CloudFormation's presigned S3 URL.
    cfn: Recorder,
    provider: Provider,
    sender: ResponseSender,
    iot: aws_sdk_iot::Client,
}

impl Harness {
    async fn new() -> Harness {
        Self::with_proxy(Recorder::proxy(moto().host_port())).await
    }

    async fn with_proxy(proxy: Recorder) -> Harness {
        Harness {
            provider: Provider::new(testkit::iot_client(&proxy.url()).await),
            proxy,
            cfn: Recorder::answering(200),
            sender: ResponseSender::new().unwrap(),
            iot: moto().iot().await,
        }
    }

    fn request(
        &self,
        kind: &str,
        physical: Option<&str>,
        props: Value,
        old: Option<Value>,
    ) -> Value {
        let mut r = json!({
            "RequestType": kind,
            "ResponseURL": format!("{}/cfn-response/{}?X-Amz-Signature=abc", self.cfn.url(), unique("r")),
            "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/jitr-dev/0b1c",
            "RequestId": unique("req"),
            "ResourceType": "Custom::JitrCaRegistration",
            "LogicalResourceId": "CaRegistration",
            "ResourceProperties": props,
        });
        if let Some(p) = physical {
            r["PhysicalResourceId"] = json!(p);
        }
        if let Some(o) = old {
            r["OldResourceProperties"] = o;
        }
        r
    }

    /// Sends a request through the real handler and returns the response CloudFormation got.
    async fn send(&self, request: Value) -> Response {
        let before = self.cfn.requests().len();
        let deadline = Instant::now() + Duration::from_secs(30);
        answer(&self.provider, request, deadline, &self.sender, "")
            .await
            .unwrap();
        let puts = self.cfn.requests();
        assert_eq!(puts.len(), before + 1, "exactly one answer per request");
        check_put(&puts[before])
    }

    fn calls(&self) -> Vec<HttpRequest> {
        self.proxy.requests()
    }

    async fn ca_status(&self, id: &str) -> Option<CaCertificateStatus> {
        self.iot
            .describe_ca_certificate()
            .certificate_id(id)
            .send()
            .await
            .ok()
            .and_then(|o| {
                o.certificate_description()
                    .and_then(|d| d.status().cloned())
            })
    }
}

/// What CloudFormation requires of the PUT: empty content type, a small JSON body.
fn check_put(put: &HttpRequest) -> Response {
    assert_eq!(put.method, "PUT");
    assert_eq!(
        put.header("content-type"),
        Some(""),
        "Content-Type must be empty"
    );
    assert!(put.body.len() <= 4096, "body is {} bytes", put.body.len());
    serde_json::from_slice(&put.body).unwrap()
}

fn props(ca: &TestCa) -> Value {
    json!({
        "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:ca-provider",
        "ServiceTimeout": "300",
        "CaCertificatePem": ca.pem,
        "CertificateMode": "SNI_ONLY",
    })
}

fn find<'a>(calls: &'a [HttpRequest], method: &str, prefix: &str) -> Vec<&'a HttpRequest> {
    calls
        .iter()
        .filter(|c| c.method == method && c.path().starts_with(prefix))
        .collect()
}

#[tokio::test]
async fn create_registers_active_with_auto_registration() {
    let h = Harness::new().await;
    let ca = TestCa::new(&unique("Create CA"));
    let response = h.send(h.request("Create", None, props(&ca), None)).await;

    assert_eq!(response.status, Status::Success, "{}", response.reason);
    let id = &response.physical_resource_id;
    let expected_id = jitr_lambda_common::pki::Certificate::from_pem(&ca.pem)
        .unwrap()
        .aws_iot_id();
    assert_eq!(id, &expected_id, "the CA id is the SHA-256 of the DER");
    assert_eq!(response.data[ATTR_CA_CERTIFICATE_ID], *id);
    // Real AWS: arn:aws:iot:<region>:<account>:cacert/<id>; moto says `cert/` for CAs too.
    let arn = &response.data[ATTR_CA_CERTIFICATE_ARN];
    assert!(
        arn.starts_with("arn:aws:iot:eu-west-1:123456789012:"),
        "{arn}"
    );
    assert!(arn.ends_with(&format!("cert/{id}")), "{arn}");
    assert_eq!(h.ca_status(id).await, Some(CaCertificateStatus::Active));

    let calls = h.calls();
    let register = find(&calls, "POST", "/cacertificate");
    assert_eq!(register.len(), 1);
    let q = register[0].query();
    assert_eq!(
        q.get("allowAutoRegistration").map(String::as_str),
        Some("true")
    );
    assert_eq!(q.get("setAsActive").map(String::as_str), Some("true"));
    let body: Value = serde_json::from_slice(&register[0].body).unwrap();
    assert_eq!(body["certificateMode"], "SNI_ONLY");
    assert!(body.get("verificationCertificate").is_none());
}

#[tokio::test]
async fn create_in_default_mode_sends_the_verification_certificate() {
    let h = Harness::new().await;
    let ca = TestCa::new(&unique("Default CA"));
    let code = h
        .iot
        .get_registration_code()
        .send()
        .await
        .unwrap()
        .registration_code()
        .unwrap()
        .to_string();
    let verification = ca.verification_certificate(&code);
    let mut p = props(&ca);
    p["CertificateMode"] = json!("DEFAULT");
    p["VerificationCertificatePem"] = json!(verification);
    let response = h.send(h.request("Create", None, p.clone(), None)).await;
    assert_eq!(response.status, Status::Success, "{}", response.reason);
    let calls = h.calls();
    let body: Value =
        serde_json::from_slice(&find(&calls, "POST", "/cacertificate")[0].body).unwrap();
    assert_eq!(body["certificateMode"], "DEFAULT");
    assert_eq!(body["verificationCertificate"], json!(verification));

    // A verification certificate signed by some other key is refused before AWS is asked.
    let stranger = TestCa::new(&unique("Stranger"));
    p["CaCertificatePem"] = json!(TestCa::new(&unique("Default CA 2")).pem);
    p["VerificationCertificatePem"] = json!(stranger.verification_certificate(&code));
    let response = h.send(h.request("Create", None, p, None)).await;
    assert_eq!(response.status, Status::Failed);
    assert!(
        response.reason.contains("VerificationCertificatePem"),
        "{}",
        response.reason
    );
}

/// A CA registered before the stack, by someone else (by hand, another stage): INACTIVE, so
/// a take-over shows in its status.
async fn register_by_hand(iot: &aws_sdk_iot::Client, ca: &TestCa) -> (String, String) {
    let out = iot
        .register_ca_certificate()
        .ca_certificate(&ca.pem)
        .set_as_active(false)
        .certificate_mode(CertificateMode::SniOnly)
        .send()
        .await
        .unwrap();
    (
        out.certificate_id().unwrap().to_string(),
        out.certificate_arn().unwrap().to_string(),
    )
}

fn refusal(id: &str) -> String {
    format!(
        "the CA certificate is already registered in this account and region as {id} (by \
         hand, or by another stack or stage), and this stack does not take over a CA it did \
         not register. To use that registration, set `ca.adopt: true` in the stage file \
         (property Adopt): the stack then manages the CA's status and auto-registration and \
         leaves it registered when the stack is deleted. Or deregister it first, if nothing \
         else uses it"
    )
}

fn adopting(ca: &TestCa) -> Value {
    let mut p = props(ca);
    p["Adopt"] = json!("true");
    p
}

#[tokio::test]
async fn create_refuses_a_ca_registered_by_someone_else() {
    let h = Harness::new().await;
    let ca = TestCa::new(&unique("Someone else's CA"));
    let (id, _) = register_by_hand(&h.iot, &ca).await;

    let response = h.send(h.request("Create", None, props(&ca), None)).await;
    assert_eq!(response.status, Status::Failed);
    assert_eq!(response.reason, refusal(&id));
    // Not the CA's id: the Delete of CloudFormation's rollback must not deregister it.
    assert_eq!(
        CaPhysicalId::parse(&response.physical_resource_id),
        CaPhysicalId::NotACa
    );
    let rollback = h
        .send(h.request(
            "Delete",
            Some(&response.physical_resource_id),
            props(&ca),
            None,
        ))
        .await;
    assert_eq!(rollback.status, Status::Success, "{}", rollback.reason);

    assert_eq!(h.ca_status(&id).await, Some(CaCertificateStatus::Inactive));
    let calls = h.calls();
    assert!(
        find(&calls, "PUT", "/cacertificate/").is_empty()
            && find(&calls, "DELETE", "/cacertificate/").is_empty(),
        "the other registration is left as it was"
    );
}

#[tokio::test]
async fn an_adopted_ca_is_marked_kept_through_updates_and_never_deregistered() {
    let h = Harness::new().await;
    let ca = TestCa::new(&unique("Adopted CA"));
    let (id, arn) = register_by_hand(&h.iot, &ca).await;

    let created = h.send(h.request("Create", None, adopting(&ca), None)).await;
    assert_eq!(created.status, Status::Success, "{}", created.reason);
    let physical = created.physical_resource_id.clone();
    assert_eq!(physical, format!("adopted:{id}"));
    assert_eq!(
        created.data[ATTR_CA_CERTIFICATE_ID], id,
        "the attribute is the plain id"
    );
    assert_eq!(created.data[ATTR_CA_CERTIFICATE_ARN], arn);
    assert_eq!(h.ca_status(&id).await, Some(CaCertificateStatus::Active));

    // In place, with the marker kept: a changed physical id would be a replacement, after
    // which CloudFormation deletes the old one.
    let mut paused = adopting(&ca);
    paused["Status"] = json!("INACTIVE");
    paused["CaCertificatePem"] = json!(ca.pem.replace('\n', "\r\n"));
    let updated = h
        .send(h.request(
            "Update",
            Some(&physical),
            paused.clone(),
            Some(adopting(&ca)),
        ))
        .await;
    assert_eq!(updated.status, Status::Success, "{}", updated.reason);
    assert_eq!(updated.physical_resource_id, physical);
    assert_eq!(updated.data[ATTR_CA_CERTIFICATE_ID], id);
    assert_eq!(h.ca_status(&id).await, Some(CaCertificateStatus::Inactive));
    assert!(
        find(&h.calls(), "POST", "/cacertificate").len() == 1,
        "not registered again"
    );

    // Delete leaves it registered, whatever the properties say now.
    let mut dropped = paused;
    dropped.as_object_mut().unwrap().remove("Adopt");
    dropped["RetainOnDelete"] = json!("false");
    let deleted = h
        .send(h.request("Delete", Some(&physical), dropped, None))
        .await;
    assert_eq!(deleted.status, Status::Success, "{}", deleted.reason);
    assert_eq!(deleted.physical_resource_id, physical);
    assert_eq!(h.ca_status(&id).await, Some(CaCertificateStatus::Inactive));
    assert!(find(&h.calls(), "DELETE", "/cacertificate/").is_empty());
}

#[tokio::test]
async fn adopt_with_nothing_registered_registers_and_owns_the_ca() {
    let h = Harness::new().await;
    let ca = TestCa::new(&unique("Nothing to adopt"));
    let created = h.send(h.request("Create", None, adopting(&ca), None)).await;
    assert_eq!(created.status, Status::Success, "{}", created.reason);
    let id = created.physical_resource_id.clone();
    assert_eq!(CaPhysicalId::parse(&id), CaPhysicalId::Owned(&id));
    let deleted = h
        .send(h.request("Delete", Some(&id), adopting(&ca), None))
        .await;
    assert_eq!(deleted.status, Status::Success, "{}", deleted.reason);
    assert_eq!(
        h.ca_status(&id).await,
        None,
        "registered by the stack, so deregistered"
    );
}

#[tokio::test]
async fn adoption_finds_the_ca_when_aws_names_no_resource_id() {
    let ca = TestCa::new(&unique("Unnamed CA"));
    let (existing_id, existing_arn) = register_by_hand(&moto().iot().await, &ca).await;
    // AWS names the CA in resourceId; without it the provider finds it by its DER's id.
    for with_id in [true, false] {
        let upstream = moto().host_port().to_string();
        let (id, arn) = (existing_id.clone(), existing_arn.clone());
        let proxy = Recorder::with_handler(std::sync::Arc::new(move |req: HttpRequest| {
            if req.method == "POST" && req.path() == "/cacertificate" {
                let mut body =
                    json!({"message": "The certificate is already provisioned or registered"});
                if with_id {
                    body["resourceId"] = json!(id);
                    body["resourceArn"] = json!(arn);
                }
                return HttpResponse::json(409, &body)
                    .with_header("x-amzn-ErrorType", "ResourceAlreadyExistsException");
            }
            testkit::http::forward(&upstream, &req).unwrap()
        }));
        let h = Harness::with_proxy(proxy).await;
        let response = h.send(h.request("Create", None, adopting(&ca), None)).await;
        assert_eq!(response.status, Status::Success, "{}", response.reason);
        assert_eq!(
            response.physical_resource_id,
            format!("adopted:{existing_id}")
        );
        let calls = h.calls();
        let update = find(&calls, "PUT", &format!("/cacertificate/{existing_id}"));
        assert_eq!(update.len(), 1);
        let q = update[0].query();
        assert_eq!(q.get("newStatus").map(String::as_str), Some("ACTIVE"));
        assert_eq!(
            q.get("newAutoRegistrationStatus").map(String::as_str),
            Some("ENABLE")
        );
    }
}

#[tokio::test]
async fn replacement_by_a_ca_registered_elsewhere_is_refused_unless_adopted() {
    let h = Harness::new().await;
    let ca = TestCa::new(&unique("Ours"));
    let id = h
        .send(h.request("Create", None, props(&ca), None))
        .await
        .physical_resource_id;
    let theirs = TestCa::new(&unique("Theirs"));
    let (their_id, _) = register_by_hand(&h.iot, &theirs).await;

    let response = h
        .send(h.request("Update", Some(&id), props(&theirs), Some(props(&ca))))
        .await;
    assert_eq!(response.status, Status::Failed);
    assert_eq!(response.reason, refusal(&their_id));
    assert_eq!(
        response.physical_resource_id, id,
        "a failed update keeps its id"
    );
    assert_eq!(
        h.ca_status(&their_id).await,
        Some(CaCertificateStatus::Inactive)
    );

    let response = h
        .send(h.request("Update", Some(&id), adopting(&theirs), Some(props(&ca))))
        .await;
    assert_eq!(response.status, Status::Success, "{}", response.reason);
    assert_eq!(response.physical_resource_id, format!("adopted:{their_id}"));
}

#[tokio::test]
async fn a_mode_change_of_the_same_ca_fails_with_the_steps_that_work() {
    let h = Harness::new().await;
    let ca = TestCa::new(&unique("Mode CA"));
    let id = h
        .send(h.request("Create", None, props(&ca), None))
        .await
        .physical_resource_id;
    let code = h
        .iot
        .get_registration_code()
        .send()
        .await
        .unwrap()
        .registration_code()
        .unwrap()
        .to_string();
    let mut default = props(&ca);
    default["CertificateMode"] = json!("DEFAULT");
    default["VerificationCertificatePem"] = json!(ca.verification_certificate(&code));
    let response = h
        .send(h.request("Update", Some(&id), default, Some(props(&ca))))
        .await;
    assert_eq!(response.status, Status::Failed);
    assert_eq!(
        response.reason,
        format!(
            "the CA is registered as {id} in SNI_ONLY mode, but CertificateMode is DEFAULT: \
             AWS IoT cannot change a registered CA's mode, and registering the same \
             certificate again fails. Deregister it (status INACTIVE, then \
             DeleteCACertificate), then register it in DEFAULT mode"
        )
    );
    assert_eq!(response.physical_resource_id, id);
    assert_eq!(h.ca_status(&id).await, Some(CaCertificateStatus::Active));
}

#[tokio::test]
async fn update_in_place_and_replacement() {
    let h = Harness::new().await;
    let ca = TestCa::new(&unique("Update CA"));
    let created = h.send(h.request("Create", None, props(&ca), None)).await;
    let id = created.physical_resource_id.clone();

    let mut paused = props(&ca);
    paused["Status"] = json!("INACTIVE");
    paused["AutoRegistration"] = json!("false");
    let response = h
        .send(h.request("Update", Some(&id), paused.clone(), Some(props(&ca))))
        .await;
    assert_eq!(response.status, Status::Success, "{}", response.reason);
    assert_eq!(
        response.physical_resource_id, id,
        "status change is in place"
    );
    assert_eq!(h.ca_status(&id).await, Some(CaCertificateStatus::Inactive));
    let calls = h.calls();
    let update = find(&calls, "PUT", &format!("/cacertificate/{id}"));
    let q = update.last().unwrap().query();
    assert_eq!(q.get("newStatus").map(String::as_str), Some("INACTIVE"));
    assert_eq!(
        q.get("newAutoRegistrationStatus").map(String::as_str),
        Some("DISABLE")
    );

    // The same CA with its PEM re-wrapped is the same CA: still in place.
    let mut rewrapped = paused.clone();
    rewrapped["CaCertificatePem"] = json!(format!("\n{}\n", ca.pem.replace('\n', "\r\n")));
    let response = h
        .send(h.request("Update", Some(&id), rewrapped, Some(paused.clone())))
        .await;
    assert_eq!(response.physical_resource_id, id);

    // A different CA is a replacement: a new id, the old CA left for CloudFormation's Delete.
    let new_ca = TestCa::new(&unique("Rotated CA"));
    let response = h
        .send(h.request("Update", Some(&id), props(&new_ca), Some(paused)))
        .await;
    assert_eq!(response.status, Status::Success, "{}", response.reason);
    assert_ne!(response.physical_resource_id, id);
    assert_eq!(
        h.ca_status(&response.physical_resource_id).await,
        Some(CaCertificateStatus::Active)
    );
    assert!(h.ca_status(&id).await.is_some());
}

#[tokio::test]
async fn delete_deactivates_then_deletes() {
    let h = Harness::new().await;
    let ca = TestCa::new(&unique("Delete CA"));
    let id = h
        .send(h.request("Create", None, props(&ca), None))
        .await
        .physical_resource_id;
    let response = h
        .send(h.request("Delete", Some(&id), props(&ca), None))
        .await;
    assert_eq!(response.status, Status::Success, "{}", response.reason);
    assert_eq!(response.physical_resource_id, id);
    assert_eq!(h.ca_status(&id).await, None, "the CA is gone");

    let calls: Vec<String> = h
        .calls()
        .iter()
        .filter(|c| c.method != "GET")
        .map(|c| {
            let q = c.query();
            format!(
                "{} {} {}",
                c.method,
                c.path(),
                q.get("newAutoRegistrationStatus")
                    .cloned()
                    .unwrap_or_default()
            )
        })
        .collect();
    let tail = &calls[calls.len() - 2..];
    assert_eq!(
        tail,
        [
            format!("PUT /cacertificate/{id} DISABLE"),
            format!("DELETE /cacertificate/{id} "),
        ]
    );
}

#[tokio::test]
async fn delete_with_retain_leaves_the_ca_registered() {
    let h = Harness::new().await;
    let ca = TestCa::new(&unique("Retained CA"));
    let mut p = props(&ca);
    p["RetainOnDelete"] = json!("true");
    let id = h
        .send(h.request("Create", None, p.clone(), None))
        .await
        .physical_resource_id;
    let response = h.send(h.request("Delete", Some(&id), p, None)).await;
    assert_eq!(response.status, Status::Success);
    assert_eq!(h.ca_status(&id).await, Some(CaCertificateStatus::Active));
}

#[tokio::test]
async fn delete_of_a_ca_that_does_not_exist_succeeds() {
    let h = Harness::new().await;
    let ca = TestCa::new(&unique("Never registered"));
    // The placeholder id a failed Create reports, and a real-looking id that names nothing.
    for physical in [
        "CaRegistration-create-failed-1234abcd".to_string(),
        "0".repeat(64),
    ] {
        let response = h
            .send(h.request("Delete", Some(&physical), props(&ca), None))
            .await;
        assert_eq!(
            response.status,
            Status::Success,
            "{physical}: {}",
            response.reason
        );
        assert_eq!(response.physical_resource_id, physical);
    }
}

#[tokio::test]
async fn bad_certificates_fail_with_a_useful_reason() {
    let h = Harness::new().await;
    let cases = [
        (json!("not a pem"), "CaCertificatePem: not a PEM document"),
        (
            json!("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            "CaCertificatePem: not a valid X.509 certificate",
        ),
        (
            json!(leaf_self_signed("not-a-ca")),
            "is not a CA certificate",
        ),
        (
            json!(TestCa::expired("Old CA").pem),
            "CA certificate has expired",
        ),
    ];
    for (pem, want) in cases {
        let mut p = props(&TestCa::new("unused"));
        p["CaCertificatePem"] = pem;
        let response = h.send(h.request("Create", None, p, None)).await;
        assert_eq!(response.status, Status::Failed);
        assert!(
            response.reason.contains(want),
            "want {want:?} in {:?}",
            response.reason
        );
        assert!(response
            .physical_resource_id
            .starts_with("CaRegistration-create-failed-"));
    }
    // Properties the contract does not know are named.
    let mut p = props(&TestCa::new("unused"));
    p["CaPrivateKeyPem"] = json!("secret");
    let response = h.send(h.request("Create", None, p, None)).await;
    assert_eq!(response.status, Status::Failed);
    assert!(
        response.reason.contains("CaPrivateKeyPem"),
        "{}",
        response.reason
    );
    assert!(!response.reason.contains("secret"));
}

#[tokio::test]
async fn malformed_request_is_still_answered() {
    let h = Harness::new().await;
    let mut request = h.request("Create", None, json!({}), None);
    request["RequestType"] = json!("Upsert");
    let response = h.send(request).await;
    assert_eq!(response.status, Status::Failed);
    assert!(
        response
            .reason
            .contains("malformed custom resource request"),
        "{}",
        response.reason
    );
}

#[tokio::test]
async fn a_panic_is_answered_as_failed() {
    let h = Harness::new().await;
    let request: jitr_ca_provider::cfn::Request =
        serde_json::from_value(h.request("Create", None, props(&TestCa::new("p")), None)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let work = async {
        let result: Result<Success, String> = if std::hint::black_box(true) {
            panic!("forced panic for the test")
        } else {
            Err("not reached".into())
        };
        result
    };
    let response = answer_within(
        &request,
        deadline,
        &h.sender,
        "stream-1",
        &Registered::default(),
        work,
    )
    .await
    .unwrap();
    assert_eq!(response.status, Status::Failed);
    let put = check_put(&h.cfn.wait_for(1, Duration::from_secs(5))[0]);
    assert_eq!(put, response);
    assert!(
        put.reason.contains("forced panic for the test"),
        "{}",
        put.reason
    );
    assert!(
        put.reason.contains("(log stream stream-1)"),
        "{}",
        put.reason
    );
    assert!(put
        .physical_resource_id
        .starts_with("CaRegistration-create-failed-"));

    // A panic after the CA was registered still names it, for the rollback's Delete.
    let registered = Registered::default();
    registered.set(&"c".repeat(64));
    let work = async {
        let result: Result<Success, String> = if std::hint::black_box(true) {
            panic!("after registering")
        } else {
            Err("not reached".into())
        };
        result
    };
    let response = answer_within(&request, deadline, &h.sender, "", &registered, work)
        .await
        .unwrap();
    assert_eq!(response.status, Status::Failed);
    assert_eq!(response.physical_resource_id, "c".repeat(64));
}

#[tokio::test]
async fn a_hung_aws_call_is_answered_before_the_deadline() {
    let blackhole = Blackhole::start();
    let mut h = Harness::new().await;
    h.provider = Provider::new(testkit::iot_client(&blackhole.url()).await);
    let request = h.request(
        "Create",
        None,
        props(&TestCa::new(&unique("Hung CA"))),
        None,
    );
    let start = Instant::now();
    let deadline = start + Duration::from_millis(400);
    answer(&h.provider, request, deadline, &h.sender, "")
        .await
        .unwrap();
    let answered = Instant::now();
    let put = check_put(&h.cfn.wait_for(1, Duration::from_secs(5))[0]);
    assert_eq!(put.status, Status::Failed);
    assert!(
        put.reason.contains("before the Lambda deadline"),
        "{}",
        put.reason
    );
    assert!(
        answered < deadline,
        "answered {:?} after start, deadline 400ms",
        answered - start
    );
}

/// A proxy in front of moto answering the requests `fails` picks with UnauthorizedException
/// (an IAM gap, say; the SDK does not retry it).
fn failing(fails: impl Fn(&HttpRequest) -> bool + Send + Sync + 'static) -> Recorder {
    let upstream = moto().host_port().to_string();
    Recorder::with_handler(std::sync::Arc::new(move |req: HttpRequest| {
        if fails(&req) {
            return HttpResponse::json(401, &json!({"message": "denied by the test"}))
                .with_header("x-amzn-ErrorType", "UnauthorizedException");
        }
        testkit::http::forward(&upstream, &req).unwrap()
    }))
}

fn describes(req: &HttpRequest, id: &str) -> bool {
    req.method == "GET" && req.path() == format!("/cacertificate/{id}")
}

fn aws_id(ca: &TestCa) -> String {
    jitr_lambda_common::pki::Certificate::from_pem(&ca.pem)
        .unwrap()
        .aws_iot_id()
}

#[tokio::test]
async fn delete_reads_only_the_physical_id_and_retain_on_delete() {
    let h = Harness::new().await;
    // Properties that no longer parse: an unknown mode, an unknown property.
    let odd = json!({"ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:p",
                     "CertificateMode": "PARTIAL", "Unknown": "x"});
    // Not a CA id (a failed Create's placeholder, an id CloudFormation made up): success
    // before anything else is read, and no AWS call.
    for (physical, props) in [
        ("CaRegistration-create-failed-1234abcd", odd.clone()),
        ("jitr-dev-CaRegistration-1AB2CD3EF4GH", odd.clone()),
        (
            "CaRegistration-create-failed-1234abcd",
            json!("not even an object"),
        ),
    ] {
        let response = h
            .send(h.request("Delete", Some(physical), props, None))
            .await;
        assert_eq!(
            response.status,
            Status::Success,
            "{physical}: {}",
            response.reason
        );
        assert_eq!(response.physical_resource_id, physical);
    }
    assert!(h.calls().is_empty(), "{:?}", h.calls());

    // Our CA: only RetainOnDelete is read, as a boolean or a string.
    let ca = TestCa::new(&unique("Odd props CA"));
    let id = h
        .send(h.request("Create", None, props(&ca), None))
        .await
        .physical_resource_id;
    let mut keep = odd.clone();
    keep["RetainOnDelete"] = json!(true);
    let response = h.send(h.request("Delete", Some(&id), keep, None)).await;
    assert_eq!(response.status, Status::Success, "{}", response.reason);
    assert_eq!(h.ca_status(&id).await, Some(CaCertificateStatus::Active));
    let mut drop = odd;
    drop["RetainOnDelete"] = json!("false");
    let response = h.send(h.request("Delete", Some(&id), drop, None)).await;
    assert_eq!(response.status, Status::Success, "{}", response.reason);
    assert_eq!(h.ca_status(&id).await, None);
}

#[tokio::test]
async fn a_create_that_fails_after_registering_answers_with_the_real_ca_id() {
    let ca = TestCa::new(&unique("Half-created CA"));
    let id = aws_id(&ca);
    let denied = id.clone();
    let h = Harness::with_proxy(failing(move |r| describes(r, &denied))).await;

    let response = h.send(h.request("Create", None, props(&ca), None)).await;
    assert_eq!(response.status, Status::Failed);
    assert!(
        response
            .reason
            .starts_with(&format!("DescribeCACertificate {id}: ")),
        "{}",
        response.reason
    );
    assert_eq!(
        response.physical_resource_id, id,
        "the real CA id, not a placeholder"
    );
    assert_eq!(h.ca_status(&id).await, Some(CaCertificateStatus::Active));

    // CloudFormation's rollback sends Delete with that id: the CA is cleaned up.
    let rollback = Harness::new().await;
    let response = rollback
        .send(rollback.request("Delete", Some(&id), props(&ca), None))
        .await;
    assert_eq!(response.status, Status::Success, "{}", response.reason);
    assert_eq!(h.ca_status(&id).await, None);
}

#[tokio::test]
async fn a_create_cut_short_by_the_deadline_after_registering_answers_with_the_real_ca_id() {
    let ca = TestCa::new(&unique("Slow CA"));
    let id = aws_id(&ca);
    let upstream = moto().host_port().to_string();
    let slow = id.clone();
    let proxy = Recorder::with_handler(std::sync::Arc::new(move |req: HttpRequest| {
        if describes(&req, &slow) {
            std::thread::sleep(Duration::from_secs(8));
        }
        testkit::http::forward(&upstream, &req).unwrap()
    }));
    let h = Harness::with_proxy(proxy).await;
    // moto loads its IoT backend on the first IoT call, which can take seconds: not here.
    h.iot.get_registration_code().send().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(6);
    let response = answer(
        &h.provider,
        h.request("Create", None, props(&ca), None),
        deadline,
        &h.sender,
        "",
    )
    .await
    .unwrap();
    assert_eq!(response.status, Status::Failed);
    assert!(
        response.reason.contains("before the Lambda deadline"),
        "{}",
        response.reason
    );
    assert_eq!(response.physical_resource_id, id);
    assert_eq!(check_put(&h.cfn.requests()[0]), response);
}

#[tokio::test]
async fn an_update_that_fails_after_registering_the_new_ca_deregisters_it() {
    let ca = TestCa::new(&unique("Current CA"));
    let next = TestCa::new(&unique("Next CA"));
    let next_id = aws_id(&next);
    let denied = next_id.clone();
    let h = Harness::with_proxy(failing(move |r| describes(r, &denied))).await;
    let id = h
        .send(h.request("Create", None, props(&ca), None))
        .await
        .physical_resource_id;

    let response = h
        .send(h.request("Update", Some(&id), props(&next), Some(props(&ca))))
        .await;
    assert_eq!(response.status, Status::Failed);
    assert_eq!(response.physical_resource_id, id);
    // CloudFormation keeps the old id after a failed update and would never delete it.
    assert_eq!(
        h.ca_status(&next_id).await,
        None,
        "the new CA is not left behind"
    );
    assert_eq!(h.ca_status(&id).await, Some(CaCertificateStatus::Active));
}
