//! `deploy`, `diff` and `destroy` end to end: the real `jitr-infra` binary, the real AWS SDK,
//! moto server (with `tests/moto_server.py` running our real `bootstrap` binaries for Lambda
//! invocations and the CA registration custom resource).

use aws_sdk_iot::types::CaCertificateStatus;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use testkit::http::{HttpRequest, HttpResponse};
use testkit::jitr::{output_text as text, registered_event};
use testkit::pki::TestCa;
use testkit::{moto, unique, Recorder};

/// A throwaway project with one stage whose CA is fresh (so the test owns its key).
struct Project {
    /// The shared test project (removed when dropped); `dir` is its directory.
    fixture: testkit::project::Project,
    dir: PathBuf,
    ca: TestCa,
    stack: String,
}

impl Project {
    fn new(extra_ca_yaml: &str, account: Option<&str>) -> Project {
        Project::with_activator(
            extra_ca_yaml,
            account,
            "  reserved_concurrency: 2\n  log_retention_days: 1\n  timeout_seconds: 10\n",
        )
    }

    fn with_activator(extra_ca_yaml: &str, account: Option<&str>, activator_yaml: &str) -> Project {
        let fixture = testkit::project::Project::new("jitr-e2e");
        let ca = fixture.new_ca("E2E CA");
        let stack = testkit::project::stack_name("jitr-e2e");
        let account = account
            .map(|a| format!("account: \"{a}\"\n"))
            .unwrap_or_default();
        let yaml = format!(
            "stack_name: {stack}\nregion: {}\n{account}tags:\n  purpose: e2e\nca:\n  certificate: certs/ca.pem\n{extra_ca_yaml}activator:\n{activator_yaml}",
            testkit::REGION
        );
        fixture.stage("e2e", &yaml);
        let dir = fixture.dir.clone();
        Project {
            fixture,
            dir,
            ca,
            stack,
        }
    }

    /// Rewrites the stage file (`stacks/e2e.yaml`).
    fn edit_stage(&self, edit: impl FnOnce(&str) -> String) {
        let path = self.dir.join("stacks/e2e.yaml");
        let yaml = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, edit(&yaml)).unwrap();
    }

    fn run(&self, args: &[&str], endpoint: &str, extra_env: &[(&str, &str)]) -> Output {
        // No answer to any question: stdin is empty and closed.
        let mut cmd = self
            .fixture
            .aws_cli(env!("CARGO_BIN_EXE_jitr-infra"), args, endpoint);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

async fn cfn() -> aws_sdk_cloudformation::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(testkit::REGION))
        .endpoint_url(moto().endpoint())
        .credentials_provider(aws_sdk_cloudformation::config::Credentials::new(
            "testing", "testing", None, None, "e2e",
        ))
        .load()
        .await;
    aws_sdk_cloudformation::Client::new(&conf)
}

async fn stack_status(stack: &str) -> Option<String> {
    cfn()
        .await
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .ok()
        .and_then(|o| {
            o.stacks()
                .first()
                .and_then(|s| s.stack_status().map(|x| x.as_str().to_string()))
        })
}

/// Change sets of `stack` that were not executed (real CloudFormation removes executed ones;
/// moto keeps them, and lists every stack's change sets whatever the filter).
async fn change_sets(stack: &str) -> usize {
    cfn()
        .await
        .list_change_sets()
        .stack_name(stack)
        .send()
        .await
        .map(|o| {
            o.summaries()
                .iter()
                .filter(|c| c.stack_name() == Some(stack))
                .filter(|c| c.execution_status().map(|e| e.as_str()) != Some("EXECUTE_COMPLETE"))
                .count()
        })
        .unwrap_or(0)
}

/// How many events the stack has had (moto lists them all): unchanged means not updated.
async fn stack_events(stack: &str) -> usize {
    cfn()
        .await
        .describe_stack_events()
        .stack_name(stack)
        .send()
        .await
        .map(|o| o.stack_events().len())
        .unwrap()
}

