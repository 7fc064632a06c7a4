//! jitr-infra as a user gets it: the binary alone, copied to a directory outside the checkout
//! and run there with a `PATH` that holds no Rust toolchain and no `JITR_*` variable: `init`,
//! `validate`, `synth` (byte-identical to the checkout's synth of the same stage), `deploy` to
//! moto, the JITR flow with a device certificate signed by the CA `init` made, `destroy`.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use testkit::jitr::{assert_onboarded, output_text as text, register_pending, registered_event};
use testkit::pki::TestCa;
use testkit::{moto, unique};

fn checkout() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A user's machine: `bin/jitr-infra` (a copy of the suite's binary) in a fresh directory
/// outside the checkout, which is also `HOME`.
struct Machine {
    home: PathBuf,
    path: String,
}

impl Machine {
    fn new() -> Machine {
        let home = std::env::temp_dir().join(unique("jitr-user"));
        assert!(!home.starts_with(checkout()), "outside the checkout");
        std::fs::create_dir_all(home.join("bin")).unwrap();
        std::fs::copy(
            env!("CARGO_BIN_EXE_jitr-infra"),
            home.join("bin/jitr-infra"),
        )
        .unwrap();
        let path = format!(
            "{}:{}",
            home.join("bin").display(),
            testkit::path_without_toolchain()
        );
        Machine { home, path }
    }

    /// `jitr-infra ARGS` in `dir`, with nothing of the developer's environment but moto.
    fn run(&self, dir: &Path, args: &[&str]) -> Output {
        // The binary was just copied: see testkit::output_of.
        let out = testkit::output_of(
            Command::new("jitr-infra")
                .args(args)
                .current_dir(dir)
                .env_clear()
                .env("PATH", &self.path)
                .env("HOME", &self.home)
                .env("CI", "true")
                .envs(testkit::aws_env(moto().endpoint())),
        )
        .unwrap();
        assert!(out.status.success(), "jitr-infra {args:?}: {}", text(&out));
        out
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// Every file under `dir`, by relative path, with its bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The checkout's synth of the same stage: the suite's binary, run from the checkout with
/// the developer's own environment, on a copy of the project's stage, CA and template.
fn checkout_synth(project: &Path) -> BTreeMap<String, Vec<u8>> {
    let copy = std::env::temp_dir().join(unique("jitr-checkout-synth"));
    for file in [
        "stacks/dev.yaml",
        "certs/dev-ca.pem",
        "templates/device-policy.json.hbs",
    ] {
        std::fs::create_dir_all(copy.join(file).parent().unwrap()).unwrap();
        std::fs::copy(project.join(file), copy.join(file)).unwrap();
    }
    let out = copy.join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_jitr-infra"))
        .current_dir(checkout())
        .arg("--project")
        .arg(&copy)
        .args(["synth", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let files = tree(&out);
    let _ = std::fs::remove_dir_all(&copy);
    files
}

#[test]
fn the_path_of_a_user_machine_has_no_rust_toolchain() {
    let machine = Machine::new();
    let o = Command::new("sh")
        .args(["-c", "command -v cargo || command -v rustc"])
        .env_clear()
        .env("PATH", &machine.path)
        .output()
        .unwrap();
    assert!(!o.status.success(), "found {}", text(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_alone_starts_a_project_deploys_it_and_onboards_a_device() {
    let machine = Machine::new();
    let name = unique("sc").replace('-', "");
    let o = machine.run(
        &machine.home,
        &[
            "init",
            "project",
            "--name",
            &name,
            "--region",
            testkit::REGION,
        ],
    );
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("certs/dev-ca.key"), "{said}");
    let project = machine.home.join("project");

    machine.run(&project, &["validate"]);
    machine.run(&project, &["synth"]);
    let ours = tree(&project.join("jitr.out/dev"));
    assert_eq!(
        ours.len(),
        4,
        "template, manifest, two zips: {:?}",
        ours.keys()
    );
    assert!(
        ours == checkout_synth(&project),
        "the synth outside the checkout differs from the checkout's"
    );

    let o = machine.run(
        &project,
        &[
            "deploy",
            "--require-approval",
            "never",
            "--outputs-file",
            "outputs.json",
        ],
    );
    let stack = format!("{name}-dev");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("stack {stack}: CREATE_COMPLETE")),
        "{}",
        text(&o)
    );
    let outputs: Value =
        serde_json::from_slice(&std::fs::read(project.join("outputs.json")).unwrap()).unwrap();
    let ca_id = outputs["CaCertificateId"].as_str().unwrap().to_string();

    // A device whose certificate the CA `init` made signed: registered pending as AWS IoT
    // does on its first connection, then the registered event reaches the activator.
    let ca = TestCa::from_pem(
        &std::fs::read_to_string(project.join("certs/dev-ca.pem")).unwrap(),
        &std::fs::read_to_string(project.join("certs/dev-ca.key")).unwrap(),
    );
    let device = unique("sc-device");
    let iot = moto().iot().await;
    let (cert_id, cert_arn) = register_pending(&iot, &ca, &device).await;
    let report = activate(&stack, &cert_id, &ca_id).await;
    assert_eq!(report["outcome"], "activated", "{report}");
    assert_onboarded(&iot, &cert_id, &device, &cert_arn).await;

    machine.run(&project, &["destroy", "--yes", "--detach-devices"]);
}

/// The registered event, as the topic rule delivers it, through the Lambda Invoke API.
async fn activate(stack: &str, cert_id: &str, ca_id: &str) -> Value {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(testkit::REGION))
        .endpoint_url(moto().endpoint())
        .credentials_provider(aws_sdk_lambda::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "self-contained",
        ))
        .load()
        .await;
    let event = registered_event(cert_id, ca_id);
    let out = aws_sdk_lambda::Client::new(&conf)
        .invoke()
        .function_name(format!("{stack}-activator"))
        .payload(aws_sdk_lambda::primitives::Blob::new(event.to_string()))
        .send()
        .await
        .unwrap();
    assert_eq!(out.function_error(), None);
    serde_json::from_slice(out.payload().unwrap().as_ref()).unwrap()
}
