//! A factory batch at AWS IoT's real rates: several hundred devices whose registered events
//! each arrive three times (a pending device re-publishes it on every reconnect), through the
//! real activator `bootstrap` under Lambda's asynchronous invocation (`testkit::lambda_async`:
//! the stack's reserved concurrency, Lambda's retries with compressed delays, the on-failure
//! queue), against moto behind `testkit::throttle::ThrottlingProxy` at AWS's default quotas.
//! Nothing may be lost: every certificate ends ACTIVE with its Thing and policy, the failure
//! queue is empty, no invocation fails, and the calls stay near the minimum the batch needs.
//!
//! `bench_burst` (ignored; `scripts/bench-burst`) runs a larger batch and prints how close
//! the sustained rate comes to the quota-bound optimum.

use aws_sdk_iot::error::ProvideErrorMetadata;
use jitr_contract::activator::{ActivatorConfig, RejectAction, ThingNameSource};
use jitr_contract::rates::{reservation_for, Capacity, IotApi, RateConfig, Workload};
use jitr_infra::assets;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::lambda_async::{function_env, AsyncConfig, AsyncLambda, AsyncStats};
use testkit::pki::TestCa;
use testkit::sqs::Sqs;
use testkit::throttle::{Fault, OpStats, ThrottlingProxy};
use testkit::{moto, unique};

/// Events per device: the first, then two reconnects.
const EVENTS_PER_DEVICE: u32 = 3;

/// The stack's activator settings (a Thing per device, no group).
fn workload(events_per_device: f64) -> Workload {
    Workload {
        create_thing: true,
        thing_group: false,
        events_per_device,
    }
}

/// The reserved concurrency the stack takes at AWS's default rates.
fn reserved_concurrency() -> u32 {
    reservation_for(&Capacity::of(&workload(1.0), IotApi::default_rate))
}

struct Device {
    id: String,
    arn: String,
    cn: String,
}

/// A CA with auto-registration, the device policy, and `n` device certificates registered
/// PENDING_ACTIVATION directly in moto (not through the proxy: setting up is not counted).
struct Fleet {
    ca_id: String,
    policy: String,
    devices: Vec<Device>,
}

impl Fleet {
    async fn register(iot: &aws_sdk_iot::Client, n: usize) -> Fleet {
        let ca = Arc::new(TestCa::new(&unique("Burst CA")));
        let (ca_id, policy) = testkit::jitr::register_ca_and_policy(iot, &ca, "burst-policy").await;
        let prefix = unique("burst");
        let devices = in_parallel(n, 8, move |i| {
            let (iot, ca, cn) = (iot.clone(), ca.clone(), format!("{prefix}-{i:05}"));
            async move {
                let (id, arn) = testkit::jitr::register_pending(&iot, &ca, &cn).await;
                Device { id, arn, cn }
            }
        })
        .await;
        Fleet {
            ca_id,
            policy,
            devices,
        }
    }

    fn activator(&self) -> ActivatorConfig {
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

    fn event(&self, device: &Device) -> Value {
        testkit::jitr::registered_event(&device.id, &self.ca_id)
    }
}

/// Runs `task(0..n)` with at most `width` at a time; the results in index order.
async fn in_parallel<T, F, Fut>(n: usize, width: usize, task: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for i in 0..n {
        if set.len() >= width {
            let (j, t) = set.join_next().await.unwrap().unwrap();
            out[j] = Some(t);
        }
        let fut = task(i);
        set.spawn(async move { (i, fut.await) });
    }
    while let Some(done) = set.join_next().await {
        let (j, t) = done.unwrap();
        out[j] = Some(t);
    }
    out.into_iter().map(Option::unwrap).collect()
}

/// A reconnect model: device `i`'s first event at a random time within `spread`, each
/// repeat 1–4 s after the one before. Deterministic for a seed.
fn schedule(fleet: &Fleet, lambda: &AsyncLambda, spread: Duration, seed: u64) {
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % 1_000_000) as f64 / 1_000_000.0
    };
    for device in &fleet.devices {
        let mut at = spread.mul_f64(next());
        for _ in 0..EVENTS_PER_DEVICE {
            lambda.invoke_after(fleet.event(device), at);
            at += Duration::from_secs_f64(1.0 + 3.0 * next());
        }
    }
}

