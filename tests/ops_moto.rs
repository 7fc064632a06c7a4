//! `status` and `redrive` end to end: the real `jitr-infra` binary against moto (with
//! `tests/moto_server.py` running the real activator `bootstrap` for Lambda invocations).

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StateValue};
use jitr_contract::rates::IotApi;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;
use testkit::jitr::{invocation_record, output_text as text, registered_event};
use testkit::lambda_async::{AsyncConfig, AsyncLambda, AsyncStats};
use testkit::pki::TestCa;
use testkit::sqs::Sqs;
use testkit::throttle::{Fault, ThrottlingProxy};
use testkit::{moto, unique};

/// A throwaway project with one deployed stage (`e2e`) whose CA the test owns.
struct Deployed {
    fixture: testkit::project::Project,
    ca: TestCa,
    stack: String,
    ca_id: String,
    conf: aws_config::SdkConfig,
}

impl Deployed {
    fn new() -> Deployed {
        let fixture = testkit::project::Project::new("jitr-ops");
        let ca = fixture.new_ca("Ops CA");
        let stack = testkit::project::stack_name("jitr-ops");
        fixture.stage(
            "e2e",
            &format!(
                "stack_name: {stack}\nregion: {}\nca:\n  certificate: certs/ca.pem\n  mode: SNI_ONLY\n\
                 activator:\n  reserved_concurrency: 2\n  log_retention_days: 1\n  timeout_seconds: 10\n",
                testkit::REGION
            ),
        );
        let conf = testkit_conf();
        let mut d = Deployed {
            fixture,
            ca,
            stack,
            ca_id: String::new(),
            conf,
        };
        let outcome = d
            .fixture
            .deploy(env!("CARGO_BIN_EXE_jitr-infra"), "e2e", moto().endpoint());
        d.ca_id = outcome["outputs"]["CaCertificateId"]
            .as_str()
            .unwrap()
            .to_string();
        d
    }

    fn run(&self, args: &[&str]) -> Output {
        self.fixture
            .run_aws(env!("CARGO_BIN_EXE_jitr-infra"), args, moto().endpoint())
    }

    /// Runs `args` with `--json`: (exit code, the JSON document on stdout).
    fn json(&self, args: &[&str]) -> (i32, Value, Output) {
        let mut all = args.to_vec();
        all.push("--json");
        let o = self.run(&all);
        let v = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&o)));
        (o.status.code().unwrap_or(-1), v, o)
    }

    fn function(&self) -> String {
        format!("{}-activator", self.stack)
    }

    fn function_arn(&self) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{}",
            testkit::REGION,
            testkit::ACCOUNT,
            self.function()
        )
    }

    async fn queue_url(&self) -> String {
        sqs(&self.conf)
            .get_queue_url()
            .queue_name(format!("{}-activator-failures", self.stack))
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_string()
    }

    async fn send(&self, body: &str) {
        sqs(&self.conf)
            .send_message()
            .queue_url(self.queue_url().await)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    /// Messages in the failure queue, visible and in flight.
    async fn queue_depth(&self) -> (u64, u64) {
        let out = sqs(&self.conf)
            .get_queue_attributes()
            .queue_url(self.queue_url().await)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await
            .unwrap();
        let n = |k: &str| {
            out.attributes()
                .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::from(k)))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (
            n("ApproximateNumberOfMessages"),
            n("ApproximateNumberOfMessagesNotVisible"),
        )
    }

    /// Adds (or, with `None`, removes) variables of the activator's environment.
    async fn set_env(&self, vars: &[(&str, Option<&str>)]) {
        let mut env = self.function_env().await;
        for (k, v) in vars {
            match v {
                Some(v) => env.insert(k.to_string(), v.to_string()),
                None => env.remove(*k),
            };
        }
        aws_sdk_lambda::Client::new(&self.conf)
            .update_function_configuration()
            .function_name(self.function())
            .environment(
                aws_sdk_lambda::types::Environment::builder()
                    .set_variables(Some(env.into_iter().collect()))
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
}

fn testkit_conf() -> aws_config::SdkConfig {
    let creds = aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "ops");
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(testkit::REGION))
                .endpoint_url(moto().endpoint())
                .credentials_provider(creds)
                .load(),
        )
    })
}

