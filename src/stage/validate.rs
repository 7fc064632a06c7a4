//! The semantic checks of a stage file, all at once: each problem names the file, the field
//! and (found by walking the YAML's keys) its line.

use super::*;
use jitr_contract::rates::{IotApi, RATE_RANGE, SHARE_RANGE};

pub(super) struct Validator<'a> {
    pub(super) root: &'a Path,
    pub(super) text: &'a str,
    pub(super) problems: Vec<Problem>,
    /// What does not stop a deploy but should be read (a CA that expires soon).
    pub(super) warnings: Vec<Problem>,
}

impl Validator<'_> {
    pub(super) fn problem(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            field: field.to_string(),
            line: locate(self.text, field),
            message: message.into(),
        });
    }

    fn read(&mut self, field: &str, path: &str) -> Option<String> {
        let bytes = self.read_bytes(field, path)?;
        match String::from_utf8(bytes) {
            Ok(t) => Some(t),
            Err(_) => {
                self.problem(field, format!("{path}: not UTF-8 text"));
                None
            }
        }
    }

    /// The file at `path` (relative to the project root), or a problem for `field`.
    pub(super) fn read_bytes(&mut self, field: &str, path: &str) -> Option<Vec<u8>> {
        if Path::new(path).is_absolute() || path.contains("..") {
            // Absolute paths would make the output depend on this machine.
            self.problem(
                field,
                format!("{path}: use a path inside the project, relative to its root"),
            );
            return None;
        }
        match std::fs::read(self.root.join(path)) {
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

    pub(super) fn stage(&mut self, name: &str, rel: &Path, raw: StageFile) -> Option<Stage> {
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
        let targets = self.targets(&raw);
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
        let cas = self.cas(raw.ca);
        self.activator(&raw.activator);
        self.rates(&raw.activator);
        self.reconciler(&raw.reconciler);
        if let Some(email) = &raw.alarms.email {
            self.email(email);
        }
        let revocation = match (&raw.revocation, &cas) {
            (Some(r), Some(cas)) => self.revocation(r, cas),
            _ => None,
        };
        let device_policy = self.device_policy(raw.device_policy);
        if let (Some(arn), Some(targets)) = (&raw.encryption.kms_key_arn, &targets) {
            self.kms_key_arn(arn, targets[0].partition, &targets[0].region);
            if targets.len() > 1 {
                self.kms_key_for_targets(arn, targets);
            }
        }
        if let (Some(cas), Some(targets)) = (&cas, &targets) {
            self.ca_modes_for_targets(cas, targets);
        }
        let targets = targets?;
        Some(Stage {
            name: name.to_string(),
            file: rel.to_path_buf(),
            stack_name: raw.stack_name,
            region: targets[0].region.clone(),
            partition: targets[0].partition,
            account: targets[0].account.clone(),
            targets,
            tags: raw.tags,
            cas: cas?,
            warnings: std::mem::take(&mut self.warnings),
            activator: raw.activator,
            device_policy: device_policy?,
            kms_key_arn: raw.encryption.kms_key_arn,
            protection: raw.protection,
            reconciler: raw.reconciler,
            alarms: raw.alarms,
            revocation,
        })
    }

    /// Each rate within [`RATE_RANGE`], the share within [`SHARE_RANGE`].
    fn rates(&mut self, a: &ActivatorSection) {
        for op in IotApi::ALL {
            let Some(rate) = a.api_rates.get(op) else {
                continue;
            };
            if !RATE_RANGE.contains(&rate) {
                self.problem(
                    &format!("activator.api_rates.{}", op.name()),
                    format!(
                        "{rate} is outside {}..{} requests per second (AWS's default is {})",
                        RATE_RANGE.start(),
                        RATE_RANGE.end(),
                        op.default_rate()
                    ),
                );
            }
        }
        if !SHARE_RANGE.contains(&a.api_share) {
            self.problem(
                "activator.api_share",
                format!(
                    "{} is outside {}..{} (the share of each quota the activator may use)",
                    a.api_share,
                    SHARE_RANGE.start(),
                    SHARE_RANGE.end()
                ),
            );
        }
    }

    fn reconciler(&mut self, r: &ReconcilerSection) {
        let bounds: [(&str, u32, std::ops::RangeInclusive<u32>); 4] = [
            ("every_minutes", r.every_minutes, 1..=1440),
            ("grace_minutes", r.grace_minutes, 0..=1440),
            ("horizon_days", r.horizon_days, 1..=400),
            ("max_pages", r.max_pages, 1..=10_000),
        ];
        for (name, value, range) in bounds {
            if !range.contains(&value) {
                self.problem(
                    &format!("reconciler.{name}"),
                    format!("{value} is outside {}..{}", range.start(), range.end()),
                );
            }
        }
        if r.horizon_days >= 1 && u64::from(r.horizon_days) * 1440 <= u64::from(r.grace_minutes) {
            self.problem(
                "reconciler.horizon_days",
                format!(
                    "{} day(s) is not longer than grace_minutes ({}): the sweep would list \
                     nothing old enough to activate",
                    r.horizon_days, r.grace_minutes
                ),
            );
        }
    }

    /// An address SNS can subscribe: `local@domain.tld`, no spaces, at most 254 characters.
    fn email(&mut self, email: &str) {
        let shaped = email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && domain.split('.').all(|label| {
                        !label.is_empty()
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    })
            });
        if !shaped {
            self.problem(
                "alarms.email",
                format!("{email:?} is not an email address (like ops@example.com)"),
            );
        }
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

    /// One CA; `at` is its field path (`ca`, or `ca[1]` in a list).
    pub(super) fn ca(&mut self, at: &str, name: String, raw: CaSection) -> Option<Ca> {
        let field = |f: &str| format!("{at}.{f}");
        let text = self.read(&field("certificate"), &raw.certificate);
        let certificate = text
            .as_deref()
            .and_then(|pem| match Certificate::from_pem(pem) {
                Ok(c) => Some(c),
                Err(e) => {
                    self.problem(&field("certificate"), format!("{}: {e}", raw.certificate));
                    None
                }
            });
        if let Some(c) = &certificate {
            self.ca_certificate(&field("certificate"), &raw.certificate, c, text.as_deref());
        }
        let verification = match (raw.mode, raw.verification) {
            (CertificateMode::SniOnly, None) => None,
            (CertificateMode::SniOnly, Some(_)) => {
                self.problem(
                    &field("verification"),
                    "is only used with mode DEFAULT; remove it or set mode: DEFAULT",
                );
                None
            }
            (CertificateMode::Default, None) => {
                self.problem(
                    &field("mode"),
                    format!(
                        "DEFAULT mode needs `{at}.verification` (private_key_file, private_key_env \
                         or certificate_file); or use SNI_ONLY, which needs none"
                    ),
                );
                None
            }
            (CertificateMode::Default, Some(v)) => self.verification(at, v, certificate.as_ref()),
        };
        let mut pem = text?.trim().to_string();
        pem.push('\n');
        Some(Ca {
            name,
            field: at.to_string(),
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

    /// The CA certificate's own checks: no key beside it, a CA, valid now (a warning when it
    /// ends soon), and one whose device certificates the activator can verify.
    fn ca_certificate(&mut self, field: &str, file: &str, c: &Certificate, text: Option<&str>) {
        if text.is_some_and(|t| t.contains("PRIVATE KEY")) {
            self.problem(
                field,
                format!("{file}: holds a private key; keep only the certificate in the project"),
            );
        }
        if !c.is_ca() {
            self.problem(
                field,
                format!(
                    "{file}: `{}` is not a CA certificate (basicConstraints CA:TRUE is missing)",
                    c.subject()
                ),
            );
        }
        match c.check_validity_at(unix_now()) {
            Err(e) => self.problem(field, format!("{file}: CA {e}")),
            Ok(()) => self.expiry(field, file, c),
        }
        // The activator must be able to verify every device certificate this CA signs;
        // one it cannot check would fail every activation of the fleet.
        if let Err(e) = c.check_verifiable_issuer() {
            self.problem(field, format!("{file}: {e}"));
        }
    }

    fn verification(
        &mut self,
        at: &str,
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
                &format!("{at}.verification"),
                format!("set exactly one of private_key_file, private_key_env, certificate_file ({set} set)"),
            );
            return None;
        }
        if let Some(path) = raw.private_key_file {
            // Read at deploy, never at synth; only the path's shape is checked here.
            if path.trim().is_empty() {
                self.problem(&format!("{at}.verification.private_key_file"), "is empty");
            }
            return Some(Verification::PrivateKeyFile(path));
        }
        if let Some(var) = raw.private_key_env {
            let valid = !var.is_empty()
                && !var.starts_with(|c: char| c.is_ascii_digit())
                && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                self.problem(
                    &format!("{at}.verification.private_key_env"),
                    format!("{var:?} is not an environment variable name"),
                );
            }
            return Some(Verification::PrivateKeyEnv(var));
        }
        let path = raw.certificate_file?;
        let pem = self.read(&format!("{at}.verification.certificate_file"), &path)?;
        match Certificate::from_pem(&pem) {
            Ok(cert) => {
                if let Some(ca) = ca {
                    if let Err(e) = cert.verify_signed_by(ca) {
                        self.problem(
                            &format!("{at}.verification.certificate_file"),
                            format!("{path}: {e}"),
                        );
                    }
                }
                Some(Verification::CertificateFile { path, pem })
            }
            Err(e) => {
                self.problem(
                    &format!("{at}.verification.certificate_file"),
                    format!("{path}: {e}"),
                );
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
            if let Err(e) =
                regex_lite::Regex::new(&jitr_contract::activator::anchored_subject_pattern(pattern))
            {
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
