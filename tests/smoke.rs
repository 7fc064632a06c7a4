//! `jitr-infra smoke` end to end: the real binary against a stage deployed to moto, with
//! `testkit::iot_gateway::IotGateway` as AWS IoT's MQTT broker (TLS, JITR registration in moto,
//! the deployed activator run by moto's Lambda with the real `bootstrap`).

use serde_json::Value;
use std::process::Output;
use testkit::iot_gateway::{IotGateway, Outcome};
use testkit::jitr::output_text as text;
use testkit::moto;
use testkit::pki::TestCa;

/// A throwaway project with one stage (`smoke`) deployed to moto, its CA key in certs/.
struct Deployed {
    fixture: testkit::project::Project,
    stack: String,
}

impl Deployed {
    fn new(activator_yaml: &str) -> Deployed {
        let fixture = testkit::project::Project::new("jitr-smoke");
        let ca = fixture.new_ca("Smoke CA");
        fixture.write("certs/ca.key", ca.key_pem());
        let stack = testkit::project::stack_name("jitr-smoke");
        fixture.stage(
            "smoke",
            &format!(
                "stack_name: {stack}\nregion: {}\nca:\n  certificate: certs/ca.pem\n  mode: SNI_ONLY\n\
                 activator:\n  create_thing: true\n  thing_name: subject-cn\n  reserved_concurrency: 2\n  \
                 log_retention_days: 1\n  timeout_seconds: 10\n{activator_yaml}",
                testkit::REGION
            ),
        );
        let d = Deployed { fixture, stack };
        d.fixture
            .deploy(env!("CARGO_BIN_EXE_jitr-infra"), "smoke", moto().endpoint());
        d
    }

    fn run(&self, args: &[&str]) -> Output {
        self.fixture
            .run_aws(env!("CARGO_BIN_EXE_jitr-infra"), args, moto().endpoint())
    }

    fn gateway(&self) -> IotGateway {
        let g = IotGateway::start(moto().endpoint(), &format!("{}-activator", self.stack));
        self.fixture.write("certs/gateway-root.pem", g.root_pem());
        g
    }

    /// `smoke` against `endpoint` with the stage's CA key and the gateway's root; `extra` last.
    fn smoke(&self, endpoint: &str, extra: &[&str]) -> Output {
        self.smoke_trusting("certs/gateway-root.pem", endpoint, extra)
    }

