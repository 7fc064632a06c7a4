//! `jitr-infra init`: the project it makes validates, its development CA is one AWS IoT takes
//! and devices can be signed with, and it refuses any directory holding more than `.git`
//! without changing a byte.

use assert_cmd::Command;
use jitr_lambda_common::pki::{unix_now, Certificate};
use predicates::prelude::*;
use predicates::str::contains;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use testkit::pki::TestCa;
use testkit::project::Project;
use testkit::unique;
use x509_parser::oid_registry::{OID_EC_P256, OID_SIG_ECDSA_WITH_SHA256};
use x509_parser::prelude::*;

const FILES: [&str; 6] = [
    "stacks/dev.yaml",
    "certs/dev-ca.pem",
    "certs/dev-ca.key",
    "templates/device-policy.json.hbs",
    ".gitignore",
    ".github/workflows/jitr-infra.yml",
];

/// A directory under the system temp dir that does not exist yet (removed when dropped).
fn fresh(prefix: &str) -> Project {
    Project {
        dir: std::env::temp_dir().join(unique(prefix)),
    }
}

/// The CLI, with no region from the environment (the default, us-east-1, applies).
fn cli() -> Command {
    let mut cmd = Command::cargo_bin("jitr-infra").unwrap();
    cmd.env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION");
    cmd
}

fn init(p: &Project, extra: &[&str]) -> assert_cmd::assert::Assert {
    cli().arg("init").arg(&p.dir).args(extra).assert()
}

