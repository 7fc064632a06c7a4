//! Where a stage deploys: one target (`region:` and the optional `account:`, as every stage
//! was written before) or a `targets:` list of `{region, account, role_arn?}`. Every command
//! that talks to AWS runs per target; [`Stage::for_target`] narrows a stage to one.

use super::validate::Validator;
use super::*;

/// One place a stage deploys to: a region, in an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub region: String,
    /// The region's partition (`aws`, `aws-cn`, `aws-us-gov`).
    pub partition: &'static str,
    /// Required in a `targets:` list; optional in the one-target form (then any account the
    /// credentials are for).
    pub account: Option<String>,
    /// A role in the target's account that deploy assumes from the caller's credentials;
    /// unset: the caller's credentials are used as they are.
    pub role_arn: Option<String>,
    /// Where it is written, for messages: `region` (one target) or `targets[2]`.
    pub field: String,
}

impl Target {
    /// `eu-west-1/123456789012`, or just the region when no account is named: how progress
    /// lines, the summary table and `--target` name it.
    pub fn label(&self) -> String {
        match &self.account {
            Some(account) => format!("{}/{account}", self.region),
            None => self.region.clone(),
        }
    }

    /// Whether `--target` `selector` (`REGION` or `REGION/ACCOUNT`) picks this target.
    pub fn is_selected_by(&self, selector: &str) -> bool {
        match selector.split_once('/') {
            Some((region, account)) => {
                region == self.region && self.account.as_deref() == Some(account)
            }
            None => selector == self.region,
        }
    }
}

/// The longest `targets:` list: each target is a stack operation run from one process.
pub const MAX_TARGETS: usize = 100;

impl Stage {
    /// Whether the stage file lists its targets (`targets:`), even one: its commands then
    /// report per target (prefixed progress, a summary table, a result per target in JSON).
    pub fn lists_targets(&self) -> bool {
        self.targets.iter().any(|t| t.field.starts_with("targets"))
    }

    /// Every target of the stage (at least one), in the stage file's order.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The stage narrowed to `target`: its `region`, `partition` and `account` are the
    /// target's, and it has that one target. What every per-target step works on.
    pub fn for_target(&self, target: &Target) -> Stage {
        let mut one = self.clone();
        one.region = target.region.clone();
        one.partition = target.partition;
        one.account = target.account.clone();
        one.targets = vec![target.clone()];
        one
    }

    /// The targets `--target` selectors pick (all when there are none); an error names a
    /// selector that picks nothing, and the stage's targets.
    pub fn select_targets(&self, selectors: &[String]) -> Result<Vec<Target>, String> {
        if selectors.is_empty() {
            return Ok(self.targets.clone());
        }
        for s in selectors {
            if !self.targets.iter().any(|t| t.is_selected_by(s)) {
                return Err(format!(
                    "--target {s}: stage {} has no such target; its targets: {}",
                    self.name,
                    self.target_labels()
                ));
            }
        }
        Ok(self
            .targets
            .iter()
            .filter(|t| selectors.iter().any(|s| t.is_selected_by(s)))
            .cloned()
            .collect())
    }

    /// The targets' labels, comma-separated (for messages).
    pub fn target_labels(&self) -> String {
        let labels: Vec<String> = self.targets.iter().map(Target::label).collect();
        labels.join(", ")
    }
}

