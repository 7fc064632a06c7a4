//! Synthesis: snapshots of the shipped stages, the security properties a reviewer checks,
//! pinned logical ids, byte-for-byte determinism, the CA key never in any output, and
//! cfn-lint over every template variant with zero errors and zero warnings.

use jitr_infra::cfn::Template;
use jitr_infra::constructs::{self, AssetRef, Assets};
use jitr_infra::stage;
use jitr_infra::synth;
use predicates::prelude::*;
use predicates::str::contains;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use testkit::pki::TestCa;
use testkit::project::Project;
use testkit::unique;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The CLI, run in the repository (its shipped stages).
fn cli() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_jitr-infra"));
    cmd.current_dir(root());
    cmd
}

/// Fixed asset hashes, so snapshots change only when the template does.
fn fixed_assets() -> Assets {
    Assets {
        activator: AssetRef {
            sha256: "a".repeat(64),
        },
        ca_provider: AssetRef {
            sha256: "c".repeat(64),
        },
    }
}

fn template_of(stage_name: &str) -> (Template, Value) {
    let stage = stage::load(&root(), stage_name).unwrap_or_else(|e| panic!("{e}"));
    let s = synth::finish(stage, &fixed_assets(), Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    let json: Value = serde_json::from_str(&s.template_json).unwrap();
    (s.template, json)
}

/// A throwaway project (testkit's): the repo's templates and certs, plus the given stage files.
fn project(stages: &[(&str, &str)]) -> Project {
    let p = Project::new("jitr-synth");
    p.copy_from_repo("certs/dev-ca.pem")
        .copy_from_repo("certs/prod-ca.pem");
    for (name, text) in stages {
        p.stage(name, text);
    }
    p
}

/// Synthesizes a stage of a test project with the fixed asset hashes.
trait SynthIn {
    fn synth(&self, name: &str) -> synth::Synthesized;
}

impl SynthIn for Project {
    fn synth(&self, name: &str) -> synth::Synthesized {
        let stage = stage::load(&self.dir, name).unwrap_or_else(|e| panic!("{e}"));
        synth::finish(stage, &fixed_assets(), Vec::new()).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The shipped stages' templates, byte for byte, as insta snapshots:
/// `tests/snapshots/<stage>.snap.template.json` (the template itself) beside its `.snap`
/// metadata. Review a change with `cargo insta review`, or accept it with
/// `INSTA_UPDATE=always cargo test --workspace --test synth -- snapshots`.
#[test]
fn snapshots_of_the_shipped_stages() {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for name in ["dev", "prod"] {
            let stage = stage::load(&root(), name).unwrap();
            let s = synth::finish(stage, &fixed_assets(), Vec::new()).unwrap();
            insta::assert_binary_snapshot!(
                &format!("{name}.template.json"),
                s.template_json.into_bytes()
            );
        }
    });
}

#[test]
fn logical_ids_are_pinned() {
    // Renaming any of these makes CloudFormation replace the resource; replacing
    // CaRegistration breaks the fleet's onboarding. Change this list only on purpose.
    let (t, _) = template_of("prod");
    let ids: Vec<&str> = t.resources.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "CaProviderLogGroup",
            "CaProviderRole",
            "CaProviderFunction",
            "CaRegistration",
            "DevicePolicy",
            "DeviceThingGroup",
            "ActivatorLogGroup",
            "ActivatorFailureQueue",
            "ActivatorRole",
            "ActivatorFunction",
            "ActivatorInvokeConfig",
            "RegistrationRuleErrorLogGroup",
            "RegistrationRuleErrorRole",
            "ActivatorInvokePermission",
            "RegistrationRule",
            "SweepMarkerParameter",
            "SweepInvokePermission",
            "SweepSchedule",
            "AlarmTopic",
            "AlarmFailureQueueNotEmpty",
            "AlarmActivatorErrors",
            "AlarmIotThrottlingSustained",
            "AlarmRuleFailures",
            "AlarmMalformedEvents",
            "AlarmPendingOverGrace",
        ]
    );
    let (t, _) = template_of("dev");
    assert!(t.resource(constructs::DEVICE_THING_GROUP).is_none());
    assert!(t.resource(constructs::ALARM_TOPIC).is_none());
    assert_eq!(t.resources.len(), 23);
}

fn statements(template: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (id, r) in template["Resources"].as_object().unwrap() {
        if r["Type"] == "AWS::IAM::Role" {
            for p in r["Properties"]["Policies"].as_array().unwrap() {
                for s in p["PolicyDocument"]["Statement"].as_array().unwrap() {
                    out.push((id.clone(), s.clone()));
                }
            }
        }
    }
    out
}

fn as_list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    }
}

