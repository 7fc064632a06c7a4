//! Bad input, through the real binary: every case must exit 1 with a message on stderr that
//! names the stage file, the field and (where the YAML has one) the line, and must write
//! nothing: no `--out` directory, no leftover `.<name>.tmp-*` directory beside it, and an
//! existing output directory left exactly as it was.
//!
//! Each test gets its own throwaway project (stacks/, templates/, certs/) under the system
//! temp directory. Validation fails before any Lambda build; `CARGO` points nowhere so a case
//! that wrongly passes validation fails fast instead of starting a build.

use predicates::prelude::*;
use predicates::str::{contains, is_empty};
use std::path::PathBuf;
use std::time::Duration;
use testkit::pki::{leaf_self_signed, TestCa};
use testkit::project::{Project, Tree};

const BIN: &str = env!("CARGO_BIN_EXE_jitr-infra");
const CA: &str = "certs/dev-ca.pem";
const TEMPLATE: &str = testkit::project::POLICY_TEMPLATE;
/// Far more than a failing validation needs; a hung run fails the test instead of hanging it.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// stacks/dev.yaml as shipped: every case changes one thing in it.
fn dev_yaml() -> String {
    std::fs::read_to_string(repo().join("stacks/dev.yaml")).expect("read stacks/dev.yaml")
}

/// `text` with `from` (which must occur exactly once) replaced by `to`.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "test setup: {from:?} must occur exactly once in:\n{text}"
    );
    text.replacen(from, to, 1)
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("test setup: {needle:?} not found in:\n{text}"))
}

/// A throwaway project (testkit's, removed when dropped, also when a test panics) with the
/// shipped device policy template and dev CA.
fn project(case: &str) -> Project {
    let p = Project::new(&format!("jitr-bad-input-{case}"));
    p.copy_from_repo(CA);
    p
}

/// What these tests do in a project.
trait BadInput {
    fn out(&self) -> PathBuf;
    fn synth(&self, stage: &str) -> Run;
    fn run(&self, args: &[&str]) -> Run;
    fn snapshot(&self) -> Tree;
}

impl BadInput for Project {
    fn out(&self) -> PathBuf {
        self.path("out")
    }

    /// `jitr-infra --project <dir> synth --stage <name> --out <dir>/out`.
    fn synth(&self, stage: &str) -> Run {
        let project = self.arg();
        let out = self.out().to_str().unwrap().to_string();
        self.run(&[
            "--project",
            &project,
            "synth",
            "--stage",
            stage,
            "--out",
            &out,
        ])
    }