fn read(p: &Project, rel: &str) -> String {
    std::fs::read_to_string(p.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn init_makes_a_project_that_validates() {
    let p = fresh("jitr-init-fresh");
    init(&p, &[])
        .success()
        .stdout(contains("us-east-1 (the default"))
        .stdout(contains("certs/dev-ca.key"))
        .stdout(contains("0600"))
        .stdout(contains("jitr-infra validate"))
        .stdout(contains("jitr-infra deploy"))
        .stdout(contains("PRIVATE KEY").not());
    for f in FILES {
        assert!(p.path(f).is_file(), "{f} made");
    }
    let mode = |rel| std::fs::metadata(p.path(rel)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("certs/dev-ca.key"), 0o600);
    assert!(read(&p, "certs/dev-ca.key").starts_with("-----BEGIN PRIVATE KEY-----"));
    let ignored: Vec<String> = read(&p, ".gitignore").lines().map(str::to_string).collect();
    for line in ["*.key", "certs/*.key", "jitr.out/"] {
        assert!(ignored.iter().any(|l| l == line), "{line} in .gitignore");
    }
    assert_eq!(
        read(&p, "templates/device-policy.json.hbs"),
        include_str!("../templates/device-policy.json.hbs"),
        "the repository's own template"
    );
    let stage = read(&p, "stacks/dev.yaml");
    for field in [
        "mode: SNI_ONLY",
        "auto_registration: true",
        "retain_on_delete: false",
        "# api_rates:",
        "# api_share: 1.0",
        "reconciler:\n  enabled: true\n",
        "#   email: ops@example.com",
    ] {
        assert!(stage.contains(field), "{field}");
    }
    workflow_is_the_ci_recipe(&p);
    git_ignores_the_key(&p);

    // Right after init, validate works there (it needs no Lambdas).
    cli()
        .arg("validate")
        .current_dir(&p.dir)
        .assert()
        .success()
        .stdout(contains("dev: ok"));

    // The commented examples are valid once uncommented.
    let uncommented = stage
        .replace(
            "  # api_rates:\n  #   Describe",
            "  api_rates:\n    Describe",
        )
        .replace("  # api_share:", "  api_share:")
        .replace("  # reserved_concurrency:", "  reserved_concurrency:")
        .replace("# alarms:\n#   email:", "alarms:\n  email:");
    assert_eq!(uncommented.matches("\n  api_rates:\n").count(), 1);
    assert!(uncommented.contains("\nalarms:\n  email: ops@example.com\n"));
    std::fs::write(p.path("stacks/dev.yaml"), uncommented).unwrap();
    cli()
        .arg("validate")
        .current_dir(&p.dir)
        .assert()
        .success()
        .stdout(contains("dev: ok"));
}

/// `git check-ignore` agrees, when git is installed: the key and synth's output are ignored,
/// the certificate is not.
fn git_ignores_the_key(p: &Project) {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(&p.dir)
            .output()
    };
    if git(&["init", "-q"]).is_err() {
        eprintln!("git not run; skipping its check");
        return;
    }
    let ignored = |path: &str| git(&["check-ignore", "-q", path]).unwrap().status.success();
    assert!(ignored("certs/dev-ca.key"));
    assert!(ignored("jitr.out/dev/template.json"));
    assert!(!ignored("certs/dev-ca.pem"));
    assert!(!ignored("stacks/dev.yaml"));
}

fn workflow_is_the_ci_recipe(p: &Project) {
    let text = read(p, ".github/workflows/jitr-infra.yml");
    let wf: serde_yaml::Value = serde_yaml::from_str(&text).expect("the workflow is YAML");
    let env = &wf["env"];
    assert_eq!(
        env["JITR_INFRA_VERSION"].as_str(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert!(env["JITR_INFRA_GIT"]
        .as_str()
        .unwrap()
        .contains("CHANGE-ME"));
    let steps = wf["jobs"]["infra"]["steps"].as_sequence().unwrap();
    let run = |needle: &str| {
        steps
            .iter()
            .find(|s| s["run"].as_str().is_some_and(|r| r.contains(needle)))
            .unwrap_or_else(|| panic!("a step runs {needle}"))
    };
    let install = run("cargo install --locked --git \"$JITR_INFRA_GIT\"");
    assert!(install["if"].as_str().unwrap().contains("cache-hit"));
    assert!(run("jitr-infra diff")["run"]
        .as_str()
        .unwrap()
        .contains("test $? -eq 3"));
    assert!(run("jitr-infra deploy")["if"]
        .as_str()
        .unwrap()
        .contains("push"));
    let uses = |action: &str| {
        steps
            .iter()
            .find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with(action)))
            .unwrap_or_else(|| panic!("a step uses {action}"))
    };
    assert_eq!(
        uses("actions/cache")["with"]["path"].as_str(),
        Some("~/.cargo/bin/jitr-infra")
    );
    assert_eq!(
        uses("aws-actions/configure-aws-credentials")["with"]["aws-region"].as_str(),
        Some("us-east-1")
    );
    assert_eq!(wf["permissions"]["id-token"].as_str(), Some("write"));
    assert!(!text.contains("cargo build"), "no workspace build");
}

#[test]
fn the_ca_is_an_ec_p256_ca_that_signs_device_certificates() {
    let p = fresh("jitr-init-ca");
    init(&p, &["--name", "acme"]).success();
    let cert_pem = read(&p, "certs/dev-ca.pem");
    let (_, pem) = parse_x509_pem(cert_pem.as_bytes()).unwrap();
    let x509 = pem.parse_x509().unwrap();
    let bc = x509.basic_constraints().unwrap().expect("basicConstraints");
    assert!(bc.critical && bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(0));
    let ku = x509.key_usage().unwrap().expect("keyUsage");
    assert!(ku.value.key_cert_sign() && ku.value.crl_sign() && ku.value.digital_signature());
    assert_eq!(
        x509.signature_algorithm.algorithm,
        OID_SIG_ECDSA_WITH_SHA256
    );
    let curve = x509.public_key().algorithm.parameters.as_ref().unwrap();
    assert_eq!(curve.as_oid().unwrap(), OID_EC_P256);
    assert_eq!(x509.subject().to_string(), "CN=acme development CA, O=acme");
    assert!(x509.raw_serial().len() >= 8, "a random serial");
    let (from, to) = (
        x509.validity().not_before.timestamp(),
        x509.validity().not_after.timestamp(),
    );
    let now = unix_now();
    assert!(
        from <= now - 3000 && from >= now - 4000,
        "valid from an hour ago"
    );
    assert_eq!(to - from, 730 * 86_400, "for 2 years");
    let ca = Certificate::from_pem(&cert_pem).unwrap();
    ca.check_verifiable_issuer().unwrap();

    // A device certificate signed with the key init wrote verifies against its certificate.
    let signer = TestCa::from_pem(&cert_pem, &read(&p, "certs/dev-ca.key"));
    let device = signer.issue("sensor-000001");
    Certificate::from_pem(&device)
        .unwrap()
        .verify_signed_by(&ca)
        .unwrap();
    openssl_verifies(&p, &device);
}

/// `openssl verify -CAfile certs/dev-ca.pem device.pem`, when openssl is installed.
fn openssl_verifies(p: &Project, device_pem: &str) {
    let device = p.path("device.pem");
    std::fs::write(&device, device_pem).unwrap();
    let out = std::process::Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(p.path("certs/dev-ca.pem"))
        .arg(&device)
        .output();
    match out {
        Err(e) => eprintln!("openssl not run ({e}); skipping its check"),
        Ok(out) => assert!(
            out.status.success(),
            "openssl verify: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[test]
fn a_directory_holding_anything_but_git_is_refused_and_left_unchanged() {
    let p = fresh("jitr-init-busy");
    p.write("notes.txt", "mine\n");
    let before = p.tree();
    init(&p, &[])
        .code(1)
        .stderr(contains(p.dir.display().to_string()))
        .stderr(contains("notes.txt"))
        .stdout("");
    assert_eq!(p.tree(), before, "byte for byte unchanged");

    // A second init into a project init made refuses, too.
    let q = fresh("jitr-init-twice");
    init(&q, &[]).success();
    let made = q.tree();
    init(&q, &[]).code(1).stderr(contains("stacks"));
    assert_eq!(q.tree(), made);
}

#[test]
fn a_directory_holding_only_git_is_accepted() {
    let p = fresh("jitr-init-git");
    p.write(".git/HEAD", "ref: refs/heads/main\n");
    init(&p, &[]).success();
    for f in FILES {
        assert!(p.path(f).is_file(), "{f} made");
    }
    assert_eq!(read(&p, ".git/HEAD"), "ref: refs/heads/main\n");
}

#[test]
fn json_result_names_sanitized_and_bad_names_refused() {
    let p = fresh("jitr-init-json");
    let out = init(
        &p,
        &["--json", "--name", "My Factory_1", "--region", "eu-west-1"],
    )
    .success()
    .get_output()
    .stdout
    .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v["dir"],
        p.dir.canonicalize().unwrap().display().to_string()
    );
    assert_eq!(v["stage"], "dev");
    assert_eq!(v["stackName"], "My-Factory-1-dev");
    assert_eq!(v["region"], "eu-west-1");
    assert_eq!(v["caCertificate"], "certs/dev-ca.pem");
    assert_eq!(v["caKey"], "certs/dev-ca.key");
    let created: Vec<(&str, &str)> = v["created"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["path"].as_str().unwrap(), c["mode"].as_str().unwrap()))
        .collect();
    assert_eq!(created.iter().map(|c| c.0).collect::<Vec<_>>(), FILES);
    assert!(
        created.contains(&("certs/dev-ca.key", "0600")),
        "{created:?}"
    );
    assert!(read(&p, "stacks/dev.yaml").contains("stack_name: My-Factory-1-dev"));

    let q = fresh("jitr-init-badname");
    init(&q, &["--name", "42_!"])
        .code(1)
        .stderr(contains("--name"));
    assert!(!q.dir.exists(), "nothing made");
}

#[test]
fn the_region_comes_from_the_environment_when_not_given() {
    let p = fresh("jitr-init-env");
    let out = cli()
        .args(["init", "--json"])
        .arg(&p.dir)
        .env("AWS_DEFAULT_REGION", "ap-southeast-2")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["region"], "ap-southeast-2");
    assert!(read(&p, "stacks/dev.yaml").contains("region: ap-southeast-2"));
}

#[test]
fn two_inits_make_two_different_cas() {
    let (a, b) = (fresh("jitr-init-a"), fresh("jitr-init-b"));
    init(&a, &["--name", "same"]).success();
    init(&b, &["--name", "same"]).success();
    for f in ["certs/dev-ca.pem", "certs/dev-ca.key"] {
        assert_ne!(read(&a, f), read(&b, f), "{f}: fresh each time");
    }
    let serial = |p: &Project| {
        let pem = read(p, "certs/dev-ca.pem");
        let (_, pem) = parse_x509_pem(pem.as_bytes()).unwrap();
        pem.parse_x509().unwrap().raw_serial().to_vec()
    };
    assert_ne!(serial(&a), serial(&b));
}

/// The README's CI recipe is the workflow `init` writes, word for word.
#[test]
fn the_readme_ci_recipe_is_the_workflow_init_writes() {
    let p = fresh("jitr-init-readme");
    init(&p, &["--name", "my-iot-infra", "--region", "eu-west-1"]).success();
    let workflow = read(&p, ".github/workflows/jitr-infra.yml");
    let readme = include_str!("../README.md");
    assert!(
        readme.contains(&format!("```yaml\n{workflow}```\n")),
        "README.md's CI section must show the workflow init writes (for --region eu-west-1):\n{workflow}"
    );
}
