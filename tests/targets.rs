//! One stage, many regions and accounts, end to end against moto (one server serves every
//! region; the second account is reached by STS AssumeRole of a role there that trusts the
//! caller's account, which the harness checks as AWS does): diff, deploy, the JITR flow in
//! every target, a no-op re-run, a target whose role cannot be assumed, approval asked once,
//! status and destroy.

use serde_json::Value;
use std::process::Output;
use testkit::accounts::{self, Creds};
use testkit::jitr::{output_text as text, registered_event};
use testkit::pki::TestCa;
use testkit::project::Project;
use testkit::{moto, unique};

const BIN: &str = env!("CARGO_BIN_EXE_jitr-infra");
/// The caller's account (moto's default) and the second account.
const A: &str = testkit::ACCOUNT;
const B: &str = "111122223333";

/// A project whose stage `multi` lists `targets` (YAML list items), SNI_ONLY.
struct Multi {
    p: Project,
    ca: TestCa,
    stack: String,
}

impl Multi {
    fn new(targets: &str) -> Multi {
        let p = Project::new("jitr-targets");
        let ca = p.new_ca("Targets CA");
        let stack = testkit::project::stack_name("jitr-targets");
        let m = Multi { p, ca, stack };
        m.targets(targets);
        m
    }

    fn targets(&self, targets: &str) {
        let yaml = format!(
            "stack_name: {}\ntargets:\n{targets}ca:\n  certificate: certs/ca.pem\n  mode: SNI_ONLY\n\
             activator:\n  reserved_concurrency: 2\n  log_retention_days: 1\n",
            self.stack
        );
        self.p.stage("multi", &yaml);
    }

    /// Rewrites the stage file.
    fn edit(&self, change: impl FnOnce(&str) -> String) {
        let path = self.p.path("stacks/multi.yaml");
        let yaml = std::fs::read_to_string(&path).unwrap();
        std::fs::write(path, change(&yaml)).unwrap();
    }

    /// `jitr-infra --project P <args> --stage multi` with the caller's (account A's) key.
    fn run(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--stage", "multi"]);
        self.p.run_aws(BIN, &all, moto().endpoint())
    }