/// The devices not onboarded: not ACTIVE, without their Thing as the only principal, or
/// without the policy (one line each).
async fn not_onboarded(iot: &aws_sdk_iot::Client, fleet: &Fleet) -> Vec<String> {
    let checks: Vec<(String, String, String)> = fleet
        .devices
        .iter()
        .map(|d| (d.id.clone(), d.arn.clone(), d.cn.clone()))
        .collect();
    let checks = Arc::new(checks);
    let policy = fleet.policy.clone();
    let found = in_parallel(checks.len(), 8, |i| {
        let (iot, checks, policy) = (iot.clone(), checks.clone(), policy.clone());
        async move {
            let (id, arn, thing) = &checks[i];
            let status = iot.describe_certificate().certificate_id(id).send().await;
            let status = status
                .map_err(|e| e.into_service_error().code().map(str::to_string))
                .map(|d| {
                    d.certificate_description()
                        .and_then(|c| c.status().cloned())
                        .map(|s| s.as_str().to_string())
                });
            let principals = iot.list_thing_principals().thing_name(thing).send().await;
            let principals = principals
                .map(|p| p.principals().to_vec())
                .map_err(|e| e.into_service_error().code().map(str::to_string));
            let policies = iot.list_attached_policies().target(arn).send().await;
            let attached = policies.is_ok_and(|p| {
                p.policies()
                    .iter()
                    .any(|q| q.policy_name() == Some(&policy))
            });
            match (status, principals) {
                (Ok(Some(s)), Ok(p)) if s == "ACTIVE" && p == [arn.clone()] && attached => None,
                (s, p) => Some(format!(
                    "{id}: status {s:?}, principals {p:?}, policy {attached}"
                )),
            }
        }
    })
    .await;
    found.into_iter().flatten().collect()
}

/// The calls the batch needs at least, per operation: `Workload::calls_per_device` times the
/// devices (every event costs a DescribeCertificate unless answered from memory).
fn minimum_calls(devices: usize) -> BTreeMap<IotApi, f64> {
    let w = workload(f64::from(EVENTS_PER_DEVICE));
    IotApi::ALL
        .iter()
        .map(|op| (*op, w.calls_per_device(*op) * devices as f64))
        .filter(|(_, n)| *n > 0.0)
        .collect()
}

/// A batch's figures, printed by the test and the benchmark.
struct Figures {
    devices: usize,
    /// First event accepted to the last activation.
    seconds: f64,
    /// First event accepted to the last event settled (duplicates included).
    settled_seconds: f64,
    optimum: Capacity,
    calls: BTreeMap<IotApi, OpStats>,
    minimum: BTreeMap<IotApi, f64>,
    lambda: AsyncStats,
    lost: usize,
    queue_depth: (u64, u64),
    absorbed_throttles: f64,
}

impl Figures {
    /// Devices activated per second, from the first event to the last activation.
    fn devices_per_second(&self) -> f64 {
        (self.devices - self.lost) as f64 / self.seconds
    }

    /// Requests the activator sent of `op` (forwarded or refused).
    fn sent(&self, op: IotApi) -> u64 {
        self.calls
            .get(&op)
            .map_or(0, |s| s.forwarded + s.throttled + s.faulted)
    }

    /// Per operation the batch needs: sent / minimum.
    fn ratios(&self) -> BTreeMap<IotApi, f64> {
        self.minimum
            .iter()
            .map(|(op, min)| (*op, self.sent(*op) as f64 / min))
            .collect()
    }