#[test]
fn iam_is_least_privilege() {
    for name in ["dev", "prod"] {
        let (_, t) = template_of(name);
        let all = statements(&t);
        assert!(!all.is_empty());
        for (role, s) in &all {
            assert_eq!(s["Effect"], "Allow");
            for action in as_list(&s["Action"]) {
                let a = action.as_str().unwrap();
                assert!(!a.contains('*'), "{role}: wildcard action {a}");
            }
            for resource in as_list(&s["Resource"]) {
                if resource == json!("*") {
                    // Only actions the IAM reference lists without a resource type.
                    let allowed = [
                        "iot:RegisterCACertificate",
                        "iot:ListCACertificates",
                        "iot:ListCertificatesByCA",
                    ];
                    for action in as_list(&s["Action"]) {
                        assert!(
                            allowed.contains(&action.as_str().unwrap()),
                            "{role}: {action} granted on *"
                        );
                    }
                } else {
                    let text = resource.to_string();
                    assert!(
                        !text.contains("arn:aws:"),
                        "{role}: hard-coded partition in {text}"
                    );
                }
            }
        }
        // AttachThingPrincipal is scoped to certificates (the IAM reference's `cert` type).
        let attach = all
            .iter()
            .find(|(_, s)| s["Sid"] == "AttachThingsToCertificates")
            .expect("AttachThingsToCertificates statement");
        assert_eq!(
            attach.1["Resource"],
            json!({"Fn::Sub": "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:cert/*"})
        );
        // The activator reads exactly our CA.
        let read_ca = all
            .iter()
            .find(|(_, s)| s["Sid"] == "ReadOurCa")
            .expect("ReadOurCa statement");
        assert_eq!(
            read_ca.1["Resource"],
            json!({"Fn::Sub": "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:cacert/${CaRegistration.CaCertificateId}"})
        );
        // The rule's error role can only be assumed by our own rule.
        let trust = &t["Resources"]["RegistrationRuleErrorRole"]["Properties"]
            ["AssumeRolePolicyDocument"]["Statement"][0];
        assert_eq!(trust["Principal"]["Service"], "iot.amazonaws.com");
        assert_eq!(
            trust["Condition"]["StringEquals"]["aws:SourceAccount"],
            json!({"Ref": "AWS::AccountId"})
        );
    }
}

#[test]
fn topic_rule_permission_and_lambdas() {
    let (_, t) = template_of("dev");
    let r = &t["Resources"];
    let rule = &r["RegistrationRule"]["Properties"]["TopicRulePayload"];
    assert_eq!(
        rule["Sql"],
        json!({"Fn::Sub": "SELECT * FROM '$aws/events/certificates/registered/${CaRegistration.CaCertificateId}' WHERE certificateStatus = \"PENDING_ACTIVATION\""})
    );
    assert_eq!(rule["AwsIotSqlVersion"], "2016-03-23");
    assert_eq!(
        rule["Actions"][0]["Lambda"]["FunctionArn"],
        json!({"Fn::GetAtt": ["ActivatorFunction", "Arn"]})
    );
    assert!(rule["ErrorAction"]["CloudwatchLogs"].is_object());

    let permission = &r["ActivatorInvokePermission"]["Properties"];
    assert_eq!(permission["Principal"], "iot.amazonaws.com");
    assert_eq!(permission["Action"], "lambda:InvokeFunction");
    assert_eq!(
        permission["SourceArn"],
        json!({"Fn::Sub": "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:rule/jitr_dev_registered"})
    );
    // The rule exists only once it may invoke the activator.
    assert_eq!(
        r["RegistrationRule"]["DependsOn"],
        json!(["ActivatorInvokePermission"])
    );
    assert_eq!(
        permission["SourceAccount"],
        json!({"Ref": "AWS::AccountId"})
    );

    for f in ["ActivatorFunction", "CaProviderFunction"] {
        let p = &r[f]["Properties"];
        assert_eq!(p["Runtime"], "provided.al2023");
        assert_eq!(p["Handler"], "bootstrap");
        assert_eq!(
            p["Code"]["S3Bucket"],
            json!({"Fn::Sub": "jitr-assets-${AWS::AccountId}-${AWS::Region}"})
        );
        assert!(p["Code"]["S3Key"].as_str().unwrap().starts_with("asset."));
    }
    let activator = &r["ActivatorFunction"]["Properties"];
    // What the account can give is decided at deploy, through a parameter (0 = none).
    assert_eq!(
        activator["ReservedConcurrentExecutions"],
        json!({"Fn::If": ["ActivatorUnreserved", {"Ref": "AWS::NoValue"}, {"Ref": "ActivatorReservedConcurrency"}]})
    );
    assert_eq!(
        t["Conditions"]["ActivatorUnreserved"],
        json!({"Fn::Equals": [{"Ref": "ActivatorReservedConcurrency"}, 0]})
    );
    assert_eq!(
        t["Parameters"]["ActivatorReservedConcurrency"]["Type"],
        "Number"
    );
    assert_eq!(
        activator["Environment"]["Variables"]["JITR_CA_CERTIFICATE_ID"],
        json!({"Fn::GetAtt": ["CaRegistration", "CaCertificateId"]})
    );
    assert_eq!(
        r["ActivatorInvokeConfig"]["Properties"]["DestinationConfig"]["OnFailure"]["Destination"],
        json!({"Fn::GetAtt": ["ActivatorFailureQueue", "Arn"]})
    );
    let ca = &r["CaRegistration"];
    assert_eq!(ca["Type"], "Custom::JitrCaRegistration");
    assert_eq!(ca["Properties"]["ServiceTimeout"], 300);
    assert_eq!(ca["Properties"]["CertificateMode"], "SNI_ONLY");
    assert_eq!(ca["Properties"]["AutoRegistration"], "true");
    assert_eq!(ca["Properties"]["RetainOnDelete"], "false");
    for log in [
        "ActivatorLogGroup",
        "CaProviderLogGroup",
        "RegistrationRuleErrorLogGroup",
    ] {
        assert_eq!(r[log]["Properties"]["RetentionInDays"], 14);
    }
    let outputs: Vec<&String> = t["Outputs"].as_object().unwrap().keys().collect();
    for o in [
        "CaCertificateId",
        "CaCertificateArn",
        "RegistrationRuleName",
        "ActivatorFunctionArn",
        "DevicePolicyName",
    ] {
        assert!(outputs.iter().any(|k| *k == o), "output {o}");
    }
}