impl Validator<'_> {
    /// The stage's targets from `region`/`account` or `targets:` (exactly one of the two).
    pub(super) fn targets(&mut self, raw: &StageFile) -> Option<Vec<Target>> {
        match (&raw.region, &raw.targets) {
            (Some(_), Some(_)) | (None, Some(_)) if raw.account.is_some() => {
                self.problem(
                    "account",
                    "with `targets:`, each target names its account; remove the top-level \
                     `account`",
                );
                None
            }
            (Some(_), Some(_)) => {
                self.problem(
                    "targets",
                    "write either `region:` (one target) or `targets:` (several), not both",
                );
                None
            }
            (None, None) => {
                self.problem(
                    "region",
                    "missing: name the region to deploy to (`region: eu-west-1`), or list \
                     several under `targets:`",
                );
                None
            }
            (Some(region), None) => {
                let account = raw.account.clone();
                let t = self.target("region", "account", region, account, None)?;
                Some(vec![t])
            }
            (None, Some(list)) => self.target_list(list),
        }
    }

    fn target_list(&mut self, list: &[TargetSection]) -> Option<Vec<Target>> {
        if list.is_empty() || list.len() > MAX_TARGETS {
            self.problem(
                "targets",
                format!("list 1 to {MAX_TARGETS} targets ({} listed)", list.len()),
            );
            return None;
        }
        let mut targets = Vec::new();
        let mut complete = true;
        for (i, t) in list.iter().enumerate() {
            let at = format!("targets[{i}]");
            let (region_field, account_field) = (format!("{at}.region"), format!("{at}.account"));
            let role = t
                .role_arn
                .clone()
                .map(|arn| (format!("{at}.role_arn"), arn));
            let account = Some(t.account.clone());
            match self.target(&region_field, &account_field, &t.region, account, role) {
                Some(mut target) => {
                    target.field = at;
                    targets.push(target);
                }
                None => complete = false,
            }
        }
        self.duplicate_targets(&targets);
        self.one_partition(&targets);
        complete.then_some(targets)
    }

    /// One target's region, account and role, each checked.
    fn target(
        &mut self,
        region_field: &str,
        account_field: &str,
        region: &str,
        account: Option<String>,
        role: Option<(String, String)>,
    ) -> Option<Target> {
        let partition = crate::partition::partition_of(region);
        if partition.is_none() {
            self.problem(
                region_field,
                format!("{region:?} is not an AWS region name (like eu-west-1)"),
            );
        }
        let mut ok = partition.is_some();
        if let Some(a) = &account {
            if !is_account_id(a) {
                self.problem(
                    account_field,
                    format!("{a:?} is not a 12-digit AWS account id (quote it in YAML)"),
                );
                ok = false;
            }
        }
        if let (Some((field, arn)), Some(p)) = (&role, partition) {
            ok &= self.role_arn(field, arn, p, account.as_deref());
        }
        ok.then(|| Target {
            region: region.to_string(),
            partition: partition.expect("checked"),
            account,
            role_arn: role.map(|(_, arn)| arn),
            field: region_field.to_string(),
        })
    }

    /// `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`, in the target's partition and account
    /// (a deploy role belongs to the account it deploys to).
    fn role_arn(&mut self, field: &str, arn: &str, partition: &str, account: Option<&str>) -> bool {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let name = parts.get(5).and_then(|r| r.strip_prefix("role/"));
        let shaped = parts.len() == 6
            && parts[0] == "arn"
            && parts[2] == "iam"
            && parts[3].is_empty()
            && is_account_id(parts[4])
            && name.is_some_and(|n| {
                !n.is_empty()
                    && n.len() <= 512
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
            });
        let problem = if !shaped {
            Some(format!(
                "{arn:?} is not an IAM role ARN (arn:{partition}:iam::ACCOUNT:role/NAME)"
            ))
        } else if parts[1] != partition {
            Some(format!(
                "the role is in partition {}, the target's region in {partition}",
                parts[1]
            ))
        } else if account.is_some_and(|a| a != parts[4]) {
            Some(format!(
                "the role is in account {}, but the target is account {}: name the deploy role \
                 of the account the target deploys to",
                parts[4],
                account.unwrap_or_default()
            ))
        } else {
            None
        };
        if let Some(p) = &problem {
            self.problem(field, p.clone());
        }
        problem.is_none()
    }

    fn duplicate_targets(&mut self, targets: &[Target]) {
        for (i, t) in targets.iter().enumerate() {
            if let Some(first) = targets[..i].iter().find(|o| o.label() == t.label()) {
                self.problem(
                    &t.field,
                    format!(
                        "{} is listed twice ({} and {}): one stack per region and account",
                        t.label(),
                        first.field,
                        t.field
                    ),
                );
            }
        }
    }

    /// Credentials never cross partitions, so one stage stays in one.
    fn one_partition(&mut self, targets: &[Target]) {
        let Some(first) = targets.first() else {
            return;
        };
        if let Some(other) = targets.iter().find(|t| t.partition != first.partition) {
            self.problem(
                &other.field,
                format!(
                    "{} is in partition {}, {} in {}: credentials never cross partitions; write \
                     one stage per partition",
                    other.label(),
                    other.partition,
                    first.label(),
                    first.partition
                ),
            );
        }
    }

    /// A `DEFAULT`-mode CA can be registered by one account per region (AWS IoT developer
    /// guide, "Manage your CA certificates"); two accounts in one region need `SNI_ONLY`.
    pub(super) fn ca_modes_for_targets(&mut self, cas: &[Ca], targets: &[Target]) {
        let shared = targets.iter().enumerate().find_map(|(i, t)| {
            targets[..i]
                .iter()
                .find(|o| o.region == t.region && o.account != t.account)
                .map(|o| (o.label(), t.label(), t.region.clone()))
        });
        let Some((a, b, region)) = shared else {
            return;
        };
        for ca in cas.iter().filter(|c| c.mode == CertificateMode::Default) {
            self.problem(
                &format!("{}.mode", ca.field),
                format!(
                    "CA {} is DEFAULT mode, which AWS IoT lets only one account per region \
                     register; targets {a} and {b} are two accounts in {region}. Use \
                     `mode: SNI_ONLY` (no verification certificate; devices must send SNI, \
                     which every current AWS IoT Device SDK does), or one account per region",
                    ca.name
                ),
            );
        }
    }

    /// A KMS key serves one region and belongs to one account: every target must be there.
    pub(super) fn kms_key_for_targets(&mut self, arn: &str, targets: &[Target]) {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        if parts.len() != 6 {
            return; // the key's own check says what is wrong with it
        }
        let elsewhere = targets
            .iter()
            .find(|t| t.region != parts[3] || t.account.as_deref().is_some_and(|a| a != parts[4]));
        if let Some(t) = elsewhere {
            self.problem(
                "encryption.kms_key_arn",
                format!(
                    "the key is in {}/{}, but target {} is not: a KMS key serves one region \
                     and account, so a stage with a customer-managed key deploys only there",
                    parts[3],
                    parts[4],
                    t.label()
                ),
            );
        }
    }
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}
