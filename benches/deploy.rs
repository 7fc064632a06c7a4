//! Whole-process `jitr-infra deploy` against moto: a first deploy (create) and a no-op, and
//! how soon after the stack settles the command notices, with a stand-in that holds the
//! stack "in progress" for a few seconds. Run with `scripts/bench-deploy`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::http::{HttpRequest, HttpResponse};
use testkit::pki::TestCa;
use testkit::{moto, unique, Recorder};

const RUNS: usize = 5;
const HOLD: Duration = Duration::from_secs(6);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn project() -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(unique("jitr-bench-deploy"));
    for sub in ["stacks", "templates", "certs"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::copy(
        repo().join("templates/device-policy.json.hbs"),
        dir.join("templates/device-policy.json.hbs"),
    )
    .unwrap();
    std::fs::write(
        dir.join("certs/ca.pem"),
        TestCa::new(&unique("Bench CA")).pem,
    )
    .unwrap();
    let stack: String = unique("jitr-bench")
        .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        .chars()
        .take(40)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string();
    std::fs::write(
        dir.join("stacks/bench.yaml"),
        format!(
            "stack_name: {stack}\nregion: {}\nca:\n  certificate: certs/ca.pem\n  mode: SNI_ONLY\n",
            testkit::REGION
        ),
    )
    .unwrap();
    (dir, stack)
}

fn deploy(dir: &Path, endpoint: &str) -> Duration {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jitr-infra"));
    cmd.arg("--project")
        .arg(dir)
        .args(["deploy", "--stage", "bench", "--require-approval", "never"])
        .env_clear()
        .envs(testkit::cli_env())
        .env("HOME", dir)
        .env("CI", "true");
    for (k, v) in testkit::aws_env(endpoint) {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let out = cmd.output().unwrap();
    let took = start.elapsed();
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
    let (warm, _) = project();
    deploy(&warm, &endpoint);

    let mut create = Vec::new();
    let mut noop = Vec::new();
    for _ in 0..RUNS {
        let (dir, _) = project();
        create.push(deploy(&dir, &endpoint));
        noop.push(deploy(&dir, &endpoint));
        let _ = std::fs::remove_dir_all(&dir);
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
    let (dir, _) = project();
    let start = Instant::now();
    deploy(&dir, &proxy.url());
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
    let _ = std::fs::remove_dir_all(&dir);

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