fn sqs(conf: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(conf)
}

fn attention(v: &Value) -> Vec<String> {
    v["attention"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn status_is_healthy_then_names_each_thing_that_needs_attention() {
    let d = Deployed::new();
    let cw = aws_sdk_cloudwatch::Client::new(&d.conf);

    // Healthy: exit 0, every area in the documented shape.
    let (code, v, o) = d.json(&["status", "--stage", "e2e"]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(v["healthy"], true, "{v:#}");
    assert_eq!(v["attention"], json!([]));
    assert_eq!(v["stack"], d.stack.as_str());
    assert_eq!(v["ca"]["id"], d.ca_id.as_str());
    assert_eq!(v["ca"]["status"], "ACTIVE");
    assert_eq!(v["ca"]["autoRegistration"], true);
    assert!(v["ca"]["expiresInDays"].as_i64().unwrap() > 30, "{v:#}");
    assert_eq!(v["rule"]["enabled"], true);
    assert_eq!(v["pending"]["count"], 0);
    assert_eq!(v["pending"]["truncated"], false);
    assert_eq!(
        v["pending"]["graceSeconds"], 900,
        "the stage's default grace, as deployed"
    );
    assert_eq!(v["failureQueue"]["visible"], 0);
    assert_eq!(v["failureQueue"]["inFlight"], 0);
    assert_eq!(v["capacity"]["bound"], "UpdateCertificate");
    assert_eq!(v["capacity"]["devicesPerSecond"], 10.0);
    assert_eq!(v["capacity"]["recommendedReservation"], 7);
    assert_eq!(
        v["capacity"]["reservedConcurrency"], 2,
        "the stage's reservation"
    );
    let alarms = v["alarms"].as_array().unwrap();
    assert_eq!(alarms.len(), 6, "the stack's alarms: {v:#}");
    let prefix = format!("{}-alarm-", d.stack);
    assert!(
        alarms
            .iter()
            .all(|a| a["name"].as_str().unwrap().starts_with(&prefix) && a["state"] != "ALARM"),
        "{v:#}"
    );
    for k in [
        "activated",
        "alreadyActive",
        "rejected",
        "errors",
        "lambdaThrottles",
    ] {
        assert_eq!(v["lastHour"][k], 0.0, "{k}: {v:#}");
    }

    // The last hour's figures come from CloudWatch: the activator's metrics, by function.
    let datum = |name: &str, value: f64| {
        MetricDatum::builder()
            .metric_name(name)
            .dimensions(
                Dimension::builder()
                    .name("FunctionName")
                    .value(d.function())
                    .build(),
            )
            .value(value)
            .build()
    };
    cw.put_metric_data()
        .namespace(jitr_contract::metrics::NAMESPACE)
        .metric_data(datum(jitr_contract::metrics::ACTIVATED, 3.0))
        .metric_data(datum(jitr_contract::metrics::IOT_THROTTLED, 2.0))
        .send()
        .await
        .unwrap();
    let (code, v, o) = d.json(&["status", "--stage", "e2e"]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(v["lastHour"]["activated"], 3.0, "{v:#}");
    assert_eq!(v["lastHour"]["iotThrottled"], 2.0, "{v:#}");

    // And from the activator itself: its EMF log line (a malformed event is counted) reaches
    // CloudWatch through the function's log, as on Lambda (tests/moto_jitr/emf_metrics.py).
    let invoked = aws_sdk_lambda::Client::new(&d.conf)
        .invoke()
        .function_name(d.function())
        .payload(aws_smithy_types::Blob::new(r#"{"not":"an event"}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(invoked.function_error(), None);
    let (code, v, o) = d.json(&["status", "--stage", "e2e"]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(v["lastHour"]["malformed"], 1.0, "{v:#}");

    // A pending certificate older than the grace period (the deployed activator's, here 0 s).
    d.set_env(&[(jitr_contract::sweep::ENV_GRACE_SECONDS, Some("0"))])
        .await;
    let iot = moto().iot().await;
    let (cert_id, _) = testkit::jitr::register_pending(&iot, &d.ca, &unique("ops-device")).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (code, v, o) = d.json(&["status", "--stage", "e2e"]);
    assert_eq!(code, 5, "{}", text(&o));
    assert_eq!(v["healthy"], false);
    assert_eq!(v["pending"]["count"], 1, "{v:#}");
    assert_eq!(v["pending"]["overGrace"], 1, "{v:#}");
    let items = attention(&v);
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(
        items[0].starts_with("1 pending certificate is older than the 0-minute grace period: "),
        "{items:?}"
    );
    d.set_env(&[(jitr_contract::sweep::ENV_GRACE_SECONDS, None)])
        .await;

    // A message in the failure queue.
    let record = invocation_record(
        &d.function_arn(),
        &registered_event(&cert_id, &d.ca_id),
        "AwsIotError",
        "test",
    );
    d.send(&record.to_string()).await;
    let (code, v, o) = d.json(&["status", "--stage", "e2e"]);
    assert_eq!(code, 5, "{}", text(&o));
    assert_eq!(v["failureQueue"]["visible"], 1, "{v:#}");
    assert_eq!(
        attention(&v),
        ["failure queue has 1 message: run jitr-infra redrive --stage e2e"]
    );

    // An alarm of the stack in ALARM (SetAlarmState, as AWS allows for testing an alarm).
    let alarm = format!("{}-alarm-activator-errors", d.stack);
    cw.set_alarm_state()
        .alarm_name(&alarm)
        .state_value(StateValue::Alarm)
        .state_reason("test")
        .send()
        .await
        .unwrap();
    let (code, v, o) = d.json(&["status", "--stage", "e2e"]);
    assert_eq!(code, 5, "{}", text(&o));
    assert!(
        v["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == alarm.as_str() && a["state"] == "ALARM"),
        "{v:#}"
    );
    assert!(
        attention(&v).contains(&format!("alarm {alarm} is in ALARM")),
        "{v:#}"
    );

    // Text: one line per area, and the attention items.
    let o = d.run(&["status", "--stage", "e2e"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for want in [
        "CA ",
        "ACTIVE, auto-registration on",
        "failure queue 1",
        "last hour: 3 activated",
        "alarms: ",
        "capacity ~10.0 devices/s (bound UpdateCertificate",
        "needs attention:",
        &format!("alarm {alarm} is in ALARM"),
    ] {
        assert!(out.contains(want), "{want:?} in {}", text(&o));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stage_without_a_stack_is_an_error() {
    let fixture = testkit::project::Project::new("jitr-ops-none");
    let ca = TestCa::new(&unique("Ops CA"));
    fixture.write("certs/ca.pem", &ca.pem);
    fixture.stage(
        "e2e",
        &format!(
            "stack_name: {}\nregion: {}\nca:\n  certificate: certs/ca.pem\n  mode: SNI_ONLY\n",
            unique("never").replace('_', "-"),
            testkit::REGION
        ),
    );
    for cmd in ["status", "redrive"] {
        let mut c = fixture.cli(env!("CARGO_BIN_EXE_jitr-infra"));
        c.arg("--project")
            .arg(&fixture.dir)
            .args([cmd, "--stage", "e2e"]);
        c.env_clear().envs(testkit::cli_env()).env("CI", "true");
        for (k, v) in testkit::aws_env(moto().endpoint()) {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("does not exist") && err.contains("jitr-infra deploy --stage e2e"),
            "{}",
            text(&o)
        );
    }
}

impl Deployed {
    /// The deployed activator's environment (what the stack set).
    async fn function_env(&self) -> BTreeMap<String, String> {
        let lambda = aws_sdk_lambda::Client::new(&self.conf);
        let conf = lambda
            .get_function_configuration()
            .function_name(self.function())
            .send()
            .await
            .unwrap();
        conf.environment()
            .and_then(|e| e.variables())
            .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// Fills the failure queue the way AWS does: the deployed activator's real `bootstrap`,
    /// with the stack's environment (and its layers, as Lambda gives them: see
    /// `testkit::lambda::deployed`), under Lambda's asynchronous invocation (2 containers, two
    /// retries, then an invocation record to the on-failure queue), while `iot` fails.
    async fn fail_events(&self, iot: &ThrottlingProxy, events: &[Value]) -> AsyncStats {
        let mut env = testkit::aws_env(&iot.url());
        env.extend(
            testkit::lambda::deployed(&self.conf, &self.function())
                .await
                .env
                .into_iter()
                .filter(|(k, _)| k.starts_with("JITR_")),
        );
        let config = AsyncConfig {
            on_failure: Some((Sqs::new(moto().endpoint()), self.queue_url().await)),
            timeout: Duration::from_secs(10),
            ..AsyncConfig::new(&self.function(), 2)
        };
        let bootstrap = testkit::lambda::unpack(
            jitr_infra::assets::activator().package,
            jitr_infra::assets::activator().zip,
        );
        let lambda =
            tokio::task::spawn_blocking(move || AsyncLambda::start(&bootstrap, &env, config))
                .await
                .unwrap();
        for event in events {
            lambda.invoke(event.clone());
        }
        tokio::task::block_in_place(|| {
            assert!(lambda.wait_idle(Duration::from_secs(120)), "not drained");
        });
        lambda.stats()
    }

    /// Removes the messages whose body is `body` from the failure queue.
    async fn delete_message(&self, body: &str) {
        let client = sqs(&self.conf);
        let url = self.queue_url().await;
        let out = client
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .visibility_timeout(5)
            .send()
            .await
            .unwrap();
        for m in out.messages() {
            let receipt = m.receipt_handle().unwrap();
            if m.body() == Some(body) {
                client
                    .delete_message()
                    .queue_url(&url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .unwrap();
            } else {
                client
                    .change_message_visibility()
                    .queue_url(&url)
                    .receipt_handle(receipt)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redrive_redelivers_the_failure_queue_and_keeps_what_still_fails() {
    let d = Deployed::new();
    let iot = moto().iot().await;
    let mut devices = Vec::new();
    for _ in 0..3 {
        let cn = unique("ops-device");
        let (id, arn) = testkit::jitr::register_pending(&iot, &d.ca, &cn).await;
        devices.push((cn, id, arn));
    }
    let (bad_id, _) = testkit::jitr::register_pending(&iot, &d.ca, &unique("ops-bad")).await;

    // AWS IoT fails every UpdateCertificate (the last step): each event is tried three times
    // and ends in the stack's failure queue as Lambda's invocation record.
    let failing = ThrottlingProxy::start(moto().host_port(), &[]);
    failing.set_fault(Fault::Operation(IotApi::UpdateCertificate), true);
    let events: Vec<Value> = devices
        .iter()
        .map(|(_, id, _)| id)
        .chain([&bad_id])
        .map(|id| registered_event(id, &d.ca_id))
        .collect();
    let stats = d.fail_events(&failing, &events).await;
    assert_eq!(stats.function_error_count(), 12, "{stats:?}");
    assert_eq!(d.queue_depth().await, (4, 0));
    d.send("not an invocation record").await;

    // The dry run lists and changes nothing: every message is visible again afterwards.
    let (code, v, o) = d.json(&["redrive", "--stage", "e2e", "--dry-run", "--no-sweep"]);
    assert_eq!(code, 5, "an unparsable message: {}", text(&o));
    assert_eq!(v["received"], 5, "{v:#}");
    assert_eq!(v["deleted"], 0);
    assert_eq!(v["results"].as_array().unwrap().len(), 4, "{v:#}");
    assert!(v["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["outcome"] == "would-redrive"));
    assert_eq!(d.queue_depth().await, (5, 0));

    // AWS IoT is back, except for every call about one certificate (the deployed function
    // reaches IoT through the stand-in): three records are redriven and deleted.
    failing.clear_faults();
    failing.set_fault(Fault::Certificate(bad_id.clone()), true);
    d.set_env(&[("AWS_ENDPOINT_URL_IOT", Some(&failing.url()))])
        .await;
    let (code, v, o) = d.json(&["redrive", "--stage", "e2e", "--no-sweep"]);
    assert_eq!(code, 5, "{}", text(&o));
    assert_eq!(v["received"], 5, "{v:#}");
    assert_eq!(v["redriven"], 3, "{v:#}");
    assert_eq!(v["deleted"], 3, "{v:#}");
    assert_eq!(v["remaining"], 2, "{v:#}");
    let outcomes: Vec<(&str, &str)> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["certificateId"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    for (_, id, _) in &devices {
        assert!(outcomes.contains(&(id.as_str(), "activated")), "{v:#}");
    }
    let failed = v["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{v:#}");
    assert_eq!(failed[0]["certificateId"], bad_id.as_str());
    // The activator's own error (a function error), not a failed Invoke call.
    let error_type = failed[0]["errorType"].as_str().unwrap();
    assert!(
        !error_type.is_empty() && error_type != "InvokeFailed",
        "{v:#}"
    );
    let skipped = v["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{v:#}");
    assert!(skipped[0]["reason"]
        .as_str()
        .unwrap()
        .contains("not an invocation record"));
    assert_eq!(v["sweep"], Value::Null);
    for (cn, id, arn) in &devices {
        testkit::jitr::assert_onboarded(&iot, id, cn, arn).await;
        let names = testkit::jitr::attached_policies(&iot, arn).await;
        assert_eq!(names, [format!("{}-device", d.stack).as_str()]);
    }
    // The two kept messages are visible again at once, for the next run or the operator.
    assert_eq!(d.queue_depth().await, (2, 0));
    assert_eq!(status_of(&iot, &bad_id).await, "PENDING_ACTIVATION");

    // IoT answers again, and a device's event was lost altogether (no record anywhere): the
    // record is redriven, and the sweep that follows activates the lost device.
    d.set_env(&[
        ("AWS_ENDPOINT_URL_IOT", None),
        (jitr_contract::sweep::ENV_GRACE_SECONDS, Some("0")),
    ])
    .await;
    d.delete_message("not an invocation record").await;
    let lost_cn = unique("ops-lost");
    let (lost_id, lost_arn) = testkit::jitr::register_pending(&iot, &d.ca, &lost_cn).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, v, o) = d.json(&["redrive", "--stage", "e2e"]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(v["deleted"], 1, "{v:#}");
    assert_eq!(v["failed"], json!([]));
    assert_eq!(v["remaining"], 0);
    assert_eq!(v["sweep"]["complete"], true, "{v:#}");
    assert_eq!(v["sweep"]["activated"], 1, "{v:#}");
    assert_eq!(v["sweep"]["markerOut"], "-", "{v:#}");
    assert_eq!(d.queue_depth().await, (0, 0));
    assert_eq!(status_of(&iot, &bad_id).await, "ACTIVE");
    testkit::jitr::assert_onboarded(&iot, &lost_id, &lost_cn, &lost_arn).await;
}

async fn status_of(iot: &aws_sdk_iot::Client, id: &str) -> String {
    let out = iot
        .describe_certificate()
        .certificate_id(id)
        .send()
        .await
        .unwrap();
    out.certificate_description()
        .unwrap()
        .status()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default()
}
