//! Revocation end to end: the real `jitr-infra` binary against moto (with
//! `tests/moto_server.py` running the real activator `bootstrap` for Lambda invocations).
//! `revoke` by CN, certificate id and serial: REVOKED, the device policy and the Thing
//! detached, a second run "already revoked", nothing matched exit 1.

use aws_sdk_iot::types::CertificateStatus;
use jitr_lambda_common::pki::Certificate;
use serde_json::{json, Value};
use std::process::Output;
use std::time::Duration;
use testkit::jitr::{attached_policies, output_text as text, registered_event};
use testkit::pki::TestCa;
use testkit::{moto, unique};

/// A throwaway project with one deployed stage (`e2e`) whose CA the test owns.
struct Deployed {
    fixture: testkit::project::Project,
    ca: TestCa,
    stack: String,
    ca_id: String,
    policy: String,
}

impl Deployed {
    fn new(stage_extra: &str) -> Deployed {
        let fixture = testkit::project::Project::new("jitr-revoke");
        let ca = fixture.new_ca("Revoke CA");
        let stack = testkit::project::stack_name("jitr-rev");
        fixture.stage("e2e", &stage_text(&stack, stage_extra));
        let mut d = Deployed {
            fixture,
            ca,
            stack,
            ca_id: String::new(),
            policy: String::new(),
        };
        let outcome = d.deploy();
        d.ca_id = outcome["outputs"]["CaCertificateId"]
            .as_str()
            .unwrap()
            .to_string();
        d.policy = outcome["outputs"]["DevicePolicyName"]
            .as_str()
            .unwrap_or_else(|| panic!("no DevicePolicyName output: {outcome:#}"))
            .to_string();
        d
    }

    /// Deploys stage `e2e` as its file now says; the outcome.
    fn deploy(&self) -> Value {
        self.fixture
            .deploy(env!("CARGO_BIN_EXE_jitr-infra"), "e2e", moto().endpoint())
    }

    /// Rewrites the stage file with `stage_extra` after the common part.
    fn restage(&self, stage_extra: &str) {
        self.fixture
            .stage("e2e", &stage_text(&self.stack, stage_extra));
    }

    fn run(&self, args: &[&str]) -> Output {
        self.fixture
            .run_aws(env!("CARGO_BIN_EXE_jitr-infra"), args, moto().endpoint())
    }

    /// Runs `args` with `--json`: (exit code, the JSON document on stdout, the output).
    fn json(&self, args: &[&str]) -> (i32, Value, Output) {
        let mut all = args.to_vec();
        all.push("--json");
        let o = self.run(&all);
        let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        (o.status.code().unwrap_or(-1), v, o)
    }

    /// A device of this CA registered PENDING_ACTIVATION: (id, ARN, serial in normal form).
    async fn device(&self, iot: &aws_sdk_iot::Client, cn: &str) -> (String, String, String) {
        let pem = self.ca.issue(cn);
        let serial = Certificate::from_pem(&pem).unwrap().serial_hex();
        let out = iot
            .register_certificate()
            .certificate_pem(&pem)
            .ca_certificate_pem(&self.ca.pem)
            .status(CertificateStatus::PendingActivation)
            .send()
            .await
            .unwrap();
        let id = out.certificate_id().unwrap().to_string();
        (id, out.certificate_arn().unwrap().to_string(), serial)
    }

    /// The deployed activator handles the device's registered event (synchronously).
    async fn deliver(&self, cert_id: &str) {
        let event = registered_event(cert_id, &self.ca_id).to_string();
        let out = lambda_client()
            .await
            .invoke()
            .function_name(format!("{}-activator", self.stack))
            .payload(aws_smithy_types::Blob::new(event))
            .send()
            .await
            .unwrap();
        assert_eq!(out.function_error(), None, "{:?}", out.payload());
    }
}

fn stage_text(stack: &str, stage_extra: &str) -> String {
    format!(
        "stack_name: {stack}\nregion: {}\nca:\n  certificate: certs/ca.pem\n  mode: SNI_ONLY\n\
         activator:\n  log_retention_days: 1\n  timeout_seconds: 10\n{stage_extra}",
        testkit::REGION
    )
}

async fn sdk_conf() -> aws_config::SdkConfig {
    let creds = aws_sdk_lambda::config::Credentials::new("testing", "testing", None, None, "t");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(testkit::REGION))
        .endpoint_url(moto().endpoint())
        .credentials_provider(creds)
        .load()
        .await
}

