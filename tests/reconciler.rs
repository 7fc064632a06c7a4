//! The activator binary (the `bootstrap` of the zip jitr-infra deploys) under the Lambda
//! Runtime API, against moto behind AWS IoT's rate quotas (testkit's `ThrottlingProxy`): the
//! sweep alone activates certificates whose events were lost, resuming across runs through
//! its SSM marker; several containers at once activate every certificate without failing
//! when AWS IoT throttles them; a duplicate event costs no AWS call.

use aws_sdk_iot::types::CertificateStatus;
use jitr_contract::rates::{ApiRates, IotApi};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use testkit::http::{forward, HttpRequest};
use testkit::jitr::{register_pending, registered_event};
use testkit::pki::TestCa;
use testkit::runtime::RuntimeHost;
use testkit::throttle::ThrottlingProxy;
use testkit::{moto, unique};

/// Our CA, registered with auto-registration, and the device policy.
struct Fleet {
    iot: aws_sdk_iot::Client,
    ca: TestCa,
    ca_id: String,
    policy: String,
}

impl Fleet {
    async fn new() -> Fleet {
        let iot = moto().iot().await;
        let ca = TestCa::new(&unique("Reconciler CA"));
        let (ca_id, policy) =
            testkit::jitr::register_ca_and_policy(&iot, &ca, "device-policy").await;
        Fleet {
            iot,
            ca,
            ca_id,
            policy,
        }
    }

    /// `n` devices registered PENDING (their events never sent): (id, ARN, CN).
    async fn pending(&self, prefix: &str, n: usize) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for _ in 0..n {
            let cn = unique(prefix);
            let (id, arn) = register_pending(&self.iot, &self.ca, &cn).await;
            out.push((id, arn, cn));
        }
        out
    }

    async fn status(&self, id: &str) -> CertificateStatus {
        self.iot
            .describe_certificate()
            .certificate_id(id)
            .send()
            .await
            .unwrap()
            .certificate_description()
            .unwrap()
            .status()
            .unwrap()
            .clone()
    }

    /// ACTIVE, with its Thing (named by the CN) and the device policy.
    async fn assert_onboarded(&self, id: &str, arn: &str, cn: &str) {
        testkit::jitr::assert_onboarded(&self.iot, id, cn, arn).await;
        let names = testkit::jitr::attached_policies(&self.iot, arn).await;
        assert_eq!(names, [self.policy.as_str()], "{cn}");
    }

    fn env(&self, endpoint: &str, extra: &[(&str, String)]) -> Vec<(String, String)> {
        let mut env = testkit::aws_env(endpoint);
        env.push(("JITR_CA_CERTIFICATE_ID".into(), self.ca_id.clone()));
        env.push(("JITR_DEVICE_POLICY_NAME".into(), self.policy.clone()));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        env
    }
}