/// The activator's pacing and sweep environment, the schedule, its permission and marker
/// parameter, and the alarms: present, absent or wired as the stage says.
#[test]
fn reconciler_alarms_and_pacing_follow_the_stage() {
    let (t, dev) = template_of("dev");
    let r = &dev["Resources"];
    let env = &r["ActivatorFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(
        env["JITR_API_RATES"],
        "DescribeCertificate=10,UpdateCertificate=10,AttachPolicy=15,CreateThing=100,\
         AttachThingPrincipal=100,AddThingToThingGroup=100,ListCertificatesByCA=10,\
         DescribeCACertificate=10"
    );
    assert_eq!(env["JITR_API_SHARE"], "1");
    assert_eq!(
        env["JITR_CONCURRENCY"],
        json!({"Ref": "ActivatorReservedConcurrency"})
    );
    assert_eq!(env["JITR_SWEEP_GRACE_SECONDS"], "900");
    assert_eq!(env["JITR_SWEEP_HORIZON_SECONDS"], "604800");
    assert_eq!(env["JITR_SWEEP_MAX_PAGES"], "20");
    assert_eq!(
        env["JITR_SWEEP_MARKER_PARAMETER"],
        json!({"Ref": "SweepMarkerParameter"})
    );
    let schedule = &r["SweepSchedule"]["Properties"];
    assert_eq!(schedule["Name"], "jitr-dev-sweep");
    assert_eq!(schedule["ScheduleExpression"], "rate(5 minutes)");
    assert_eq!(schedule["State"], "ENABLED");
    let input: Value =
        serde_json::from_str(schedule["Targets"][0]["Input"].as_str().unwrap()).unwrap();
    assert_eq!(
        input,
        json!({"kind": "jitr-sweep", "version": 1, "trigger": "schedule"})
    );
    assert_eq!(
        r["SweepSchedule"]["DependsOn"],
        json!(["SweepInvokePermission"])
    );
    let permission = &r["SweepInvokePermission"]["Properties"];
    assert_eq!(permission["Principal"], "events.amazonaws.com");
    assert_eq!(
        permission["SourceArn"],
        json!({"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/jitr-dev-sweep"})
    );
    let marker = &r["SweepMarkerParameter"]["Properties"];
    assert_eq!(
        (&marker["Name"], &marker["Value"]),
        (&json!("/jitr-dev/sweep-marker"), &json!("-"))
    );
    let all = statements(&dev);
    let keep = all
        .iter()
        .find(|(_, s)| s["Sid"] == "KeepSweepMarker")
        .expect("KeepSweepMarker");
    assert_eq!(
        keep.1["Resource"],
        json!({"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/jitr-dev/sweep-marker"})
    );
    let list = all
        .iter()
        .find(|(_, s)| s["Sid"] == "ListCaCertificates")
        .expect("ListCaCertificates");
    assert_eq!(list.1["Action"], "iot:ListCertificatesByCA");
    let alarms: Vec<&str> = t
        .resources
        .iter()
        .filter(|r| r.kind == "AWS::CloudWatch::Alarm")
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(alarms.len(), 6);
    for id in alarms {
        assert!(
            r[id]["Properties"].get("AlarmActions").is_none(),
            "{id}: no topic, no actions"
        );
    }
    let pending = &r["AlarmPendingOverGrace"]["Properties"];
    assert_eq!(pending["AlarmName"], "jitr-dev-alarm-pending-over-grace");
    assert_eq!(
        (&pending["Period"], &pending["TreatMissingData"]),
        (&json!(600), &json!("breaching"))
    );
    let rule = &r["AlarmRuleFailures"]["Properties"]["Metrics"][0]["Expression"];
    assert!(
        rule.as_str()
            .unwrap()
            .ends_with("WHERE RuleName = 'jitr_dev_registered'"),
        "{rule}"
    );
    let outputs = dev["Outputs"].as_object().unwrap();
    assert!(
        outputs.contains_key("SweepMarkerParameterName") && !outputs.contains_key("AlarmTopicArn")
    );

    let p = project(&[(
        "quiet",
        "stack_name: jitr-quiet\nregion: eu-west-1\nca:\n  certificate: certs/dev-ca.pem\n  mode: SNI_ONLY\n\
         activator:\n  api_rates:\n    UpdateCertificate: 20\n  api_share: 0.5\n\
         reconciler:\n  enabled: false\nalarms:\n  email: ops@example.com\nencryption:\n  \
         kms_key_arn: arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab\n",
    ), (
        "often",
        "stack_name: jitr-often\nregion: eu-west-1\nca:\n  certificate: certs/dev-ca.pem\n  mode: SNI_ONLY\n\
         reconciler:\n  every_minutes: 1\n",
    ), (
        "daily",
        "stack_name: jitr-daily\nregion: eu-west-1\nca:\n  certificate: certs/dev-ca.pem\n  mode: SNI_ONLY\n\
         reconciler:\n  every_minutes: 1440\n",
    )]);
    let quiet: Value = serde_json::from_str(&p.synth("quiet").template_json).unwrap();
    let r = &quiet["Resources"];
    for id in [
        "SweepSchedule",
        "SweepInvokePermission",
        "SweepMarkerParameter",
        "AlarmPendingOverGrace",
    ] {
        assert!(r.get(id).is_none(), "{id} without the reconciler");
    }
    let env = &r["ActivatorFunction"]["Properties"]["Environment"]["Variables"];
    assert!(env.get("JITR_SWEEP_MARKER_PARAMETER").is_none());
    assert!(env["JITR_API_RATES"]
        .as_str()
        .unwrap()
        .contains("UpdateCertificate=20,"));
    assert_eq!(env["JITR_API_SHARE"], "0.5");
    assert!(!statements(&quiet)
        .iter()
        .any(|(_, s)| s["Sid"] == "KeepSweepMarker"));
    let topic = &r["AlarmTopic"]["Properties"];
    assert_eq!(
        topic["Subscription"],
        json!([{"Endpoint": "ops@example.com", "Protocol": "email"}])
    );
    assert_eq!(
        topic["KmsMasterKeyId"],
        "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    );
    let wired = r
        .as_object()
        .unwrap()
        .values()
        .filter(|v| v["Type"] == "AWS::CloudWatch::Alarm")
        .inspect(|a| {
            assert_eq!(
                a["Properties"]["AlarmActions"],
                json!([{"Ref": "AlarmTopic"}])
            );
            assert_eq!(a["Properties"]["OKActions"], json!([{"Ref": "AlarmTopic"}]));
        })
        .count();
    assert_eq!(wired, 5);
    assert_eq!(
        quiet["Outputs"]["AlarmTopicArn"]["Value"],
        json!({"Ref": "AlarmTopic"})
    );
    assert!(quiet["Outputs"].get("SweepMarkerParameterName").is_none());

    let often: Value = serde_json::from_str(&p.synth("often").template_json).unwrap();
    let r = &often["Resources"];
    assert_eq!(
        r["SweepSchedule"]["Properties"]["ScheduleExpression"],
        "rate(1 minute)"
    );
    assert_eq!(r["AlarmPendingOverGrace"]["Properties"]["Period"], 120);
    let daily: Value = serde_json::from_str(&p.synth("daily").template_json).unwrap();
    let r = &daily["Resources"];
    assert_eq!(
        r["SweepSchedule"]["Properties"]["ScheduleExpression"],
        "rate(1440 minutes)"
    );
    // CloudWatch evaluates at most a day.
    assert_eq!(r["AlarmPendingOverGrace"]["Properties"]["Period"], 86_400);
}

#[test]
fn device_policy_keeps_iot_variables_and_grants_no_wildcard() {
    let (_, t) = template_of("dev");
    let doc = &t["Resources"]["DevicePolicy"]["Properties"]["PolicyDocument"];
    let text = doc.to_string();
    assert!(
        text.contains("${!iot:Connection.Thing.ThingName}"),
        "{text}"
    );
    assert!(!text.contains("iot:*"));
    for s in doc["Statement"].as_array().unwrap() {
        for a in as_list(&s["Action"]) {
            assert!(!a.as_str().unwrap().contains('*'));
        }
    }
    assert_eq!(
        doc["Statement"][0]["Condition"]["Bool"]["iot:Connection.Thing.IsAttached"],
        "true"
    );
}

#[test]
fn default_mode_takes_the_verification_certificate_as_a_parameter_and_never_the_key() {
    let ca = TestCa::new("Key Test CA");
    let key_pem = ca.key_pem();
    let stage = "stack_name: jitr-keytest\nregion: eu-west-1\nca:\n  certificate: certs/k.pem\n  mode: DEFAULT\n  verification:\n    private_key_file: secrets/ca.key\n";
    let p = project(&[("keytest", stage)]);
    std::fs::create_dir_all(p.dir.join("secrets")).unwrap();
    p.write("certs/k.pem", &ca.pem);
    p.write("secrets/ca.key", &key_pem);
    let s = p.synth("keytest");
    let t: Value = serde_json::from_str(&s.template_json).unwrap();
    assert_eq!(
        t["Parameters"]["VerificationCertificatePem"]["Type"],
        "String"
    );
    assert_eq!(
        t["Resources"]["CaRegistration"]["Properties"]["VerificationCertificatePem"],
        json!({"Ref": "VerificationCertificatePem"})
    );
    let key_body: Vec<&str> = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 16)
        .collect();
    assert!(!key_body.is_empty());
    for out in [&s.template_json, &s.manifest_json] {
        assert!(!out.contains("PRIVATE KEY"));
        for line in &key_body {
            assert!(!out.contains(line), "CA key material in the output");
        }
    }
    // A key pasted into the certificate file is refused outright.
    p.write("certs/k.pem", format!("{}{}", ca.pem, key_pem));
    let err = stage::load(&p.dir, "keytest").unwrap_err().to_string();
    assert!(err.contains("holds a private key"), "{err}");
}