async fn lambda_client() -> aws_sdk_lambda::Client {
    aws_sdk_lambda::Client::new(&sdk_conf().await)
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
        .unwrap()
        .as_str()
        .to_string()
}

async fn things_of(iot: &aws_sdk_iot::Client, arn: &str) -> Vec<String> {
    let out = iot
        .list_principal_things()
        .principal(arn)
        .send()
        .await
        .unwrap();
    out.things().to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_by_cn_id_and_serial_detaches_policy_and_thing_and_is_idempotent() {
    let d = Deployed::new("");
    let iot = moto().iot().await;

    // An activated device: ACTIVE, the policy attached, its Thing named by its CN.
    let cn = unique("sensor");
    let (id, arn, _) = d.device(&iot, &cn).await;
    d.deliver(&id).await;
    assert_eq!(status_of(&iot, &id).await, "ACTIVE");
    assert_eq!(attached_policies(&iot, &arn).await, vec![d.policy.clone()]);
    assert_eq!(things_of(&iot, &arn).await, vec![cn.clone()]);

    // --dry-run says what it would do and changes nothing.
    let (code, v, o) = d.json(&["revoke", "--stage", "e2e", "--cn", &cn, "--dry-run"]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(v["method"], "thing", "{v:#}");
    assert_eq!(v["revoked"][0]["status"], "would-do", "{v:#}");
    assert_eq!(status_of(&iot, &id).await, "ACTIVE");

    // --cn: found through the Thing; REVOKED, policy and Thing detached, the Thing kept.
    let (code, v, o) = d.json(&["revoke", "--stage", "e2e", "--cn", &cn]);
    assert_eq!(code, 0, "{}", text(&o));
    let r = &v["revoked"][0];
    assert_eq!(r["certificate"]["certificateId"], id.as_str(), "{v:#}");
    assert_eq!(r["status"], "done");
    assert_eq!(r["policy"], "done");
    assert_eq!(r["things"][0]["thingName"], cn.as_str());
    assert_eq!(status_of(&iot, &id).await, "REVOKED");
    assert!(attached_policies(&iot, &arn).await.is_empty());
    assert!(things_of(&iot, &arn).await.is_empty());
    iot.describe_thing()
        .thing_name(&cn)
        .send()
        .await
        .expect("the Thing stays");

    // Again, by certificate id: nothing left to do, exit 0, said in words.
    let o = d.run(&["revoke", "--stage", "e2e", "--certificate-id", &id]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("already REVOKED") && out.contains("already revoked: nothing to do"),
        "{out}"
    );

    // --serial, as openssl prints it (upper case, colons): a scan, its cost said first. The
    // device is still pending (never activated, no Thing): revoked all the same.
    let (pending, pending_arn, serial) = d.device(&iot, &unique("pending")).await;
    let openssl: Vec<String> = serial
        .to_uppercase()
        .as_bytes()
        .rchunks(2)
        .rev()
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    let o = d.run(&["revoke", "--stage", "e2e", "--serial", &openssl.join(":")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("scanning 2 certificates of CA default")
            && err.contains("DescribeCertificate each"),
        "{err}"
    );
    assert_eq!(status_of(&iot, &pending).await, "REVOKED");
    assert!(attached_policies(&iot, &pending_arn).await.is_empty());

    // --cn of a device without a Thing: the Thing lookup finds nothing, the scan finds it.
    let lone = unique("lone");
    let (lone_id, _, _) = d.device(&iot, &lone).await;
    let (code, v, o) = d.json(&["revoke", "--stage", "e2e", "--cn", &lone]);
    assert_eq!(code, 0, "{}", text(&o));
    assert_eq!(v["method"], "scan", "{v:#}");
    assert_eq!(v["scanned"], 3, "{v:#}");
    assert_eq!(status_of(&iot, &lone_id).await, "REVOKED");

    // Nothing matched: exit 1, the message names what was searched.
    let o = d.run(&["revoke", "--stage", "e2e", "--serial", "0x0badc0de"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no certificate of stage e2e's CAs matched serial 0x0badc0de"),
        "{err}"
    );
    assert!(err.contains("nothing was revoked"), "{err}");

    // Bad input: a serial that is not hex, an id that is not one, a certificate of another CA.
    let o = d.run(&["revoke", "--stage", "e2e", "--serial", "12:zz"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--serial: \"12:zz\" is not a serial number")
    );
    let o = d.run(&["revoke", "--stage", "e2e", "--certificate-id", "abc"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("64 hex digits"));
    let other = TestCa::new(&unique("Other CA"));
    let foreign = iot
        .register_certificate_without_ca()
        .certificate_pem(other.issue("stranger"))
        .status(CertificateStatus::Active)
        .send()
        .await
        .unwrap();
    let foreign_id = foreign.certificate_id().unwrap();
    let o = d.run(&["revoke", "--stage", "e2e", "--certificate-id", foreign_id]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("was not issued by one of this stage's CAs"),
        "{}",
        text(&o)
    );
    assert_eq!(status_of(&iot, foreign_id).await, "ACTIVE");

    // Usage: exactly one of --certificate-id, --serial, --cn.
    let o = d.run(&["revoke", "--stage", "e2e"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

impl Deployed {
    /// One run of the deployed activator's sweep (synchronously); its report.
    async fn sweep(&self) -> Value {
        let event = json!({"kind": "jitr-sweep", "version": 1, "trigger": "schedule"});
        let out = lambda_client()
            .await
            .invoke()
            .function_name(format!("{}-activator", self.stack))
            .payload(aws_smithy_types::Blob::new(event.to_string()))
            .send()
            .await
            .unwrap();
        let payload = out
            .payload()
            .map(|p| p.as_ref().to_vec())
            .unwrap_or_default();
        assert_eq!(
            out.function_error(),
            None,
            "{}",
            String::from_utf8_lossy(&payload)
        );
        serde_json::from_slice(&payload).unwrap_or(Value::Null)
    }
}

/// The deployed activator run by the test harness (testkit's Runtime API host) with the
/// function's environment and its layer fetched and extracted as Lambda does
/// (`testkit::lambda::deployed`): the listed device's event revokes it.
async fn harness_keeps_out(d: &Deployed, iot: &aws_sdk_iot::Client, id: &str, arn: &str) {
    let function = format!("{}-activator", d.stack);
    let f = testkit::lambda::deployed(&sdk_conf().await, &function).await;
    let opt = f.opt.clone().expect("the activator has a layer");
    let file = &f
        .env
        .iter()
        .find(|(k, _)| k == "JITR_REVOCATION_FILE")
        .expect("JITR_REVOCATION_FILE")
        .1;
    assert!(
        file.starts_with(&*opt.to_string_lossy()) && std::path::Path::new(file).is_file(),
        "{file} in {}",
        opt.display()
    );
    let host = testkit::runtime::RuntimeHost::start();
    let mut env = testkit::aws_env(moto().endpoint());
    env.extend(f.env);
    let activator = jitr_infra::assets::activator();
    let bootstrap = testkit::lambda::unpack(activator.package, activator.zip);
    let mut child = host.spawn(&bootstrap, &env);
    let request = host.invoke(registered_event(id, &d.ca_id), Duration::from_secs(30));
    let answer = host.wait_result(&request, Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    let answer = answer.expect("the harness's activator answers");
    assert!(answer.result.is_ok(), "{:?}", answer.result);
    kept_out(iot, id, arn, "the harness's activator").await;
}

/// Big-endian bytes of a serial in normal form (what a CRL lists).
fn serial_bytes(serial: &str) -> Vec<u8> {
    let even = if serial.len() % 2 == 1 {
        format!("0{serial}")
    } else {
        serial.to_string()
    };
    (0..even.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&even[i..i + 2], 16).unwrap())
        .collect()
}

/// A listed certificate is REVOKED, has no policy and no Thing.
async fn kept_out(iot: &aws_sdk_iot::Client, id: &str, arn: &str, when: &str) {
    assert_eq!(status_of(iot, id).await, "REVOKED", "{when}");
    assert!(attached_policies(iot, arn).await.is_empty(), "{when}");
    assert!(things_of(iot, arn).await.is_empty(), "{when}");
}

/// The revocation list ships with the stack: a deploy that adds `revocation:` adds the layer and
/// changes the activator (nothing else), and the deployed activator reads the list from its
/// layer: a device listed by serial and one listed by the CA's CRL are REVOKED whether their
/// event comes (twice) or the sweep finds them, never ACTIVE, without policy or Thing; an
/// unlisted device activates; a device already ACTIVE when listed stays ACTIVE.
#[tokio::test(flavor = "multi_thread")]
async fn the_deployed_revocation_list_keeps_listed_devices_out() {
    // Sweeps look at certificates pending for at least grace_minutes: 0 here.
    let sweep_now = "reconciler:\n  grace_minutes: 0\n";
    let d = Deployed::new(sweep_now);
    let iot = moto().iot().await;
    let (active, active_arn, active_serial) = d.device(&iot, &unique("early")).await;
    d.deliver(&active).await;
    assert_eq!(status_of(&iot, &active).await, "ACTIVE");

    let (by_serial, by_serial_arn, serial) = d.device(&iot, &unique("listed")).await;
    let (by_crl, by_crl_arn, crl_serial) = d.device(&iot, &unique("crl")).await;
    let (free, free_arn, _) = d.device(&iot, &unique("free")).await;
    let (local, local_arn, local_serial) = d.device(&iot, &unique("local")).await;
    let (crl, _) = d.ca.crl(&[&serial_bytes(&crl_serial)], 2099);
    d.fixture.write("certs/ca.crl", &crl);
    // By serial as openssl prints it (upper case); the active device's too.
    d.restage(&format!(
        "{sweep_now}revocation:\n  serials: [\"{}\", \"0x{active_serial}\", \"{local_serial}\"]\n  \
         crl_files:\n    default: certs/ca.crl\n",
        serial.to_uppercase()
    ));

    // The change: the layer is added, the activator modified in place; nothing else.
    let (code, diff, o) = d.json(&["diff", "--stage", "e2e"]);
    assert_eq!(code, 3, "{}", text(&o));
    let changes: Vec<(String, String)> = diff["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["logicalId"].as_str().unwrap().to_string(),
                r["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("RevocationListLayer".to_string(), "added".to_string()),
            ("ActivatorFunction".to_string(), "modified".to_string()),
        ],
        "{diff:#}"
    );
    assert_ne!(diff["resources"][1]["replacement"], "yes", "{diff:#}");
    d.deploy();
    let conf = lambda_client()
        .await
        .get_function_configuration()
        .function_name(format!("{}-activator", d.stack))
        .send()
        .await
        .unwrap();
    assert_eq!(conf.layers().len(), 1, "{conf:?}");
    harness_keeps_out(&d, &iot, &local, &local_arn).await;

    // Listed by serial: its event, twice, then a sweep.
    for when in ["event", "re-delivered event"] {
        d.deliver(&by_serial).await;
        kept_out(&iot, &by_serial, &by_serial_arn, when).await;
    }
    // Listed by the CRL: the sweep finds it first, then its event comes twice.
    let report = d.sweep().await;
    kept_out(&iot, &by_crl, &by_crl_arn, "sweep").await;
    kept_out(&iot, &by_serial, &by_serial_arn, "sweep").await;
    for when in ["late event", "late re-delivered event"] {
        d.deliver(&by_crl).await;
        kept_out(&iot, &by_crl, &by_crl_arn, when).await;
    }
    // The unlisted pending device: the same sweep activated it.
    assert_eq!(status_of(&iot, &free).await, "ACTIVE", "{report:#}");
    assert_eq!(
        attached_policies(&iot, &free_arn).await,
        vec![d.policy.clone()]
    );
    // Already ACTIVE when listed: stays ACTIVE (jitr-infra revoke is for that), also when
    // its event comes again.
    d.deliver(&active).await;
    assert_eq!(status_of(&iot, &active).await, "ACTIVE");
    assert_eq!(
        attached_policies(&iot, &active_arn).await,
        vec![d.policy.clone()]
    );

    // A changed list: a new layer version replaces the old, the activator follows it.
    let (late, late_arn, late_serial) = d.device(&iot, &unique("late")).await;
    d.restage(&format!(
        "{sweep_now}revocation:\n  serials: [\"{serial}\", \"{late_serial}\"]\n  crl_files:\n    \
         default: certs/ca.crl\n"
    ));
    let (code, diff, o) = d.json(&["diff", "--stage", "e2e"]);
    assert_eq!(code, 3, "{}", text(&o));
    let layer = &diff["resources"][0];
    assert_eq!(layer["logicalId"], "RevocationListLayer", "{diff:#}");
    assert_eq!(layer["replacement"], "yes", "{diff:#}");
    d.deploy();
    let layers: Vec<String> = lambda_client()
        .await
        .get_function_configuration()
        .function_name(format!("{}-activator", d.stack))
        .send()
        .await
        .unwrap()
        .layers()
        .iter()
        .filter_map(|l| l.arn().map(str::to_string))
        .collect();
    assert_eq!(layers.len(), 1);
    assert_ne!(Some(layers[0].as_str()), conf.layers()[0].arn());
    for when in ["event after the list changed", "its re-delivery"] {
        d.deliver(&late).await;
        kept_out(&iot, &late, &late_arn, when).await;
    }
}