/// Sets a certificate's creation date `seconds` in the past (moto_jitr's test hook).
fn backdate(certificate_id: &str, seconds: u64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let body = json!({"account": testkit::ACCOUNT, "region": testkit::REGION,
        "certificateId": certificate_id, "creationDate": now.as_secs() - seconds});
    let request = HttpRequest {
        method: "POST".into(),
        target: "/moto-api/jitr/iot-certificate-creation-date".into(),
        headers: BTreeMap::from([
            ("host".into(), moto().host_port().into()),
            ("content-type".into(), "application/json".into()),
        ]),
        body: body.to_string().into_bytes(),
    };
    let r = forward(moto().host_port(), &request).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// One SSM JSON-protocol call to moto (the suite has no SSM client of its own).
fn ssm(action: &str, body: Value) -> Value {
    let request = HttpRequest {
        method: "POST".into(),
        target: "/".into(),
        headers: BTreeMap::from([
            ("host".into(), moto().host_port().into()),
            ("content-type".into(), "application/x-amz-json-1.1".into()),
            ("x-amz-target".into(), format!("AmazonSSM.{action}")),
            (
                "authorization".into(),
                format!(
                    "AWS4-HMAC-SHA256 Credential=testing/20260101/{}/ssm/aws4_request, \
                     SignedHeaders=host, Signature=0",
                    testkit::REGION
                ),
            ),
        ]),
        body: body.to_string().into_bytes(),
    };
    let r = forward(moto().host_port(), &request).unwrap();
    assert_eq!(
        r.status,
        200,
        "{action}: {}",
        String::from_utf8_lossy(&r.body)
    );
    serde_json::from_slice(&r.body).unwrap()
}

fn marker(name: &str) -> String {
    ssm("GetParameter", json!({"Name": name}))["Parameter"]["Value"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A running `bootstrap` whose stdout (logs, EMF) is read as it comes, so a full pipe never
/// stalls it.
struct Container {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl Container {
    fn start(host: &RuntimeHost, env: &[(String, String)]) -> Container {
        let binary = testkit::lambda::unpack(
            jitr_infra::assets::activator().package,
            jitr_infra::assets::activator().zip,
        );
        let mut child = host.spawn(&binary, env);
        let out = Arc::new(Mutex::new(String::new()));
        let mut stdout = child.stdout.take().unwrap();
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Container { child, out }
    }

    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// The EMF documents written so far with the `[FunctionName]` dimension set.
    fn emf(&self) -> Vec<Value> {
        self.output()
            .lines()
            .filter(|l| l.contains("\"_aws\""))
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|d| d.get("Operation").is_none())
            .collect()
    }

    /// [`Container::emf`] once it holds `n` documents (each is written before its invocation
    /// answers, and read from the pipe a moment later).
    fn emf_of(&self, n: usize) -> Vec<Value> {
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let docs = self.emf();
            if docs.len() >= n || std::time::Instant::now() > give_up {
                return docs;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn answer(host: &RuntimeHost, id: &str, logs: &dyn Fn() -> String) -> Value {
    let r = host
        .wait_result(id, Duration::from_secs(120))
        .unwrap_or_else(|| panic!("no answer to {id}\n{}", logs()));
    r.result
        .unwrap_or_else(|e| panic!("{id} failed: {e}\n{}", logs()))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_alone_activates_pending_certificates_across_runs() {
    let f = Fleet::new().await;
    // Newest first: two too young for the grace period, five over it, one past the horizon.
    let beyond = f.pending("beyond", 1).await;
    let over = f.pending("lost", 5).await;
    let young = f.pending("young", 2).await;
    backdate(&beyond[0].0, 7200);
    for (i, (id, _, _)) in over.iter().enumerate() {
        backdate(id, 600 - i as u64);
    }
    let parameter = format!("/{}/sweep-marker", unique("jitr"));
    ssm(
        "PutParameter",
        json!({"Name": parameter, "Value": "-", "Type": "String"}),
    );
    let proxy = ThrottlingProxy::with_default_rates(moto().host_port());
    let host = RuntimeHost::start();
    let env = f.env(
        &proxy.url(),
        &[
            ("JITR_SWEEP_GRACE_SECONDS", "60".into()),
            ("JITR_SWEEP_HORIZON_SECONDS", "3600".into()),
            ("JITR_SWEEP_MAX_PAGES", "2".into()),
            ("JITR_SWEEP_PAGE_SIZE", "2".into()),
            ("JITR_SWEEP_MARKER_PARAMETER", parameter.clone()),
        ],
    );
    let container = Container::start(&host, &env);
    let logs = || container.output();
    let sweep = json!({"kind": "jitr-sweep", "version": 1, "trigger": "schedule"});

    // Run 1: [young, young], [lost, lost]: out of pages, the marker is kept.
    let first = answer(
        &host,
        &host.invoke(sweep.clone(), Duration::from_secs(60)),
        &logs,
    );
    assert_eq!(first["pages"], 2, "{first}");
    assert_eq!(first["listed"], 4);
    assert_eq!(first["pending"], 4);
    assert_eq!(first["overGrace"], 2);
    assert_eq!(first["activated"], 2);
    assert_eq!(first["complete"], false);
    assert_eq!(first["markerIn"], "-");
    let kept = first["markerOut"].as_str().unwrap().to_string();
    assert_ne!(kept, "-");
    assert_eq!(marker(&parameter), kept);

    // Run 2 goes on from there: [lost, lost], [lost, beyond]: the horizon ends it.
    let second = answer(
        &host,
        &host.invoke(sweep.clone(), Duration::from_secs(60)),
        &logs,
    );
    assert_eq!(second["markerIn"], json!(kept), "{second}");
    assert_eq!(second["activated"], 3);
    assert_eq!(
        second["listed"], 3,
        "the certificate past the horizon is not counted"
    );
    assert_eq!(second["complete"], true);
    assert_eq!(second["markerOut"], "-");
    assert_eq!(marker(&parameter), "-");
    assert!(second["oldestPendingAgeSeconds"].as_u64().unwrap() >= 590);

    for (id, arn, cn) in &over {
        f.assert_onboarded(id, arn, cn).await;
    }
    for (id, _, cn) in young.iter().chain(&beyond) {
        assert_eq!(
            f.status(id).await,
            CertificateStatus::PendingActivation,
            "{cn}"
        );
    }

    // A marker AWS no longer accepts restarts the run at the newest certificate.
    ssm(
        "PutParameter",
        json!({"Name": parameter, "Value": "bm90LWEtbWFya2Vy", "Type": "String", "Overwrite": true}),
    );
    let third = answer(&host, &host.invoke(sweep, Duration::from_secs(60)), &logs);
    assert!(
        third["errors"][0]
            .as_str()
            .unwrap()
            .contains("marker refused"),
        "{third}"
    );
    assert_eq!(third["pending"], 2, "only the young ones are still pending");
    assert_eq!(third["activated"], 0);

    // Each run wrote its sweep metrics.
    let docs = container.emf_of(3);
    let sweeps: Vec<&Value> = docs
        .iter()
        .filter(|d| d.get("SweepListed").is_some())
        .collect();
    assert_eq!(sweeps.len(), 3, "{docs:?}");
    assert_eq!(sweeps[0]["SweepActivated"], 2);
    assert_eq!(sweeps[1]["SweepComplete"], 1);
    // The second run settled the three it found over the grace: nothing is left stuck, so the
    // alarm's gauge is 0 (it counts what a run could not settle, not what it caught).
    assert_eq!(sweeps[1]["PendingOverGrace"], 0);
    // The sweep's calls were paced and counted like an event's.
    let stats = proxy.stats();
    assert!(stats[&IotApi::ListCertificatesByCA].forwarded >= 5);
    assert_eq!(stats[&IotApi::UpdateCertificate].forwarded, 5);
}

/// CA rotation: one activator serves two CAs; the sweep visits both within one page budget,
/// and a run that runs out of pages in the second CA resumes there (`{caId: marker}`).
#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_visits_every_ca_within_one_page_budget() {
    let f = Fleet::new().await;
    let b = TestCa::new(&unique("Reconciler CA B"));
    let (b_id, _) = testkit::jitr::register_ca_and_policy(&f.iot, &b, "unused-policy").await;
    let lost_a = f.pending("lost-a", 3).await;
    let mut lost_b = Vec::new();
    for _ in 0..3 {
        let cn = unique("lost-b");
        let (id, arn) = register_pending(&f.iot, &b, &cn).await;
        lost_b.push((id, arn, cn));
    }
    for (id, _, _) in lost_a.iter().chain(&lost_b) {
        backdate(id, 600);
    }
    let parameter = format!("/{}/sweep-marker", unique("jitr"));
    ssm(
        "PutParameter",
        json!({"Name": parameter, "Value": "-", "Type": "String"}),
    );
    let host = RuntimeHost::start();
    let mut env = f.env(
        moto().endpoint(),
        &[
            ("JITR_SWEEP_GRACE_SECONDS", "60".into()),
            ("JITR_SWEEP_HORIZON_SECONDS", "3600".into()),
            ("JITR_SWEEP_MAX_PAGES", "3".into()),
            ("JITR_SWEEP_PAGE_SIZE", "2".into()),
            ("JITR_SWEEP_MARKER_PARAMETER", parameter.clone()),
        ],
    );
    for (k, v) in env.iter_mut() {
        if k == "JITR_CA_CERTIFICATE_ID" {
            *v = format!("{},{b_id}", f.ca_id);
        }
    }
    let container = Container::start(&host, &env);
    let logs = || container.output();
    let sweep = json!({"kind": "jitr-sweep", "version": 1, "trigger": "schedule"});

    // Run 1: A's two pages (3 certificates, done), then B's first page: out of pages in B.
    let first = answer(
        &host,
        &host.invoke(sweep.clone(), Duration::from_secs(60)),
        &logs,
    );
    assert_eq!(first["pages"], 3, "{first}");
    assert_eq!(first["listed"], 5, "{first}");
    assert_eq!(first["activated"], 5, "{first}");
    assert_eq!(first["complete"], false);
    let kept: BTreeMap<String, String> =
        serde_json::from_str(first["markerOut"].as_str().unwrap()).unwrap();
    assert_eq!(
        kept.keys().collect::<Vec<_>>(),
        [&b_id],
        "resumes in B: {first}"
    );
    assert_eq!(marker(&parameter), first["markerOut"].as_str().unwrap());

    // Run 2: B from where run 1 stopped (its last certificate), then A again from its newest.
    let second = answer(&host, &host.invoke(sweep, Duration::from_secs(60)), &logs);
    assert_eq!(second["activated"], 1, "{second}");
    assert_eq!(second["listed"], 4, "{second}");
    assert_eq!(second["complete"], true, "{second}");
    assert_eq!(marker(&parameter), "-");
    for (id, arn, cn) in lost_a.iter().chain(&lost_b) {
        f.assert_onboarded(id, arn, cn).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_containers_activate_every_certificate_without_failing() {
    let f = Fleet::new().await;
    let devices = f.pending("burst", 12).await;
    // The account allows 3 calls a second of each operation; the stage claims twice that,
    // so the containers' buckets overshoot and AWS IoT's throttling has to be absorbed.
    let real = 3.0;
    let rates: Vec<(IotApi, f64)> = IotApi::ALL.iter().map(|op| (*op, real)).collect();
    let proxy = ThrottlingProxy::start(moto().host_port(), &rates);
    let claimed = IotApi::ALL
        .iter()
        .fold(ApiRates::default(), |r, op| r.with(*op, 2.0 * real));
    let host = RuntimeHost::start();
    let env = f.env(
        &proxy.url(),
        &[
            ("JITR_API_RATES", claimed.to_env()),
            ("JITR_CONCURRENCY", "3".into()),
        ],
    );
    let containers: Vec<Container> = (0..3).map(|_| Container::start(&host, &env)).collect();
    let logs = || {
        containers
            .iter()
            .map(Container::output)
            .collect::<Vec<_>>()
            .join("\n")
    };
    // Every event twice, as a reconnecting device re-publishes it.
    let mut requests = Vec::new();
    for _ in 0..2 {
        for (id, _, _) in &devices {
            requests.push(host.invoke(registered_event(id, &f.ca_id), Duration::from_secs(120)));
        }
    }
    let answers: Vec<Value> = requests.iter().map(|r| answer(&host, r, &logs)).collect();
    let activated = answers
        .iter()
        .filter(|a| a["outcome"] == "activated")
        .count();
    assert_eq!(activated, devices.len(), "{answers:?}");
    assert!(answers
        .iter()
        .all(|a| a["outcome"] == "activated" || a["outcome"] == "already-active"));
    for (id, arn, cn) in &devices {
        f.assert_onboarded(id, arn, cn).await;
    }
    let stats = proxy.stats();
    eprintln!("AWS IoT calls (forwarded, throttled): {stats:?}");
    let throttled: u64 = stats.values().map(|s| s.throttled).sum();
    assert!(throttled > 0, "the claimed rates overshoot: {stats:?}");
    // Each container counted what AWS IoT refused it, per operation too.
    // One document per invocation, each written before its answer and read a moment later.
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    let docs = loop {
        let docs: Vec<Value> = containers.iter().flat_map(Container::emf).collect();
        if docs.len() >= requests.len() || std::time::Instant::now() > give_up {
            break docs;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(docs.len(), requests.len());
    let counted: u64 = docs
        .iter()
        .map(|d| d["IotThrottled"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, throttled, "{stats:?}");
    assert!(
        !logs().contains("\"Failed\":1"),
        "no invocation failed:\n{}",
        logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_event_is_answered_from_memory_without_any_aws_call() {
    let f = Fleet::new().await;
    let device = f.pending("twice", 1).await.remove(0);
    let proxy = ThrottlingProxy::with_default_rates(moto().host_port());
    let host = RuntimeHost::start();
    let container = Container::start(&host, &f.env(&proxy.url(), &[]));
    let logs = || container.output();
    let event = registered_event(&device.0, &f.ca_id);
    let first = answer(
        &host,
        &host.invoke(event.clone(), Duration::from_secs(30)),
        &logs,
    );
    assert_eq!(first["outcome"], "activated", "{first}");
    let calls = |p: &ThrottlingProxy| -> u64 {
        p.stats().values().map(|s| s.forwarded + s.throttled).sum()
    };
    let before = calls(&proxy);
    assert!(before >= 5, "the activation's calls went through the proxy");
    let again = answer(&host, &host.invoke(event, Duration::from_secs(30)), &logs);
    assert_eq!(again["outcome"], "already-active", "{again}");
    assert_eq!(again["fromMemory"], true);
    assert_eq!(calls(&proxy), before, "no AWS IoT call for the duplicate");
    let docs = container.emf_of(2);
    let last = docs.last().unwrap();
    assert_eq!(last["DuplicateSkipped"], 1, "{last}");
    assert_eq!(last["IotCalls"], 0);
    f.assert_onboarded(&device.0, &device.1, &device.2).await;
}
