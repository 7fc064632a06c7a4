//! The bundled Lambdas as AWS runs them: the zips this `jitr-infra` embeds (built by its
//! build script through `crates/bundle`), reproducible, fit for AL2023's glibc, and their real
//! `bootstrap` binaries run under a Lambda Runtime API host on loopback, against moto.

use aws_sdk_iot::types::CertificateStatus;
use jitr_infra::assets::{self, Embedded};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;
use testkit::pki::TestCa;
use testkit::runtime::RuntimeHost;
use testkit::{moto, unique, Recorder};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the build script built the Lambdas this test's `jitr-infra` embeds.
fn target_dir() -> PathBuf {
    PathBuf::from(env!("JITR_LAMBDA_TARGET_DIR"))
}

/// An embedded Lambda's `bootstrap`, unpacked for the Runtime API host.
fn unpacked(embedded: &'static Embedded) -> PathBuf {
    testkit::lambda::unpack(embedded.package, embedded.zip)
}

#[test]
fn bundles_are_reproducible_executable_and_fit_al2023() {
    for e in &assets::EMBEDDED {
        let (binary, mode) = assets::unzip_bootstrap(e.zip).unwrap();
        assert_eq!(mode & 0o777, 0o755, "{}: bootstrap must be 0755", e.package);
        assert_eq!(e.sha256, assets::sha256_hex(e.zip));
        // Zipping the binary again gives the same bytes (a rebuild is compared below).
        assert_eq!(jitr_bundle::zip_bootstrap(&binary).unwrap(), e.zip);
        let unpacked = unpacked(e);

        // AL2023 has glibc 2.34.
        let glibc = jitr_bundle::max_glibc(&binary).expect("a dynamically linked binary");
        assert!(
            glibc <= assets::MAX_GLIBC,
            "{}: needs GLIBC_{}.{}",
            e.package,
            glibc.0,
            glibc.1
        );
        // Cross-check the byte scan with binutils where it is installed.
        if let Ok(out) = std::process::Command::new("objdump")
            .arg("-T")
            .arg(&unpacked)
            .output()
        {
            let text = String::from_utf8_lossy(&out.stdout);
            let highest = text
                .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
                .filter_map(|w| w.strip_prefix("GLIBC_"))
                .filter_map(|v| {
                    let mut parts = v.split('.');
                    Some((
                        parts.next()?.parse::<u32>().ok()?,
                        parts.next()?.parse::<u32>().ok()?,
                    ))
                })
                .max();
            if out.status.success() {
                assert_eq!(highest, Some(glibc), "objdump disagrees with the scan");
            }
        }

        // No path of this machine inside the binary (they would break reproducibility).
        let home = std::env::var("HOME").unwrap_or_else(|_| "/nonexistent-home".into());
        for path in [root().to_string_lossy().into_owned(), home] {
            assert!(
                !binary.windows(path.len()).any(|w| w == path.as_bytes()),
                "{} embeds the path {path}",
                e.package
            );
        }
        assert!(
            e.zip.len() <= 6 * 1024 * 1024,
            "{} zip is {} bytes",
            e.package,
            e.zip.len()
        );
    }
}