/// Every template variant a reviewer could ship, written to `<project>/lint`: the shipped
/// stages and variants that exercise the other branches of the constructs.
fn write_template_variants(p: &Project, ca: &TestCa) -> Vec<PathBuf> {
    let verification = ca.verification_certificate("0123456789abcdef");
    let variants = [
        ("default-file", "stack_name: jitr-lint-a\nregion: us-east-1\naccount: \"111122223333\"\nca:\n  certificate: certs/lint.pem\n  mode: DEFAULT\n  verification:\n    certificate_file: certs/verification.pem\n  status: INACTIVE\n  auto_registration: false\n  retain_on_delete: true\n"),
        ("no-things", "stack_name: jitr-lint-b\nregion: cn-north-1\nca:\n  certificate: certs/lint.pem\n  mode: SNI_ONLY\nactivator:\n  create_thing: false\n  subject_pattern: \"dev-[0-9]+\"\n  on_reject: revoke\n  memory_mb: 10240\n  timeout_seconds: 900\n  reserved_concurrency: 1000\n  log_retention_days: 3653\ndevice_policy:\n  template: templates/no-things.json.hbs\n"),
        ("group", "stack_name: jitr-lint-c\nregion: us-gov-west-1\nca:\n  certificate: certs/lint.pem\n  mode: SNI_ONLY\nactivator:\n  thing_group: fleet-a\n  thing_name: certificate-id\n"),
        ("kms", "stack_name: jitr-lint-d\nregion: eu-west-1\nca:\n  certificate: certs/lint.pem\n  mode: SNI_ONLY\nencryption:\n  kms_key_arn: arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab\nalarms:\n  email: ops@example.com\n"),
        ("alarms-no-sweep", "stack_name: jitr-lint-e\nregion: us-east-1\nca:\n  certificate: certs/lint.pem\n  mode: SNI_ONLY\nactivator:\n  api_rates:\n    DescribeCertificate: 0.1\n    UpdateCertificate: 10000\n  api_share: 0.05\nreconciler:\n  enabled: false\nalarms:\n  email: ops@example.com\n"),
        ("sweep-bounds", "stack_name: jitr-lint-f\nregion: ap-southeast-2\nca:\n  certificate: certs/lint.pem\n  mode: SNI_ONLY\nreconciler:\n  every_minutes: 1\n  grace_minutes: 0\n  horizon_days: 400\n  max_pages: 10000\n"),
        ("sweep-daily", "stack_name: jitr-lint-g\nregion: eu-central-1\nca:\n  certificate: certs/lint.pem\n  mode: SNI_ONLY\nreconciler:\n  every_minutes: 1440\n  grace_minutes: 1440\n  horizon_days: 2\n"),
        ("revocation", REVOCATION_STAGE),
        // CA rotation: two CAs, one in each mode.
        ("two-cas", "stack_name: jitr-lint-h\nregion: eu-west-1\nca:\n  - name: default\n    certificate: certs/lint.pem\n    mode: DEFAULT\n    verification:\n      certificate_file: certs/verification.pem\n  - name: ca-2026\n    certificate: certs/lint-2026.pem\n    mode: SNI_ONLY\n"),
    ];
    for (name, text) in variants {
        p.write(&format!("stacks/{name}.yaml"), text);
    }
    p.write("templates/no-things.json.hbs", NO_THINGS_POLICY);
    p.write("certs/lint.pem", &ca.pem);
    p.write("certs/lint-2026.pem", &TestCa::new("Lint CA 2026").pem);
    p.write("certs/verification.pem", &verification);
    p.write("certs/lint.crl", &ca.crl(&[&[0x0a, 0x0b]], 2099).0);
    let out = p.dir.join("lint");
    std::fs::create_dir_all(&out).unwrap();
    let mut files = Vec::new();
    for (name, _) in variants {
        let s = p.synth(name);
        let f = out.join(format!("{name}.template.json"));
        std::fs::write(&f, &s.template_json).unwrap();
        files.push(f);
    }
    for name in ["dev", "prod"] {
        let (t, _) = template_of(name);
        let f = out.join(format!("{name}.template.json"));
        std::fs::write(&f, t.render()).unwrap();
        files.push(f);
    }
    files
}

