//! Stage files (`stacks/<stage>.yaml`): the raw YAML shape, and its validation into a
//! [`Stage`] the constructs can trust.
//!
//! Parsing rejects unknown fields and wrong types with the line serde_yaml reports; the
//! semantic checks then run all at once, so one run shows every problem, each naming the file,
//! the field and (found by walking the YAML's keys) its line.

use jitr_contract::activator::is_thing_name;
use jitr_contract::ca_registration::{CaStatus, CertificateMode};
use jitr_lambda_common::pki::{unix_now, Certificate};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

mod capacity;
mod cas;
mod file;
mod locate;
mod revocation;
mod targets;
mod validate;

pub use capacity::{
    thousands, CapacityReport, Repeated, ReservationSource, DUPLICATE_EVENTS, EXAMPLE_BATCH,
};
pub use cas::{ca_id_suffix, is_ca_name, CA_EXPIRY_WARNING_DAYS};
pub use file::*;
pub use locate::locate;
pub use revocation::Revocation;
pub use targets::{Target, MAX_TARGETS};
use validate::Validator;

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

/// A validated stage.
#[derive(Debug, Clone)]
pub struct Stage {
    /// The stage name (the file stem).
    pub name: String,
    /// The stage file, relative to the project root (for messages and the manifest).
    pub file: PathBuf,
    pub stack_name: String,
    /// The first target's region, partition and account; per-target code works on
    /// [`Stage::for_target`], where they are that target's.
    pub region: String,
    pub partition: &'static str,
    pub account: Option<String>,
    /// Where the stage deploys (at least one); reach them with [`Stage::targets`].
    targets: Vec<Target>,
    pub tags: BTreeMap<String, String>,
    /// Every CA, in the stage file's order (at least one); reach them with [`Stage::cas`].
    cas: Vec<Ca>,
    /// What loading found that does not stop a deploy (printed by validate, synth, diff and
    /// deploy; in their --json output too).
    pub warnings: Vec<Problem>,
    pub activator: ActivatorSection,
    pub device_policy: DevicePolicy,
    /// A customer-managed KMS key (validated ARN in the stage's partition and region).
    pub kms_key_arn: Option<String>,
    pub protection: ProtectionSection,
    pub reconciler: ReconcilerSection,
    pub alarms: AlarmsSection,
    /// The serials the activator must never let in (`revocation:`), checked.
    pub revocation: Option<Revocation>,
}

/// The name of the CA of a one-CA stage (`ca:` written as one CA, not a list).
pub const DEFAULT_CA_NAME: &str = "default";
/// At most this many CAs in a stage.
pub const MAX_CAS: usize = jitr_contract::activator::MAX_CA_CERTIFICATE_IDS;

impl Stage {
    /// Every CA of the stage, in the stage file's order.
    pub fn cas(&self) -> &[Ca] {
        &self.cas
    }

    /// The CAs, to change (tests and tools that derive a stage from another).
    pub fn cas_mut(&mut self) -> &mut Vec<Ca> {
        &mut self.cas
    }

    /// The CA named `name`; with `None`, the stage's only CA (an error names the choices when
    /// there are several).
    pub fn ca_named(&self, name: Option<&str>) -> Result<&Ca, String> {
        let cas = self.cas();
        let names = || {
            cas.iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match name {
            None if cas.len() == 1 => Ok(&cas[0]),
            None => Err(format!(
                "stage {} has {} CAs ({}): name one with --ca",
                self.name,
                cas.len(),
                names()
            )),
            Some(n) => cas.iter().find(|c| c.name == n).ok_or_else(|| {
                format!(
                    "stage {} has no CA named `{n}`; its CAs: {}",
                    self.name,
                    names()
                )
            }),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Ca {
    /// The CA's name in the stage ([`DEFAULT_CA_NAME`] for a one-CA stage).
    pub name: String,
    /// Where it is written, for messages: `ca` (one CA) or `ca[1]` (a list's second entry).
    pub field: String,
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
        warnings: Vec::new(),
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

/// CloudFormation stack names: a letter, then letters, digits and hyphens (capped here at
/// [`MAX_STACK_NAME`] so the derived function names fit).
pub fn is_stack_name(name: &str) -> bool {
    (1..=MAX_STACK_NAME).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
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