#[test]
fn recompiling_our_crates_gives_the_embedded_zips() {
    // Compile the Lambdas' own crates again (dependencies stay cached) in a second target
    // directory: what differs between builds would differ here.
    let second_dir = target_dir().with_file_name("lambda-rebuild");
    // Share the compiled dependencies, not our crates' artifacts.
    copy_dir(&target_dir(), &second_dir);
    for entry in std::fs::read_dir(jitr_bundle::profile_dir(&second_dir).join(".fingerprint"))
        .unwrap()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("jitr-") || name.starts_with("jitr_") {
            std::fs::remove_dir_all(entry.path()).unwrap();
        }
    }
    let mut opts = jitr_bundle::BuildOptions::new(root(), &second_dir);
    opts.show_progress = true;
    let rebuilt = jitr_bundle::bundle_all(&opts, &jitr_bundle::ALL).unwrap();
    for (again, embedded) in rebuilt.iter().zip(&assets::EMBEDDED) {
        assert_eq!(again.package, embedded.package);
        assert_eq!(
            again.sha256, embedded.sha256,
            "{}: two builds must give byte-identical zips",
            again.package
        );
    }
    let _ = std::fs::remove_dir_all(&second_dir);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let _ = std::fs::remove_dir_all(to);
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn activator_binary_activates_under_the_runtime_api() {
    let binary = unpacked(assets::activator());
    let moto = moto();
    let iot = moto.iot().await;
    let ca = TestCa::new(&unique("Binary CA"));
    let (ca_id, policy) = testkit::jitr::register_ca_and_policy(&iot, &ca, "device-policy").await;
    let cn = unique("bin-device");
    let cert = iot
        .register_certificate()
        .certificate_pem(ca.issue(&cn))
        .ca_certificate_pem(&ca.pem)
        .status(CertificateStatus::PendingActivation)
        .send()
        .await
        .unwrap();
    let cert_id = cert.certificate_id().unwrap().to_string();
    // Issued by another CA (an intermediate, say) but registered under ours (moto does not
    // check signatures): ignored, and the log line names both distinguished names.
    let other = TestCa::new(&unique("Intermediate CA"));
    let foreign_id = iot
        .register_certificate()
        .certificate_pem(other.issue(&unique("foreign")))
        .ca_certificate_pem(&ca.pem)
        .status(CertificateStatus::PendingActivation)
        .send()
        .await
        .unwrap()
        .certificate_id()
        .unwrap()
        .to_string();

    let host = RuntimeHost::start();
    let mut env = moto.aws_env();
    env.push(("JITR_CA_CERTIFICATE_ID".into(), ca_id.clone()));
    env.push(("JITR_DEVICE_POLICY_NAME".into(), policy.clone()));
    let mut child = host.spawn(&binary, &env);

    // As AWS has been seen to publish it: a null registration timestamp, an extra field.
    let event = json!({
        "certificateId": cert_id, "caCertificateId": ca_id, "timestamp": 1764000000000u64,
        "certificateStatus": "PENDING_ACTIVATION", "awsAccountId": testkit::ACCOUNT,
        "certificateRegistrationTimestamp": null, "sourceIp": "203.0.113.7"
    });
    let first = host.invoke(event.clone(), Duration::from_secs(30));
    let second = host.invoke(event, Duration::from_secs(30));
    let bad = host.invoke(json!({"certificateId": 42}), Duration::from_secs(30));
    let foreign = host.invoke(
        json!({"certificateId": foreign_id, "caCertificateId": ca_id}),
        Duration::from_secs(30),
    );
    let r1 = host
        .wait_result(&first, Duration::from_secs(30))
        .expect("first answer");
    let r2 = host
        .wait_result(&second, Duration::from_secs(30))
        .expect("second answer");
    let r3 = host
        .wait_result(&bad, Duration::from_secs(30))
        .expect("third answer");
    let r4 = host
        .wait_result(&foreign, Duration::from_secs(30))
        .expect("fourth answer");
    child.kill().ok();
    let out = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stdout);

    assert_eq!(
        r1.result.as_ref().unwrap()["outcome"],
        "activated",
        "{r1:?}\n{logs}"
    );
    assert_eq!(r1.result.as_ref().unwrap()["thingName"], json!(cn));
    assert_eq!(r2.result.as_ref().unwrap()["outcome"], "already-active");
    // A malformed event is a handled outcome (Lambda must not retry it), logged at ERROR
    // and counted by an EMF line on stdout.
    let malformed = r3
        .result
        .expect("a malformed event is not a function error");
    assert_eq!(malformed["outcome"], "malformed", "{malformed}");
    assert_eq!(malformed["reasonCode"], "malformed-event");
    assert_eq!(
        malformed["reason"],
        "malformed registered-certificate event: field `certificateId` must be a string of \
         64 lowercase hex digits, got a number"
    );
    // One EMF document per invocation (plus one per AWS IoT operation it called): the
    // malformed event's counts it, and made no call.
    let emf: Vec<serde_json::Value> = logs
        .lines()
        .filter(|l| l.contains("\"_aws\"") && !l.contains("\"Operation\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(emf.len(), 4, "one per invocation:\n{logs}");
    let malformed_doc = &emf[2];
    assert_eq!(malformed_doc["MalformedEvents"], 1, "{malformed_doc}");
    assert_eq!(malformed_doc["IotCalls"], 0, "{malformed_doc}");
    assert!(malformed_doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .contains(&json!({"Name": "MalformedEvents", "Unit": "Count"})));
    assert_eq!(emf[0]["Activated"], 1);
    assert_eq!(
        emf[1]["DuplicateSkipped"], 1,
        "the repeat is answered from memory"
    );
    let error_line = logs
        .lines()
        .find(|l| l.contains("\"ERROR\"") && l.contains("malformed event"))
        .unwrap_or_else(|| panic!("no ERROR line for the malformed event in:\n{logs}"));
    let parsed: serde_json::Value = serde_json::from_str(error_line).unwrap();
    assert_eq!(parsed["fields"]["reason_code"], "malformed-event");
    let ignored = r4.result.expect("ignored is not a function error");
    assert_eq!(ignored["reasonCode"], "issuer-not-our-ca", "{ignored}");
    let warn_line = logs
        .lines()
        .find(|l| l.contains("issuer-not-our-ca"))
        .unwrap_or_else(|| panic!("no log line for the foreign certificate in:\n{logs}"));
    let warn: serde_json::Value = serde_json::from_str(warn_line).unwrap();
    assert_eq!(warn["level"], "WARN");
    assert_eq!(warn["fields"]["certificate_id"], json!(foreign_id));
    assert_eq!(warn["fields"]["issuer"], ignored["issuer"]);
    assert_eq!(warn["fields"]["ca_subject"], ignored["caSubject"]);
    assert!(
        warn["fields"]["issuer"]
            .as_str()
            .unwrap()
            .contains("Intermediate CA"),
        "{warn}"
    );
    let status = iot
        .describe_certificate()
        .certificate_id(&cert_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        status.certificate_description().unwrap().status(),
        Some(&CertificateStatus::Active)
    );
    // Logs are JSON lines carrying the certificate id.
    let line = logs
        .lines()
        .find(|l| l.contains("certificate handled"))
        .unwrap_or_else(|| panic!("no log line in:\n{logs}"));
    let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(parsed["fields"]["certificate_id"], json!(cert_id));
}

#[tokio::test(flavor = "multi_thread")]
async fn activator_binary_with_bad_configuration_fails_each_invocation_clearly() {
    let binary = unpacked(assets::activator());
    let host = RuntimeHost::start();
    let mut env = moto().aws_env();
    env.push(("JITR_CA_CERTIFICATE_ID".into(), "not-an-id".into()));
    let mut child = host.spawn(&binary, &env);
    let id = host.invoke(json!({}), Duration::from_secs(10));
    let r = host
        .wait_result(&id, Duration::from_secs(30))
        .expect("an answer");
    child.kill().ok();
    child.wait().ok();
    let err = r.result.unwrap_err();
    let message = err["errorMessage"].as_str().unwrap();
    assert!(message.contains("JITR_CA_CERTIFICATE_ID"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ca_provider_binary_answers_cloudformation() {
    let binary = unpacked(assets::ca_provider());
    let moto = moto();
    let cfn = Recorder::answering(200);
    let host = RuntimeHost::start();
    let mut child = host.spawn(&binary, &moto.aws_env());
    let ca = TestCa::new(&unique("Binary provider CA"));
    let request = json!({
        "RequestType": "Create",
        "ResponseURL": format!("{}/presigned?X-Amz-Signature=1", cfn.url()),
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/jitr-dev/1",
        "RequestId": "11111111-2222",
        "ResourceType": "Custom::JitrCaRegistration",
        "LogicalResourceId": "CaRegistration",
        "ResourceProperties": {
            "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:p",
            "CaCertificatePem": ca.pem,
            "CertificateMode": "SNI_ONLY"
        }
    });
    let id = host.invoke(request, Duration::from_secs(30));
    let r = host
        .wait_result(&id, Duration::from_secs(30))
        .expect("an answer");
    // A panic-free bad request in the same container: still answered.
    let bad = host.invoke(
        json!({"RequestType": "Create", "ResponseURL": format!("{}/bad", cfn.url()), "StackId": "s", "RequestId": "r2", "LogicalResourceId": "CaRegistration", "ResourceProperties": {"CertificateMode": "SNI_ONLY", "CaCertificatePem": "junk"}}),
        Duration::from_secs(30),
    );
    host.wait_result(&bad, Duration::from_secs(30))
        .expect("an answer");
    child.kill().ok();
    child.wait().ok();

    assert_eq!(r.result.unwrap()["Status"], "SUCCESS");
    let puts = cfn.wait_for(2, Duration::from_secs(5));
    assert_eq!(puts.len(), 2);
    assert_eq!(puts[0].header("content-type"), Some(""));
    let body: serde_json::Value = serde_json::from_slice(&puts[0].body).unwrap();
    assert_eq!(body["Status"], "SUCCESS");
    let ca_id = body["PhysicalResourceId"].as_str().unwrap();
    assert_eq!(body["Data"]["CaCertificateId"], json!(ca_id));
    let described = moto
        .iot()
        .await
        .describe_ca_certificate()
        .certificate_id(ca_id)
        .send()
        .await
        .unwrap();
    assert!(described.certificate_description().is_some());
    let failed: serde_json::Value = serde_json::from_slice(&puts[1].body).unwrap();
    assert_eq!(failed["Status"], "FAILED");
    assert!(failed["Reason"]
        .as_str()
        .unwrap()
        .contains("CaCertificatePem"));
}
