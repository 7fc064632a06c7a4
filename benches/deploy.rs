//! Whole-process `jitr-infra deploy` against moto: a first deploy (create) and a no-op, and
//! how soon after the stack settles the command notices, with a stand-in that holds the
//! stack "in progress" for a few seconds. Run with `scripts/bench-deploy`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::http::{HttpRequest, HttpResponse};
use testkit::project::Project;
use testkit::{moto, Recorder};

const RUNS: usize = 5;
const HOLD: Duration = Duration::from_secs(6);

/// A throwaway project with stage `bench` (a fresh CA, no activator settings).
fn project() -> Project {
    let p = Project::new("jitr-bench-deploy");
    p.new_ca("Bench CA");
    let stack = testkit::project::stack_name("jitr-bench");
    p.stage(
        "bench",
        &format!(
            "stack_name: {stack}\nregion: {}\nca:\n  certificate: certs/ca.pem\n  mode: SNI_ONLY\n",
            testkit::REGION
        ),
    );
    p
}

fn deploy(p: &Project, endpoint: &str) -> Duration {
    let args = ["deploy", "--stage", "bench", "--require-approval", "never"];
    let (out, took) = p.run_aws_timed(env!("CARGO_BIN_EXE_jitr-infra"), &args, endpoint);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn action(req: &HttpRequest) -> String {
    String::from_utf8_lossy(&req.body)
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .unwrap_or_default()
        .to_string()
}

fn main() {
    let endpoint = moto().endpoint().to_string();
    // Warm up: the Lambdas are bundled (or built) once, moto starts its function processes.
    let warm = project();
    deploy(&warm, &endpoint);

    let mut create = Vec::new();
    let mut noop = Vec::new();
    for _ in 0..RUNS {
        let p = project();
        create.push(deploy(&p, &endpoint));
        noop.push(deploy(&p, &endpoint));
    }

    // The stand-in: after ExecuteChangeSet, hide the stack's settled state for HOLD, then
    // let it through; record every describe call and when the stack "settled".
    let upstream = moto().host_port().to_string();
    let executed: Arc<Mutex<Option<Instant>>> = Arc::default();
    let calls: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let (e2, c2) = (executed.clone(), calls.clone());
    let proxy = Recorder::with_handler(Arc::new(move |req: HttpRequest| {
        let act = action(&req);
        let now = Instant::now();
        if act.starts_with("Describe") {
            c2.lock().unwrap().push((now, act.clone()));
        }
        let resp = testkit::http::forward(&upstream, &req).unwrap();
        if act == "ExecuteChangeSet" {
            *e2.lock().unwrap() = Some(now);
        }
        let hold = e2.lock().unwrap().is_some_and(|t| now < t + HOLD);
        if !hold {
            return resp;
        }
        let body = String::from_utf8_lossy(&resp.body).into_owned();
        let body = match act.as_str() {
            "DescribeStackEvents" => body
                .split("<member>")
                .filter(|m| {
                    !(m.contains("AWS::CloudFormation::Stack")
                        && m.contains("_COMPLETE</ResourceStatus>"))
                })
                .collect::<Vec<_>>()
                .join("<member>"),
            "DescribeStacks" => body
                .replace(
                    "<StackStatus>CREATE_COMPLETE<",
                    "<StackStatus>CREATE_IN_PROGRESS<",
                )
                .replace(
                    "<StackStatus>UPDATE_COMPLETE<",
                    "<StackStatus>UPDATE_IN_PROGRESS<",
                ),
            _ => body,
        };
        HttpResponse {
            status: resp.status,
            headers: resp.headers,
            body: body.into_bytes(),
        }
    }));
    let held = project();
    let start = Instant::now();
    deploy(&held, &proxy.url());
    let finished = Instant::now();
    let settled = executed.lock().unwrap().expect("executed") + HOLD;
    let notice = finished.saturating_duration_since(settled);
    let calls = calls.lock().unwrap().clone();
    let exec = settled - HOLD;
    // Steady state: from 3 s after execution to the settle time.
    let window_start = exec + Duration::from_secs(3);
    let in_window = calls
        .iter()
        .filter(|(t, _)| *t >= window_start && *t < settled)
        .count();
    let per_second = in_window as f64 / (settled - window_start).as_secs_f64();

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "jitr-infra deploy against moto (whole process, median of {RUNS}, Lambdas already bundled)"
    );
    println!(
        "{:<44} {:>9} {:>9}   aws cloudformation deploy",
        "metric", "value", "target"
    );
    println!(
        "{:<44} {:>6.0} ms {:>6} ms   520 ms",
        "create (first deploy of a stage)",
        ms(median(create)),
        500
    );
    println!(
        "{:<44} {:>6.0} ms {:>6} ms   520 ms, exits 255",
        "no-op (nothing changed)",
        ms(median(noop)),
        500
    );
    println!(
        "{:<44} {:>6.0} ms {:>6} ms   up to 30 s (CDK: 2 s polls)",
        "completion noticed after the stack settled",
        ms(notice),
        1000
    );
    println!(
        "{:<44} {:>6.2} /s {:>6} /s",
        "describe calls per second, steady state", per_second, 1
    );
    println!(
        "(stand-in held the stack in progress for {} s; run took {:.1} s)",
        HOLD.as_secs(),
        start.elapsed().as_secs_f64()
    );
}