    fn print(&self) {
        let share = 100.0 * self.devices_per_second() / self.optimum.devices_per_second;
        let minimum: f64 = self.minimum.values().sum();
        let sent: u64 = IotApi::ALL.iter().map(|op| self.sent(*op)).sum();
        let throttled: u64 = self.calls.values().map(|s| s.throttled).sum();
        println!(
            "burst: {} devices x {EVENTS_PER_DEVICE} events in {:.1} s: {:.2} devices/s sustained \
             of {:.2} optimum ({share:.0} %, bound {} {}/s)",
            self.devices,
            self.seconds,
            self.devices_per_second(),
            self.optimum.devices_per_second,
            self.optimum.bound.name(),
            self.optimum.bound_rate,
        );
        println!(
            "every event settled after {:.1} s: {:.2} devices/s with the duplicates' calls",
            self.settled_seconds,
            (self.devices - self.lost) as f64 / self.settled_seconds,
        );
        // The stricter yardstick: no design can beat the quotas with every duplicate free.
        let best = Capacity::of(&workload(1.0), IotApi::default_rate);
        println!(
            "against the best any design could reach (every duplicate free): {:.2} devices/s, \
             bound {} {}/s: {:.0} %",
            best.devices_per_second,
            best.bound.name(),
            best.bound_rate,
            100.0 * self.devices_per_second() / best.devices_per_second,
        );
        println!(
            "calls per activation: {:.2} (minimum {:.2}, {:.2}x); throttled answers {throttled}; \
             throttles absorbed by the activator (EMF IotThrottled) {}",
            sent as f64 / self.devices as f64,
            minimum / self.devices as f64,
            sent as f64 / minimum,
            self.absorbed_throttles,
        );
        for op in IotApi::ALL {
            let s = self.calls.get(&op).copied().unwrap_or_default();
            let min = self.minimum.get(&op).copied().unwrap_or(0.0);
            println!(
                "  {:<22} forwarded {:>6} throttled {:>6} minimum {:>6}",
                op.name(),
                s.forwarded,
                s.throttled,
                min
            );
        }
        let l = &self.lambda;
        println!(
            "lambda: {} events, {} invocations, function errors {:?}, attempts {:?}, \
             Lambda throttles {} (longest wait {:.1} s), peak concurrency {}; lost activations {}; \
             failure queue {:?}",
            l.enqueued,
            l.invocations,
            l.function_errors,
            l.attempts,
            l.throttles,
            l.max_queue_wait.as_secs_f64(),
            l.peak_concurrency,
            self.lost,
            self.queue_depth,
        );
    }
}