/// A stage with a revocation list: serials written in the stage and a CRL of its CA
/// (`certs/lint.crl`).
const REVOCATION_STAGE: &str = "stack_name: jitr-lint-h\nregion: us-west-2\nca:\n  certificate: certs/lint.pem\n  mode: SNI_ONLY\nrevocation:\n  serials: [\"1A:2B:3C\", \"0x00ff\"]\n  crl_files:\n    default: certs/lint.crl\n";

/// A device policy for a stage without Things: the client id is the certificate subject's CN.
const NO_THINGS_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": "iot:Connect",
      "Resource": "{{iot_arn}}:client/${iot:Certificate.Subject.CommonName}"
    }
  ]
}
"#;

fn venv_tool(name: &str) -> PathBuf {
    let venv = std::env::var_os("JITR_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv"));
    let bin = venv.join("bin").join(name);
    assert!(
        bin.exists(),
        "{} missing: run ./scripts/test",
        bin.display()
    );
    bin
}

#[test]
fn cfn_lint_passes_every_stage_and_variant() {
    let p = project(&[]);
    let files = write_template_variants(&p, &TestCa::new("Lint CA"));
    let result = Command::new(venv_tool("cfn-lint"))
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        result.status.success() && stdout.trim().is_empty(),
        "cfn-lint found problems (exit {:?}):\n{stdout}\n{stderr}",
        result.status.code()
    );
}

