//! What deploying a synthesized template would change, in the style of AWS CDK's
//! cloudformation-diff: a pure comparison of the deployed template (if the stack exists)
//! with the synthesized one, optionally refined by a CloudFormation change set, and
//! renderers (terminal text, GitHub step summary markdown) kept apart from the computing.
//!
//! Besides the resource view (what is added, modified, replaced or destroyed, and why a
//! resource is replaced: a create-only property changed, per CloudFormation's own resource
//! schemas, or a create-only property refers to a replaced resource), the diff has a
//! security view: IAM statements, role trust statements, device (IoT) policy statements and
//! Lambda permissions, compared as sets, so a reviewer sees at a glance whether a deploy
//! grants anything new. Replacing or removing the CA registration is called out as
//! fleet-breaking.
//!
//! `--json` is the [`Serialize`] of [`StackDiff`], camelCase:
//! `{newStack, empty, maxImpact, broadensSecurity, fleetBreaking: [message],
//! refusedUpdates: [message], resources: [{logicalId, resourceType, kind, properties:
//! [{path, old, new, causesReplacement, member?, updateFails?}], replacement, impact,
//! replacedBecause?: {property, refersTo}}], security: [{kind, change, resource, detail}],
//! parameters: [{name, kind, old, new}], outputs: [same]}`. `kind`/`change` are
//! `added`/`removed`/`modified`; `replacement` `no`/`conditional`/`yes`; `impact`
//! `update`/`create`/`mayReplace`/`replace`/`destroy`; `member: true` marks one member of a
//! list compared as a set (`new`: added, `old`: removed).

mod compute;
mod group;
mod render;
mod replace;
mod security;
mod values;

#[cfg(test)]
mod tests;

pub use compute::diff;
pub use group::{group_by_targets, GroupedDiff, TargetGroup};
pub use render::{render_grouped_markdown, render_grouped_text, render_markdown, render_text};
pub use replace::{create_only_properties, CustomRule, Rules};

use jitr_contract::ca_registration::RESOURCE_TYPE as CA_RESOURCE_TYPE;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

/// One row of a CloudFormation change set (`DescribeChangeSet`'s `ResourceChange`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeSetChange {
    pub logical_id: String,
    pub resource_type: String,
    /// `Add`, `Modify`, `Remove`, `Import` or `Dynamic`.
    pub action: String,
    /// `True`, `False` or `Conditional` (`Modify` only).
    pub replacement: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ChangeKind {
    Added,
    Removed,
    Modified,
}

/// Whether an update replaces the resource (creates a new one, then deletes the old).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Replacement {
    No,
    Conditional,
    Yes,
}

/// What a resource change does, least to most disruptive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Impact {
    Update,
    Create,
    MayReplace,
    Replace,
    Destroy,
}