/// Registers `n` devices, delivers each one's event three times through the harness at the
/// default rates, waits for the queue to drain, and measures.
async fn run_batch(n: usize, spread: Duration, drain: Duration) -> (Figures, Vec<String>) {
    let moto = moto();
    let iot = moto.iot().await;
    let fleet = Fleet::register(&iot, n).await;
    let proxy = ThrottlingProxy::with_default_rates(moto.host_port());
    let sqs = Sqs::new(moto.endpoint());
    let queue = sqs.create_queue(&unique("burst-failures")).unwrap();
    let r = reserved_concurrency();
    let rates = RateConfig {
        concurrency: r,
        ..RateConfig::default()
    };
    let env = function_env(&proxy.url(), &fleet.activator(), &rates);
    let config = AsyncConfig {
        on_failure: Some((sqs.clone(), queue.clone())),
        ..AsyncConfig::new(&unique("burst-activator"), r as usize)
    };
    let lambda = AsyncLambda::start(&activator_bootstrap(), &env, config);
    schedule(&fleet, &lambda, spread, 0x5eed_0000 + n as u64);
    let drained = lambda.wait_idle(drain);
    let stats = lambda.stats();
    let problems = not_onboarded(&iot, &fleet).await;
    let start = stats.first_enqueued.unwrap_or_else(Instant::now);
    let last_activated = stats
        .results
        .values()
        .flatten()
        .filter(|a| a.value["outcome"] == "activated")
        .map(|a| a.at)
        .max()
        .unwrap_or(start);
    let figures = Figures {
        devices: n,
        seconds: last_activated
            .duration_since(start)
            .as_secs_f64()
            .max(0.001),
        settled_seconds: stats
            .last_finished
            .map_or(0.0, |t| t.duration_since(start).as_secs_f64())
            .max(0.001),
        optimum: Capacity::of(
            &workload(f64::from(EVENTS_PER_DEVICE)),
            IotApi::default_rate,
        ),
        calls: proxy.stats(),
        minimum: minimum_calls(n),
        absorbed_throttles: lambda.emf_sum("IotThrottled"),
        lambda: stats,
        lost: problems.len(),
        queue_depth: sqs.depth(&queue).unwrap(),
    };
    assert!(drained, "the queue did not drain in {drain:?}");
    (figures, problems)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_pending_devices_is_activated_at_the_default_quotas_with_nothing_lost() {
    let (f, problems) = run_batch(300, Duration::from_secs(5), Duration::from_secs(150)).await;
    f.print();
    assert!(
        problems.is_empty(),
        "{} devices not onboarded, e.g. {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    assert_eq!(f.queue_depth, (0, 0), "the failure queue is not empty");
    assert!(
        f.lambda.failure_records.is_empty(),
        "{:?}",
        f.lambda.failure_records
    );
    assert_eq!(
        f.lambda.function_errors,
        BTreeMap::new(),
        "no invocation may fail (throttling least of all)"
    );
    let answered: usize = f.lambda.results.values().map(Vec::len).sum();
    assert_eq!(
        answered,
        300 * EVENTS_PER_DEVICE as usize,
        "every event answered"
    );
    for (op, ratio) in f.ratios() {
        assert!(
            ratio <= 1.2,
            "{}: {} calls, {:.2}x the minimum {}",
            op.name(),
            f.sent(op),
            ratio,
            f.minimum[&op]
        );
    }
}

/// The harness itself, with the real activator: a function error is retried twice (three
/// attempts, as Lambda's `MaximumRetryAttempts` 2), then its invocation record, in AWS's
/// shape, lands in the failure queue; concurrency never exceeds R.
#[tokio::test(flavor = "multi_thread")]
async fn the_harness_retries_function_errors_then_records_them_as_lambda_does() {
    let moto = moto();
    let iot = moto.iot().await;
    let fleet = Fleet::register(&iot, 3).await;
    let proxy = ThrottlingProxy::start(moto.host_port(), &[]);
    let failing = &fleet.devices[0];
    proxy.set_fault(Fault::Certificate(failing.id.clone()), true);
    let sqs = Sqs::new(moto.endpoint());
    let queue = sqs.create_queue(&unique("harness-failures")).unwrap();
    let env = function_env(&proxy.url(), &fleet.activator(), &RateConfig::default());
    let name = unique("harness-activator");
    let config = AsyncConfig {
        on_failure: Some((sqs.clone(), queue.clone())),
        timeout: Duration::from_secs(5),
        ..AsyncConfig::new(&name, 2)
    };
    let lambda = AsyncLambda::start(&activator_bootstrap(), &env, config);
    for device in &fleet.devices {
        lambda.invoke(fleet.event(device));
    }
    assert!(lambda.wait_idle(Duration::from_secs(60)), "not drained");
    let stats = lambda.stats();
    let logs = lambda.logs().join("\n");
    assert_eq!(
        stats.function_errors,
        BTreeMap::from([("AwsIotError".to_string(), 3)]),
        "{stats:?}\n{logs}"
    );
    assert_eq!(stats.invocations, 5, "three attempts and two successes");
    assert!(stats.peak_concurrency <= 2);
    assert_eq!(stats.attempts, BTreeMap::from([(1, 2), (3, 1)]));
    for device in &fleet.devices[1..] {
        assert_eq!(stats.results[&device.id][0].value["outcome"], "activated");
    }
    let records = sqs.receive(&queue, 10).unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["version"], "1.0");
    assert!(
        record["timestamp"].as_str().unwrap().ends_with('Z'),
        "{record}"
    );
    let context = &record["requestContext"];
    assert_eq!(context["condition"], "RetriesExhausted");
    assert_eq!(context["approximateInvokeCount"], 3);
    let arn = format!(
        "arn:aws:lambda:{}:{}:function:{name}:$LATEST",
        testkit::REGION,
        testkit::ACCOUNT
    );
    assert_eq!(context["functionArn"], arn);
    assert!(!context["requestId"].as_str().unwrap().is_empty());
    assert_eq!(record["requestPayload"], fleet.event(failing));
    assert_eq!(
        record["responseContext"],
        serde_json::json!({"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"})
    );
    assert_eq!(
        record["responsePayload"]["errorType"], "AwsIotError",
        "{record}"
    );
    assert!(proxy.stats()[&IotApi::DescribeCertificate].faulted >= 3);
}

/// A function that outlives its timeout fails (`Sandbox.Timedout`) and its container is
/// replaced; an event older than `MaximumEventAgeInSeconds` is not run (again) but recorded
/// as `EventAgeExceeded`, with the last failure's response when it had one. The function is
/// a `bootstrap` that never answers (the activator itself answers before its deadline).
#[tokio::test(flavor = "multi_thread")]
async fn the_harness_times_out_hung_invocations_and_expires_old_events() {
    let sqs = Sqs::new(moto().endpoint());
    let queue = sqs.create_queue(&unique("expiry-failures")).unwrap();
    let config = AsyncConfig {
        on_failure: Some((sqs.clone(), queue.clone())),
        timeout: Duration::from_secs(1),
        maximum_event_age: Duration::from_secs(1),
        pick_window: 1,
        ..AsyncConfig::new(&unique("hung-function"), 1)
    };
    let lambda = AsyncLambda::start(&script("hung", "exec sleep 600"), &shell_env(), config);
    // The first holds the one container past the second's age, and is itself too old for
    // its retry by then.
    lambda.invoke(serde_json::json!({"n": 1}));
    lambda.invoke(serde_json::json!({"n": 2}));
    assert!(lambda.wait_idle(Duration::from_secs(30)), "not drained");
    let stats = lambda.stats();
    assert_eq!(stats.invocations, 1, "{stats:?}");
    assert_eq!(
        stats.function_errors,
        BTreeMap::from([("Sandbox.Timedout".to_string(), 1)])
    );
    assert_eq!(stats.failure_records.get("EventAgeExceeded"), Some(&2));
    let mut records = sqs.receive(&queue, 10).unwrap();
    records.sort_by_key(|r| r["requestContext"]["approximateInvokeCount"].as_u64());
    assert_eq!(records.len(), 2, "{records:?}");
    let (never_run, retried) = (&records[0], &records[1]);
    assert_eq!(never_run["requestContext"]["approximateInvokeCount"], 0);
    assert_eq!(never_run["requestPayload"], serde_json::json!({"n": 2}));
    assert!(never_run.get("responseContext").is_none(), "{never_run}");
    assert_eq!(retried["requestContext"]["condition"], "EventAgeExceeded");
    assert_eq!(retried["requestContext"]["approximateInvokeCount"], 1);
    assert_eq!(retried["responsePayload"]["errorType"], "Sandbox.Timedout");
}

/// A container whose runtime exits mid-invocation fails it (`Runtime.ExitError`) and is
/// replaced; with no destination, the exhausted event is discarded and counted.
#[test]
fn the_harness_replaces_containers_that_exit() {
    let config = AsyncConfig::new(&unique("exiting-function"), 2);
    let lambda = AsyncLambda::start(&script("exits", "exit 3"), &shell_env(), config);
    lambda.invoke(serde_json::json!({"n": 1}));
    assert!(lambda.wait_idle(Duration::from_secs(30)), "not drained");
    let stats = lambda.stats();
    assert_eq!(
        stats.function_errors,
        BTreeMap::from([("Runtime.ExitError".to_string(), 3)]),
        "{stats:?}"
    );
    assert_eq!((stats.discarded, stats.attempts.get(&3)), (1, Some(&1)));
}

/// A `bootstrap` shell script running `body`, in a file of its own.
fn script(name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::temp_dir().join(unique(&format!("bootstrap-{name}")));
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn shell_env() -> Vec<(String, String)> {
    vec![("PATH".to_string(), "/usr/bin:/bin".to_string())]
}

fn activator_bootstrap() -> std::path::PathBuf {
    testkit::lambda::unpack(assets::activator().package, assets::activator().zip)
}

/// `scripts/bench-burst`: a factory batch (`JITR_BENCH_DEVICES`, default 2,000) at the
/// default rates. Prints the sustained rate against the quota-bound optimum (goal ≥ 90 %),
/// calls per activation against the minimum (goal ≤ 1.2x), throttled answers, lost
/// activations (goal 0) and the failure queue's depth.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: scripts/bench-burst"]
async fn bench_burst() {
    let n: usize = match std::env::var("JITR_BENCH_DEVICES") {
        Ok(v) => v.parse().ok().filter(|n| *n > 0).unwrap_or_else(|| {
            panic!("JITR_BENCH_DEVICES must be a positive whole number, got {v:?}")
        }),
        Err(_) => 2000,
    };
    let spread = Duration::from_secs(10);
    let drain = Duration::from_secs_f64(60.0 + 3.0 * n as f64 / 3.0);
    let (f, problems) = run_batch(n, spread, drain).await;
    f.print();
    let share = f.devices_per_second() / f.optimum.devices_per_second;
    let ratio = f.ratios().values().fold(0.0f64, |a, b| a.max(*b));
    println!(
        "goals: sustained {:.0} % of optimum (>= 90 %): {}; calls {:.2}x the minimum (<= 1.2x): {}; \
         lost {} (0): {}",
        100.0 * share,
        if share >= 0.9 { "met" } else { "MISSED" },
        ratio,
        if ratio <= 1.2 { "met" } else { "MISSED" },
        problems.len(),
        if problems.is_empty() { "met" } else { "MISSED" },
    );
}