/// checkov, the scanner platform teams run in their pipelines: no failed check in any variant,
/// and every check that does not apply is skipped in the resource's Metadata with a reason.
#[test]
fn checkov_finds_nothing_unexplained() {
    let p = project(&[]);
    write_template_variants(&p, &TestCa::new("Checkov CA"));
    let result = Command::new(venv_tool("checkov"))
        .arg("-d")
        .arg(p.dir.join("lint"))
        .args(["--framework", "cloudformation", "--output", "json"])
        .args(["--skip-download", "--no-fail-on-crash"])
        .env("BC_SKIP_MAPPING", "TRUE")
        .env("CHECKOV_RUN_SCA_PACKAGE_SCAN_V2", "false")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "checkov printed no JSON report ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&result.stderr)
        )
    });
    let results = &report["results"];
    let failed: Vec<String> = results["failed_checks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| format!("{} {} in {}", c["check_id"], c["resource"], c["file_path"]))
        .collect();
    assert!(
        failed.is_empty(),
        "checkov findings:\n{}",
        failed.join("\n")
    );
    let skipped = results["skipped_checks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !skipped.is_empty(),
        "no skip was read: is the Metadata form right?"
    );
    for c in &skipped {
        let comment = c["check_result"]["suppress_comment"].as_str().unwrap_or("");
        assert!(
            comment.len() > 40,
            "{} on {} skipped without a reason",
            c["check_id"],
            c["resource"]
        );
        // A customer-managed key fixes these three: nothing is skipped that the stage fixed.
        if c["file_path"]
            .as_str()
            .unwrap_or("")
            .contains("kms.template")
        {
            let id = c["check_id"].as_str().unwrap_or("");
            assert!(
                !["CKV_AWS_158", "CKV_AWS_173", "CKV_AWS_27"].contains(&id),
                "{id} skipped on {} although the stage sets a KMS key",
                c["resource"]
            );
        }
    }
    assert!(results["passed_checks"]
        .as_array()
        .is_some_and(|p| !p.is_empty()));
}