    /// Like [`Multi::run`], expecting JSON on stdout and exit `code`.
    fn json(&self, args: &[&str], code: i32) -> (Value, String) {
        let mut all = args.to_vec();
        all.push("--json");
        let o = self.run(&all);
        assert_eq!(o.status.code(), Some(code), "{}", text(&o));
        let v = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("no JSON ({e}): {}", text(&o)));
        (v, String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

/// `targets[].result` of a fanned-out command's JSON, by target label.
fn results(v: &Value) -> Vec<(String, String)> {
    v["targets"]
        .as_array()
        .unwrap_or_else(|| panic!("no targets in {v:#}"))
        .iter()
        .map(|t| {
            let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
            (s("target"), s("result"))
        })
        .collect()
}

/// Clients' configuration for `region` as `creds`.
async fn conf(creds: &Creds, region: &str) -> aws_config::SdkConfig {
    creds.sdk_config(moto().endpoint(), region).await
}

/// The JITR flow on one deployed target: a pending device certificate of the stage's CA,
/// the registered event through the Lambda Invoke API to that target's activator, and the
/// certificate is ACTIVE with its Thing, in that region and account only.
async fn onboard(m: &Multi, creds: &Creds, region: &str, ca_id: &str) {
    let conf = conf(creds, region).await;
    let iot = aws_sdk_iot::Client::new(&conf);
    let cn = unique("device");
    let (cert_id, arn) = testkit::jitr::register_pending(&iot, &m.ca, &cn).await;
    let lambda = aws_sdk_lambda::Client::new(&conf);
    let out = lambda
        .invoke()
        .function_name(format!("{}-activator", m.stack))
        .payload(
            registered_event(&cert_id, ca_id)
                .to_string()
                .into_bytes()
                .into(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("invoke in {region}: {e:?}"));
    let body: Value = serde_json::from_slice(out.payload().unwrap().as_ref()).unwrap();
    assert_eq!(body["outcome"], "activated", "{region}: {body}");
    testkit::jitr::assert_onboarded(&iot, &cert_id, &cn, &arn).await;
}

/// Change sets of `stack` in `region` of `creds`'s account that were not executed. Real
/// CloudFormation lists those of the stack the name resolves to and removes executed ones;
/// moto lists every change set ever made under the name (also of a deleted stack, such as a
/// `--no-execute` CREATE's REVIEW_IN_PROGRESS stack) and keeps executed ones: so only the
/// live stack's unexecuted ones count (tests/deploy_moto.rs counts alike).
async fn change_sets(creds: &Creds, region: &str, stack: &str) -> usize {
    let cfn = aws_sdk_cloudformation::Client::new(&conf(creds, region).await);
    let Ok(described) = cfn.describe_stacks().stack_name(stack).send().await else {
        return 0; // no stack
    };
    let live = described
        .stacks()
        .first()
        .and_then(|s| s.stack_id())
        .map(str::to_string);
    match cfn.list_change_sets().stack_name(stack).send().await {
        Ok(out) => out
            .summaries()
            .iter()
            .filter(|c| c.stack_id().map(str::to_string) == live)
            .filter(|c| c.execution_status().map(|e| e.as_str()) != Some("EXECUTE_COMPLETE"))
            .count(),
        Err(_) => 0,
    }
}

async fn stack_exists(creds: &Creds, region: &str, stack: &str) -> bool {
    let cfn = aws_sdk_cloudformation::Client::new(&conf(creds, region).await);
    match cfn.describe_stacks().stack_name(stack).send().await {
        Ok(out) => out
            .stacks()
            .iter()
            .any(|s| s.stack_status().map(|st| st.as_str()) != Some("DELETE_COMPLETE")),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_regions_in_two_accounts_deploy_in_parallel_with_one_approval() {
    let endpoint = moto().endpoint();
    let admin_b = accounts::admin(endpoint, B);
    let role = accounts::create_role(endpoint, &admin_b, &unique("jitr-deploy"), A);
    let session_b = accounts::assume(endpoint, &role);
    let a = Creds::default_account();
    let placed = [
        ("eu-west-1", A, None),
        ("us-east-1", A, None),
        ("eu-west-1", B, Some(role.as_str())),
        ("ap-southeast-2", B, Some(role.as_str())),
    ];
    let list: String = placed
        .iter()
        .map(|(region, account, role)| {
            let role = role.map_or(String::new(), |r| format!("    role_arn: {r}\n"));
            format!("  - region: {region}\n    account: \"{account}\"\n{role}")
        })
        .collect();
    let m = Multi::new(&list);
    let labels: Vec<String> = placed.iter().map(|(r, a, _)| format!("{r}/{a}")).collect();

    // Approval once: with nothing to ask on, the whole fan-out is refused (exit 4) and every
    // target's change set (and the REVIEW_IN_PROGRESS stack it made) is deleted.
    let (v, stderr) = m.json(&["deploy", "--require-approval", "any-change"], 4);
    assert!(
        results(&v).iter().all(|(_, r)| r == "not approved"),
        "{v:#}"
    );
    assert!(stderr.contains("approval needed in 4 of 4"), "{stderr}");
    for (region, account, _) in &placed {
        let creds = if *account == A { &a } else { &session_b };
        assert!(
            !stack_exists(creds, region, &m.stack).await,
            "{region}/{account}"
        );
    }

    // --no-execute: a change set per target, left for review; the next deploy takes over.
    let (v, _) = m.json(&["deploy", "--no-execute"], 0);
    assert!(
        results(&v).iter().all(|(_, r)| r == "change set created"),
        "{v:#}"
    );

    // diff: one grouped diff on stdout (the result, as for one stack), every change read
    // once, then the table; exit 3.
    let o = m.run(&["diff"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("in all 4 targets"), "{stdout}");
    let once = "[+] Custom::JitrCaRegistration CaRegistration";
    assert_eq!(
        stdout.matches(once).count(),
        1,
        "one grouped diff: {stdout}"
    );
    let ca_line = "CA added: default";
    assert!(
        stdout.contains(ca_line) && stdout.contains("(in all 4 targets)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("4 targets: 4 changes"),
        "the table: {stdout}"
    );

    // deploy, four at once, one object per target in the outputs file.
    let outputs = m.p.path("outputs.json");
    let out_arg = outputs.to_str().unwrap();
    let args = [
        "deploy",
        "--require-approval",
        "never",
        "--outputs-file",
        out_arg,
    ];
    let (v, stderr) = m.json(&args, 0);
    let want: Vec<(String, String)> = labels
        .iter()
        .map(|l| (l.clone(), "deployed".into()))
        .collect();
    assert_eq!(results(&v), want, "{v:#}\n{stderr}");
    let by_target: Value = serde_json::from_slice(&std::fs::read(&outputs).unwrap()).unwrap();
    for (label, (region, account, _)) in labels.iter().zip(&placed) {
        let ca_id = by_target[label]["CaCertificateId"].as_str().unwrap();
        let creds = if *account == A { &a } else { &session_b };
        onboard(&m, creds, region, ca_id).await;
        // Each target has its own asset bucket, in its own account.
        let s3 = aws_sdk_s3::Client::new(&conf(creds, region).await);
        let bucket = format!("jitr-assets-{account}-{region}");
        let owned = s3
            .head_bucket()
            .bucket(&bucket)
            .expected_bucket_owner(*account);
        owned
            .send()
            .await
            .unwrap_or_else(|e| panic!("{bucket}: {e:?}"));
    }

    // A no-op re-run: every target "no changes", no change set left anywhere.
    let (v, _) = m.json(&["deploy", "--require-approval", "never"], 0);
    assert!(results(&v).iter().all(|(_, r)| r == "no changes"), "{v:#}");
    for (region, account, _) in &placed {
        let creds = if *account == A { &a } else { &session_b };
        assert_eq!(
            change_sets(creds, region, &m.stack).await,
            0,
            "{region}/{account}"
        );
    }

    // A target whose role cannot be assumed fails alone; the others, with a change to
    // deploy, complete.
    let refused_name = unique("jitr-deploy-later");
    let refused = format!("arn:aws:iam::{B}:role/{refused_name}");
    let five =
        format!("{list}  - region: us-west-2\n    account: \"{B}\"\n    role_arn: {refused}\n");
    m.targets(&five);
    m.edit(|y| y.replace("log_retention_days: 1", "log_retention_days: 3"));
    let o = m.run(&["deploy", "--require-approval", "never"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("5 targets: 4 deployed, 1 FAILED"),
        "{}",
        text(&o)
    );
    assert!(
        table.contains(&format!(
            "us-west-2/{B}: AssumeRole {refused}: AccessDenied"
        )),
        "{}",
        text(&o)
    );
    // Once the role exists and trusts the caller, the same command deploys only what still
    // differs: the fifth target; the others are no-ops.
    accounts::create_role(endpoint, &admin_b, &refused_name, A);
    let (v, _) = m.json(&["deploy", "--require-approval", "never"], 0);
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|l| (l.clone(), "no changes".into()))
        .collect();
    want.push((format!("us-west-2/{B}"), "deployed".into()));
    assert_eq!(results(&v), want, "{v:#}");

    // status and destroy fan out too; --target picks some.
    let pick = [
        "--target",
        "eu-west-1,us-east-1",
        "--target",
        "ap-southeast-2",
    ];
    let (v, _) = m.json(&[&["status", "--max-pages", "1"], &pick[..]].concat(), 0);
    assert_eq!(results(&v).len(), 4, "{v:#}");
    let (v, _) = m.json(&["destroy", "--yes", "--detach-devices"], 0);
    assert_eq!(results(&v).len(), 5, "{v:#}");
    assert!(results(&v).iter().all(|(_, r)| r == "destroyed"), "{v:#}");
    for (region, account, _) in placed.iter().chain([&("us-west-2", B, None)]) {
        let creds = if *account == A { &a } else { &session_b };
        assert!(
            !stack_exists(creds, region, &m.stack).await,
            "{region}/{account}"
        );
    }
}

#[test]
fn target_flags_are_checked_before_any_call() {
    let m = Multi::new(&format!(
        "  - region: eu-west-1\n    account: \"{A}\"\n  - region: us-east-1\n    account: \"{A}\"\n"
    ));
    let cases: [(&[&str], &str); 4] = [
        (&["diff", "--target", "eu-central-1"], "--target eu-central-1: stage multi has no such target; its targets: eu-west-1/123456789012, us-east-1/123456789012"),
        (&["diff", "--region", "eu-west-1"], "--region eu-west-1: stage multi lists its targets"),
        (&["redrive"], "this command works on one: name it with --target REGION/ACCOUNT"),
        (&["smoke", "--ca-key", "k", "--target", "eu-west-1/9"], "has no such target"),
    ];
    for (args, needle) in cases {
        let o = m.run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(needle),
            "{args:?}: {}",
            text(&o)
        );
    }
}