impl Impact {
    pub fn label(self) -> &'static str {
        match self {
            Impact::Update => "update",
            Impact::Create => "create",
            Impact::MayReplace => "may replace",
            Impact::Replace => "replace",
            Impact::Destroy => "destroy",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SecurityKind {
    /// A statement of an IAM role's inline policy (or of an `AWS::IAM::Policy` /
    /// `AWS::IAM::ManagedPolicy`), or a managed policy attached to a role.
    IamStatement,
    /// A statement of a role's `AssumeRolePolicyDocument`.
    TrustPolicy,
    /// A statement of an `AWS::IoT::Policy` (what devices may do).
    DevicePolicyStatement,
    /// An `AWS::Lambda::Permission` (who may invoke a function).
    LambdaPermission,
}

impl SecurityKind {
    pub fn label(self) -> &'static str {
        match self {
            SecurityKind::IamStatement => "IAM statement",
            SecurityKind::TrustPolicy => "trust statement",
            SecurityKind::DevicePolicyStatement => "device policy statement",
            SecurityKind::LambdaPermission => "Lambda permission",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyChange {
    /// Path below `Properties` (`TopicRulePayload.Sql`, `PolicyDocument.Statement[1].Action`;
    /// a JSON document given as text or as `Fn::Sub` text is descended into like an
    /// object), or a resource attribute (`Type`, `DependsOn`, `DeletionPolicy`,
    /// `UpdateReplacePolicy`, `Condition`, `Metadata...`).
    pub path: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
    pub causes_replacement: bool,
    /// `old`/`new` is one member of a list compared as a set: removed/added.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub member: bool,
    /// Why CloudFormation will refuse this change (the update fails), if it will.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_fails: Option<&'static str>,
}

/// A resource replaced only because a create-only property of it refers (`Ref`,
/// `Fn::GetAtt`, `Fn::Sub`) to a resource that is replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplacedBecause {
    /// The create-only property holding the reference.
    pub property: String,
    /// The replaced resource it refers to.
    pub refers_to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDiff {
    pub logical_id: String,
    pub resource_type: String,
    pub kind: ChangeKind,
    /// Modified resources only; empty when the change is known only from the change set
    /// or from a replaced resource it refers to.
    pub properties: Vec<PropertyChange>,
    pub replacement: Replacement,
    pub impact: Impact,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_because: Option<ReplacedBecause>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityChange {
    pub kind: SecurityKind,
    /// `Added` or `Removed`.
    pub change: ChangeKind,
    /// The logical id of the role, policy or permission.
    pub resource: String,
    /// The statement as written (IAM: `{"policyName", "statement"}`, or
    /// `{"managedPolicyArn"}`), or the permission's properties.
    pub detail: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedChange {
    pub name: String,
    pub kind: ChangeKind,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StackDiff {
    pub new_stack: bool,
    pub resources: Vec<ResourceDiff>,
    pub parameters: Vec<NamedChange>,
    pub outputs: Vec<NamedChange>,
    pub security: Vec<SecurityChange>,
}

impl StackDiff {
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
            && self.parameters.is_empty()
            && self.outputs.is_empty()
            && self.security.is_empty()
    }

    /// Whether anything is granted that was not before: a new IAM statement, trust
    /// statement, device policy statement or Lambda permission (a changed one counts as
    /// removed + added).
    pub fn broadens_security(&self) -> bool {
        self.security.iter().any(|s| s.change == ChangeKind::Added)
    }

    /// Messages for changes that break the onboarding of the device fleet: the CA
    /// registration replaced (or possibly replaced) or removed.
    pub fn fleet_breaking(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.resources {
            let was_ca = r.properties.iter().any(|p| {
                p.path == "Type" && p.old.as_ref().and_then(Value::as_str) == Some(CA_RESOURCE_TYPE)
            });
            if r.resource_type != CA_RESOURCE_TYPE && !was_ca {
                continue;
            }
            let id = &r.logical_id;
            let because = {
                let props: Vec<&str> = r
                    .properties
                    .iter()
                    .filter(|p| p.causes_replacement)
                    .map(|p| p.path.as_str())
                    .collect();
                if props.is_empty() {
                    String::new()
                } else {
                    format!(" (changed: {})", props.join(", "))
                }
            };
            let consequence = "the new registration gets a new CA certificate id, so the \
                 registered-certificate topic ($aws/events/certificates/registered/<id>) the \
                 topic rule listens on changes, and once CloudFormation deletes the old \
                 registration, devices whose certificates are signed by the old CA can no \
                 longer onboard";
            match (r.kind, r.replacement) {
                (ChangeKind::Removed, _) => out.push(format!(
                    "{id} ({CA_RESOURCE_TYPE}) is REMOVED: the device CA is deregistered and \
                     no device signed by it can onboard any more"
                )),
                (ChangeKind::Modified, Replacement::Yes) => out.push(format!(
                    "{id} ({CA_RESOURCE_TYPE}) is REPLACED{because}: {consequence}"
                )),
                (ChangeKind::Modified, Replacement::Conditional) => out.push(format!(
                    "{id} ({CA_RESOURCE_TYPE}) MAY BE REPLACED{because}: if it is, {consequence}"
                )),
                _ => {}
            }
        }
        out
    }

    /// Messages for changes CloudFormation will refuse: deploying them fails.
    pub fn refused_updates(&self) -> Vec<String> {
        self.resources
            .iter()
            .flat_map(|r| {
                r.properties.iter().filter_map(move |p| {
                    p.update_fails
                        .map(|why| format!("{} {}: {why}", r.logical_id, p.path))
                })
            })
            .collect()
    }

    pub fn max_impact(&self) -> Option<Impact> {
        self.resources.iter().map(|r| r.impact).max()
    }
}

impl Serialize for StackDiff {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Shape<'a> {
            new_stack: bool,
            empty: bool,
            max_impact: Option<Impact>,
            broadens_security: bool,
            fleet_breaking: Vec<String>,
            refused_updates: Vec<String>,
            resources: &'a [ResourceDiff],
            security: &'a [SecurityChange],
            parameters: &'a [NamedChange],
            outputs: &'a [NamedChange],
        }
        Shape {
            new_stack: self.new_stack,
            empty: self.is_empty(),
            max_impact: self.max_impact(),
            broadens_security: self.broadens_security(),
            fleet_breaking: self.fleet_breaking(),
            refused_updates: self.refused_updates(),
            resources: &self.resources,
            security: &self.security,
            parameters: &self.parameters,
            outputs: &self.outputs,
        }
        .serialize(serializer)
    }
}