    /// `smoke` with `--trust-root` the project's file `root`.
    fn smoke_trusting(&self, root: &str, endpoint: &str, extra: &[&str]) -> Output {
        let key = self.fixture.path("certs/ca.key");
        let root = self.fixture.path(root);
        let mut args = vec![
            "smoke",
            "--stage",
            "smoke",
            "--endpoint",
            endpoint,
            "--ca-key",
            key.to_str().unwrap(),
            "--trust-root",
            root.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

async fn certificate_exists(iot: &aws_sdk_iot::Client, id: &str) -> bool {
    iot.describe_certificate()
        .certificate_id(id)
        .send()
        .await
        .is_ok()
}

async fn thing_exists(iot: &aws_sdk_iot::Client, thing: &str) -> bool {
    iot.describe_thing().thing_name(thing).send().await.is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn smoke_onboards_a_device_publishes_and_removes_it() {
    let d = Deployed::new("");
    let gateway = d.gateway();
    let o = d.smoke(&gateway.endpoint(), &["--json", "--timeout", "60"]);
    assert!(
        o.status.success(),
        "{}\ngateway: {:#?}",
        text(&o),
        gateway.connections()
    );
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["ok"], true, "{r}");
    let thing = r["device"]["thingName"].as_str().unwrap().to_string();
    let id = r["device"]["certificateId"].as_str().unwrap().to_string();
    assert!(thing.starts_with("jitr-smoke-"), "{thing}");
    assert_eq!(r["topic"], format!("devices/{thing}/smoke"));
    let active = r["timings"]["activeMs"].as_u64().expect("activation timed");
    let connack = r["timings"]["connackMs"].as_u64().expect("CONNACK timed");
    assert!(
        r["timings"]["registeredMs"].as_u64().unwrap() <= active,
        "{r}"
    );
    let activated = r["timings"]["activatedMs"].as_u64().unwrap();
    assert_eq!(activated, active.min(connack), "{r}");
    eprintln!("smoke: activated in {activated} ms (ACTIVE seen after {active} ms, CONNACK after {connack} ms)");

    // The gateway saw the JITR flow: one registration (the first connection, dropped, with
    // the device's chain and SNI), then one accepted CONNECT as the Thing, one publish.
    let conns = gateway.connections();
    let registered: Vec<_> = conns
        .iter()
        .filter(|c| c.outcome == Outcome::Registered)
        .collect();
    assert_eq!(registered.len(), 1, "{conns:#?}");
    assert_eq!(registered[0].chain_len, 2, "device then CA");
    assert_eq!(registered[0].sni.as_deref(), Some("localhost"));
    assert_eq!(registered[0].certificate_id.as_deref(), Some(id.as_str()));
    let accepted = conns
        .iter()
        .filter(|c| c.outcome == Outcome::Accepted(thing.clone()))
        .count();
    assert_eq!(accepted, 1, "{conns:#?}");
    let published = gateway.published();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0].topic, format!("devices/{thing}/smoke"));
    assert_eq!(published[0].client_id, thing);

    // Cleaned up in AWS IoT: no certificate, no Thing.
    let iot = moto().iot().await;
    assert!(
        !certificate_exists(&iot, &id).await,
        "certificate {id} left"
    );
    assert!(!thing_exists(&iot, &thing).await, "Thing {thing} left");
    assert_eq!(r["cleanup"]["certificateDeleted"], true, "{r}");
    assert_eq!(r["cleanup"]["thingDeleted"], thing.as_str(), "{r}");
    assert_eq!(r["cleanup"]["revoke"]["policy"], "done", "{r}");

    // --keep leaves the device onboarded: certificate ACTIVE, Thing there.
    let o = d.smoke(&gateway.endpoint(), &["--json", "--keep"]);
    assert!(o.status.success(), "{}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (r["kept"].clone(), r["cleanup"].clone()),
        (Value::Bool(true), Value::Null)
    );
    let kept_id = r["device"]["certificateId"].as_str().unwrap();
    let kept_thing = r["device"]["thingName"].as_str().unwrap();
    let arn = format!(
        "arn:aws:iot:{}:{}:cert/{kept_id}",
        testkit::REGION,
        testkit::ACCOUNT
    );
    testkit::jitr::assert_onboarded(&iot, kept_id, kept_thing, &arn).await;

    // The text form says the same, step by step.
    let o = d.smoke(&gateway.endpoint(), &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    eprintln!("{out}");
    for want in [
        "activated in ",
        "published on devices/",
        "certificate deleted",
        "ok\n",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_devices_and_tls_problems_fail_with_a_sentence_and_leave_nothing() {
    let d = Deployed::new("  subject_pattern: acme-[0-9]{4}\n  on_reject: revoke\n");
    let gateway = d.gateway();
    let iot = moto().iot().await;

    // The generated CN cannot match: --cn is required, and nothing was made.
    let o = d.smoke(&gateway.endpoint(), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--cn NAME") && err.contains("acme-[0-9]{4}"),
        "{err}"
    );
    assert!(gateway.connections().is_empty());

    // The wrong CA key, or a key variable that is not set: refused by flag, nothing made.
    let other = TestCa::new("Not the stage's CA");
    d.fixture.write("certs/other.key", other.key_pem());
    let other_key = d.fixture.path("certs/other.key");
    let root = d.fixture.path("certs/gateway-root.pem");
    let ep = gateway.endpoint();
    for (flag, value) in [
        ("--ca-key", other_key.to_str().unwrap()),
        ("--ca-key-env", "JITR_SMOKE_NO_SUCH_VAR"),
    ] {
        let o = d.run(&[
            "smoke",
            "--stage",
            "smoke",
            "--endpoint",
            &ep,
            "--trust-root",
            root.to_str().unwrap(),
            "--cn",
            "acme-0003",
            flag,
            value,
        ]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&format!("{flag} {value}")), "{err}");
    }
    assert!(gateway.connections().is_empty());

    // A CN the activator rejects (and revokes): the sentence says so; cleanup still runs.
    let o = d.smoke(
        &gateway.endpoint(),
        &["--cn", "acme-bad", "--json", "--timeout", "30"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let failure = r["failures"][0].as_str().unwrap();
    eprintln!("rejected: {failure}");
    assert!(
        failure.contains("rejected") && failure.contains("subject_pattern"),
        "{failure}"
    );
    assert_eq!(r["activated"], false);
    let id = r["device"]["certificateId"].as_str().unwrap();
    assert!(!certificate_exists(&iot, id).await, "certificate {id} left");
    assert_eq!(r["cleanup"]["certificateDeleted"], true, "{r}");
    assert!(!thing_exists(&iot, "acme-bad").await);

    // A trust root that did not sign the server's certificate: our side refuses at once.
    d.fixture
        .write("certs/other-root.pem", &TestCa::new("Other root").pem);
    let o = d.smoke_trusting(
        "certs/other-root.pem",
        &gateway.endpoint(),
        &["--cn", "acme-0001"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("is not trusted") && out.contains("--trust-root"),
        "{out}"
    );
    assert!(
        out.contains("FAILED: connecting failed: no TLS handshake"),
        "{out}"
    );
    eprintln!("wrong trust root:\n{out}");

    // No SNI (an IP address): the broker refuses the handshake; the sentence says why.
    let before = gateway.connections().len();
    let ip = format!("127.0.0.1:{}", gateway.port());
    let o = d.smoke(&ip, &["--cn", "acme-0002", "--timeout", "2"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("no SNI was sent"), "{out}");
    assert!(
        out.contains("FAILED: connecting failed: no TLS handshake"),
        "{out}"
    );
    eprintln!("no SNI:\n{out}");
    let conns = gateway.connections();
    assert!(conns.len() > before);
    assert!(conns[before..]
        .iter()
        .all(|c| matches!(c.outcome, Outcome::Handshake(_)) && c.sni.is_none()));
}
