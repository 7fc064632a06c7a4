//! Deploying one stage to N targets at once takes about as long as deploying one: `jitr-infra
//! deploy --concurrency 4` of a stage with N = 1, 2 and 4 targets (one account, the regions
//! below), each a first deploy, against a moto whose CloudFormation operations take
//! `JITR_MOTO_CFN_SECONDS` (3 s) each, as CloudFormation's take seconds
//! (tests/moto_jitr/cfn_slow_operations.py): without that, moto finishes every operation inside
//! its request and the figure would measure moto, one Python process. Prints each N's wall time
//! and its ratio to N = 1, and fails when a ratio exceeds 1.5. Run with
//! `scripts/bench-targets`; `JITR_BENCH_TARGETS=1,2` picks the Ns.
//!
//! N = 1 is the one-target stage (`region:` / `account:`), today's single deploy and the
//! baseline; N > 1 is a `targets:` list.

use std::time::Duration;
use testkit::project::Project;
use testkit::Moto;

const SECONDS_PER_OPERATION: &str = "3";
const REGIONS: [&str; 4] = ["eu-west-1", "us-east-1", "eu-central-1", "ap-southeast-2"];
const CONCURRENCY: &str = "4";
const MAX_RATIO: f64 = 1.5;

/// A project with stage `bench` over the first `n` regions, its own stack name and CA.
fn project(n: usize) -> Project {
    let p = Project::new("jitr-bench-targets");
    p.new_ca("Bench targets CA");
    let stack = testkit::project::stack_name(&format!("jitr-bench-{n}"));
    let placement = if n == 1 {
        format!(
            "region: {}\naccount: \"{}\"\n",
            REGIONS[0],
            testkit::ACCOUNT
        )
    } else {
        let targets: String = REGIONS[..n]
            .iter()
            .map(|r| format!("  - region: {r}\n    account: \"{}\"\n", testkit::ACCOUNT))
            .collect();
        format!("targets:\n{targets}")
    };
    p.stage(
        "bench",
        &format!(
            "stack_name: {stack}\n{placement}ca:\n  certificate: certs/ca.pem\n  mode: SNI_ONLY\n"
        ),
    );
    p
}

/// `deploy --stage bench --require-approval never --json` (with `--concurrency` for a
/// `targets:` stage): the wall time.
fn deploy(p: &Project, n: usize, endpoint: &str) -> Duration {
    let mut args = vec![
        "deploy",
        "--stage",
        "bench",
        "--require-approval",
        "never",
        "--json",
    ];
    if n > 1 {
        args.extend(["--concurrency", CONCURRENCY]);
    }
    let (out, took) = p.run_aws_timed(env!("CARGO_BIN_EXE_jitr-infra"), &args, endpoint);
    assert!(
        out.status.success(),
        "deploy of {n} target(s) failed:\n{}",
        testkit::jitr::output_text(&out)
    );
    took
}

fn ns() -> Vec<usize> {
    let wanted = std::env::var("JITR_BENCH_TARGETS").unwrap_or_else(|_| "1,2,4".into());
    let mut ns: Vec<usize> = wanted
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .expect("JITR_BENCH_TARGETS: numbers 1 to 4")
        })
        .collect();
    assert!(
        ns.iter().all(|n| (1..=REGIONS.len()).contains(n)),
        "N from 1 to 4"
    );
    if !ns.contains(&1) {
        ns.insert(0, 1); // the baseline
    }
    ns.sort_unstable();
    ns.dedup();
    ns
}

fn main() {
    let moto = Moto::start(&[("JITR_MOTO_CFN_SECONDS", SECONDS_PER_OPERATION)]);
    let endpoint = moto.endpoint().to_string();
    println!("moto with CloudFormation operations of {SECONDS_PER_OPERATION} s, at {endpoint}");
    // Warm-up, not measured: the CLI's first run (Lambda bundles, moto's first requests).
    deploy(&project(1), 1, &endpoint);
    let mut baseline = None;
    let mut failed = Vec::new();
    for n in ns() {
        let took = deploy(&project(n), n, &endpoint);
        let base = *baseline.get_or_insert(took);
        let ratio = took.as_secs_f64() / base.as_secs_f64();
        println!(
            "targets {n}: {:6.2} s  ratio to 1 target {ratio:.2}{}",
            took.as_secs_f64(),
            if ratio > MAX_RATIO {
                "  (over 1.5)"
            } else {
                ""
            }
        );
        if ratio > MAX_RATIO {
            failed.push(n);
        }
    }
    if !failed.is_empty() {
        eprintln!("deploying {failed:?} targets took over {MAX_RATIO}x one target's time");
        std::process::exit(1);
    }
}
