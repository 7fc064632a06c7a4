//! `ca create`, `ca inspect` and `device issue` through the real binary: what they write (and
//! that openssl accepts it), what they report, and bad input refused with a clear message,
//! exit 1 and nothing written.

use predicates::str::contains;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use testkit::project::{Project, Tree};

const BIN: &str = env!("CARGO_BIN_EXE_jitr-infra");

/// `openssl` on PATH, else `None` (and the reason printed once per test).
fn openssl() -> Option<&'static str> {
    let found = Command::new("openssl").arg("version").output().is_ok();
    if !found {
        eprintln!("SKIPPED openssl assertions: no `openssl` on PATH");
    }
    found.then_some("openssl")
}

fn openssl_out(args: &[&str], dir: &Path) -> (bool, String) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Runs the CLI in the project; (exit code, stdout, stderr).
fn run(p: &Project, args: &[&str]) -> (i32, String, String) {
    let o = p
        .cli(BIN)
        .args(args)
        .env_remove("CA_KEY_FOR_TEST")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// A stage `dev` on `certs/ca.pem`, with `extra` appended to its `ca:` and `activator` sections.
fn stage(p: &Project, ca_extra: &str, activator: &str) {
    p.stage(
        "dev",
        &format!(
            "stack_name: jitr-pki-test\nregion: eu-west-1\nca:\n  certificate: certs/ca.pem\n\
             {ca_extra}activator:\n  create_thing: true\n  thing_name: subject-cn\n{activator}"
        ),
    );
}

/// `ca create` into the project's certs/ as `ca` (ca.pem, ca.key).
fn create_ca(p: &Project, key_type: &str) -> Value {
    let (code, out, err) = run(
        p,
        &[
            "ca",
            "create",
            "--name",
            "ca",
            "--out",
            "certs",
            "--key-type",
            key_type,
            "--subject",
            "CN=Test CA,O=Acme,OU=IoT,C=DE",
            "--days",
            "400",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    json_of(&out)
}

#[test]
fn ca_create_and_device_issue_make_what_openssl_verifies_for_every_key_type() {
    let ssl = openssl();
    for key_type in ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072"] {
        let p = Project::new(&format!("jitr-pki-{key_type}"));
        let made = create_ca(&p, key_type);
        assert_eq!(made["certificate"], "certs/ca.pem", "{made}");
        assert_eq!(mode(&p.path("certs/ca.key")), 0o600);
        assert!(!made.to_string().contains("PRIVATE KEY"));
        let (code, out, _) = run(&p, &["ca", "inspect", "certs/ca.pem", "--json"]);
        assert_eq!(code, 0);
        let i = json_of(&out);
        assert_eq!(i["certificateId"], made["certificateId"]);
        assert_eq!(i["subject"], "CN=Test CA, O=Acme, OU=IoT, C=DE", "{i}");
        assert_eq!(i["isCa"], true);
        assert_eq!(i["activatorCanVerify"], true);
        assert_eq!(i["warnings"], Value::Array(vec![]), "{i}");
        stage(&p, "  mode: SNI_ONLY\n", "");
        for dev_key in ["ec-p256", "rsa-2048"] {
            let cn = format!("dev-{dev_key}");
            let (code, out, err) = run(
                &p,
                &[
                    "device",
                    "issue",
                    "--cn",
                    &cn,
                    "--ca-key",
                    "certs/ca.key",
                    "--out",
                    "devices",
                    "--key-type",
                    dev_key,
                    "--json",
                ],
            );
            assert_eq!(code, 0, "{err}");
            let issued = json_of(&out);
            let dev = &issued["devices"][0];
            assert_eq!(dev["files"]["key"], format!("devices/{cn}.key"));
            assert_eq!(mode(&p.path(&format!("devices/{cn}.key"))), 0o600);
            assert!(!out.contains("PRIVATE KEY") && !err.contains("PRIVATE KEY"));
            if ssl.is_some() {
                check_with_openssl(&p, &cn, dev_key, key_type);
            }
        }
    }
}

/// `openssl verify` accepts the device against the CA; its extensions are a client's.
fn check_with_openssl(p: &Project, cn: &str, dev_key: &str, ca_key: &str) {
    let crt = format!("devices/{cn}.crt");
    let (ok, text) = openssl_out(&["verify", "-CAfile", "certs/ca.pem", &crt], &p.dir);
    assert!(ok && text.contains(": OK"), "{ca_key}/{dev_key}: {text}");
    let chain = format!("devices/{cn}.chain.pem");
    let (ok, text) = openssl_out(
        &[
            "verify",
            "-CAfile",
            "certs/ca.pem",
            "-untrusted",
            &chain,
            &crt,
        ],
        &p.dir,
    );
    assert!(ok, "{text}");
    let (_, dev) = openssl_out(&["x509", "-in", &crt, "-noout", "-text"], &p.dir);
    let (_, ca) = openssl_out(&["x509", "-in", "certs/ca.pem", "-noout", "-text"], &p.dir);
    assert!(dev.contains("CA:FALSE"), "{dev}");
    assert!(dev.contains("TLS Web Client Authentication"), "{dev}");
    assert!(
        dev.contains(&format!("Subject: CN={cn}")) || dev.contains(&format!("Subject: CN = {cn}")),
        "{dev}"
    );
    let usage = if dev_key.starts_with("rsa") {
        "Digital Signature, Key Encipherment"
    } else {
        "Digital Signature\n"
    };
    assert!(dev.contains(usage), "{dev_key}: {dev}");
    // The device's authority key id is the CA's subject key id.
    let ski = after(&ca, "X509v3 Subject Key Identifier:");
    let aki = after(&dev, "X509v3 Authority Key Identifier:");
    assert!(
        !ski.is_empty() && aki.contains(&ski),
        "AKI {aki} / SKI {ski}"
    );
    let sig = if ca_key.starts_with("rsa") {
        "sha256WithRSAEncryption"
    } else if ca_key == "ec-p384" {
        "ecdsa-with-SHA384"
    } else {
        "ecdsa-with-SHA256"
    };
    assert!(
        dev.contains(&format!("Signature Algorithm: {sig}")),
        "{dev}"
    );
    assert!(
        ca.contains("CA:TRUE") && ca.contains("Certificate Sign"),
        "{ca}"
    );
}

/// The trimmed line after the line holding `label`.
fn after(text: &str, label: &str) -> String {
    let mut lines = text.lines().skip_while(|l| !l.contains(label));
    lines.next();
    lines
        .next()
        .unwrap_or_default()
        .trim()
        .trim_start_matches("keyid:")
        .to_string()
}

#[test]
fn device_issue_batch_uses_the_stage_key_setting_and_checks_every_cn_first() {
    let p = Project::new("jitr-pki-batch");
    create_ca(&p, "ec-p256");
    stage(
        &p,
        "  mode: DEFAULT\n  verification:\n    private_key_file: certs/ca.key\n",
        "  subject_pattern: 'sensor-[0-9]{4}'\n",
    );
    let (code, out, err) = run(
        &p,
        &[
            "device",
            "issue",
            "--cn-template",
            "sensor-{:04}",
            "--count",
            "3",
            "--start",
            "9",
            "--out",
            "fleet",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v = json_of(&out);
    let cns: Vec<&str> = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["cn"].as_str().unwrap())
        .collect();
    assert_eq!(cns, ["sensor-0009", "sensor-0010", "sensor-0011"]);
    let mut files: Vec<String> = std::fs::read_dir(p.path("fleet"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files.len(), 9, "{files:?}");
    assert!(files.contains(&"sensor-0010.chain.pem".to_string()));

    // The env-var form; and the text output lists the files, never the key.
    let key = std::fs::read_to_string(p.path("certs/ca.key")).unwrap();
    let o = p
        .cli(BIN)
        .args([
            "device",
            "issue",
            "--cn",
            "sensor-0100",
            "--ca-key-env",
            "MY_CA_KEY",
            "--out",
            "fleet",
        ])
        .env("MY_CA_KEY", &key)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("fleet/sensor-0100.key  (mode 0600)"),
        "{stdout}"
    );
    assert!(!stdout.contains("PRIVATE KEY"));

    // One CN of the batch outside the pattern: nothing at all is written.
    let before = p.tree();
    let (code, _, err) = run(
        &p,
        &[
            "device",
            "issue",
            "--cn-template",
            "sensor-{:04}",
            "--count",
            "2",
            "--start",
            "9999",
            "--out",
            "fleet",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("CN \"sensor-10000\" does not match activator.subject_pattern"),
        "{err}"
    );
    assert!(!err.contains("sensor-9999\""), "{err}");
    assert_eq!(p.tree(), before);
}

/// Every bad input: exit 1, a message naming the problem, and the project unchanged.
#[test]
fn device_issue_and_ca_create_refuse_bad_input_and_write_nothing() {
    let p = Project::new("jitr-pki-bad");
    create_ca(&p, "ec-p256");
    stage(
        &p,
        "  mode: SNI_ONLY\n",
        "  subject_pattern: 'sensor-[0-9]+'\n",
    );
    let other = Project::new("jitr-pki-other");
    create_ca(&other, "ec-p256");
    p.write(
        "certs/other.key",
        std::fs::read(other.path("certs/ca.key")).unwrap(),
    );
    std::fs::set_permissions(
        p.path("certs/other.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    p.write(
        "certs/loose.key",
        std::fs::read(p.path("certs/ca.key")).unwrap(),
    );
    std::fs::set_permissions(
        p.path("certs/loose.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    p.write("devices/sensor-2.chain.pem", "already here");
    let issue = |cn: &str, key: &str| -> Vec<String> {
        [
            "device", "issue", "--cn", cn, "--ca-key", key, "--out", "devices",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (issue("sensor-1", "certs/other.key"), "the private key does not belong to the CA certificate"),
        (issue("gateway-1", "certs/ca.key"), "CN \"gateway-1\" does not match activator.subject_pattern \"sensor-[0-9]+\""),
        (issue("sensor-1", "certs/loose.key"), "certs/loose.key: the CA private key is readable by group or others (mode 0644); run `chmod 600 certs/loose.key`"),
        (issue("sensor-2", "certs/ca.key"), "devices/sensor-2.chain.pem already exists; refusing to overwrite, nothing was written"),
        (issue("sensor-1", "certs/missing.key"), "certs/missing.key"),
        (["device", "issue", "--cn", "sensor-1", "--out", "devices"].iter().map(|s| s.to_string()).collect(), "no CA private key: give --ca-key FILE or --ca-key-env VAR"),
        (["device", "issue", "--cn", "sensor-1", "--ca-key-env", "CA_KEY_FOR_TEST", "--out", "devices"].iter().map(|s| s.to_string()).collect(), "--ca-key-env: environment variable CA_KEY_FOR_TEST is not set"),
        (["device", "issue", "--cn-template", "sensor", "--ca-key", "certs/ca.key", "--out", "devices"].iter().map(|s| s.to_string()).collect(), "--cn-template \"sensor\": it needs a placeholder"),
        (["device", "issue", "--cn", "sensor-1", "--ca", "backup", "--ca-key", "certs/ca.key", "--out", "devices"].iter().map(|s| s.to_string()).collect(), "has no CA named `backup`"),
        (["ca", "create", "--name", "ca", "--out", "certs"].iter().map(|s| s.to_string()).collect(), "certs/ca.pem, certs/ca.key already exist"),
        (["ca", "create", "--name", "new", "--out", "certs", "--subject", "O=Acme"].iter().map(|s| s.to_string()).collect(), "--subject \"O=Acme\": CN is required"),
        (["ca", "create", "--name", "../x", "--out", "certs"].iter().map(|s| s.to_string()).collect(), "--name \"../x\""),
        (["ca", "inspect", "certs/ca.key"].iter().map(|s| s.to_string()).collect(), "certs/ca.key: not a certificate"),
    ];
    for (args, message) in cases {
        let before = p.tree();
        let (code, out, err) = run(&p, &args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(
            err.contains(message),
            "{args:?}: expected {message:?} in:\n{err}"
        );
        assert!(!err.contains("-----BEGIN"), "no PEM on stderr: {err}");
        assert_eq!(p.tree(), before, "{args:?} changed the project");
    }

    // A Thing-named stage refuses a CN that is no Thing name (no pattern set).
    stage(&p, "  mode: SNI_ONLY\n", "");
    let (code, _, err) = run(
        &p,
        &issue("sensor 1", "certs/ca.key")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(code, 1);
    assert!(err.contains("is not a Thing name"), "{err}");
    // An expired CA in the stage: the stage check names it.
    let expired = testkit::pki::TestCa::expired("Old CA");
    p.write("certs/ca.pem", &expired.pem);
    let before: Tree = p.tree();
    let (code, _, err) = run(
        &p,
        &issue("sensor-1", "certs/ca.key")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("ca.certificate") && err.contains("expired"),
        "{err}"
    );
    assert_eq!(p.tree(), before);
    p.cli(BIN)
        .args(["device", "issue", "--out", "x"])
        .assert()
        .code(2)
        .stderr(contains("--cn"));
}

#[test]
fn ca_inspect_reports_facts_and_warnings_without_failing() {
    let p = Project::new("jitr-pki-inspect");
    // A CA expiring in 30 days, a leaf, an expired CA.
    let (code, _, err) = run(
        &p,
        &[
            "ca",
            "create",
            "--name",
            "short",
            "--out",
            "certs",
            "--days",
            "30",
            "--key-type",
            "rsa-2048",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = run(&p, &["ca", "inspect", "certs/short.pem", "--json"]);
    assert_eq!(code, 0);
    let i = json_of(&out);
    assert_eq!(i["keyAlgorithm"], "RSA 2048");
    assert!(
        i["signatureAlgorithm"]
            .as_str()
            .unwrap()
            .starts_with("sha256WithRSAEncryption"),
        "{i}"
    );
    assert_eq!(i["pathLen"], 0);
    assert_eq!(
        i["keyUsage"],
        serde_json::json!(["digitalSignature", "keyCertSign", "cRLSign"])
    );
    assert_eq!(
        i["warnings"],
        serde_json::json!(["expires in 29 days"]),
        "{i}"
    );
    assert_eq!(i["file"], "certs/short.pem");
    assert!(i["notAfter"].as_str().unwrap().ends_with('Z'));

    let expired = testkit::pki::TestCa::expired("Old CA");
    p.write("certs/old.pem", &expired.pem);
    p.write(
        "certs/leaf.pem",
        testkit::pki::TestCa::new("Issuer CA").issue("device-1"),
    );
    let (code, out, _) = run(&p, &["ca", "inspect", "certs/old.pem"]);
    assert_eq!(code, 0, "warnings do not fail: {out}");
    assert!(
        out.contains("warning: expired on 2001-01-01T00:00:00Z"),
        "{out}"
    );
    let (code, out, _) = run(&p, &["ca", "inspect", "certs/leaf.pem", "--json"]);
    assert_eq!(code, 0);
    let w = json_of(&out)["warnings"].to_string();
    assert!(w.contains("not a CA") && !w.contains("intermediate"), "{w}");
    if openssl().is_some() {
        let weak = testkit::openssl::OpensslCa::root(
            "Weak CA",
            testkit::openssl::Key::Rsa(1024),
            &["-sha256"],
        );
        p.write("certs/weak.pem", &weak.pem);
        let (code, out, _) = run(&p, &["ca", "inspect", "certs/weak.pem", "--json"]);
        assert_eq!(code, 0);
        let i = json_of(&out);
        assert_eq!(i["activatorCanVerify"], false, "{i}");
        assert!(
            i["warnings"]
                .to_string()
                .contains("AWS IoT needs at least 2048 bits"),
            "{i}"
        );
        let root = testkit::openssl::OpensslCa::root(
            "Root CA",
            testkit::openssl::Key::Ec("P-256"),
            &["-sha256"],
        );
        let mid = root.intermediate("Mid CA", testkit::openssl::Key::Ec("P-384"), &["-sha384"]);
        p.write("certs/mid.pem", &mid.pem);
        let (_, out, _) = run(&p, &["ca", "inspect", "certs/mid.pem", "--json"]);
        let i = json_of(&out);
        assert_eq!(i["keyAlgorithm"], "EC P-384", "{i}");
        assert_eq!(i["selfSigned"], false, "{i}");
        assert!(
            i["warnings"]
                .to_string()
                .contains("an intermediate CA (issued by CN=Root CA)"),
            "{i}"
        );
        let sha1 = testkit::openssl::OpensslCa::root(
            "SHA1 CA",
            testkit::openssl::Key::Rsa(2048),
            &["-sha1"],
        );
        p.write("certs/sha1.pem", &sha1.pem);
        let (_, out, _) = run(&p, &["ca", "inspect", "certs/sha1.pem", "--json"]);
        assert!(
            json_of(&out)["warnings"]
                .to_string()
                .contains("which AWS IoT does not accept"),
            "{out}"
        );
    }
    let (code, _, err) = run(&p, &["ca", "inspect", "certs/none.pem"]);
    assert_eq!(code, 1);
    assert!(err.contains("certs/none.pem"), "{err}");
}

/// Invokes a deployed function through moto's Lambda Invoke API (moto checks no signature;
/// the credential scope routes the request to Lambda).
fn invoke(function: &str, payload: &Value) -> (u16, Value) {
    let host = testkit::moto().host_port().to_string();
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=testing/20261128/{}/lambda/aws4_request, \
         SignedHeaders=host, Signature=0",
        testkit::REGION
    );
    let req = testkit::http::HttpRequest {
        method: "POST".into(),
        target: format!("/2015-03-31/functions/{function}/invocations"),
        headers: [
            ("host", host.as_str()),
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
            ("x-amz-invocation-type", "RequestResponse"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        body: payload.to_string().into_bytes(),
    };
    let resp = testkit::http::forward(&host, &req).unwrap();
    (
        resp.status,
        serde_json::from_slice(&resp.body).unwrap_or(Value::Null),
    )
}

/// The CLI in `p` against moto, as CI runs it (no terminal, no toolchain on PATH).
fn run_aws(p: &Project, args: &[&str]) -> std::process::Output {
    p.run_aws(BIN, args, testkit::moto().endpoint())
}

/// The whole path: a CA from `ca create`, a stage on it deployed to moto, a device from
/// `device issue` registered PENDING_ACTIVATION as JITR registers it, the deployed activator
/// run on the registered event, and the device onboarded.
#[tokio::test(flavor = "multi_thread")]
async fn a_device_from_device_issue_onboards_through_the_deployed_activator() {
    let p = Project::new("jitr-pki-e2e");
    create_ca(&p, "ec-p256");
    let stack = testkit::project::stack_name("jitr-pki-e2e");
    p.stage(
        "e2e",
        &format!(
            "stack_name: {stack}\nregion: {}\nca:\n  certificate: certs/ca.pem\n  mode: SNI_ONLY\n\
             activator:\n  subject_pattern: 'sensor-[0-9]{{4}}'\n  reserved_concurrency: 2\n\
             \x20 log_retention_days: 1\n  timeout_seconds: 10\n",
            testkit::REGION
        ),
    );
    let o = run_aws(
        &p,
        &[
            "deploy",
            "--stage",
            "e2e",
            "--require-approval",
            "never",
            "--outputs-file",
            "out.json",
        ],
    );
    assert!(o.status.success(), "{}", testkit::jitr::output_text(&o));
    let outputs: Value =
        serde_json::from_str(&std::fs::read_to_string(p.path("out.json")).unwrap()).unwrap();
    let ca_id = outputs["CaCertificateId"].as_str().unwrap().to_string();

    let (code, out, err) = run(
        &p,
        &[
            "device",
            "issue",
            "--stage",
            "e2e",
            "--cn",
            "sensor-0042",
            "--ca-key",
            "certs/ca.key",
            "--out",
            "devices",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let issued = json_of(&out);
    assert_eq!(
        issued["caCertificateId"],
        ca_id.as_str(),
        "the CA the stack registered"
    );
    let iot = testkit::moto().iot().await;
    let cert = iot
        .register_certificate()
        .certificate_pem(std::fs::read_to_string(p.path("devices/sensor-0042.crt")).unwrap())
        .ca_certificate_pem(std::fs::read_to_string(p.path("certs/ca.pem")).unwrap())
        .status(aws_sdk_iot::types::CertificateStatus::PendingActivation)
        .send()
        .await
        .unwrap();
    let (cert_id, arn) = (
        cert.certificate_id().unwrap(),
        cert.certificate_arn().unwrap(),
    );
    assert_eq!(
        cert_id, issued["devices"][0]["certificateId"],
        "the id device issue printed"
    );
    let event = testkit::jitr::registered_event(cert_id, &ca_id);
    let (status, body) = invoke(&format!("{stack}-activator"), &event);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "activated", "{body}");
    testkit::jitr::assert_onboarded(&iot, cert_id, "sensor-0042", arn).await;

    let o = run_aws(
        &p,
        &["destroy", "--stage", "e2e", "--yes", "--detach-devices"],
    );
    assert!(o.status.success(), "{}", testkit::jitr::output_text(&o));
}
