//! Stage files (`stacks/<stage>.yaml`): the raw YAML shape, and its validation into a
//! [`Stage`] the constructs can trust.
//!
//! Parsing rejects unknown fields and wrong types with the line serde_yaml reports; the
//! semantic checks then run all at once, so one run shows every problem, each naming the file,
//! the field and (found by walking the YAML's keys) its line.

use jitr_contract::activator::{is_thing_name, RejectAction, ThingNameSource};
use jitr_contract::ca_registration::{CaStatus, CertificateMode};
use jitr_lambda_common::pki::{unix_now, Certificate};
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The stage used when none is named.
pub const DEFAULT_STAGE: &str = "dev";
/// Where stage files live, relative to the project root.
pub const STAGES_DIR: &str = "stacks";
/// The device policy template used when a stage names none.
pub const DEFAULT_POLICY_TEMPLATE: &str = "templates/device-policy.json.hbs";

/// CloudWatch Logs accepts only these retention periods.
pub const LOG_RETENTION_DAYS: [u32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// Longest stack name: the stack name prefixes the function names, which AWS Lambda caps at
/// 64 characters (`<stack>-ca-provider`).
pub const MAX_STACK_NAME: usize = 48;

fn yes() -> bool {
    true
}

/// A stage file, as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "jitr-infra stage file",
    description = "One deployment stage: stacks/<stage>.yaml"
)]
pub struct StageFile {
    /// CloudFormation stack name: a letter, then letters, digits and hyphens; at most 48
    /// characters (it prefixes the Lambda function names).
    pub stack_name: String,
    /// AWS region to deploy to, e.g. `eu-west-1`.
    pub region: String,
    /// The 12-digit AWS account this stage belongs to. When set, deploy refuses to run with
    /// credentials of any other account.
    #[serde(default)]
    pub account: Option<String>,
    /// Tags applied to the stack (CloudFormation propagates them to the resources).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The device-signing CA.
    pub ca: CaSection,
    /// The activator Lambda.
    #[serde(default)]
    pub activator: ActivatorSection,
    /// The shared IoT policy every device certificate gets.
    #[serde(default)]
    pub device_policy: DevicePolicySection,
    /// Guards against deleting the stack or replacing the CA registration by mistake
    /// (recommended for production). Deploy applies it to the stack.
    #[serde(default)]
    pub protection: ProtectionSection,
    /// Encryption at rest with a customer-managed KMS key (default: AWS-managed keys).
    #[serde(default)]
    pub encryption: EncryptionSection,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EncryptionSection {
    /// ARN of a customer-managed KMS key in the stage's region (`arn:aws:kms:REGION:ACCOUNT:key/ID`)
    /// for the log groups, the failure queue and the activator's environment. Its key policy must
    /// let CloudWatch Logs use it (see the README). Unset: AWS-managed encryption.
    #[serde(default)]
    pub kms_key_arn: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaSection {
    /// Path of the CA certificate (PEM), relative to the project root. Never the key.
    pub certificate: String,
    /// `SNI_ONLY` (no verification certificate; devices must send SNI) or `DEFAULT`
    /// (needs `verification`; the CA can be registered in only one account per region).
    pub mode: CertificateMode,
    /// `DEFAULT` mode only: where deploy gets the verification certificate.
    #[serde(default)]
    pub verification: Option<VerificationSection>,
    /// Auto-registration of device certificates; JITR needs it on.
    #[serde(default = "yes")]
    pub auto_registration: bool,
    /// `ACTIVE` (default) or `INACTIVE` (devices of this CA cannot register or connect).
    #[serde(default)]
    pub status: CaStatus,
    /// Keep the CA registered when the stack is deleted (recommended for production).
    #[serde(default)]
    pub retain_on_delete: bool,
    /// Take over the CA if it is already registered in the account and region (by hand, or
    /// by another stack or stage); without it, such a deploy is refused. The stack then sets
    /// the CA's status and auto-registration, and never deregisters it.
    #[serde(default)]
    pub adopt: bool,
}

/// Exactly one source. The CA's private key never goes into a template, an output or a log:
/// deploy reads it on the operator's machine to sign the verification certificate.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerificationSection {
    /// Path of the CA private key (PEM), read only at deploy time.
    #[serde(default)]
    pub private_key_file: Option<String>,
    /// Name of an environment variable holding the CA private key (PEM), e.g. a CI secret.
    #[serde(default)]
    pub private_key_env: Option<String>,
    /// Path of a verification certificate made beforehand (e.g. with an HSM-held key).
    #[serde(default)]
    pub certificate_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivatorSection {
    /// Create a Thing per device and attach the certificate to it.
    #[serde(default = "yes")]
    pub create_thing: bool,
    /// `subject-cn` (falls back to the certificate id) or `certificate-id`.
    #[serde(default)]
    pub thing_name: ThingNameSource,
    /// A thing group every new Thing joins; the stack creates it.
    #[serde(default)]
    pub thing_group: Option<String>,
    /// A regular expression the certificate subject's CN must match in full.
    #[serde(default)]
    pub subject_pattern: Option<String>,
    /// `leave-pending` or `revoke`: what happens to a certificate that fails the checks.
    #[serde(default)]
    pub on_reject: RejectAction,
    /// Lambda memory, MB (128 to 10240).
    #[serde(default = "default_memory")]
    pub memory_mb: u32,
    /// Lambda timeout, seconds (1 to 900).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
    /// Reserved concurrency (1 to 1000): caps how hard a registration storm can hit the IoT
    /// API. Set, deploy refuses an account whose Lambda concurrency cannot give it (Lambda
    /// keeps 100 units, or the whole limit when it is lower, unreserved). Unset, deploy
    /// reserves 10 when the account can spare them and otherwise deploys without a
    /// reservation, saying so.
    #[serde(default)]
    pub reserved_concurrency: Option<u32>,
    /// Days CloudWatch Logs keeps the Lambdas' logs (one of CloudWatch's allowed values).
    #[serde(default = "default_retention")]
    pub log_retention_days: u32,
}

fn default_memory() -> u32 {
    128
}
fn default_timeout() -> u32 {
    30
}
fn default_retention() -> u32 {
    30
}

impl Default for ActivatorSection {
    fn default() -> Self {
        ActivatorSection {
            create_thing: true,
            thing_name: ThingNameSource::default(),
            thing_group: None,
            subject_pattern: None,
            on_reject: RejectAction::default(),
            memory_mb: default_memory(),
            timeout_seconds: default_timeout(),
            reserved_concurrency: None,
            log_retention_days: default_retention(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DevicePolicySection {
    /// Handlebars template of the device policy, relative to the project root.
    #[serde(default = "default_policy_template")]
    pub template: String,
    /// Extra values for the template (`{{vars.NAME}}`).
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
}

fn default_policy_template() -> String {
    DEFAULT_POLICY_TEMPLATE.to_string()
}

impl Default for DevicePolicySection {
    fn default() -> Self {
        DevicePolicySection {
            template: default_policy_template(),
            vars: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProtectionSection {
    /// CloudFormation termination protection: the stack cannot be deleted (by `destroy`, the
    /// console or the API) until a deploy with this set to false turns it off.
    #[serde(default)]
    pub termination: bool,
    /// A stack policy denying Update:Replace and Update:Delete of the CA registration; deploy
    /// also refuses, before executing anything, a change that would replace or remove it.
    #[serde(default)]
    pub ca_registration: bool,
}

/// A validated stage.
#[derive(Debug, Clone)]
pub struct Stage {
    /// The stage name (the file stem).
    pub name: String,
    /// The stage file, relative to the project root (for messages and the manifest).
    pub file: PathBuf,
    pub stack_name: String,
    pub region: String,
    pub partition: &'static str,
    pub account: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub ca: Ca,
    pub activator: ActivatorSection,
    pub device_policy: DevicePolicy,
    /// A customer-managed KMS key (validated ARN in the stage's partition and region).
    pub kms_key_arn: Option<String>,
    pub protection: ProtectionSection,
}

#[derive(Debug, Clone)]
pub struct Ca {
    pub certificate_file: String,
    /// The PEM as read (normalized to end in one newline).
    pub pem: String,
    pub certificate: Certificate,
    pub mode: CertificateMode,
    pub verification: Option<Verification>,
    pub auto_registration: bool,
    pub status: CaStatus,
    pub retain_on_delete: bool,
    pub adopt: bool,
}

/// Where deploy gets the `DEFAULT`-mode verification certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    PrivateKeyFile(String),
    PrivateKeyEnv(String),
    CertificateFile { path: String, pem: String },
}

impl Verification {
    /// How the manifest describes the source (never a secret).
    pub fn describe(&self) -> String {
        match self {
            Verification::PrivateKeyFile(p) => {
                format!("signed at deploy with the CA key in file {p}")
            }
            Verification::PrivateKeyEnv(v) => {
                format!("signed at deploy with the CA key in environment variable {v}")
            }
            Verification::CertificateFile { path, .. } => format!("read at deploy from {path}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DevicePolicy {
    pub template_file: String,
    /// Line of `device_policy.template` in the stage file (where template problems point).
    pub line: Option<usize>,
    pub template: String,
    pub vars: BTreeMap<String, String>,
}

/// One problem in a stage file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the field, e.g. `ca.certificate`; empty for the whole file.
    pub field: String,
    pub line: Option<usize>,
    pub message: String,
}

/// Every problem found in one stage file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{}: {n} problem{}",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            let location = match p.line {
                Some(l) => format!("{}:{l}", self.file.display()),
                None => self.file.display().to_string(),
            };
            if p.field.is_empty() {
                writeln!(f, "  {location}: {}", p.message)?;
            } else {
                writeln!(f, "  {location}: {}: {}", p.field, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for StageError {}

/// The stage files in `root/stacks`, sorted by name.
pub fn list_stages(root: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root.join(STAGES_DIR))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            if let Some(stem) = path.file_stem() {
                names.push(stem.to_string_lossy().into_owned());
            }
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// The stage file for `name`, relative to the project root.
pub fn stage_path(root: &Path, name: &str) -> Result<PathBuf, StageError> {
    let rel = PathBuf::from(STAGES_DIR).join(format!("{name}.yaml"));
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid_name && root.join(&rel).is_file() {
        return Ok(rel);
    }
    let alt = PathBuf::from(STAGES_DIR).join(format!("{name}.yml"));
    if valid_name && root.join(&alt).is_file() {
        return Ok(alt);
    }
    let known = list_stages(root).unwrap_or_default();
    let message = if known.is_empty() {
        format!("no stage `{name}`: {STAGES_DIR}/ has no stage files")
    } else {
        format!("no stage `{name}`; stages are: {}", known.join(", "))
    };
    Err(StageError {
        file: rel,
        problems: vec![Problem {
            field: String::new(),
            line: None,
            message,
        }],
    })
}

/// Loads and validates stage `name` from the project at `root`.
pub fn load(root: &Path, name: &str) -> Result<Stage, StageError> {
    let rel = stage_path(root, name)?;
    let text = std::fs::read_to_string(root.join(&rel)).map_err(|e| StageError {
        file: rel.clone(),
        problems: vec![Problem {
            field: String::new(),
            line: None,
            message: format!("cannot read: {e}"),
        }],
    })?;
    parse(root, name, &rel, &text)
}

/// Parses and validates stage text (`rel` names the file in messages).
pub fn parse(root: &Path, name: &str, rel: &Path, text: &str) -> Result<Stage, StageError> {
    let fail = |problems| StageError {
        file: rel.to_path_buf(),
        problems,
    };
    let raw: StageFile = serde_yaml::from_str(text).map_err(|e| {
        fail(vec![Problem {
            field: String::new(),
            line: e.location().map(|l| l.line()),
            message: yaml_message(&e.to_string(), text.lines().count()),
        }])
    })?;
    let mut v = Validator {
        root,
        text,
        problems: Vec::new(),
    };
    let stage = v.stage(name, rel, raw);
    match stage {
        Some(stage) if v.problems.is_empty() => Ok(stage),
        _ => Err(fail(v.problems)),
    }
}

/// serde_yaml's message without its first " at line X column Y" (the line is shown in front),
/// keeping any context ("while scanning a quoted scalar at line 3 column 13"), and naming the
/// end of the file instead of a line past it.
fn yaml_message(message: &str, lines: usize) -> String {
    let Some(at) = message.find(" at line ") else {
        return message.to_string();
    };
    let rest = &message[at + " at line ".len()..];
    let line: usize = rest
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let after = rest.find(", ").map(|i| &rest[i..]).unwrap_or("");
    let end = if line > lines {
        " (at the end of the file)"
    } else {
        ""
    };
    format!("{}{end}{after}", &message[..at])
}

struct Validator<'a> {
    root: &'a Path,
    text: &'a str,
    problems: Vec<Problem>,
}

impl Validator<'_> {
    fn problem(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            field: field.to_string(),
            line: locate(self.text, field),
            message: message.into(),
        });
    }

    fn read(&mut self, field: &str, path: &str) -> Option<String> {
        if Path::new(path).is_absolute() || path.contains("..") {
            // Absolute paths would make the output depend on this machine.
            self.problem(
                field,
                format!("{path}: use a path inside the project, relative to its root"),
            );
            return None;
        }
        match std::fs::read_to_string(self.root.join(path)) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.problem(field, format!("{path}: file not found"));
                None
            }
            Err(e) => {
                self.problem(field, format!("{path}: {e}"));
                None
            }
        }
    }

    fn stage(&mut self, name: &str, rel: &Path, raw: StageFile) -> Option<Stage> {
        if !is_stack_name(&raw.stack_name) {
            self.problem(
                "stack_name",
                format!(
                    "{:?} is not a valid stack name: start with a letter, then letters, digits or \
                     hyphens, at most {MAX_STACK_NAME} characters",
                    raw.stack_name
                ),
            );
        }
        let partition = crate::partition::partition_of(&raw.region);
        if partition.is_none() {
            self.problem(
                "region",
                format!(
                    "{:?} is not an AWS region name (like eu-west-1)",
                    raw.region
                ),
            );
        }
        if let Some(account) = &raw.account {
            if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                self.problem(
                    "account",
                    format!("{account:?} is not a 12-digit AWS account id (quote it in YAML)"),
                );
            }
        }
        for (k, val) in &raw.tags {
            if k.is_empty() || k.len() > 128 || k.to_ascii_lowercase().starts_with("aws:") {
                self.problem(
                    &format!("tags.{k}"),
                    "tag keys are 1-128 characters and must not start with `aws:`",
                );
            }
            if val.len() > 256 {
                self.problem(
                    &format!("tags.{k}"),
                    "tag values are at most 256 characters",
                );
            }
        }
        let ca = self.ca(raw.ca);
        self.activator(&raw.activator);
        let device_policy = self.device_policy(raw.device_policy);
        if let (Some(arn), Some(partition)) = (&raw.encryption.kms_key_arn, partition) {
            self.kms_key_arn(arn, partition, &raw.region);
        }
        Some(Stage {
            name: name.to_string(),
            file: rel.to_path_buf(),
            stack_name: raw.stack_name,
            region: raw.region,
            partition: partition?,
            account: raw.account,
            tags: raw.tags,
            ca: ca?,
            activator: raw.activator,
            device_policy: device_policy?,
            kms_key_arn: raw.encryption.kms_key_arn,
            protection: raw.protection,
        })
    }

    /// CloudWatch Logs and Lambda take only a key ARN (not an alias), in the stage's region.
    fn kms_key_arn(&mut self, arn: &str, partition: &str, region: &str) {
        let field = "encryption.kms_key_arn";
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let shaped = parts.len() == 6
            && parts[0] == "arn"
            && parts[2] == "kms"
            && parts[4].len() == 12
            && parts[4].bytes().all(|b| b.is_ascii_digit())
            && parts[5].strip_prefix("key/").is_some_and(|id| {
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !shaped {
            self.problem(
                field,
                format!(
                    "{arn:?} is not a KMS key ARN (arn:{partition}:kms:{region}:ACCOUNT:key/KEY-ID); \
                     aliases are not accepted by CloudWatch Logs and Lambda"
                ),
            );
        } else if parts[1] != partition || parts[3] != region {
            self.problem(
                field,
                format!(
                    "the key is in {}:{}, but the stage deploys to {partition}:{region}; \
                     use a key in the stage's region",
                    parts[1], parts[3]
                ),
            );
        }
    }

    fn ca(&mut self, raw: CaSection) -> Option<Ca> {
        let text = self.read("ca.certificate", &raw.certificate);
        let certificate = text
            .as_deref()
            .and_then(|pem| match Certificate::from_pem(pem) {
                Ok(c) => Some(c),
                Err(e) => {
                    self.problem("ca.certificate", format!("{}: {e}", raw.certificate));
                    None
                }
            });
        if let Some(c) = &certificate {
            if text.as_deref().is_some_and(|t| t.contains("PRIVATE KEY")) {
                self.problem(
                    "ca.certificate",
                    format!(
                        "{}: holds a private key; keep only the certificate in the project",
                        raw.certificate
                    ),
                );
            }
            if !c.is_ca() {
                self.problem(
                    "ca.certificate",
                    format!(
                        "{}: `{}` is not a CA certificate (basicConstraints CA:TRUE is missing)",
                        raw.certificate,
                        c.subject()
                    ),
                );
            }
            if let Err(e) = c.check_validity_at(unix_now()) {
                self.problem("ca.certificate", format!("{}: CA {e}", raw.certificate));
            }
            // The activator must be able to verify every device certificate this CA signs;
            // one it cannot check would fail every activation of the fleet.
            if let Err(e) = c.check_verifiable_issuer() {
                self.problem("ca.certificate", format!("{}: {e}", raw.certificate));
            }
        }
        let verification = match (raw.mode, raw.verification) {
            (CertificateMode::SniOnly, None) => None,
            (CertificateMode::SniOnly, Some(_)) => {
                self.problem(
                    "ca.verification",
                    "is only used with mode DEFAULT; remove it or set mode: DEFAULT",
                );
                None
            }
            (CertificateMode::Default, None) => {
                self.problem(
                    "ca.mode",
                    "DEFAULT mode needs `ca.verification` (private_key_file, private_key_env or \
                     certificate_file); or use SNI_ONLY, which needs none",
                );
                None
            }
            (CertificateMode::Default, Some(v)) => self.verification(v, certificate.as_ref()),
        };
        let mut pem = text?.trim().to_string();
        pem.push('\n');
        Some(Ca {
            certificate_file: raw.certificate,
            pem,
            certificate: certificate?,
            mode: raw.mode,
            verification,
            auto_registration: raw.auto_registration,
            status: raw.status,
            retain_on_delete: raw.retain_on_delete,
            adopt: raw.adopt,
        })
    }

    fn verification(
        &mut self,
        raw: VerificationSection,
        ca: Option<&Certificate>,
    ) -> Option<Verification> {
        let set = [
            raw.private_key_file.is_some(),
            raw.private_key_env.is_some(),
            raw.certificate_file.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if set != 1 {
            self.problem(
                "ca.verification",
                format!("set exactly one of private_key_file, private_key_env, certificate_file ({set} set)"),
            );
            return None;
        }
        if let Some(path) = raw.private_key_file {
            // Read at deploy, never at synth; only the path's shape is checked here.
            if path.trim().is_empty() {
                self.problem("ca.verification.private_key_file", "is empty");
            }
            return Some(Verification::PrivateKeyFile(path));
        }
        if let Some(var) = raw.private_key_env {
            let valid = !var.is_empty()
                && !var.starts_with(|c: char| c.is_ascii_digit())
                && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                self.problem(
                    "ca.verification.private_key_env",
                    format!("{var:?} is not an environment variable name"),
                );
            }
            return Some(Verification::PrivateKeyEnv(var));
        }
        let path = raw.certificate_file?;
        let pem = self.read("ca.verification.certificate_file", &path)?;
        match Certificate::from_pem(&pem) {
            Ok(cert) => {
                if let Some(ca) = ca {
                    if let Err(e) = cert.verify_signed_by(ca) {
                        self.problem("ca.verification.certificate_file", format!("{path}: {e}"));
                    }
                }
                Some(Verification::CertificateFile { path, pem })
            }
            Err(e) => {
                self.problem("ca.verification.certificate_file", format!("{path}: {e}"));
                None
            }
        }
    }

    fn activator(&mut self, a: &ActivatorSection) {
        if let Some(group) = &a.thing_group {
            if !is_thing_name(group) {
                self.problem(
                    "activator.thing_group",
                    format!("{group:?}: thing group names are 1-128 characters of [a-zA-Z0-9:_-]"),
                );
            }
        }
        if let Some(pattern) = &a.subject_pattern {
            if let Err(e) = regex_lite::Regex::new(&format!("^(?:{pattern})$")) {
                self.problem(
                    "activator.subject_pattern",
                    format!("not a valid regular expression: {e}"),
                );
            }
        }
        if !(128..=10240).contains(&a.memory_mb) {
            self.problem(
                "activator.memory_mb",
                format!("{} is outside 128..10240", a.memory_mb),
            );
        }
        if !(1..=900).contains(&a.timeout_seconds) {
            self.problem(
                "activator.timeout_seconds",
                format!("{} is outside 1..900", a.timeout_seconds),
            );
        }
        if let Some(n) = a.reserved_concurrency.filter(|n| !(1..=1000).contains(n)) {
            self.problem(
                "activator.reserved_concurrency",
                format!("{n} is outside 1..1000 (remove it to let deploy decide)"),
            );
        }
        if !LOG_RETENTION_DAYS.contains(&a.log_retention_days) {
            self.problem(
                "activator.log_retention_days",
                format!(
                    "{} is not a CloudWatch Logs retention; use one of {:?}",
                    a.log_retention_days, LOG_RETENTION_DAYS
                ),
            );
        }
    }

    fn device_policy(&mut self, raw: DevicePolicySection) -> Option<DevicePolicy> {
        let template = self.read("device_policy.template", &raw.template)?;
        Some(DevicePolicy {
            line: locate(self.text, "device_policy.template"),
            template_file: raw.template,
            template,
            vars: raw.vars,
        })
    }
}

/// CloudFormation stack names: a letter, then letters, digits and hyphens (capped here at
/// [`MAX_STACK_NAME`] so the derived function names fit).
pub fn is_stack_name(name: &str) -> bool {
    (1..=MAX_STACK_NAME).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The 1-based line of a dotted field path in YAML text, found by walking keys by
/// indentation. Best effort: `None` when the key is not written (a default).
pub fn locate(text: &str, field: &str) -> Option<usize> {
    if field.is_empty() {
        return None;
    }
    let mut keys = field.split('.');
    let mut want = keys.next()?;
    let mut min_indent = 0usize;
    let mut parent_indent: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if let Some(p) = parent_indent {
            if indent <= p {
                return None; // left the parent's block without finding the key
            }
        }
        if indent < min_indent {
            continue;
        }
        let key = trimmed
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .trim_matches(['"', '\'']);
        if key == want
            && trimmed[key.len()..]
                .trim_start_matches(['"', '\''])
                .starts_with(':')
        {
            match keys.next() {
                None => return Some(i + 1),
                Some(next) => {
                    want = next;
                    parent_indent = Some(indent);
                    min_indent = indent + 1;
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_names() {
        assert!(is_stack_name("jitr-prod"));
        assert!(!is_stack_name("1jitr"));
        assert!(!is_stack_name("jitr_prod"));
        assert!(!is_stack_name(&"a".repeat(49)));
    }

    #[test]
    fn locate_walks_nested_keys() {
        let text = "stack_name: x\n# comment\nca:\n  certificate: a.pem\n  mode: DEFAULT\nactivator:\n  memory_mb: 1\n  mode: z\n";
        assert_eq!(locate(text, "stack_name"), Some(1));
        assert_eq!(locate(text, "ca.certificate"), Some(4));
        assert_eq!(locate(text, "ca.mode"), Some(5));
        assert_eq!(locate(text, "activator.memory_mb"), Some(7));
        assert_eq!(locate(text, "activator.mode"), Some(8));
        assert_eq!(locate(text, "ca.verification"), None);
    }
}
