//! Benchmark of the bundled activator as Lambda runs it: the real `bootstrap` under a Lambda
//! Runtime API host on loopback, talking to moto.
//!
//! Prints cold start (process start to first answer), peak RSS, CPU per event in a warm
//! process, and zip sizes, against the targets. Run with `scripts/bench-lambdas`.

use aws_sdk_iot::types::CertificateStatus;
use jitr_infra::assets;
use serde_json::json;
use std::time::{Duration, Instant};
use testkit::pki::TestCa;
use testkit::runtime::RuntimeHost;
use testkit::{moto, unique};

const COLD_RUNS: usize = 25;
const WARM_EVENTS: usize = 200;

struct Setup {
    iot: aws_sdk_iot::Client,
    ca: TestCa,
    ca_id: String,
    env: Vec<(String, String)>,
}

impl Setup {
    async fn pending(&self) -> String {
        self.iot
            .register_certificate()
            .certificate_pem(self.ca.issue(&unique("bench")))
            .ca_certificate_pem(&self.ca.pem)
            .status(CertificateStatus::PendingActivation)
            .send()
            .await
            .unwrap()
            .certificate_id()
            .unwrap()
            .to_string()
    }

    fn event(&self, id: &str) -> serde_json::Value {
        json!({"certificateId": id, "caCertificateId": self.ca_id, "timestamp": 1764000000000u64,
               "certificateStatus": "PENDING_ACTIVATION", "awsAccountId": testkit::ACCOUNT})
    }
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time the process has spent on a CPU, from the scheduler (nanosecond resolution).
fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// An AWS IoT endpoint that answers the activator's six calls at once, with canned responses
/// shaped like the real API's: what the cold start costs when AWS itself costs nothing.
/// Every operation at the highest rate a stage may set.
fn unpaced() -> String {
    let rates = jitr_contract::rates::IotApi::ALL
        .iter()
        .fold(jitr_contract::rates::ApiRates::default(), |r, op| {
            r.with(*op, *jitr_contract::rates::RATE_RANGE.end())
        });
    rates.to_env()
}

/// Reads a function's stdout (logs, one EMF document per invocation and per operation called)
/// and drops it, so a full pipe never stalls the function.
fn drain(child: &mut std::process::Child) {
    let mut out = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
}

fn instant_iot(ca: &TestCa, device_pem: &str, device_id: &str) -> testkit::http::HttpServer {
    use testkit::http::{HttpRequest, HttpResponse};
    let ca_pem = ca.pem.clone();
    let device_pem = device_pem.to_string();
    let device_id = device_id.to_string();
    testkit::http::HttpServer::start(std::sync::Arc::new(move |req: HttpRequest| {
        let arn = |kind: &str, id: &str| format!("arn:aws:iot:eu-west-1:123456789012:{kind}/{id}");
        let body = match (req.method.as_str(), req.path()) {
            ("GET", p) if p.starts_with("/certificates/") => json!({"certificateDescription": {
                "certificateArn": arn("cert", &device_id), "certificateId": device_id,
                "status": "PENDING_ACTIVATION", "certificatePem": device_pem}}),
            ("GET", p) if p.starts_with("/cacertificate/") => json!({"certificateDescription": {
                "certificateArn": arn("cacert", "x"), "certificatePem": ca_pem, "status": "ACTIVE"}}),
            ("POST", p) if p.starts_with("/things/") => {
                let name = p.trim_start_matches("/things/");
                json!({"thingName": name, "thingArn": arn("thing", name), "thingId": "1"})
            }
            _ => json!({}),
        };
        HttpResponse::json(200, &body)
    }))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    // The Lambdas this jitr-infra embeds, as it deploys them.
    let activator = assets::activator();
    let provider = assets::ca_provider();
    let activator_binary = testkit::lambda::unpack(activator.package, activator.zip);

    let moto = moto();
    let iot = moto.iot().await;
    let ca = TestCa::new(&unique("Bench CA"));
    let (ca_id, policy) = testkit::jitr::register_ca_and_policy(&iot, &ca, "bench-policy").await;
    let mut env = moto.aws_env();
    env.push(("JITR_CA_CERTIFICATE_ID".into(), ca_id.clone()));
    env.push(("JITR_DEVICE_POLICY_NAME".into(), policy));
    // The function's own cost, not the account's quotas: rates no event here can reach (the
    // activator paces each operation at its quota; scripts/bench-burst measures that).
    env.push(("JITR_API_RATES".into(), unpaced()));
    let setup = Setup {
        iot,
        ca,
        ca_id,
        env,
    };

    // Cold starts: a new process per run, the event already queued, as Lambda does it.
    let mut cold_ms = Vec::new();
    let mut init_ms = Vec::new();
    let mut rss_kib = Vec::new();
    for _ in 0..COLD_RUNS {
        let id = setup.pending().await;
        let host = RuntimeHost::start();
        let request = host.invoke(setup.event(&id), Duration::from_secs(30));
        let started = Instant::now();
        let mut child = host.spawn(&activator_binary, &setup.env);
        drain(&mut child);
        let answer = host
            .wait_result(&request, Duration::from_secs(30))
            .expect("an answer");
        let outcome = answer.result.as_ref().expect("success")["outcome"].clone();
        assert_eq!(outcome, "activated");
        cold_ms.push((answer.answered_at - started).as_secs_f64() * 1000.0);
        init_ms.push((host.first_poll().unwrap() - started).as_secs_f64() * 1000.0);
        rss_kib.push(status_kib(child.id(), "VmHWM:"));
        child.kill().ok();
        child.wait().ok();
    }

    // The same cold start against an IoT endpoint that answers instantly: our own cost.
    let mut stub_ms = Vec::new();
    {
        let cn = unique("stub-device");
        let pem = setup.ca.issue(&cn);
        let id = jitr_lambda_common::pki::Certificate::from_pem(&pem)
            .unwrap()
            .aws_iot_id();
        let stub = instant_iot(&setup.ca, &pem, &id);
        let mut env = testkit::aws_env(&stub.url());
        env.push(("JITR_CA_CERTIFICATE_ID".into(), setup.ca_id.clone()));
        env.push(("JITR_DEVICE_POLICY_NAME".into(), "p".into()));
        for _ in 0..COLD_RUNS {
            let host = RuntimeHost::start();
            let request = host.invoke(setup.event(&id), Duration::from_secs(30));
            let started = Instant::now();
            let mut child = host.spawn(&activator_binary, &env);
            drain(&mut child);
            let answer = host
                .wait_result(&request, Duration::from_secs(30))
                .expect("an answer");
            assert_eq!(
                answer.result.as_ref().expect("success")["outcome"],
                "activated"
            );
            stub_ms.push((answer.answered_at - started).as_secs_f64() * 1000.0);
            child.kill().ok();
            child.wait().ok();
        }
        stub_ms.sort_by(f64::total_cmp);
    }

    // Warm: one process, many events; CPU time per event from the scheduler.
    let ids = {
        let mut ids = Vec::new();
        for _ in 0..WARM_EVENTS {
            ids.push(setup.pending().await);
        }
        ids
    };
    let host = RuntimeHost::start();
    let mut child = host.spawn(&activator_binary, &setup.env);
    drain(&mut child);
    let first = host.invoke(setup.event(&setup.pending().await), Duration::from_secs(30));
    host.wait_result(&first, Duration::from_secs(30))
        .expect("warm-up");
    let cpu_before = cpu_ns(child.id());
    let wall = Instant::now();
    for id in &ids {
        let r = host.invoke(setup.event(id), Duration::from_secs(30));
        let answer = host
            .wait_result(&r, Duration::from_secs(30))
            .expect("an answer");
        assert!(answer.result.is_ok(), "{answer:?}");
    }
    let wall_per_event = wall.elapsed().as_secs_f64() * 1000.0 / WARM_EVENTS as f64;
    let cpu_per_event = (cpu_ns(child.id()) - cpu_before) as f64 / 1e6 / WARM_EVENTS as f64;
    let warm_rss = status_kib(child.id(), "VmHWM:");
    child.kill().ok();
    child.wait().ok();

    cold_ms.sort_by(f64::total_cmp);
    init_ms.sort_by(f64::total_cmp);
    rss_kib.sort();
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("activator benchmark (real bootstrap under a Runtime API host, moto on loopback)");
    println!("  each invocation: DescribeCertificate, [DescribeCACertificate on cold start],");
    println!("  CreateThing, AttachThingPrincipal, AttachPolicy, UpdateCertificate");
    println!();
    println!(
        "{:<34} {:>10} {:>10}   python/boto3 blog lambda",
        "metric", "value", "target"
    );
    println!(
        "{:<34} {:>7.1} ms {:>7} ms   500 ms",
        "cold start, median (n=25)",
        percentile(&cold_ms, 0.5),
        25
    );
    println!(
        "{:<34} {:>7.1} ms",
        "cold start, p90",
        percentile(&cold_ms, 0.9)
    );
    println!(
        "{:<34} {:>7.1} ms",
        "  of which init (to first /next)",
        percentile(&init_ms, 0.5)
    );
    println!(
        "{:<34} {:>7.1} ms {:>7} ms",
        "cold start, instant IoT (median)",
        percentile(&stub_ms, 0.5),
        25
    );
    println!(
        "{:<34} {:>6.1} MiB {:>6} MiB   48 MiB",
        "peak RSS, cold (max of runs)",
        mib(*rss_kib.last().unwrap()),
        15
    );
    println!(
        "{:<34} {:>6.1} MiB {:>6} MiB",
        "peak RSS, warm after 200 events",
        mib(warm_rss),
        15
    );
    println!(
        "{:<34} {:>7.2} ms {:>10}   6.85 ms",
        "client CPU per event (warm)", cpu_per_event, "-"
    );
    println!(
        "{:<34} {:>7.2} ms",
        "wall per event incl. moto (warm)", wall_per_event
    );
    println!(
        "{:<34} {:>6.2} MiB {:>6} MiB",
        "activator zip",
        activator.zip.len() as f64 / 1048576.0,
        6
    );
    println!(
        "{:<34} {:>6.2} MiB {:>6} MiB",
        "ca-provider zip",
        provider.zip.len() as f64 / 1048576.0,
        6
    );
    println!("activator zip sha256 {}", activator.sha256);
    println!("ca-provider zip sha256 {}", provider.sha256);
}