/// A raw request to moto. It checks no signature; the credential scope of the `authorization`
/// header routes it to `service` (`None`: moto's own API, no routing needed).
fn moto_request(
    service: Option<&str>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> HttpResponse {
    let host = moto().host_port().to_string();
    let mut all = vec![("host".to_string(), host.clone())];
    all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    if let Some(service) = service {
        all.push((
            "authorization".to_string(),
            format!(
                "AWS4-HMAC-SHA256 Credential=testing/20261128/{}/{service}/aws4_request, \
                 SignedHeaders=host, Signature=0",
                testkit::REGION
            ),
        ));
    }
    let req = HttpRequest {
        method: method.into(),
        target: path.into(),
        headers: all.into_iter().collect(),
        body,
    };
    testkit::http::forward(&host, &req).unwrap()
}

/// A GET on moto, routed to `service` by the credential scope.
fn moto_get(service: &str, path: &str) -> (u16, String) {
    let resp = moto_request(Some(service), "GET", path, &[], Vec::new());
    (
        resp.status,
        String::from_utf8_lossy(&resp.body).into_owned(),
    )
}

/// A JSON-protocol call (`x-amz-target`) to moto.
fn moto_target(service: &str, target: &str, body: &Value) -> Value {
    let resp = moto_request(
        Some(service),
        "POST",
        "/",
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target),
        ],
        body.to_string().into_bytes(),
    );
    let text = String::from_utf8_lossy(&resp.body).into_owned();
    assert_eq!(resp.status, 200, "{target}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// The reconciler's schedule (every minute, the sweep payload, allowed to invoke), its marker
/// parameter and the alarms (wired to the stage's topic) exist after deploy.
fn assert_reconciler_and_alarms(stack: &str, outputs: &Value) {
    let rule = moto_target(
        "events",
        "AWSEvents.DescribeRule",
        &json!({"Name": format!("{stack}-sweep")}),
    );
    assert_eq!(rule["ScheduleExpression"], "rate(1 minute)", "{rule}");
    assert_eq!(rule["State"], "ENABLED", "{rule}");
    let targets = moto_target(
        "events",
        "AWSEvents.ListTargetsByRule",
        &json!({"Rule": format!("{stack}-sweep")}),
    );
    let target = &targets["Targets"][0];
    assert!(
        target["Arn"]
            .as_str()
            .unwrap_or_default()
            .ends_with(&format!(":function:{stack}-activator")),
        "{targets}"
    );
    let input: Value = serde_json::from_str(target["Input"].as_str().unwrap()).unwrap();
    assert_eq!(
        input,
        json!({"kind": "jitr-sweep", "version": 1, "trigger": "schedule"})
    );
    let (status, policy) = moto_get(
        "lambda",
        &format!("/2015-03-31/functions/{stack}-activator/policy"),
    );
    assert_eq!(status, 200, "{policy}");
    assert!(
        policy.contains("events.amazonaws.com") && policy.contains(&format!(":rule/{stack}-sweep")),
        "{policy}"
    );
    let marker = format!("/{stack}/sweep-marker");
    let parameter = moto_target("ssm", "AmazonSSM.GetParameter", &json!({"Name": marker}));
    assert_eq!(parameter["Parameter"]["Value"], "-", "{parameter}");
    assert_eq!(outputs["SweepMarkerParameterName"], marker.as_str());
    let topic = outputs["AlarmTopicArn"]
        .as_str()
        .expect("AlarmTopicArn output");
    let resp = moto_request(
        Some("monitoring"),
        "POST",
        "/",
        &[("content-type", "application/x-www-form-urlencoded")],
        format!("Action=DescribeAlarms&Version=2010-08-01&AlarmNamePrefix={stack}-alarm-")
            .into_bytes(),
    );
    let xml = String::from_utf8_lossy(&resp.body).into_owned();
    assert_eq!(resp.status, 200, "{xml}");
    for name in [
        "failure-queue-not-empty",
        "activator-errors",
        "iot-throttling-sustained",
        "rule-failures",
        "pending-over-grace",
        "malformed-events",
    ] {
        assert!(
            xml.contains(&format!("<AlarmName>{stack}-alarm-{name}</AlarmName>")),
            "{name}: {xml}"
        );
    }
    assert_eq!(xml.matches("<AlarmName>").count(), 6, "{xml}");
    assert_eq!(
        xml.matches(topic).count(),
        12,
        "AlarmActions and OKActions: {xml}"
    );
}

/// Invokes a function through the Lambda Invoke API (moto does not check signatures).
fn invoke(function: &str, payload: &Value) -> (u16, Value) {
    let resp = moto_request(
        Some("lambda"),
        "POST",
        &format!("/2015-03-31/functions/{function}/invocations"),
        &[
            ("content-type", "application/json"),
            ("x-amz-invocation-type", "RequestResponse"),
        ],
        payload.to_string().into_bytes(),
    );
    (
        resp.status,
        serde_json::from_slice(&resp.body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_stage_lifecycle_end_to_end() {
    let p = Project::new("  mode: SNI_ONLY\n", None);
    p.edit_stage(|y| {
        format!("{y}reconciler:\n  every_minutes: 1\nalarms:\n  email: ops@example.com\n")
    });
    let endpoint = moto().endpoint().to_string();
    let outputs_file = p.dir.join("outputs.json");

    // First deploy: creates the stack, registers the CA through the custom resource.
    let o = p.run(
        &[
            "deploy",
            "--stage",
            "e2e",
            "--require-approval",
            "never",
            "--outputs-file",
            outputs_file.to_str().unwrap(),
        ],
        &endpoint,
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        stack_status(&p.stack).await.as_deref(),
        Some("CREATE_COMPLETE")
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains(&format!("stack {}: CREATE_COMPLETE", p.stack)),
        "{}",
        text(&o)
    );
    let outputs: Value =
        serde_json::from_str(&std::fs::read_to_string(&outputs_file).unwrap()).unwrap();
    let ca_id = outputs["CaCertificateId"]
        .as_str()
        .expect("CaCertificateId output")
        .to_string();
    assert!(
        stdout.contains(&format!("CaCertificateId = {ca_id}")),
        "{}",
        text(&o)
    );
    let iot = moto().iot().await;
    let ca = iot
        .describe_ca_certificate()
        .certificate_id(&ca_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ca.certificate_description().unwrap().status(),
        Some(&CaCertificateStatus::Active)
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("CREATE_COMPLETE") && stderr.contains("CaRegistration"),
        "events streamed: {}",
        text(&o)
    );
    assert!(
        stderr.contains(
            "capacity: onboards about 10 devices/s (bound: UpdateCertificate 10/s; 3.3/s if each \
             device's event arrives 3 times: DescribeCertificate); 10,000 devices take about 17 \
             min; reserved concurrency 2\n"
        ),
        "{}",
        text(&o)
    );
    assert_reconciler_and_alarms(&p.stack, &outputs);

    // The JITR flow on the deployed stack: a pending device certificate, the registered
    // event through the Lambda Invoke API, and the certificate is active with its Thing.
    let cn = unique("e2e-device");
    let (cert_id, cert_arn) = testkit::jitr::register_pending(&iot, &p.ca, &cn).await;
    let (status, body) = invoke(
        &format!("{}-activator", p.stack),
        &registered_event(&cert_id, &ca_id),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "activated", "{body}");
    testkit::jitr::assert_onboarded(&iot, &cert_id, &cn, &cert_arn).await;
    let names = testkit::jitr::attached_policies(&iot, &cert_arn).await;
    assert_eq!(names, [format!("{}-device", p.stack).as_str()]);

    // A second deploy with no change: success, and no change set left behind.
    let o = p.run(&["deploy", "--stage", "e2e"], &endpoint, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("no changes"),
        "{}",
        text(&o)
    );
    assert_eq!(change_sets(&p.stack).await, 0);
    let o = p.run(&["diff", "--stage", "e2e"], &endpoint, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Broaden the device policy: diff shows it (exit 3) with a security entry.
    let template = p.dir.join("templates/device-policy.json.hbs");
    let hbs = std::fs::read_to_string(&template).unwrap();
    std::fs::write(
        &template,
        hbs.replace(
            r#"["iot:Publish", "iot:Receive"]"#,
            r#"["iot:Publish", "iot:Receive", "iot:RetainPublish"]"#,
        ),
    )
    .unwrap();
    let o = p.run(&["diff", "--stage", "e2e", "--json"], &endpoint, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let d: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(d["capacity"]["bound"], "UpdateCertificate", "{d:#}");
    assert_eq!(d["capacity"]["devicesPerSecond"], 10.0, "{d:#}");
    assert_eq!(d["capacity"]["reservedConcurrency"], 2, "{d:#}");
    let security = d["security"].as_array().unwrap();
    assert!(
        security
            .iter()
            .any(|s| s.to_string().contains("iot:RetainPublish")
                && s["change"]
                    .as_str()
                    .unwrap_or_default()
                    .eq_ignore_ascii_case("added")),
        "{d:#}"
    );
    let o = p.run(&["diff", "--stage", "e2e"], &endpoint, &[]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("DevicePolicy"),
        "{}",
        text(&o)
    );

    // Without a terminal, a broadening deploy is refused, not prompted, and leaves nothing.
    let o = p.run(&["deploy", "--stage", "e2e"], &endpoint, &[]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("approval required"),
        "{}",
        text(&o)
    );
    assert_eq!(change_sets(&p.stack).await, 0);

    // Approved by flag: the policy is updated.
    let o = p.run(
        &["deploy", "--stage", "e2e", "--require-approval", "never"],
        &endpoint,
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        stack_status(&p.stack).await.as_deref(),
        Some("UPDATE_COMPLETE")
    );
    // Read raw: after a CloudFormation update moto returns the document as an object where
    // the API (and the SDK) has a string.
    let (status, policy) = moto_get("iot", &format!("/policies/{}-device", p.stack));
    assert_eq!(status, 200);
    assert!(policy.contains("iot:RetainPublish"), "{policy}");

    // Destroy: refused without a terminal unless --yes; then the stack and the CA are gone.
    let o = p.run(
        &["destroy", "--stage", "e2e", "--detach-devices"],
        &endpoint,
        &[],
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(stack_status(&p.stack).await.is_some());
    // The activated device holds the device policy: AWS would refuse to delete it halfway
    // through, so destroy refuses up front unless told to detach it.
    let o = p.run(&["destroy", "--stage", "e2e", "--yes"], &endpoint, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--detach-devices"),
        "{}",
        text(&o)
    );
    assert!(stack_status(&p.stack).await.is_some());
    let o = p.run(
        &["destroy", "--stage", "e2e", "--yes", "--detach-devices"],
        &endpoint,
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("DEREGISTERED"),
        "{}",
        text(&o)
    );
    assert!(matches!(
        stack_status(&p.stack).await.as_deref(),
        None | Some("DELETE_COMPLETE")
    ));
    assert!(
        iot.describe_ca_certificate()
            .certificate_id(&ca_id)
            .send()
            .await
            .is_err(),
        "CA deregistered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn default_mode_signs_the_verification_certificate_and_keeps_the_key_private() {
    let p = Project::new(
        "  mode: DEFAULT\n  verification:\n    private_key_env: E2E_CA_KEY\n  retain_on_delete: true\n",
        Some(testkit::ACCOUNT),
    );
    let endpoint = moto().endpoint().to_string();
    let key = p.ca.key_pem();

    // A first deploy registers the CA: without the key it stops before creating anything.
    let o = p.run(&["deploy", "--stage", "e2e"], &endpoint, &[]);
    assert_clean_failure(&o, "environment variable E2E_CA_KEY is not set");
    assert!(stack_status(&p.stack).await.is_none());

    let o = p.run(
        &[
            "deploy",
            "--stage",
            "e2e",
            "--require-approval",
            "never",
            "--json",
        ],
        &endpoint,
        &[("E2E_CA_KEY", &key)],
    );
    assert!(o.status.success(), "{}", text(&o));
    let all = text(&o);
    for line in key.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!all.contains(line), "key material in the output");
    }
    let outcome: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(outcome["outcome"], "deployed", "{outcome}");
    let ca_id = outcome["outputs"]["CaCertificateId"]
        .as_str()
        .unwrap()
        .to_string();

    // Deployed again, unchanged, with the key unset: the CA registration stays as it is, so
    // its verification certificate is kept (UsePreviousValue) and nothing changes.
    let events = stack_events(&p.stack).await;
    let o = p.run(&["deploy", "--stage", "e2e"], &endpoint, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("no changes"),
        "{}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(
            "CA default registration unchanged: keeping its verification certificate (no CA key \
             needed)"
        ),
        "{}",
        text(&o)
    );
    assert_eq!(change_sets(&p.stack).await, 0, "no change set left");
    assert_eq!(
        stack_status(&p.stack).await.as_deref(),
        Some("CREATE_COMPLETE"),
        "no stack update"
    );
    assert_eq!(stack_events(&p.stack).await, events, "no stack update");

    // A new CA certificate replaces the registration: that needs the key, and says why.
    std::fs::write(
        p.dir.join("certs/ca.pem"),
        TestCa::new(&unique("E2E CA 2")).pem,
    )
    .unwrap();
    let o = p.run(&["deploy", "--stage", "e2e"], &endpoint, &[]);
    assert_clean_failure(
        &o,
        "verification certificate: stacks/e2e.yaml: ca.verification.private_key_env: \
         environment variable E2E_CA_KEY is not set (it must hold the CA private key, PEM); it \
         is needed because this deploy registers the CA (a first deploy, or a new CA \
         certificate or mode)",
    );
    assert_eq!(change_sets(&p.stack).await, 0);
    assert_eq!(stack_events(&p.stack).await, events, "nothing changed");
    // The old CA's key for the new CA certificate: refused before any change set (AWS would
    // refuse a verification certificate signed by another key).
    let o = p.run(
        &["deploy", "--stage", "e2e", "--require-approval", "never"],
        &endpoint,
        &[("E2E_CA_KEY", &key)],
    );
    assert_clean_failure(
        &o,
        "verification certificate: stacks/e2e.yaml: ca.verification: CA private key: the \
         private key does not belong to the CA certificate",
    );
    assert_eq!(change_sets(&p.stack).await, 0);
    assert_eq!(stack_events(&p.stack).await, events, "nothing changed");
    std::fs::write(p.dir.join("certs/ca.pem"), &p.ca.pem).unwrap();

    // Retained on destroy.
    let o = p.run(&["destroy", "--stage", "e2e", "--yes"], &endpoint, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("stays registered"));
    let iot = moto().iot().await;
    assert!(
        iot.describe_ca_certificate()
            .certificate_id(&ca_id)
            .send()
            .await
            .is_ok(),
        "CA retained"
    );
}

fn assert_clean_failure(o: &Output, want: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", text(o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains(want), "want {want:?}\n{}", text(o));
    assert!(!stderr.contains("panicked"), "{}", text(o));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_and_faults_fail_cleanly_and_leave_nothing_half_done() {
    let endpoint = moto().endpoint().to_string();

    // Unknown stage.
    let p = Project::new("  mode: SNI_ONLY\n", None);
    let o = p.run(&["deploy", "--stage", "nope"], &endpoint, &[]);
    assert_clean_failure(&o, "no stage `nope`");

    // No credentials at all (and no profile to fall back on).
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jitr-infra"));
    let o = cmd
        .arg("--project")
        .arg(&p.dir)
        .args(["deploy", "--stage", "e2e"])
        .env_clear()
        .env("HOME", &p.dir)
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(testkit::cli_env())
        .output()
        .unwrap();
    assert_clean_failure(&o, "no AWS credentials found");

    // Wrong account.
    let wrong = Project::new("  mode: SNI_ONLY\n", Some("999999999999"));
    let o = wrong.run(&["deploy", "--stage", "e2e"], &endpoint, &[]);
    assert_clean_failure(&o, "belongs to account 999999999999");
    assert!(stack_status(&wrong.stack).await.is_none());

    // An unreachable endpoint.
    let o = p.run(&["deploy", "--stage", "e2e"], "http://127.0.0.1:9", &[]);
    assert_clean_failure(&o, "cannot reach the AWS endpoint");

    // Access denied on the asset bucket: nothing is created.
    let upstream = moto().host_port().to_string();
    let proxy = Recorder::with_handler(std::sync::Arc::new(move |req: HttpRequest| {
        // Every call on the asset bucket, so the result does not depend on whether another
        // test created it first.
        if req.path().starts_with("/jitr-assets-") {
            return HttpResponse::new(
                403,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>R</RequestId><HostId>H</HostId></Error>",
            )
            .with_header("content-type", "application/xml");
        }
        testkit::http::forward(&upstream, &req).unwrap()
    }));
    // The bucket exists and is ours (whichever test ran first), so the 403 is a permission.
    let bucket = format!("jitr-assets-{}-{}", testkit::ACCOUNT, testkit::REGION);
    let _ = s3_as(&credentials_for(testkit::ACCOUNT).await)
        .await
        .create_bucket()
        .bucket(&bucket)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                    testkit::REGION,
                ))
                .build(),
        )
        .send()
        .await;
    let denied = Project::new("  mode: SNI_ONLY\n", None);
    let o = denied.run(&["deploy", "--stage", "e2e"], &proxy.url(), &[]);
    assert_clean_failure(
        &o,
        &format!(
            "asset bucket {bucket}: S3 denied access (403) to this account's own bucket: these \
             credentials lack s3:ListBucket on it"
        ),
    );
    assert!(
        stack_status(&denied.stack).await.is_none(),
        "no stack after a failed asset upload"
    );
}

// ---------------------------------------------------------------------------------------------
// destroy's order and its restore; a stage's protection (issue 7, items 13 and 18).
// ---------------------------------------------------------------------------------------------

/// A call straight to moto (it checks no signature; the credential scope routes it).
fn moto_call(service: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let resp = moto_request(
        Some(service),
        method,
        path,
        &[("content-type", "application/json")],
        body.as_bytes().to_vec(),
    );
    (
        resp.status,
        String::from_utf8_lossy(&resp.body).into_owned(),
    )
}

/// The names the stack gives its onboarding parts (constructs::Names).
struct Onboarding {
    rule: String,
    function: String,
    policy: String,
}

impl Onboarding {
    fn of(p: &Project) -> Onboarding {
        Onboarding {
            rule: format!("{}_registered", p.stack.replace('-', "_")),
            function: format!("{}-activator", p.stack),
            policy: format!("{}-device", p.stack),
        }
    }

    /// `Some(true)` when the rule exists and is enabled, `None` when it does not exist.
    fn rule_enabled(&self) -> Option<bool> {
        let (status, body) = moto_call("iot", "GET", &format!("/rules/{}", self.rule), "");
        if status == 404 {
            return None;
        }
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        Some(!v["rule"]["ruleDisabled"].as_bool().unwrap())
    }

    /// The activator's reserved concurrency (`Value::Null`: unreserved).
    fn concurrency(&self) -> Value {
        let path = format!("/2019-09-30/functions/{}/concurrency", self.function);
        let (status, body) = moto_call("lambda", "GET", &path, "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["ReservedConcurrentExecutions"].clone()
    }

    fn targets(&self) -> Vec<Value> {
        let path = format!("/policy-targets/{}", self.policy);
        let (status, body) = moto_call("iot", "POST", &path, "{}");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["targets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Attaches the device policy to `cert_arn`, as an activation would.
    fn attach(&self, cert_arn: &str) {
        let path = format!("/target-policies/{}", self.policy);
        let (status, body) = moto_call(
            "iot",
            "PUT",
            &path,
            &json!({"target": cert_arn}).to_string(),
        );
        assert_eq!(status, 200, "{body}");
    }
}

/// The operation a request through the proxy is: CloudFormation's `Action`, else method and path.
fn operation(req: &HttpRequest) -> String {
    let body = req.body_text();
    match body.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
        Some(action) => action.to_string(),
        None => format!("{} {}", req.method, req.path()),
    }
}

fn cfn_error(status: u16, code: &str, message: &str) -> HttpResponse {
    HttpResponse::new(
        status,
        format!(
            "<ErrorResponse xmlns=\"http://cloudformation.amazonaws.com/doc/2010-05-15/\"><Error>\
             <Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>\
             <RequestId>r</RequestId></ErrorResponse>"
        ),
    )
    .with_header("content-type", "text/xml")
}

/// Deploys `p` (CLI, straight to moto) and returns `deploy --json`'s outcome.
fn deploy_outcome(p: &Project) -> Value {
    let o = p.run(
        &[
            "deploy",
            "--stage",
            "e2e",
            "--require-approval",
            "never",
            "--json",
        ],
        moto().endpoint(),
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Deploys `p` (CLI, straight to moto) and returns the CA certificate id.
fn deploy(p: &Project) -> String {
    deploy_outcome(p)["outputs"]["CaCertificateId"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A device certificate of `p`'s CA, registered PENDING_ACTIVATION: (id, ARN).
async fn pending_device(p: &Project) -> (String, String) {
    testkit::jitr::register_pending(&moto().iot().await, &p.ca, &unique("e2e-device")).await
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_stops_onboarding_then_detaches_then_deletes() {
    let p = Project::new("  mode: SNI_ONLY\n", None);
    p.edit_stage(|y| y.replace("timeout_seconds: 10", "timeout_seconds: 2"));
    let ca_id = deploy(&p);
    let o = Onboarding::of(&p);
    // The topic rule exists (tests/moto_server.py creates it for CloudFormation) and is on.
    assert_eq!(o.rule_enabled(), Some(true));
    assert_eq!(o.concurrency(), json!(2));
    let (cert_id, _) = pending_device(&p).await;
    let (status, body) = invoke(&o.function, &registered_event(&cert_id, &ca_id));
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("activated")),
        "{body}"
    );
    assert_eq!(o.targets().len(), 1);

    // What moto looks like when DeleteStack arrives, and whether a device could still be
    // activated then.
    let at_delete: Arc<Mutex<Option<Value>>> = Arc::default();
    let (snapshot, names) = (at_delete.clone(), Onboarding::of(&p));
    let (late_cert, _) = pending_device(&p).await;
    let ca = ca_id.clone();
    let upstream = moto().host_port().to_string();
    let proxy = Recorder::with_handler(Arc::new(move |req: HttpRequest| {
        if operation(&req) == "DeleteStack" && snapshot.lock().unwrap().is_none() {
            let (status, body) = invoke(&names.function, &registered_event(&late_cert, &ca));
            *snapshot.lock().unwrap() = Some(json!({
                "ruleEnabled": names.rule_enabled(),
                "concurrency": names.concurrency(),
                "targets": names.targets().len(),
                "invoke": [status, body],
            }));
        }
        testkit::http::forward(&upstream, &req).unwrap()
    }));
    let out = p.run(
        &["destroy", "--stage", "e2e", "--yes", "--detach-devices"],
        &proxy.url(),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "onboarding stops first (topic rule {} disabled, activator {} throttled); an aborted \
             destroy restores it",
            o.rule, o.function
        )),
        "{}",
        text(&out)
    );
    assert!(
        stderr.contains("waiting 2 s (the activator's timeout) for activations already running"),
        "{}",
        text(&out)
    );

    // The order: stop onboarding (rule, then concurrency), detach, delete.
    let ops: Vec<String> = proxy.requests().iter().map(operation).collect();
    let at = |op: &str| {
        ops.iter()
            .position(|o| o == op)
            .unwrap_or_else(|| panic!("{op} not called: {ops:#?}"))
    };
    let disable = at(&format!("POST /rules/{}/disable", o.rule));
    let throttle = at(&format!(
        "PUT /2017-10-31/functions/{}/concurrency",
        o.function
    ));
    let detach = at(&format!("POST /target-policies/{}", o.policy));
    let delete = at("DeleteStack");
    assert!(
        disable < throttle && throttle < detach && detach < delete,
        "{ops:#?}"
    );
    // And the state it left when the deletion began: nothing could activate a device.
    let seen = at_delete.lock().unwrap().clone().expect("DeleteStack seen");
    assert_eq!(seen["ruleEnabled"], json!(false), "{seen:#}");
    assert_eq!(seen["concurrency"], json!(0), "{seen:#}");
    assert_eq!(seen["targets"], json!(0), "{seen:#}");
    assert_eq!(seen["invoke"][0], json!(429), "throttled: {seen:#}");
    assert_eq!(
        seen["invoke"][1]["__type"],
        json!("TooManyRequestsException"),
        "{seen:#}"
    );
    // The stack took the rule with it.
    assert!(stack_status(&p.stack)
        .await
        .is_none_or(|s| s == "DELETE_COMPLETE"));
    assert_eq!(o.rule_enabled(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_aborted_destroy_restores_onboarding_and_says_so() {
    let p = Project::new("  mode: SNI_ONLY\n", None);
    p.edit_stage(|y| y.replace("timeout_seconds: 10", "timeout_seconds: 1"));
    deploy(&p);
    let o = Onboarding::of(&p);
    let upstream = moto().host_port().to_string();
    let restored = format!(
        "destroy aborted; onboarding, stopped before the deletion, is restored:\n  topic rule \
         {}: enabled again\n  activator {}: reserved concurrency 2 again\n",
        o.rule, o.function
    );

    // CloudFormation refuses the deletion: onboarding is put back, the stack stays.
    let up = upstream.clone();
    let refuse_delete = Recorder::with_handler(Arc::new(move |req: HttpRequest| {
        if operation(&req) == "DeleteStack" {
            return cfn_error(
                403,
                "AccessDenied",
                "not authorized to perform: cloudformation:DeleteStack",
            );
        }
        testkit::http::forward(&up, &req).unwrap()
    }));
    let out = p.run(
        &["destroy", "--stage", "e2e", "--yes"],
        &refuse_delete.url(),
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DeleteStack: AccessDenied"),
        "{}",
        text(&out)
    );
    assert!(stderr.ends_with(&restored), "{}", text(&out));
    assert_eq!(o.rule_enabled(), Some(true));
    assert_eq!(o.concurrency(), json!(2));
    assert_eq!(
        stack_status(&p.stack).await.as_deref(),
        Some("CREATE_COMPLETE")
    );

    // A device activated after the plan was shown (here: while onboarding was being stopped),
    // without --detach-devices: refused before the deletion, onboarding put back.
    let (_, late_arn) = pending_device(&p).await;
    let (up, names, arn) = (upstream.clone(), Onboarding::of(&p), late_arn.clone());
    let activate_late = Recorder::with_handler(Arc::new(move |req: HttpRequest| {
        if operation(&req).ends_with("/disable") {
            names.attach(&arn);
        }
        testkit::http::forward(&up, &req).unwrap()
    }));
    let out = p.run(
        &["destroy", "--stage", "e2e", "--yes"],
        &activate_late.url(),
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "1 device certificate(s) hold its device policy {} (activated since the plan was \
             read)",
            o.policy
        )),
        "{}",
        text(&out)
    );
    assert!(stderr.ends_with(&restored), "{}", text(&out));
    assert!(!operation_seen(&activate_late, "DeleteStack"));
    assert_eq!(
        o.targets().len(),
        1,
        "nothing detached without --detach-devices"
    );

    // Restoring fails too: said, with the command that finishes it by hand.
    let up = upstream.clone();
    let refuse_both = Recorder::with_handler(Arc::new(move |req: HttpRequest| {
        let op = operation(&req);
        if op == "DeleteStack" {
            return cfn_error(
                403,
                "AccessDenied",
                "not authorized to perform: cloudformation:DeleteStack",
            );
        }
        if op.ends_with("/enable") {
            return HttpResponse::json(401, &json!({"message": "not authorized to enable rules"}))
                .with_header("x-amzn-errortype", "UnauthorizedException");
        }
        testkit::http::forward(&up, &req).unwrap()
    }));
    let out = p.run(
        &["destroy", "--stage", "e2e", "--yes", "--detach-devices"],
        &refuse_both.url(),
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "destroy aborted; onboarding, stopped before the deletion, is NOT fully restored:"
        ),
        "{}",
        text(&out)
    );
    assert!(
        stderr.contains(&format!(
            "  topic rule {rule}: NOT enabled again (iot:EnableTopicRule: UnauthorizedException: \
             not authorized to enable rules); enable it with `aws iot enable-topic-rule \
             --rule-name {rule}`\n",
            rule = o.rule
        )),
        "{}",
        text(&out)
    );
    assert!(
        stderr.contains(&format!(
            "  activator {}: reserved concurrency 2 again\n  device policy {}: stays detached \
             from the 1 certificate(s) detached before the failure",
            o.function, o.policy
        )),
        "{}",
        text(&out)
    );
    assert_eq!(
        o.rule_enabled(),
        Some(false),
        "the refused enable left it off"
    );
    assert_eq!(o.targets().len(), 0);
    let (status, body) = moto_call("iot", "POST", &format!("/rules/{}/enable", o.rule), "");
    assert_eq!(status, 200, "{body}");

    // The deletion fails (DELETE_FAILED): a device got the policy after the detach. What the
    // stack deleted before failing (the rule, the activator) is gone; destroy says so, and a
    // second destroy finishes the job.
    let (up, names) = (upstream.clone(), Onboarding::of(&p));
    let attach_late = Recorder::with_handler(Arc::new(move |req: HttpRequest| {
        if operation(&req) == "DeleteStack" {
            names.attach(&late_arn);
        }
        testkit::http::forward(&up, &req).unwrap()
    }));
    let out = p.run(
        &["destroy", "--stage", "e2e", "--yes", "--detach-devices"],
        &attach_late.url(),
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("stack {} ended in DELETE_FAILED", p.stack)),
        "{}",
        text(&out)
    );
    assert!(
        stderr.contains(&format!(
            "DevicePolicy (AWS::IoT::Policy) DELETE_FAILED: The policy cannot be deleted as the \
             policy is attached to one or more principals (name={})",
            o.policy
        )),
        "{}",
        text(&out)
    );
    assert!(
        stderr.ends_with(&format!(
            "destroy aborted; onboarding, stopped before the deletion, is restored:\n  topic rule \
             {}: already deleted with the stack\n  activator {}: already deleted with the stack\n",
            o.rule, o.function
        )),
        "{}",
        text(&out)
    );
    assert_eq!(
        stack_status(&p.stack).await.as_deref(),
        Some("DELETE_FAILED")
    );
    let out = p.run(
        &["destroy", "--stage", "e2e", "--yes", "--detach-devices"],
        moto().endpoint(),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(stack_status(&p.stack)
        .await
        .is_none_or(|s| s == "DELETE_COMPLETE"));
}

fn operation_seen(r: &Recorder, op: &str) -> bool {
    r.requests().iter().any(|q| operation(q) == op)
}

async fn termination_protection(stack: &str) -> bool {
    cfn()
        .await
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .unwrap()
        .stacks()[0]
        .enable_termination_protection()
        .unwrap_or(false)
}

async fn stack_policy(stack: &str) -> Option<Value> {
    cfn()
        .await
        .get_stack_policy()
        .stack_name(stack)
        .send()
        .await
        .unwrap()
        .stack_policy_body()
        .map(|b| serde_json::from_str(b).unwrap())
}

async fn ca_output(stack: &str) -> String {
    cfn()
        .await
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .unwrap()
        .stacks()[0]
        .outputs()
        .iter()
        .find(|o| o.output_key() == Some("CaCertificateId"))
        .and_then(|o| o.output_value())
        .unwrap_or_default()
        .to_string()
}

/// `t` without the CA registration: what an update removing it (by hand, in the console)
/// would deploy. References to it become a placeholder.
fn without_ca_registration(t: &Value) -> Value {
    fn scrub(v: &mut Value) {
        if let Some(Value::Array(att)) = v.get("Fn::GetAtt") {
            if att.first() == Some(&json!("CaRegistration")) {
                *v = json!("removed");
                return;
            }
        }
        match v {
            Value::String(s) => {
                while let Some(start) = s.find("${CaRegistration.") {
                    let end = start + s[start..].find('}').unwrap() + 1;
                    s.replace_range(start..end, "removed");
                }
            }
            Value::Object(m) => m.values_mut().for_each(scrub),
            Value::Array(a) => a.iter_mut().for_each(scrub),
            _ => {}
        }
    }
    let mut t = t.clone();
    t["Resources"]
        .as_object_mut()
        .unwrap()
        .remove("CaRegistration");
    let outputs = t["Outputs"].as_object_mut().unwrap();
    outputs.remove("CaCertificateId");
    outputs.remove("CaCertificateArn");
    scrub(&mut t);
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn a_protected_stage_keeps_its_ca_registration_and_refuses_deletion() {
    use aws_sdk_cloudformation::types::{Capability, ChangeSetType};
    let p = Project::new("  mode: SNI_ONLY\n", None);
    p.edit_stage(|y| y.replace("timeout_seconds: 10", "timeout_seconds: 1"));
    let endpoint = moto().endpoint().to_string();
    let old_ca = deploy(&p);
    assert!(!termination_protection(&p.stack).await);
    assert_eq!(stack_policy(&p.stack).await, None);

    // Protection asked for later (as for a stack deployed before it existed): the template
    // does not change, and deploy still applies it.
    p.edit_stage(|y| format!("{y}protection:\n  termination: true\n  ca_registration: true\n"));
    let o = p.run(&["deploy", "--stage", "e2e"], &endpoint, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("no changes"),
        "{}",
        text(&o)
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("termination protection on (protection.termination)"),
        "{}",
        text(&o)
    );
    assert!(
        stderr.contains(
            "stack policy set: an update may not replace or remove any CA registration \
             (CaRegistration*)"
        ),
        "{}",
        text(&o)
    );
    assert!(termination_protection(&p.stack).await);
    assert_eq!(
        stack_policy(&p.stack).await,
        Some(jitr_infra::deploy::protection::ca_registration_policy())
    );

    // The policy holds against an update made by hand that removes the registration.
    let cf = cfn().await;
    let deployed = cf.get_template().stack_name(&p.stack).send().await.unwrap();
    let deployed: Value = serde_json::from_str(deployed.template_body().unwrap()).unwrap();
    let cs = cf
        .create_change_set()
        .stack_name(&p.stack)
        .change_set_name("by-hand")
        .change_set_type(ChangeSetType::Update)
        .capabilities(Capability::CapabilityIam)
        .template_body(without_ca_registration(&deployed).to_string())
        .send()
        .await
        .unwrap();
    cf.execute_change_set()
        .stack_name(&p.stack)
        .change_set_name(cs.id().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        stack_status(&p.stack).await.as_deref(),
        Some("UPDATE_ROLLBACK_COMPLETE")
    );
    let events = cf
        .describe_stack_events()
        .stack_name(&p.stack)
        .send()
        .await
        .unwrap();
    assert!(
        events.stack_events().iter().any(|e| e.logical_resource_id() == Some("CaRegistration")
            && e.resource_status_reason()
                == Some("Action denied by stack policy: Statement [#2] does not allow [Update:Delete] for resource [LogicalResourceId/CaRegistration];")),
        "{events:#?}"
    );
    assert_eq!(ca_output(&p.stack).await, old_ca);

    // A new CA (a replacement of the registration) is refused before anything executes.
    let new_ca = TestCa::new(&unique("E2E CA 2"));
    std::fs::write(p.dir.join("certs/ca.pem"), &new_ca.pem).unwrap();
    let o = p.run(
        &["deploy", "--stage", "e2e", "--require-approval", "never"],
        &endpoint,
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(
            "error: stacks/e2e.yaml: protection.ca_registration: stage e2e protects its CA \
             registration, and this change would replace or remove it:\n  CaRegistration \
             (Custom::JitrCaRegistration) is REPLACED (changed: CaCertificatePem)"
        ),
        "{}",
        text(&o)
    );
    assert!(
        stderr.contains("set `protection.ca_registration: false` in stacks/e2e.yaml"),
        "{}",
        text(&o)
    );
    assert!(!stderr.contains("executing"), "{}", text(&o));
    assert_eq!(
        change_sets(&p.stack).await,
        1,
        "only the one made by hand above"
    );
    assert_eq!(ca_output(&p.stack).await, old_ca);

    // destroy is refused up front, onboarding untouched.
    let o = p.run(
        &["destroy", "--stage", "e2e", "--yes", "--detach-devices"],
        &endpoint,
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!(
            "error: stack {} has termination protection: CloudFormation refuses to delete it. \
             Nothing was changed. To delete it on purpose: set `protection.termination: false` \
             in stacks/e2e.yaml and run `jitr-infra deploy --stage e2e`",
            p.stack
        )),
        "{}",
        text(&o)
    );
    let names = Onboarding::of(&p);
    assert_eq!(names.rule_enabled(), Some(true));
    assert_eq!(names.concurrency(), json!(2));
    assert!(stack_status(&p.stack).await.is_some());

    // Protection lifted in the stage: deploy lifts the stack policy before executing the
    // rotation, and turns termination protection off; then destroy goes through.
    p.edit_stage(|y| {
        y.replace(
            "  termination: true\n  ca_registration: true\n",
            "  termination: false\n  ca_registration: false\n",
        )
    });
    let o = p.run(
        &["deploy", "--stage", "e2e", "--require-approval", "never"],
        &endpoint,
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let lifted =
        stderr.find("stack policy lifted: the CA registrations (CaRegistration*) may be replaced");
    let executing = stderr.find("executing ");
    assert!(lifted.is_some() && lifted < executing, "{}", text(&o));
    assert!(
        stderr.contains("termination protection off"),
        "{}",
        text(&o)
    );
    assert!(!termination_protection(&p.stack).await);
    assert_eq!(
        stack_policy(&p.stack).await,
        Some(jitr_infra::deploy::protection::allow_all_policy())
    );
    assert_ne!(ca_output(&p.stack).await, old_ca, "the CA was rotated");
    let o = p.run(
        &["destroy", "--stage", "e2e", "--yes", "--detach-devices"],
        &endpoint,
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
}

impl Project {
    /// Rewrites the stage file, replacing `from` with `to`.
    fn replace_in_stage(&self, from: &str, to: &str) {
        let path = self.dir.join("stacks/e2e.yaml");
        let yaml = std::fs::read_to_string(&path).unwrap();
        assert!(yaml.contains(from), "{yaml}");
        std::fs::write(&path, yaml.replace(from, to)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_adopted_ca_stays_registered_after_destroy() {
    let p = Project::new("  mode: SNI_ONLY\n", None);
    let endpoint = moto().endpoint().to_string();
    // Registered before the stack, by someone else, and left INACTIVE.
    let iot = moto().iot().await;
    let ca_id = iot
        .register_ca_certificate()
        .ca_certificate(&p.ca.pem)
        .set_as_active(false)
        .certificate_mode(aws_sdk_iot::types::CertificateMode::SniOnly)
        .send()
        .await
        .unwrap()
        .certificate_id()
        .unwrap()
        .to_string();
    let ca_status = || async {
        iot.describe_ca_certificate()
            .certificate_id(&ca_id)
            .send()
            .await
            .ok()
            .and_then(|o| {
                o.certificate_description()
                    .and_then(|d| d.status().cloned())
            })
    };

    // Not adopted: refused, with the way to adopt, and the CA is left as it was.
    let never = ["--require-approval", "never"];
    let o = p.run(
        &[&["deploy", "--stage", "e2e"][..], &never].concat(),
        &endpoint,
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!(
            "the CA certificate is already registered in this account and region as {ca_id}"
        )) && stderr.contains("set `ca.adopt: true` in the stage file"),
        "{}",
        text(&o)
    );
    assert_eq!(ca_status().await, Some(CaCertificateStatus::Inactive));
    let o = p.run(&["destroy", "--stage", "e2e", "--yes"], &endpoint, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(ca_status().await, Some(CaCertificateStatus::Inactive));

    // Adopted: deployed on the existing registration, which the stack now manages.
    p.replace_in_stage("  mode: SNI_ONLY\n", "  mode: SNI_ONLY\n  adopt: true\n");
    let o = p.run(
        &[&["deploy", "--stage", "e2e", "--json"][..], &never].concat(),
        &endpoint,
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let outcome: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        outcome["outputs"]["CaCertificateId"],
        json!(ca_id),
        "{outcome}"
    );
    assert_eq!(ca_status().await, Some(CaCertificateStatus::Active));
    let resource = cfn()
        .await
        .describe_stack_resource()
        .stack_name(&p.stack)
        .logical_resource_id("CaRegistration")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resource
            .stack_resource_detail()
            .and_then(|r| r.physical_resource_id()),
        Some(format!("adopted:{ca_id}").as_str())
    );

    // Destroyed: the stack goes, the CA stays registered (retain_on_delete is not set).
    let o = p.run(&["destroy", "--stage", "e2e", "--yes"], &endpoint, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("the CA stays registered"),
        "{}",
        text(&o)
    );
    assert!(matches!(
        stack_status(&p.stack).await.as_deref(),
        None | Some("DELETE_COMPLETE")
    ));
    assert_eq!(
        ca_status().await,
        Some(CaCertificateStatus::Active),
        "the adopted CA is still registered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mode_change_of_the_same_ca_is_refused_before_any_change_set() {
    let p = Project::new("  mode: SNI_ONLY\n", Some(testkit::ACCOUNT));
    let endpoint = moto().endpoint().to_string();
    let o = p.run(
        &[
            "deploy",
            "--stage",
            "e2e",
            "--require-approval",
            "never",
            "--json",
        ],
        &endpoint,
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let outcome: Value = serde_json::from_slice(&o.stdout).unwrap();
    let ca_id = outcome["outputs"]["CaCertificateId"]
        .as_str()
        .unwrap()
        .to_string();
    let before = change_sets(&p.stack).await;

    p.replace_in_stage(
        "  mode: SNI_ONLY\n",
        "  mode: DEFAULT\n  verification:\n    private_key_env: E2E_CA_KEY\n",
    );
    let key = p.ca.key_pem();
    let expected = format!(
        "error: CaRegistration: the stage keeps the same CA certificate (AWS IoT id {ca_id}) but \
         changes ca.mode from SNI_ONLY to DEFAULT. AWS IoT cannot change a registered CA's \
         mode, and registering the same certificate again in this account fails \
         (ResourceAlreadyExists), so this deploy would fail; nothing was changed. To change \
         the mode, deregister the CA, then register it in the other mode:
  1. jitr-infra destroy --stage e2e
     a CA kept by ca.retain_on_delete or ca.adopt stays registered; deregister it with
       aws iot update-ca-certificate --certificate-id {ca_id} --new-status INACTIVE
       aws iot delete-ca-certificate --certificate-id {ca_id}
  2. jitr-infra deploy --stage e2e   (registers the CA in DEFAULT mode)
Devices signed by this CA cannot register between the two steps.
"
    );
    for command in [
        &["diff", "--stage", "e2e"][..],
        &["deploy", "--stage", "e2e", "--require-approval", "never"][..],
    ] {
        let o = p.run(command, &endpoint, &[("E2E_CA_KEY", &key)]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.ends_with(&expected), "{}", text(&o));
    }
    assert_eq!(
        change_sets(&p.stack).await,
        before,
        "no change set was made"
    );
    assert_eq!(
        stack_status(&p.stack).await.as_deref(),
        Some("CREATE_COMPLETE")
    );
    let iot = moto().iot().await;
    let ca = iot
        .describe_ca_certificate()
        .certificate_id(&ca_id)
        .send()
        .await
        .unwrap();
    let d = ca.certificate_description().unwrap();
    assert_eq!(d.status(), Some(&CaCertificateStatus::Active));
    assert_eq!(d.certificate_mode().map(|m| m.as_str()), Some("SNI_ONLY"));

    let o = p.run(&["destroy", "--stage", "e2e", "--yes"], &endpoint, &[]);
    assert!(o.status.success(), "{}", text(&o));
}

/// A 12-digit account id no other test uses.
fn fresh_account() -> String {
    let digits: String = unique("acct")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
        .to_string();
    format!("9{:0>11}", &digits[digits.len().saturating_sub(11)..])
}

/// Credentials of `account`: a session of a role there that trusts the default account, as in
/// a multi-account setup (the harness refuses AssumeRole of a role that does not exist).
async fn credentials_for(account: &str) -> Vec<(String, String)> {
    let endpoint = moto().endpoint();
    let admin = testkit::accounts::admin(endpoint, account);
    let role =
        testkit::accounts::create_role(endpoint, &admin, &unique("jitr-e2e"), testkit::ACCOUNT);
    testkit::accounts::assume(endpoint, &role).env()
}

fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// SDK configuration acting as whoever `env` (from [`credentials_for`]) names.
async fn conf_as(env: &[(String, String)]) -> aws_config::SdkConfig {
    let get = |k: &str| env.iter().find(|(n, _)| n == k).unwrap().1.clone();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(testkit::REGION))
        .endpoint_url(moto().endpoint())
        .credentials_provider(aws_sdk_cloudformation::config::Credentials::new(
            get("AWS_ACCESS_KEY_ID"),
            get("AWS_SECRET_ACCESS_KEY"),
            Some(get("AWS_SESSION_TOKEN")),
            None,
            "e2e",
        ))
        .load()
        .await
}

async fn s3_as(env: &[(String, String)]) -> aws_sdk_s3::Client {
    let conf = conf_as(env).await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    )
}

/// Every object in `bucket` with its bytes, read as the bucket's owner.
async fn objects(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<(String, Vec<u8>)> {
    let listed = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    let mut all = Vec::new();
    for o in listed.contents() {
        let key = o.key().unwrap().to_string();
        let body = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        all.push((key, body.body.collect().await.unwrap().to_vec()));
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_bucket_of_the_asset_bucket_name_is_refused_and_untouched() {
    let endpoint = moto().endpoint().to_string();
    let ours = fresh_account();
    let theirs = fresh_account();
    let as_us = credentials_for(&ours).await;
    let as_them = credentials_for(&theirs).await;

    // Another account takes our asset bucket's name first, and puts something in it.
    let bucket = format!("jitr-assets-{ours}-{}", testkit::REGION);
    let squatter = s3_as(&as_them).await;
    squatter
        .create_bucket()
        .bucket(&bucket)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                    testkit::REGION,
                ))
                .build(),
        )
        .send()
        .await
        .unwrap();
    squatter
        .put_object()
        .bucket(&bucket)
        .key("planted.txt")
        .body(b"not yours".to_vec().into())
        .send()
        .await
        .unwrap();
    let before = objects(&squatter, &bucket).await;

    let p = Project::new("  mode: SNI_ONLY\n", None);
    let o = p.run(
        &["deploy", "--stage", "e2e", "--require-approval", "never"],
        &endpoint,
        &env_refs(&as_us),
    );
    assert_clean_failure(
        &o,
        &format!(
            "asset bucket {bucket}: the bucket exists but belongs to another AWS account, not \
             {ours} (S3 bucket names are global). Refusing to read from or write to it: the \
             Lambda code would come from a bucket someone else controls. If that account is \
             yours too, delete the bucket there and deploy again"
        ),
    );
    assert_eq!(
        objects(&squatter, &bucket).await,
        before,
        "bucket untouched"
    );
    let cfn = aws_sdk_cloudformation::Client::new(&conf_as(&as_us).await);
    assert!(
        cfn.describe_stacks()
            .stack_name(&p.stack)
            .send()
            .await
            .is_err(),
        "no stack"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stage_name_with_an_underscore_makes_a_valid_change_set_name() {
    let endpoint = moto().endpoint().to_string();
    let p = Project::new("  mode: SNI_ONLY\n", None);
    std::fs::rename(
        p.dir.join("stacks/e2e.yaml"),
        p.dir.join("stacks/eu_prod.yaml"),
    )
    .unwrap();
    let o = p.run(
        &["deploy", "--stage", "eu_prod", "--no-execute", "--json"],
        &endpoint,
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let outcome: Value = serde_json::from_slice(&o.stdout).unwrap();
    let name = outcome["change_set_name"].as_str().unwrap();
    assert!(name.starts_with("jitr-eu-prod-"), "{name}");
    assert!(
        name.len() <= 128 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
        "{name}"
    );
    assert_eq!(change_sets(&p.stack).await, 1);
}

/// Sets the Lambda concurrency limit of `account` in the test region, as a new account has.
fn set_concurrency_limit(account: &str, limit: u32) {
    let body = json!({"account": account, "region": testkit::REGION, "limit": limit});
    let resp = moto_request(
        None,
        "POST",
        "/moto-api/jitr/lambda-concurrency-limit",
        &[("content-type", "application/json")],
        body.to_string().into_bytes(),
    );
    assert_eq!(resp.status, 200);
}

async fn reserved_concurrency(env: &[(String, String)], function: &str) -> Option<i32> {
    aws_sdk_lambda::Client::new(&conf_as(env).await)
        .get_function_concurrency()
        .function_name(function)
        .send()
        .await
        .unwrap()
        .reserved_concurrent_executions()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reservation_the_account_cannot_give_is_refused_before_any_change_set() {
    let endpoint = moto().endpoint().to_string();
    let account = fresh_account();
    set_concurrency_limit(&account, 10);
    let as_new = credentials_for(&account).await;
    let p = Project::with_activator(
        "  mode: SNI_ONLY\n",
        None,
        "  log_retention_days: 1\n  reserved_concurrency: 5\n",
    );
    let o = p.run(&["deploy", "--stage", "e2e"], &endpoint, &env_refs(&as_new));
    assert_clean_failure(
        &o,
        &format!(
            "stacks/e2e.yaml: 1 problem\n  stacks/e2e.yaml:10: activator.reserved_concurrency: 5 \
             cannot be reserved: account {account} has a Lambda concurrency limit of 10 in \
             eu-west-1 with 10 unreserved, and Lambda keeps 10 unreserved, so at most 0 can be \
             reserved for the activator. Either remove activator.reserved_concurrency (the \
             activator then runs without a reservation), or ask for a higher Lambda \"Concurrent \
             executions\" quota in eu-west-1 (Service Quotas, quota code L-B99A9384)\n"
        ),
    );
    let conf = conf_as(&as_new).await;
    let cfn = aws_sdk_cloudformation::Client::new(&conf);
    assert!(
        cfn.describe_stacks()
            .stack_name(&p.stack)
            .send()
            .await
            .is_err(),
        "no stack"
    );
    let left = cfn.list_change_sets().stack_name(&p.stack).send().await;
    assert!(
        left.map(|l| l.summaries().is_empty()).unwrap_or(true),
        "no change set"
    );
    // Refused before anything was made: not even the asset bucket.
    let bucket = format!("jitr-assets-{account}-{}", testkit::REGION);
    let head = s3_as(&as_new)
        .await
        .head_bucket()
        .bucket(&bucket)
        .send()
        .await;
    assert!(head.is_err(), "no asset bucket");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unset_reservation_deploys_in_a_new_account_without_one_and_says_so() {
    let endpoint = moto().endpoint().to_string();
    let account = fresh_account();
    set_concurrency_limit(&account, 10);
    let as_new = credentials_for(&account).await;
    let p = Project::with_activator("  mode: SNI_ONLY\n", None, "  log_retention_days: 1\n");
    let args = ["deploy", "--stage", "e2e", "--require-approval", "never"];
    let o = p.run(&args, &endpoint, &env_refs(&as_new));
    assert!(o.status.success(), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!(
            "activator: deploying without reserved concurrency: account {account} has a Lambda \
             concurrency limit of 10 in eu-west-1 with 10 unreserved, and Lambda keeps 10 \
             unreserved, so at most 0 could be reserved (the stage's API rates need 7). The \
             activator shares the account's unreserved concurrency; after a quota increase, set \
             activator.reserved_concurrency to cap it"
        )),
        "{}",
        text(&o)
    );
    assert!(
        stderr.contains(
            "10,000 devices take about 17 min; no reservation: rates are not split, containers \
             back off when throttled\n"
        ),
        "{}",
        text(&o)
    );
    let function = format!("{}-activator", p.stack);
    assert_eq!(reserved_concurrency(&as_new, &function).await, None);

    // Redeployed unchanged: still none, and nothing to do.
    let o = p.run(&args, &endpoint, &env_refs(&as_new));
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("no changes"),
        "{}",
        text(&o)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unset_reservation_in_a_big_account_reserves_what_the_rates_need() {
    let endpoint = moto().endpoint().to_string();
    let as_big = credentials_for(&fresh_account()).await;
    let p = Project::with_activator("  mode: SNI_ONLY\n", None, "  log_retention_days: 1\n");
    let o = p.run(
        &["deploy", "--stage", "e2e", "--require-approval", "never"],
        &endpoint,
        &env_refs(&as_big),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(
            "activator: reserving 7 concurrent executions (what the stage's API rates need; \
             set activator.reserved_concurrency to change it)"
        ),
        "{}",
        text(&o)
    );
    let function = format!("{}-activator", p.stack);
    assert_eq!(reserved_concurrency(&as_big, &function).await, Some(7));

    // Redeployed with --json: no changes, and the capacity with the reservation deploy kept.
    let o = p.run(
        &["deploy", "--stage", "e2e", "--json"],
        &endpoint,
        &env_refs(&as_big),
    );
    assert!(o.status.success(), "{}", text(&o));
    let result: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(result["outcome"], "noChanges", "{result:#}");
    assert_eq!(
        result["capacity"],
        json!({
            "devicesPerSecond": 10.0,
            "bound": "UpdateCertificate",
            "boundRate": 10.0,
            "repeated": {"eventsPerDevice": 3.0, "devicesPerSecond": 10.0 / 3.0, "bound": "DescribeCertificate"},
            "batchDevices": 10000,
            "batchSeconds": 1000.0,
            "reservedConcurrency": 7,
            "reservation": "deployed",
        }),
        "{result:#}"
    );
}

/// CA rotation end to end: deploy with CA A and activate a device; add CA B (`ca:` becomes a
/// list, A named `default`) and deploy: nothing replaces or removes A's registration, and
/// devices of both CAs activate through the deployed activator; then, with A left out of the
/// list, `diff` warns with A's ACTIVE device count.
#[tokio::test(flavor = "multi_thread")]
async fn rotating_the_ca_adds_the_new_one_beside_the_old_and_counts_the_old_one_s_devices() {
    let p = Project::new("  mode: SNI_ONLY\n", None);
    let a_id = deploy(&p);
    let o = Onboarding::of(&p);
    let (a_cert, _) = pending_device(&p).await;
    let (status, body) = invoke(&o.function, &registered_event(&a_cert, &a_id));
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("activated")),
        "{body}"
    );

    // Add B, the existing CA named `default`.
    let b = TestCa::new(&unique("E2E CA B"));
    std::fs::write(p.dir.join("certs/b.pem"), &b.pem).unwrap();
    let one = "ca:\n  certificate: certs/ca.pem\n  mode: SNI_ONLY\n";
    let a_entry = "  - name: default\n    certificate: certs/ca.pem\n    mode: SNI_ONLY\n";
    let b_entry = "  - name: ca-b\n    certificate: certs/b.pem\n    mode: SNI_ONLY\n";
    p.edit_stage(|y| y.replace(one, &format!("ca:\n{a_entry}{b_entry}")));
    let out = p.run(
        &["diff", "--stage", "e2e", "--json"],
        moto().endpoint(),
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    for r in d["resources"].as_array().unwrap() {
        if r["logicalId"] == "CaRegistration" || r["logicalId"] == "RegistrationRule" {
            panic!("the existing CA's resources must not change: {r:#}");
        }
    }
    assert!(d["fleetBreaking"].as_array().unwrap().is_empty(), "{d:#}");
    assert_eq!(d["cas"]["added"][0]["name"], "ca-b", "{d:#}");
    assert_eq!(d["cas"]["added"][0]["logicalId"], "CaRegistrationCaB");
    assert_eq!(d["cas"]["removed"], json!([]));

    let outcome = deploy_outcome(&p);
    assert_eq!(
        outcome["outputs"]["CaCertificateId"],
        json!(a_id),
        "A kept its registration"
    );
    let b_id = outcome["outputs"]["CaCertificateIdCaB"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(b_id, a_id);

    // Devices of both CAs activate through the deployed activator.
    let iot = moto().iot().await;
    let (b_cert, _) = testkit::jitr::register_pending(&iot, &b, &unique("e2e-b")).await;
    let (status, body) = invoke(&o.function, &registered_event(&b_cert, &b_id));
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("activated")),
        "{body}"
    );
    let (a_cert2, _) = pending_device(&p).await;
    let (status, body) = invoke(&o.function, &registered_event(&a_cert2, &a_id));
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("activated")),
        "{body}"
    );

    // `status` reports both CAs: A as `ca`, B among `otherCas`.
    let out = p.run(
        &["status", "--stage", "e2e", "--json"],
        moto().endpoint(),
        &[],
    );
    let st: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(st["ca"]["id"], json!(a_id), "{st:#}");
    assert_eq!(st["otherCas"][0]["id"], json!(b_id), "{st:#}");
    assert_eq!(st["otherCas"][0]["status"], "ACTIVE", "{st:#}");

    // Remove A: the diff counts its ACTIVE devices (two) and says so loudly.
    p.edit_stage(|y| y.replace(a_entry, ""));
    let out = p.run(
        &["diff", "--stage", "e2e", "--json"],
        moto().endpoint(),
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        d["cas"]["removed"][0]["logicalId"], "CaRegistration",
        "{d:#}"
    );
    assert_eq!(d["cas"]["removed"][0]["certificateId"], json!(a_id));
    assert_eq!(d["cas"]["removed"][0]["activeDevices"], 2, "{d:#}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("CA default has 2 ACTIVE device certificates"),
        "{stderr}"
    );
}