fn read_dir_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn two_synths_produce_byte_identical_directories() {
    let base = std::env::temp_dir().join(unique("jitr-determinism"));
    let run = |out: &Path| {
        cli()
            .args(["synth", "--stage", "dev", "--out"])
            .arg(out)
            .assert()
            .success();
    };
    let (a, b) = (base.join("a"), base.join("b"));
    run(&a);
    run(&b);
    let (fa, fb) = (read_dir_bytes(&a), read_dir_bytes(&b));
    let names: Vec<&str> = fa.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names.contains(&"manifest.json") && names.contains(&"jitr-dev.template.json"));
    assert!(fa == fb, "two synths differ");
    // Nothing machine-specific in what was written.
    let home = std::env::var("HOME").unwrap_or_default();
    for (name, bytes) in &fa {
        if name.ends_with(".json") {
            let text = String::from_utf8_lossy(bytes);
            assert!(
                !text.contains(&*root().to_string_lossy()),
                "{name} has an absolute path"
            );
            assert!(
                home.is_empty() || !text.contains(&home),
                "{name} mentions $HOME"
            );
        }
    }
    // The manifest's digests match the files.
    let manifest: Value =
        serde_json::from_slice(&fa.iter().find(|(n, _)| n == "manifest.json").unwrap().1).unwrap();
    for asset in manifest["assets"].as_array().unwrap() {
        let file = asset["file"].as_str().unwrap();
        let bytes = &fa.iter().find(|(n, _)| n == file).unwrap().1;
        assert_eq!(
            asset["sha256"],
            json!(jitr_infra::assets::sha256_hex(bytes))
        );
    }
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn synth_json_describes_what_was_written() {
    let out = std::env::temp_dir().join(unique("jitr-synth-json"));
    let o = cli()
        .args(["synth", "--stage", "dev", "--json", "--out"])
        .arg(&out)
        .assert()
        .success();
    let result: Value = serde_json::from_slice(&o.get_output().stdout)
        .expect("synth --json prints one JSON document on stdout");
    assert_eq!(result["stage"], "dev");
    assert_eq!(result["stackName"], "jitr-dev");
    let template = std::fs::read(out.join(result["template"]["file"].as_str().unwrap())).unwrap();
    assert_eq!(result["template"]["bytes"], json!(template.len()));
    assert_eq!(
        result["template"]["sha256"],
        json!(jitr_infra::assets::sha256_hex(&template))
    );
    let assets = result["assets"].as_array().unwrap();
    let packages: Vec<&str> = assets
        .iter()
        .map(|a| a["package"].as_str().unwrap())
        .collect();
    assert_eq!(packages, ["jitr-activator", "jitr-ca-provider"]);
    for a in assets {
        let bytes = std::fs::read(out.join(a["file"].as_str().unwrap())).unwrap();
        assert_eq!(a["sha256"], json!(jitr_infra::assets::sha256_hex(&bytes)));
        assert_eq!(a["bytes"], json!(bytes.len()));
        // The zip written is the one this binary embeds.
        let embedded = jitr_infra::assets::EMBEDDED
            .iter()
            .find(|e| e.package == a["package"])
            .unwrap();
        assert_eq!(bytes, embedded.zip);
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn schema_describes_the_stage_file() {
    let o = cli().arg("schema").assert().success();
    let schema: Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
    let props = schema["properties"].as_object().unwrap();
    for k in [
        "stack_name",
        "region",
        "account",
        "tags",
        "ca",
        "activator",
        "device_policy",
    ] {
        assert!(props.contains_key(k), "schema lacks {k}");
    }
    assert_eq!(schema["additionalProperties"], json!(false));
}

#[test]
fn list_and_validate() {
    cli().arg("list").assert().success().stdout(
        contains("dev")
            .and(contains("jitr-dev"))
            .and(contains("jitr-prod")),
    );
    cli()
        .args(["validate", "--all"])
        .assert()
        .success()
        .stdout(contains("dev: ok").and(contains("prod: ok")));
}

#[test]
fn ca_adopt_is_written_only_when_asked() {
    let stage = |name: &str, extra: &str| {
        format!("stack_name: jitr-{name}\nregion: eu-west-1\nca:\n  certificate: certs/dev-ca.pem\n  mode: SNI_ONLY\n{extra}")
    };
    let p = project(&[
        ("adopting", &stage("adopting", "  adopt: true\n")),
        ("owning", &stage("owning", "  adopt: false\n")),
    ]);
    let props = |name: &str| -> Value {
        let t: Value = serde_json::from_str(&p.synth(name).template_json).unwrap();
        t["Resources"]["CaRegistration"]["Properties"].clone()
    };
    assert_eq!(props("adopting")["Adopt"], json!("true"));
    // Absent, not "false": stacks deployed before `adopt` existed see no change.
    assert_eq!(props("owning").get("Adopt"), None);
}

/// A stage with `revocation:` ships its list as the activator's layer: the zip is an asset
/// (named by its digest, written and listed in the manifest), the template has the
/// LayerVersion (content in the asset bucket) and the activator its `Layers` and
/// `JITR_REVOCATION_FILE`; a stage without it has none of these.
#[test]
fn the_revocation_list_ships_as_the_activators_layer() {
    let ca = TestCa::new("Layer CA");
    let p = project(&[("rev", REVOCATION_STAGE)]);
    p.write("certs/lint.pem", &ca.pem);
    p.write("certs/lint.crl", &ca.crl(&[&[0x0a, 0x0b]], 2099).0);
    let s = p.synth("rev");
    let layer = s
        .layer
        .as_ref()
        .expect("a layer for a stage with revocation");
    let (json, _) = jitr_bundle::unzip_file(&layer.zip, "jitr/revocation.json").unwrap();
    let list: Value = serde_json::from_slice(&json).unwrap();
    let ca_id = jitr_lambda_common::pki::Certificate::from_pem(&ca.pem)
        .unwrap()
        .aws_iot_id();
    assert_eq!(
        list,
        json!({"revoked": {"1a2b3c": ["*"], "a0b": [ca_id], "ff": ["*"]}})
    );
    let t: Value = serde_json::from_str(&s.template_json).unwrap();
    let r = &t["Resources"]["RevocationListLayer"];
    assert_eq!(r["Type"], "AWS::Lambda::LayerVersion");
    assert_eq!(
        r["Properties"]["Content"]["S3Key"],
        json!(format!("asset.{}.zip", layer.sha256))
    );
    assert_eq!(
        r["Properties"]["CompatibleRuntimes"],
        json!(["provided.al2023"])
    );
    let f = &t["Resources"]["ActivatorFunction"]["Properties"];
    assert_eq!(f["Layers"], json!([{"Ref": "RevocationListLayer"}]));
    assert_eq!(
        f["Environment"]["Variables"]["JITR_REVOCATION_FILE"],
        "/opt/jitr/revocation.json"
    );
    let keys: Vec<String> = s.asset_files().into_iter().map(|(k, _)| k).collect();
    assert!(
        keys.contains(&format!("asset.{}.zip", layer.sha256)),
        "{keys:?}"
    );
    let manifest: Value = serde_json::from_str(&s.manifest_json).unwrap();
    let listed = manifest["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["layer"] == "RevocationListLayer")
        .expect("the layer in the manifest");
    assert_eq!(listed["sha256"], json!(layer.sha256));
    assert_eq!(listed["bytes"], json!(layer.zip.len()));
    // The same list gives the same layer; another list another one.
    assert_eq!(p.synth("rev").layer.unwrap().sha256, layer.sha256);
    p.write(
        "stacks/rev.yaml",
        REVOCATION_STAGE.replace("\"0x00ff\"", "\"0x00fe\""),
    );
    assert_ne!(p.synth("rev").layer.unwrap().sha256, layer.sha256);
    // Without the section: no layer, no Layers, no variable.
    let (_, dev) = template_of("dev");
    assert!(dev["Resources"].get("RevocationListLayer").is_none());
    let f = &dev["Resources"]["ActivatorFunction"]["Properties"];
    assert!(f.get("Layers").is_none());
    assert!(f["Environment"]["Variables"]
        .get("JITR_REVOCATION_FILE")
        .is_none());
}

/// `ca:` as a list: ids follow names (the CA named `default` keeps the one-CA ids, so turning
/// `ca:` into a list replaces nothing), and the order of the list changes nothing.
#[test]
fn a_ca_list_names_its_resources_by_name_never_by_position() {
    let head = "stack_name: jitr-rot\nregion: eu-west-1\n";
    let default = "  - name: default\n    certificate: certs/dev-ca.pem\n    mode: SNI_ONLY\n";
    let next = "  - name: ca-2026\n    certificate: certs/prod-ca.pem\n    mode: SNI_ONLY\n";
    let p = project(&[
        (
            "one",
            &format!("{head}ca:\n  certificate: certs/dev-ca.pem\n  mode: SNI_ONLY\n"),
        ),
        ("listed-one", &format!("{head}ca:\n{default}")),
        ("two", &format!("{head}ca:\n{default}{next}")),
        ("reordered", &format!("{head}ca:\n{next}{default}")),
    ]);
    // The stage's name is in the description; every other byte must be equal.
    let template = |name: &str| {
        let text = p.synth(name).template_json;
        text.replace(&format!("for stage {name} ("), "for stage S (")
    };
    let one = template("one");
    assert!(
        template("listed-one") == one,
        "a list of `default` is the one CA"
    );
    let two = template("two");
    assert!(
        template("reordered") == two,
        "the list's order changes nothing"
    );
    let one: Value = serde_json::from_str(&one).unwrap();
    let t: Value = serde_json::from_str(&two).unwrap();
    let r = &t["Resources"];
    // The existing CA's registration, rule and permission are untouched.
    for id in [
        "CaRegistration",
        "RegistrationRule",
        "ActivatorInvokePermission",
    ] {
        assert_eq!(r[id], one["Resources"][id], "{id}");
    }
    let dev_ca = std::fs::read_to_string(root().join("certs/dev-ca.pem")).unwrap();
    let prod_ca = std::fs::read_to_string(root().join("certs/prod-ca.pem")).unwrap();
    assert_eq!(
        r["CaRegistration"]["Properties"]["CaCertificatePem"]
            .as_str()
            .unwrap()
            .trim(),
        dev_ca.trim()
    );
    let new = &r["CaRegistrationCa2026"];
    assert_eq!(new["Type"], "Custom::JitrCaRegistration");
    assert_eq!(
        new["Properties"]["CaCertificatePem"]
            .as_str()
            .unwrap()
            .trim(),
        prod_ca.trim()
    );
    let rule = &r["RegistrationRuleCa2026"];
    assert_eq!(
        rule["Properties"]["RuleName"],
        "jitr_rot_registered_ca_2026"
    );
    assert!(rule["Properties"]["TopicRulePayload"]["Sql"]["Fn::Sub"]
        .as_str()
        .unwrap()
        .contains("${CaRegistrationCa2026.CaCertificateId}"));
    assert_eq!(
        rule["DependsOn"],
        json!(["ActivatorInvokePermissionCa2026"])
    );
    assert!(
        r["ActivatorInvokePermissionCa2026"]["Properties"]["SourceArn"]["Fn::Sub"]
            .as_str()
            .unwrap()
            .ends_with(":rule/jitr_rot_registered_ca_2026")
    );
    // One activator for both: every CA's id in its environment, every CA readable.
    let env = &r["ActivatorFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(
        env["JITR_CA_CERTIFICATE_ID"],
        // By name, like the rest of the template.
        json!({"Fn::Join": [",", [
            {"Fn::GetAtt": ["CaRegistrationCa2026", "CaCertificateId"]},
            {"Fn::GetAtt": ["CaRegistration", "CaCertificateId"]}
        ]]})
    );
    let read_ca = statements(&t)
        .into_iter()
        .find(|(_, s)| s["Sid"] == "ReadOurCa")
        .unwrap()
        .1;
    assert_eq!(as_list(&read_ca["Resource"]).len(), 2);
    // One error log group and role; the role may be assumed by either rule.
    let arn_like = &r["RegistrationRuleErrorRole"]["Properties"]["AssumeRolePolicyDocument"]
        ["Statement"][0]["Condition"]["ArnLike"]["aws:SourceArn"];
    assert_eq!(as_list(arn_like).len(), 2, "{arn_like}");
    for output in [
        "CaCertificateId",
        "CaCertificateIdCa2026",
        "CaCertificateArnCa2026",
        "RegistrationRuleNameCa2026",
    ] {
        assert!(t["Outputs"].get(output).is_some(), "output {output}");
    }
    let m: Value = serde_json::from_str(&p.synth("two").manifest_json).unwrap();
    let cas = m["stacks"][0]["cas"].as_array().unwrap();
    let names: Vec<&str> = cas.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ca-2026", "default"]);
    assert_eq!(cas[0]["registration"], "CaRegistrationCa2026");
}

/// A stage with `targets:` synthesizes the very template of its one-target form (it names no
/// region or account), and its manifest lists one stack per target, with its role.
#[test]
fn targets_share_one_template_and_the_manifest_lists_a_stack_per_target() {
    let dev = std::fs::read_to_string(root().join("stacks/dev.yaml")).unwrap();
    let role = "arn:aws:iam::210987654321:role/jitr-deploy";
    let targets = format!(
        "targets:\n  - region: eu-west-1\n    account: \"123456789012\"\n  - region: us-east-1\n    \
         account: \"210987654321\"\n    role_arn: {role}\n"
    );
    let multi = dev.replacen("region: eu-west-1\n", &targets, 1);
    assert_ne!(multi, dev, "test setup: dev.yaml has `region: eu-west-1`");
    let p = project(&[("dev", &dev), ("multi", &multi)]);
    let (one, many) = (p.synth("dev"), p.synth("multi"));
    // The same template but for its description, which names the stage.
    let same = one
        .template_json
        .replace("for stage dev ", "for stage multi ");
    assert!(
        same == many.template_json,
        "the targets change the template"
    );
    let manifest: Value = serde_json::from_str(&many.manifest_json).unwrap();
    let stacks = manifest["stacks"].as_array().unwrap();
    let placed: Vec<(Value, Value, Value)> = stacks
        .iter()
        .map(|s| {
            (
                s["region"].clone(),
                s["account"].clone(),
                s["roleArn"].clone(),
            )
        })
        .collect();
    assert_eq!(
        placed,
        [
            (json!("eu-west-1"), json!("123456789012"), Value::Null),
            (json!("us-east-1"), json!("210987654321"), json!(role)),
        ]
    );
    assert!(stacks
        .iter()
        .all(|s| s["templateSha256"] == json!(many.template_sha256)));
    let labels: Vec<String> = many.stage.targets().iter().map(|t| t.label()).collect();
    assert_eq!(labels, ["eu-west-1/123456789012", "us-east-1/210987654321"]);
    // The schema offers `targets` beside `region`.
    let o = cli().arg("schema").assert().success();
    let schema: Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
    assert!(schema["properties"]["targets"].is_object(), "{schema:#}");
}