    /// Runs the binary in the project directory.
    fn run(&self, args: &[&str]) -> Run {
        let output = self
            .cli(BIN)
            .args(args)
            .env("CARGO", "/nonexistent/jitr-bad-input/cargo")
            .env_remove("RUST_BACKTRACE")
            .write_stdin("")
            .timeout(RUN_TIMEOUT)
            .output()
            .expect("start jitr-infra");
        let code = output.status.code();
        assert!(
            code.is_some(),
            "jitr-infra {} was killed: it did not finish within {RUN_TIMEOUT:?}",
            args.join(" ")
        );
        Run {
            command: format!("jitr-infra {}", args.join(" ")),
            code,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Every file and directory under the project, with file contents.
    fn snapshot(&self) -> Tree {
        self.tree()
    }
}

struct Run {
    command: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// What a failing run's stderr must hold.
struct Expect {
    /// The stage file the message must name, e.g. `stacks/bad.yaml`.
    file: String,
    /// `stacks/bad.yaml:LINE:` must appear.
    line: Option<usize>,
    /// Each entry: at least one of its alternatives must appear in stderr.
    needs: Vec<Vec<String>>,
}

impl Expect {
    fn new(stage: &str) -> Expect {
        Expect {
            file: format!("stacks/{stage}.yaml"),
            line: None,
            needs: Vec::new(),
        }
    }

    fn line(mut self, line: usize) -> Expect {
        self.line = Some(line);
        self
    }

    fn has(mut self, text: impl Into<String>) -> Expect {
        self.needs.push(vec![text.into()]);
        self
    }

    fn has_any(mut self, alternatives: &[&str]) -> Expect {
        self.needs
            .push(alternatives.iter().map(|s| s.to_string()).collect());
        self
    }

    fn describe(&self) -> String {
        let mut d = vec![
            format!("exit code 1"),
            format!("stderr names {}", self.file),
        ];
        if let Some(l) = self.line {
            d.push(format!("stderr has `{}:{l}:`", self.file));
        }
        for alts in &self.needs {
            let alts: Vec<String> = alts.iter().map(|a| format!("{a:?}")).collect();
            d.push(format!("stderr has {}", alts.join(" or ")));
        }
        d.push("no panic, no Rust debug output (`Some(`) on stderr".into());
        d.push("empty stdout".into());
        d.push("nothing written under the project (no out/, no .out.tmp-*)".into());
        d.join("\n    ")
    }
}

/// Checks a failed run against `expect`, and that the project is byte-for-byte as `before`.
/// Returns a full report (expected vs actual) for every failure.
fn check(
    case: &str,
    project: &Project,
    before: &Tree,
    out_existed: bool,
    run: &Run,
    expect: &Expect,
) -> Vec<String> {
    let mut failures = Vec::new();
    if run.code != Some(1) {
        failures.push(format!("exit code is {:?}, expected Some(1)", run.code));
    }
    if !run.stderr.contains(&expect.file) {
        failures.push(format!(
            "stderr does not name the stage file {}",
            expect.file
        ));
    }
    if let Some(l) = expect.line {
        let at = format!("{}:{l}:", expect.file);
        if !run.stderr.contains(&at) {
            failures.push(format!("stderr does not show the line as `{at}`"));
        }
    }
    for alts in &expect.needs {
        if !alts.iter().any(|a| contains(a.as_str()).eval(&run.stderr)) {
            failures.push(format!("stderr lacks {}", alts.join(" | ")));
        }
    }
    for bad in ["panicked", "RUST_BACKTRACE", "Some("] {
        if run.stderr.contains(bad) {
            failures.push(format!(
                "stderr contains {bad:?} (a panic or Rust debug output)"
            ));
        }
    }
    if !run.stdout.is_empty() {
        failures.push("stdout is not empty".into());
    }
    failures.extend(nothing_written(project, before, out_existed));
    if failures.is_empty() {
        return failures;
    }
    vec![format!(
        "case {case}: {}\n  expected:\n    {}\n  problems:\n    {}\n  actual exit code: {:?}\n  actual stderr:\n{}\n  actual stdout:\n{}",
        run.command,
        expect.describe(),
        failures.join("\n    "),
        run.code,
        indent(&run.stderr),
        indent(&run.stdout),
    )]
}

fn indent(text: &str) -> String {
    if text.is_empty() {
        return "    (empty)".into();
    }
    text.lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The project is as it was: `out` exists only if it did, no temporary or backup directory
/// beside it, no file added, removed or changed.
fn nothing_written(project: &Project, before: &Tree, out_existed: bool) -> Vec<String> {
    let mut failures = Vec::new();
    if project.out().exists() != out_existed {
        failures.push(format!(
            "{} {}",
            project.out().display(),
            if out_existed {
                "was removed"
            } else {
                "exists after a failed run"
            }
        ));
    }
    for entry in std::fs::read_dir(&project.dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with(".out.") {
            failures.push(format!("leftover {name} beside the output directory"));
        }
    }
    let after = project.snapshot();
    for (path, content) in &after {
        match before.get(path) {
            None => failures.push(format!("{} was created", path.display())),
            Some(old) if old != content => failures.push(format!("{} was changed", path.display())),
            _ => {}
        }
    }
    for path in before.keys() {
        if !after.contains_key(path) {
            failures.push(format!("{} was removed", path.display()));
        }
    }
    failures
}

/// Runs `synth` on stage `name` (already written) and checks it.
fn synth_fails(case: &str, project: &Project, name: &str, expect: &Expect) -> Vec<String> {
    let before = project.snapshot();
    let out_existed = project.out().exists();
    let run = project.synth(name);
    check(case, project, &before, out_existed, &run, expect)
}

/// One bad stage in a fresh project: writes `yaml` as `stacks/<name>.yaml`, runs synth.
fn bad_stage(case: &str, name: &str, yaml: &str, expect: Expect) -> Vec<String> {
    let project = project(name);
    project.stage(name, yaml);
    synth_fails(case, &project, name, &expect)
}

fn assert_all(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} failing case(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn missing_stage_lists_the_existing_ones() {
    let project = project("nope");
    project.stage("dev", &dev_yaml());
    project.stage("other", &edit(&dev_yaml(), "jitr-dev", "jitr-other"));
    let before = project.snapshot();
    let run = project.synth("nope");
    let expect = Expect::new("nope").has("nope");
    let mut failures = check("1 missing stage", &project, &before, false, &run, &expect);
    if !run
        .stderr
        .lines()
        .any(|l| l.contains("nope") && l.contains("dev") && l.contains("other"))
    {
        failures.push(format!(
            "case 1 missing stage: no line of stderr lists the stages `dev` and `other`; actual stderr:\n{}",
            indent(&run.stderr)
        ));
    }
    assert_all(failures);
}

#[test]
fn yaml_syntax_errors_show_the_line() {
    let mut failures = Vec::new();

    let yaml = edit(&dev_yaml(), "\nregion: eu-west-1", "\n  region: eu-west-1");
    let line = line_of(&yaml, "  region: eu-west-1");
    failures.extend(bad_stage(
        "2a bad indentation",
        "indent",
        &yaml,
        Expect::new("indent").line(line),
    ));

    // The error surfaces at the end of the file; the message must still point at the quote.
    let yaml = edit(
        &dev_yaml(),
        "stack_name: jitr-dev",
        "stack_name: \"jitr-dev",
    );
    let line = line_of(&yaml, "stack_name: \"jitr-dev");
    failures.extend(bad_stage(
        "2b unclosed quote",
        "quote",
        &yaml,
        Expect::new("quote")
            .has_any(&[
                &format!("stacks/quote.yaml:{line}:"),
                &format!("line {line} column"),
            ])
            .has("quoted scalar"),
    ));
    assert_all(failures);
}

#[test]
fn unknown_fields_are_named_with_their_line() {
    let mut failures = Vec::new();

    let yaml = edit(
        &dev_yaml(),
        "\nregion: eu-west-1\n",
        "\nregion: eu-west-1\ncolour: red\n",
    );
    failures.extend(bad_stage(
        "3a unknown top-level field",
        "colour",
        &yaml,
        Expect::new("colour")
            .line(line_of(&yaml, "colour: red"))
            .has("unknown field `colour`"),
    ));

    let yaml = edit(&dev_yaml(), "  certificate: ", "  certfile: ");
    failures.extend(bad_stage(
        "3b unknown field in ca",
        "certfile",
        &yaml,
        Expect::new("certfile")
            .line(line_of(&yaml, "certfile:"))
            .has_any(&["ca.certfile", "ca: unknown field `certfile`"]),
    ));
    assert_all(failures);
}

#[test]
fn wrong_type_is_named_with_its_line() {
    let yaml = edit(&dev_yaml(), "memory_mb: 128", "memory_mb: lots");
    assert_all(bad_stage(
        "4 wrong type",
        "memory",
        &yaml,
        Expect::new("memory")
            .line(line_of(&yaml, "memory_mb: lots"))
            .has("activator.memory_mb")
            .has("lots"),
    ));
}

#[test]
fn bad_region() {
    let yaml = edit(&dev_yaml(), "region: eu-west-1", "region: moon-base-1x");
    assert_all(bad_stage(
        "5 bad region",
        "region",
        &yaml,
        Expect::new("region")
            .line(line_of(&yaml, "region: moon-base-1x"))
            .has("region")
            .has("moon-base-1x"),
    ));
}

#[test]
fn bad_account_id() {
    let yaml = edit(
        &dev_yaml(),
        "\nregion: eu-west-1\n",
        "\nregion: eu-west-1\naccount: \"12345\"\n",
    );
    assert_all(bad_stage(
        "6 bad account id",
        "account",
        &yaml,
        Expect::new("account")
            .line(line_of(&yaml, "account: \"12345\""))
            .has("account")
            .has("12345"),
    ));
}

fn with_ca(path: &str) -> (String, usize) {
    let yaml = edit(&dev_yaml(), CA, path);
    let line = line_of(&yaml, &format!("certificate: {path}"));
    (yaml, line)
}

#[test]
fn missing_ca_file() {
    let (yaml, line) = with_ca("certs/missing.pem");
    assert_all(bad_stage(
        "7 missing CA file",
        "missingca",
        &yaml,
        Expect::new("missingca")
            .line(line)
            .has("ca.certificate")
            .has("certs/missing.pem")
            .has("not found"),
    ));
}

#[test]
fn pem_that_is_not_a_certificate() {
    let mut failures = Vec::new();
    let cases = [
        (
            "8a private key PEM",
            "keypem",
            "certs/key.pem",
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n",
            "PRIVATE KEY",
        ),
        (
            "8b random text",
            "junkpem",
            "certs/junk.pem",
            "this is not a certificate, just some text\n",
            "not a PEM",
        ),
    ];
    for (case, name, path, contents, says) in cases {
        let project = project(name);
        project.write(path, contents);
        let (yaml, line) = with_ca(path);
        project.stage(name, &yaml);
        let expect = Expect::new(name)
            .line(line)
            .has("ca.certificate")
            .has(path)
            .has(says);
        failures.extend(synth_fails(case, &project, name, &expect));
    }
    assert_all(failures);
}

#[test]
fn certificate_that_is_not_a_ca() {
    let project = project("leaf");
    project.write("certs/leaf.pem", leaf_self_signed("device-0001"));
    let (yaml, line) = with_ca("certs/leaf.pem");
    project.stage("leaf", &yaml);
    let expect = Expect::new("leaf")
        .line(line)
        .has("ca.certificate")
        .has("certs/leaf.pem")
        .has("not a CA");
    assert_all(synth_fails("9 not a CA", &project, "leaf", &expect));
}

#[test]
fn expired_ca() {
    let project = project("expired");
    project.write("certs/old-ca.pem", &TestCa::expired("Old CA").pem);
    let (yaml, line) = with_ca("certs/old-ca.pem");
    project.stage("expired", &yaml);
    let expect = Expect::new("expired")
        .line(line)
        .has("ca.certificate")
        .has("certs/old-ca.pem")
        .has("expired");
    assert_all(synth_fails("10 expired CA", &project, "expired", &expect));
}

#[test]
fn default_mode_without_verification() {
    let yaml = edit(&dev_yaml(), "mode: SNI_ONLY", "mode: DEFAULT");
    assert_all(bad_stage(
        "11 DEFAULT without verification",
        "defaultmode",
        &yaml,
        Expect::new("defaultmode")
            .line(line_of(&yaml, "mode: DEFAULT"))
            .has("ca.mode")
            .has("verification"),
    ));
}

#[test]
fn thing_policy_without_things() {
    // The shipped policy connects devices as their Thing; without Things nobody ever could.
    let yaml = edit(&dev_yaml(), "create_thing: true", "create_thing: false");
    assert_all(bad_stage(
        "14 Thing policy with create_thing false",
        "nothings",
        &yaml,
        Expect::new("nothings")
            .line(line_of(&yaml, "template: templates/device-policy.json.hbs"))
            .has(
                "device_policy.template: templates/device-policy.json.hbs: uses \
                 iot:Connection.Thing.ThingName, but activator.create_thing is false: no \
                 certificate gets a Thing, so no device could ever connect. Set \
                 activator.create_thing: true, or write the policy without \
                 iot:Connection.Thing.* (e.g. client/${iot:Certificate.Subject.CommonName})",
            ),
    ));
}

#[test]
fn kms_keys_cloudwatch_logs_and_lambda_cannot_use() {
    let mut failures = Vec::new();
    let cases = [
        (
            "19a an alias",
            "kmsalias",
            "alias/jitr",
            "\"alias/jitr\" is not a KMS key ARN (arn:aws:kms:eu-west-1:ACCOUNT:key/KEY-ID); \
             aliases are not accepted by CloudWatch Logs and Lambda",
        ),
        (
            "19b a key in another region",
            "kmsregion",
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "the key is in aws:us-east-1, but the stage deploys to aws:eu-west-1; use a key in \
             the stage's region",
        ),
    ];
    for (case, name, arn, says) in cases {
        let yaml = format!("{}encryption:\n  kms_key_arn: {arn}\n", dev_yaml());
        let expect = Expect::new(name)
            .line(line_of(&yaml, "kms_key_arn:"))
            .has(format!("encryption.kms_key_arn: {says}"));
        failures.extend(bad_stage(case, name, &yaml, expect));
    }
    assert_all(failures);
}

#[test]
fn device_policy_templates_that_fail() {
    let good = std::fs::read_to_string(repo().join(TEMPLATE)).unwrap();
    let unknown = edit(&good, "{{iot_arn}}:client/", "{{nope}}:client/");
    let unknown_line = line_of(&unknown, "{{nope}}");
    let invalid = edit(&good, "\n  ]\n}", "\n}");
    let wildcard = edit(
        &good,
        "\"Action\": \"iot:Connect\"",
        "\"Action\": \"iot:*\"",
    );
    let unknown_at = [
        format!("templates/unknown-var.json.hbs:{unknown_line}"),
        format!("line {unknown_line}"),
    ];
    let cases: [(&str, &str, &str, &String, Vec<&str>); 3] = [
        (
            "12a template with an unknown variable",
            "tplunknown",
            "templates/unknown-var.json.hbs",
            &unknown,
            vec!["nope", "does not render"],
        ),
        (
            "12b template rendering invalid JSON",
            "tplinvalid",
            "templates/invalid.json.hbs",
            &invalid,
            vec!["invalid JSON"],
        ),
        (
            "12c template granting iot:*",
            "tplwildcard",
            "templates/wildcard.json.hbs",
            &wildcard,
            vec!["wildcard", "iot:*"],
        ),
    ];
    let mut failures = Vec::new();
    for (case, name, path, text, says) in cases {
        let project = project(name);
        project.write(path, text);
        let yaml = edit(&dev_yaml(), TEMPLATE, path);
        project.stage(name, &yaml);
        let mut expect = Expect::new(name)
            .line(line_of(&yaml, &format!("template: {path}")))
            .has("device_policy.template")
            .has(path);
        for s in says {
            expect = expect.has(s);
        }
        if name == "tplunknown" {
            expect = expect.has_any(&[&unknown_at[0], &unknown_at[1]]);
        }
        failures.extend(synth_fails(case, &project, name, &expect));
    }
    assert_all(failures);
}

#[test]
fn stack_name_cloudformation_would_reject() {
    let yaml = edit(
        &dev_yaml(),
        "stack_name: jitr-dev",
        "stack_name: 1-bad_name",
    );
    assert_all(bad_stage(
        "13 bad stack name",
        "stackname",
        &yaml,
        Expect::new("stackname")
            .line(line_of(&yaml, "stack_name: 1-bad_name"))
            .has("stack_name")
            .has("1-bad_name"),
    ));
}

#[test]
fn failed_synth_leaves_an_existing_output_directory_unchanged() {
    let project = project("existing");
    project.write("out/keep.txt", "the previous synth's output\n");
    project.write("out/nested/manifest.json", "{\"version\": 1}\n");
    let yaml = edit(&dev_yaml(), "region: eu-west-1", "region: moon-base-1x");
    project.stage("existing", &yaml);
    let expect = Expect::new("existing")
        .line(line_of(&yaml, "region: moon-base-1x"))
        .has("region");
    let failures = synth_fails("existing --out directory", &project, "existing", &expect);
    // The snapshot comparison covers it; say it plainly too.
    assert_eq!(
        std::fs::read_to_string(project.out().join("keep.txt")).ok(),
        Some("the previous synth's output\n".to_string()),
        "out/keep.txt must survive a failed synth"
    );
    assert_all(failures);
}

#[test]
fn validate_fails_the_same_way_and_writes_nothing() {
    let project = project("validate");
    let yaml = edit(&dev_yaml(), "region: eu-west-1", "region: moon-base-1x");
    project.stage("validate", &yaml);
    let before = project.snapshot();
    let dir = project.dir.to_str().unwrap().to_string();
    let run = project.run(&["--project", &dir, "validate", "--stage", "validate"]);
    let expect = Expect::new("validate")
        .line(line_of(&yaml, "region: moon-base-1x"))
        .has("region")
        .has("moon-base-1x");
    assert_all(check(
        "validate on a bad stage",
        &project,
        &before,
        false,
        &run,
        &expect,
    ));
    assert!(
        !project.dir.join("jitr.out").exists(),
        "validate must not create jitr.out"
    );
}

#[test]
fn usage_error_exits_2_and_writes_nothing() {
    let project = project("usage");
    project.stage("dev", &dev_yaml());
    let before = project.snapshot();
    project
        .cli(BIN)
        .args(["synth", "--bogus"])
        .env("CARGO", "/nonexistent/jitr-bad-input/cargo")
        .write_stdin("")
        .timeout(RUN_TIMEOUT)
        .assert()
        .code(2)
        .stderr(contains("--bogus"))
        .stdout(is_empty());
    assert_all(nothing_written(&project, &before, false));
}

/// Issue 7, item 2: a CA whose device signatures the activator could not verify is refused
/// at validate/synth time, naming the file, the field and the algorithm (with its OID).
/// Before, such a stage deployed, and every activation of its fleet was silently ignored.
#[test]
fn ca_the_activator_could_not_verify_is_refused() {
    use testkit::openssl::{Key, OpensslCa};
    let mut failures = Vec::new();
    let cases = [
        (
            "12a secp256k1 CA",
            "k1ca",
            OpensslCa::root("secp256k1 CA", Key::Ec("secp256k1"), &["-sha256"]),
            "the CA's key is an EC key on curve 1.3.132.0.10 (P-256, P-384 and P-521 are \
             verified): the activator could not verify the device certificates it signs",
        ),
        (
            "12b Ed25519 CA",
            "edca",
            OpensslCa::root("Ed25519 CA", Key::Ed25519, &[]),
            "the CA's key is an ed25519 (1.3.101.112) key",
        ),
        (
            "12c SHA-1 CA",
            "sha1ca",
            OpensslCa::root("SHA-1 CA", Key::Rsa(2048), &["-sha1"]),
            "the CA certificate is signed with sha1WithRSAEncryption (1.2.840.113549.1.1.5)",
        ),
    ];
    for (case, name, ca, says) in cases {
        let project = project(name);
        let path = format!("certs/{name}.pem");
        project.write(&path, &ca.pem);
        let (yaml, line) = with_ca(&path);
        project.stage(name, &yaml);
        let expect = Expect::new(name)
            .line(line)
            .has("ca.certificate")
            .has(path.as_str())
            .has(says);
        failures.extend(synth_fails(case, &project, name, &expect));
    }
    assert_all(failures);
}

/// Onboarding at scale (issue 10): the activator's rates and share, the reconciler's bounds
/// and the alarm address, each named with its field and line.
#[test]
fn rates_reconciler_and_alarms_out_of_range() {
    let mut failures = Vec::new();
    let with_activator = |extra: &str| {
        edit(
            &dev_yaml(),
            "  log_retention_days: 14\n",
            &format!("  log_retention_days: 14\n{extra}"),
        )
    };
    let with_reconciler = |extra: &str| {
        edit(
            &dev_yaml(),
            "reconciler:\n  enabled: true\n",
            &format!("reconciler:\n  enabled: true\n{extra}"),
        )
    };
    let cases: Vec<(&str, &str, String, &str, String)> = vec![
        (
            "20a an operation AWS IoT's activator does not call",
            "ratesname",
            with_activator("  api_rates:\n    DescribeThing: 350\n"),
            "DescribeThing: 350",
            "unknown field `DescribeThing`".into(),
        ),
        (
            "20b a rate of zero",
            "ratezero",
            with_activator("  api_rates:\n    UpdateCertificate: 0\n"),
            "UpdateCertificate: 0",
            "activator.api_rates.UpdateCertificate: 0 is outside 0.1..10000 requests per second \
             (AWS's default is 10)"
                .into(),
        ),
        (
            "20c a share above one",
            "share",
            with_activator("  api_share: 1.5\n"),
            "api_share: 1.5",
            "activator.api_share: 1.5 is outside 0.05..1".into(),
        ),
        (
            "20d a schedule of zero minutes",
            "every",
            with_reconciler("  every_minutes: 0\n"),
            "every_minutes: 0",
            "reconciler.every_minutes: 0 is outside 1..1440".into(),
        ),
        (
            "20e a grace period over a day",
            "grace",
            with_reconciler("  grace_minutes: 1441\n"),
            "grace_minutes: 1441",
            "reconciler.grace_minutes: 1441 is outside 0..1440".into(),
        ),
        (
            "20f a horizon of zero days",
            "horizon",
            with_reconciler("  horizon_days: 0\n"),
            "horizon_days: 0",
            "reconciler.horizon_days: 0 is outside 1..400".into(),
        ),
        (
            "20g a horizon no longer than the grace period",
            "horizongrace",
            with_reconciler("  grace_minutes: 1440\n  horizon_days: 1\n"),
            "horizon_days: 1",
            "reconciler.horizon_days: 1 day(s) is not longer than grace_minutes (1440)".into(),
        ),
        (
            "20h no pages",
            "pages",
            with_reconciler("  max_pages: 0\n"),
            "max_pages: 0",
            "reconciler.max_pages: 0 is outside 1..10000".into(),
        ),
        (
            "20i a switch that is not a boolean",
            "enabled",
            edit(&dev_yaml(), "  enabled: true\n", "  enabled: sometimes\n"),
            "enabled: sometimes",
            "reconciler.enabled".into(),
        ),
        (
            "20j an address that is not one",
            "email",
            format!("{}alarms:\n  email: ops at example\n", dev_yaml()),
            "email: ops at example",
            "alarms.email: \"ops at example\" is not an email address (like ops@example.com)"
                .into(),
        ),
        (
            "20k an address without a domain",
            "emaildomain",
            format!("{}alarms:\n  email: ops@localhost\n", dev_yaml()),
            "email: ops@localhost",
            "alarms.email: \"ops@localhost\" is not an email address".into(),
        ),
    ];
    for (case, name, yaml, at, says) in cases {
        let expect = Expect::new(name).line(line_of(&yaml, at)).has(says);
        failures.extend(bad_stage(case, name, &yaml, expect));
    }
    assert_all(failures);
}

/// `ca:` as a list (CA rotation) with `entries` (YAML list items, indented two spaces).
fn with_ca_list(entries: &str) -> String {
    edit(
        &dev_yaml(),
        "ca:\n  certificate: certs/dev-ca.pem\n  mode: SNI_ONLY\n  auto_registration: true\n  retain_on_delete: false\n",
        &format!("ca:\n{entries}"),
    )
}

#[test]
fn ca_lists_with_bad_names_or_the_same_certificate_twice() {
    let mut failures = Vec::new();
    let two = |a: &str, b: &str| {
        format!(
            "  - {a}\n    certificate: certs/dev-ca.pem\n    mode: SNI_ONLY\n  - {b}\n    certificate: certs/next-ca.pem\n    mode: SNI_ONLY\n"
        )
    };
    let next = TestCa::new("Next CA").pem;
    let cases: [(&str, &str, String, &str, &[&str]); 5] = [
        (
            "11a duplicate names",
            "dupname",
            two("name: a", "name: a"),
            "name: a",
            &["ca[1].name", "already the name of ca[0]"],
        ),
        (
            "11b missing name",
            "noname",
            "  - name: default\n    certificate: certs/dev-ca.pem\n    mode: SNI_ONLY\n  - certificate: certs/next-ca.pem\n    mode: SNI_ONLY\n".to_string(),
            "certificate: certs/next-ca.pem",
            &["ca[1]", "needs a `name`"],
        ),
        (
            "11c bad name",
            "badname",
            two("name: default", "name: CA_2026"),
            "name: CA_2026",
            &["ca[1].name", "\"CA_2026\" is not a CA name"],
        ),
        (
            "11d names giving the same logical ids",
            "samesuffix",
            two("name: ca-2026", "name: ca2026"),
            "name: ca2026",
            &["ca[1].name", "same resource names as ca[0]", "Ca2026"],
        ),
        (
            "11e a name in the one-CA form",
            "onename",
            String::new(),
            "name: ca-2026",
            &["ca.name", "write `ca:` as a list"],
        ),
    ];
    for (case, name, entries, line_has, texts) in cases {
        let project = project(name);
        project.write("certs/next-ca.pem", &next);
        let yaml = if entries.is_empty() {
            edit(&dev_yaml(), "ca:\n", "ca:\n  name: ca-2026\n")
        } else {
            with_ca_list(&entries)
        };
        let mut expect = Expect::new(name);
        if !line_has.is_empty() {
            // The last line holding it: the second entry's.
            let line = yaml
                .lines()
                .collect::<Vec<_>>()
                .iter()
                .rposition(|l| l.contains(line_has))
                .unwrap()
                + 1;
            expect = expect.line(line);
        }
        for t in texts {
            expect = expect.has(*t);
        }
        project.stage(name, &yaml);
        failures.extend(synth_fails(case, &project, name, &expect));
    }

    // One certificate under two names: one AWS IoT registration claimed twice.
    let project = project("samecert");
    let yaml = with_ca_list(
        "  - name: default\n    certificate: certs/dev-ca.pem\n    mode: SNI_ONLY\n  - name: ca-2026\n    certificate: certs/dev-ca.pem\n    mode: SNI_ONLY\n",
    );
    project.stage("samecert", &yaml);
    let line = yaml
        .lines()
        .collect::<Vec<_>>()
        .iter()
        .rposition(|l| l.contains("certificate: certs/dev-ca.pem"))
        .unwrap()
        + 1;
    let expect = Expect::new("samecert")
        .line(line)
        .has("ca[1].certificate")
        .has("the same certificate as CA `default`");
    failures.extend(synth_fails(
        "11f same certificate twice",
        &project,
        "samecert",
        &expect,
    ));

    // An empty list.
    let yaml = with_ca_list("  []\n").replace("ca:\n  []\n", "ca: []\n");
    failures.extend(bad_stage(
        "11g empty list",
        "emptylist",
        &yaml,
        Expect::new("emptylist").has("ca").has("the list is empty"),
    ));
    assert_all(failures);
}

#[test]
fn unknown_field_in_a_list_entry_is_named_with_its_line() {
    let yaml = with_ca_list(
        "  - name: default\n    certificate: certs/dev-ca.pem\n    mode: SNI_ONLY\n    colour: red\n",
    );
    assert_all(bad_stage(
        "12 unknown field in a CA list entry",
        "listfield",
        &yaml,
        Expect::new("listfield")
            .line(line_of(&yaml, "colour: red"))
            .has("unknown field `colour`"),
    ));
}

/// dev.yaml with `region: eu-west-1` replaced by a `targets:` list.
fn with_targets(list: &str) -> String {
    edit(
        &dev_yaml(),
        "region: eu-west-1\n",
        &format!("targets:\n{list}"),
    )
}

#[test]
fn bad_targets() {
    let two_accounts = "  - region: eu-west-1\n    account: \"111111111111\"\n  \
                        - region: eu-west-1\n    account: \"222222222222\"\n";
    let default_mode = edit(
        &with_targets(two_accounts),
        "mode: SNI_ONLY",
        "mode: DEFAULT\n  verification:\n    private_key_env: JITR_CA_KEY",
    );
    let duplicate = with_targets(
        "  - region: eu-west-1\n    account: \"111111111111\"\n  \
         - region: us-east-1\n    account: \"111111111111\"\n  \
         - region: eu-west-1\n    account: \"111111111111\"\n",
    );
    let both = edit(
        &dev_yaml(),
        "region: eu-west-1\n",
        "region: eu-west-1\ntargets:\n  - region: us-east-1\n    account: \"111111111111\"\n",
    );
    let bad_fields = with_targets(
        "  - region: eu-west-1\n    account: \"111111111111\"\n  \
         - region: moon-1\n    account: \"1\"\n  \
         - region: us-east-1\n    account: \"111111111111\"\n    \
         role_arn: arn:aws:iam::222222222222:role/deploy\n  \
         - region: us-west-2\n    account: \"111111111111\"\n    role_arn: not-an-arn\n",
    );
    let partitions = with_targets(
        "  - region: eu-west-1\n    account: \"111111111111\"\n  \
         - region: cn-north-1\n    account: \"111111111111\"\n",
    );
    let no_account = with_targets("  - region: eu-west-1\n");
    let kms = edit(
        &with_targets(
            "  - region: eu-west-1\n    account: \"111111111111\"\n  \
             - region: us-east-1\n    account: \"111111111111\"\n",
        ),
        "tags:\n",
        "encryption:\n  kms_key_arn: arn:aws:kms:eu-west-1:111111111111:key/abcd-1234\ntags:\n",
    );
    let mut failures = Vec::new();
    failures.extend(bad_stage(
        "targets DEFAULT mode with two accounts in one region",
        "twoaccounts",
        &default_mode,
        Expect::new("twoaccounts")
            .line(line_of(&default_mode, "mode: DEFAULT"))
            .has("ca.mode")
            .has("eu-west-1/111111111111 and eu-west-1/222222222222")
            .has("SNI_ONLY"),
    ));
    failures.extend(bad_stage(
        "targets listed twice",
        "duplicate",
        &duplicate,
        Expect::new("duplicate")
            .has("targets[2]")
            .has("eu-west-1/111111111111 is listed twice (targets[0] and targets[2])"),
    ));
    failures.extend(bad_stage(
        "region and targets both",
        "both",
        &both,
        Expect::new("both")
            .line(line_of(&both, "targets:"))
            .has("either `region:` (one target) or `targets:`"),
    ));
    failures.extend(bad_stage(
        "a target's region, account and role",
        "badfields",
        &bad_fields,
        Expect::new("badfields")
            .line(line_of(&bad_fields, "region: moon-1"))
            .has("targets[1].region")
            .has("targets[1].account")
            .has("targets[2].role_arn")
            .has("the role is in account 222222222222, but the target is account 111111111111")
            .has("targets[3].role_arn")
            .has("is not an IAM role ARN"),
    ));
    failures.extend(bad_stage(
        "targets in two partitions",
        "partitions",
        &partitions,
        Expect::new("partitions")
            .has("targets[1]")
            .has("credentials never cross partitions"),
    ));
    failures.extend(bad_stage(
        "a target without its account",
        "noaccount",
        &no_account,
        Expect::new("noaccount").has("account"),
    ));
    failures.extend(bad_stage(
        "a KMS key and targets in two regions",
        "kmstargets",
        &kms,
        Expect::new("kmstargets")
            .has("encryption.kms_key_arn")
            .has("target us-east-1/111111111111 is not"),
    ));
    assert_all(failures);
}
