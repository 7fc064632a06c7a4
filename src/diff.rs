//! What deploying a synthesized template would change, in the style of AWS CDK's
//! cloudformation-diff: a pure comparison of the deployed template (if the stack exists)
//! with the synthesized one, optionally refined by a CloudFormation change set, and
//! renderers (terminal text, GitHub step summary markdown) kept apart from the computing.
//!
//! Besides the resource view (what is added, modified, replaced or destroyed), the diff
//! has a security view: IAM statements, role trust statements, device (IoT) policy
//! statements and Lambda permissions, compared as sets, so a reviewer sees at a glance
//! whether a deploy grants anything new. Replacing or removing the CA registration is
//! called out as fleet-breaking.

use jitr_contract::ca_registration::{CaIdentity, RESOURCE_TYPE as CA_RESOURCE_TYPE};
use jitr_lambda_common::pki::{needs_new_registration, Certificate};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{json, Map, Value};
use std::fmt::Write as _;

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
    /// Dotted path below `Properties` (`TopicRulePayload.Sql`), or a resource attribute
    /// (`Type`, `DependsOn`, `DeletionPolicy`, `UpdateReplacePolicy`, `Condition`,
    /// `Metadata...`).
    pub path: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
    pub causes_replacement: bool,
    /// Why CloudFormation will refuse this change (the update fails), if it will.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_fails: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDiff {
    pub logical_id: String,
    pub resource_type: String,
    pub kind: ChangeKind,
    /// Modified resources only; empty when the change is known only from the change set.
    pub properties: Vec<PropertyChange>,
    pub replacement: Replacement,
    pub impact: Impact,
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

#[derive(Debug, Clone, PartialEq)]
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

// ---------------------------------------------------------------------------------------
// Computing
// ---------------------------------------------------------------------------------------

/// Properties whose change makes CloudFormation replace the resource, for the types the
/// stack emits. Any other property of these types updates in place. The CA registration has
/// a rule of its own, its provider's ([`ca_registration_replacement`]); a custom resource's
/// `ServiceToken` cannot change at all ([`update_refused`]).
const REPLACING_PROPERTIES: &[(&str, &[&str])] = &[
    ("AWS::IAM::Role", &["RoleName", "Path"]),
    ("AWS::Logs::LogGroup", &["LogGroupName"]),
    ("AWS::Lambda::Function", &["FunctionName"]),
    ("AWS::IoT::Policy", &["PolicyName"]),
    ("AWS::IoT::ThingGroup", &["ThingGroupName"]),
    ("AWS::IoT::TopicRule", &["RuleName"]),
    ("AWS::SQS::Queue", &["QueueName", "FifoQueue"]),
    (
        "AWS::Lambda::Permission",
        &[
            "Action",
            "FunctionName",
            "Principal",
            "SourceArn",
            "SourceAccount",
            "EventSourceToken",
            "PrincipalOrgID",
            "FunctionUrlAuthType",
        ],
    ),
    (
        "AWS::Lambda::EventInvokeConfig",
        &["FunctionName", "Qualifier"],
    ),
    (CA_RESOURCE_TYPE, &[]),
];

/// The CA registration's properties its provider's replacement rule reads.
const CA_IDENTITY_PROPERTIES: &[&str] = &CaIdentity::PROPERTIES;

/// Why CloudFormation refuses to change `property` in place or by replacement, if it does.
fn update_refused(resource_type: &str, property: &str) -> Option<&'static str> {
    // AWS::CloudFormation::CustomResource, ServiceToken: "Updates aren't supported"; the
    // update fails ("Modifying service token is not allowed").
    (is_custom(resource_type) && property == "ServiceToken").then_some(
        "CloudFormation does not allow changing a custom resource's ServiceToken: the update \
         will fail. A new provider needs a new resource (a new logical id)",
    )
}

/// `Custom::JitrCaRegistration` is replaced exactly when its provider registers a new CA:
/// a different certificate by DER (a re-wrapped PEM is the same CA) or a different mode,
/// [`needs_new_registration`], the rule the provider itself applies. A value known only at
/// deploy time (an intrinsic function) may or may not change it.
fn ca_registration_replacement(old: &Value, new: &Value) -> Replacement {
    let identity = |r: &Value| r.get("Properties").and_then(CaIdentity::from_properties);
    match (identity(old), identity(new)) {
        (Some(o), Some(n)) => {
            let (op, om) = (&o.ca_certificate_pem, &o.certificate_mode);
            if o == n || !needs_new_registration(op, om, &n.ca_certificate_pem, &n.certificate_mode)
            {
                Replacement::No
            } else {
                Replacement::Yes
            }
        }
        _ => Replacement::Conditional,
    }
}

/// Resource attributes compared besides `Type` and `Properties`, in this order (any other
/// top-level key follows). They never cause a replacement.
const ATTRIBUTES: &[&str] = &[
    "DependsOn",
    "DeletionPolicy",
    "UpdateReplacePolicy",
    "Condition",
    "Metadata",
];

/// Whether changing top-level `property` of a resource from `old` to `new` replaces it.
fn property_replacement(
    resource_type: &str,
    property: &str,
    old: &Value,
    new: &Value,
) -> Replacement {
    if resource_type == CA_RESOURCE_TYPE && CA_IDENTITY_PROPERTIES.contains(&property) {
        return ca_registration_replacement(old, new);
    }
    match REPLACING_PROPERTIES
        .iter()
        .find(|(t, _)| *t == resource_type)
    {
        Some((_, props)) if props.contains(&property) => Replacement::Yes,
        Some(_) => Replacement::No,
        None if property.ends_with("Name") => Replacement::Conditional,
        None => Replacement::No,
    }
}

/// Custom resources are replaced when their provider answers with a new physical id, which
/// CloudFormation cannot know when it makes a change set.
fn is_custom(resource_type: &str) -> bool {
    resource_type.starts_with("Custom::") || resource_type == "AWS::CloudFormation::CustomResource"
}

fn impact_of(kind: ChangeKind, replacement: Replacement) -> Impact {
    match (kind, replacement) {
        (ChangeKind::Added, _) => Impact::Create,
        (ChangeKind::Removed, _) => Impact::Destroy,
        (ChangeKind::Modified, Replacement::Yes) => Impact::Replace,
        (ChangeKind::Modified, Replacement::Conditional) => Impact::MayReplace,
        (ChangeKind::Modified, Replacement::No) => Impact::Update,
    }
}

fn change_set_replacement(c: &ChangeSetChange) -> Option<Replacement> {
    match c.replacement.as_deref() {
        Some("True") => Some(Replacement::Yes),
        Some("Conditional") => Some(Replacement::Conditional),
        Some("False") => Some(Replacement::No),
        _ => None,
    }
}

fn change_set_kind(action: &str) -> Option<ChangeKind> {
    match action {
        "Add" | "Import" => Some(ChangeKind::Added),
        "Remove" => Some(ChangeKind::Removed),
        "Modify" | "Dynamic" => Some(ChangeKind::Modified),
        _ => None,
    }
}

/// A template section (`Resources`, `Parameters`, `Outputs`) as a map; missing = empty.
fn section<'a>(template: Option<&'a Value>, name: &str) -> Option<&'a Map<String, Value>> {
    template?.get(name)?.as_object()
}

fn entries(m: Option<&Map<String, Value>>) -> impl Iterator<Item = (&String, &Value)> {
    m.into_iter().flat_map(|m| m.iter())
}

fn type_of(resource: &Value) -> &str {
    resource.get("Type").and_then(Value::as_str).unwrap_or("")
}

/// `{"Ref": ..}` or `{"Fn::...": ..}`: compared and reported as one value.
fn is_intrinsic(m: &Map<String, Value>) -> bool {
    m.len() == 1
        && m.keys()
            .next()
            .is_some_and(|k| k == "Ref" || k.starts_with("Fn::"))
}

/// Leaf differences between two values: objects (not intrinsic functions) are descended
/// into, anything else (arrays included) is compared whole. Keys in `new`'s order, then
/// keys only in `old` in `old`'s order.
fn diff_values(
    path: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    out: &mut Vec<(String, Option<Value>, Option<Value>)>,
) {
    if old == new {
        return;
    }
    if let (Some(Value::Object(o)), Some(Value::Object(n))) = (old, new) {
        if !is_intrinsic(o) && !is_intrinsic(n) {
            for (k, nv) in n {
                diff_values(&join_path(path, k), o.get(k), Some(nv), out);
            }
            for (k, ov) in o {
                if !n.contains_key(k) {
                    diff_values(&join_path(path, k), Some(ov), None, out);
                }
            }
            return;
        }
    }
    out.push((path.to_string(), old.cloned(), new.cloned()));
}

fn join_path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// `DependsOn` as a sorted set: a string or a list, order irrelevant.
fn depends_on_set(v: Option<&Value>) -> Vec<String> {
    let id = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => canonical(other),
    };
    let mut ids: Vec<String> = match v {
        Some(Value::Array(a)) => a.iter().map(id).collect(),
        Some(other) => vec![id(other)],
        None => Vec::new(),
    };
    ids.sort();
    ids.dedup();
    ids
}

/// Property and attribute changes of a resource present in both templates.
fn compare_resource<'a>(old: &'a Value, new: &'a Value) -> Vec<PropertyChange> {
    let new_type = type_of(new);
    let mut changes = Vec::new();
    if type_of(old) != new_type {
        changes.push(PropertyChange {
            path: "Type".into(),
            old: old.get("Type").cloned(),
            new: new.get("Type").cloned(),
            causes_replacement: true,
            update_fails: None,
        });
    }
    let empty = Map::new();
    let props = |r: &'a Value| r.get("Properties").and_then(Value::as_object);
    let (op, np) = (props(old).unwrap_or(&empty), props(new).unwrap_or(&empty));
    let mut leaves = Vec::new();
    let mut tops = Vec::new();
    for (k, nv) in np {
        let before = leaves.len();
        diff_values(k, op.get(k), Some(nv), &mut leaves);
        tops.extend(std::iter::repeat_n(k.clone(), leaves.len() - before));
    }
    for (k, ov) in op {
        if !np.contains_key(k) {
            let before = leaves.len();
            diff_values(k, Some(ov), None, &mut leaves);
            tops.extend(std::iter::repeat_n(k.clone(), leaves.len() - before));
        }
    }
    for ((path, o, n), top) in leaves.into_iter().zip(tops) {
        changes.push(PropertyChange {
            path,
            old: o,
            new: n,
            causes_replacement: property_replacement(new_type, &top, old, new) != Replacement::No,
            update_fails: update_refused(new_type, &top),
        });
    }

    let (om, nm) = (old.as_object(), new.as_object());
    let mut keys: Vec<&str> = ATTRIBUTES.to_vec();
    for m in [nm, om].into_iter().flatten() {
        for k in m.keys() {
            if k != "Type" && k != "Properties" && !keys.contains(&k.as_str()) {
                keys.push(k);
            }
        }
    }
    for key in keys {
        let (o, n) = (old.get(key), new.get(key));
        if key == "DependsOn" {
            if depends_on_set(o) != depends_on_set(n) {
                changes.push(PropertyChange {
                    path: key.into(),
                    old: o.cloned(),
                    new: n.cloned(),
                    causes_replacement: false,
                    update_fails: None,
                });
            }
            continue;
        }
        let mut leaves = Vec::new();
        diff_values(key, o, n, &mut leaves);
        changes.extend(leaves.into_iter().map(|(path, old, new)| PropertyChange {
            path,
            old,
            new,
            causes_replacement: false,
            update_fails: None,
        }));
    }
    changes
}

/// Parameters or outputs by name, whole values.
fn compare_named(
    old: Option<&Map<String, Value>>,
    new: Option<&Map<String, Value>>,
) -> Vec<NamedChange> {
    let mut out = Vec::new();
    for (name, nv) in entries(new) {
        match old.and_then(|o| o.get(name)) {
            None => out.push(NamedChange {
                name: name.clone(),
                kind: ChangeKind::Added,
                old: None,
                new: Some(nv.clone()),
            }),
            Some(ov) if ov != nv => out.push(NamedChange {
                name: name.clone(),
                kind: ChangeKind::Modified,
                old: Some(ov.clone()),
                new: Some(nv.clone()),
            }),
            Some(_) => {}
        }
    }
    for (name, ov) in entries(old) {
        if !new.is_some_and(|n| n.contains_key(name)) {
            out.push(NamedChange {
                name: name.clone(),
                kind: ChangeKind::Removed,
                old: Some(ov.clone()),
                new: None,
            });
        }
    }
    out
}

/// A resource known only from the change set (no property changes to show).
fn from_change_set(
    c: &ChangeSetChange,
    resource_type: String,
    replacement_if_modified: impl FnOnce() -> Replacement,
) -> Option<ResourceDiff> {
    let kind = change_set_kind(&c.action)?;
    let replacement = match kind {
        ChangeKind::Modified => replacement_if_modified(),
        _ => Replacement::No,
    };
    Some(ResourceDiff {
        logical_id: c.logical_id.clone(),
        resource_type,
        kind,
        properties: Vec::new(),
        replacement,
        impact: impact_of(kind, replacement),
    })
}

/// A resource in both templates: its property changes and whether it is replaced, or,
/// unchanged in the templates, what the change set says (e.g. a parameter value changed).
fn modified(
    id: &str,
    old: &Value,
    new: &Value,
    from_cs: Option<&ChangeSetChange>,
) -> Option<ResourceDiff> {
    let resource_type = type_of(new).to_string();
    let mut properties = compare_resource(old, new);
    if properties.is_empty() {
        let c = from_cs?;
        let ours = resource_type == CA_RESOURCE_TYPE;
        return from_change_set(c, resource_type, || {
            if ours {
                // The provider's rule, over identical templates.
                ca_registration_replacement(old, new)
            } else {
                change_set_replacement(c).unwrap_or(Replacement::No)
            }
        });
    }
    let table = properties
        .iter()
        .filter(|p| p.causes_replacement)
        .map(|p| {
            if p.path == "Type" {
                Replacement::Yes
            } else {
                let top = p.path.split('.').next().unwrap_or(&p.path);
                property_replacement(&resource_type, top, old, new)
            }
        })
        .max()
        .unwrap_or(Replacement::No);
    let replacement = match from_cs.and_then(change_set_replacement) {
        // Our provider's rule is known exactly; CloudFormation's guess is not better.
        Some(_) if resource_type == CA_RESOURCE_TYPE => table,
        Some(r) if is_custom(&resource_type) => r.max(table),
        Some(r) => r,
        None => table,
    };
    if replacement == Replacement::No {
        properties
            .iter_mut()
            .for_each(|p| p.causes_replacement = false);
    }
    Some(ResourceDiff {
        logical_id: id.to_string(),
        resource_type,
        kind: ChangeKind::Modified,
        properties,
        replacement,
        impact: impact_of(ChangeKind::Modified, replacement),
    })
}

/// Compares the deployed template (`None`: the stack does not exist) with the synthesized
/// one. A change set, when given, decides replacement (except that it cannot lower a
/// custom resource's: only its provider knows; for the CA registration, whose provider's
/// rule is known, the rule decides) and adds the resources it changes that the templates
/// show unchanged (e.g. through a parameter value).
pub fn diff(
    deployed: Option<&Value>,
    synthesized: &Value,
    change_set: Option<&[ChangeSetChange]>,
) -> StackDiff {
    let old_res = section(deployed, "Resources");
    let new_res = section(Some(synthesized), "Resources");
    let cs = change_set.unwrap_or(&[]);
    let cs_for = |id: &str| cs.iter().find(|c| c.logical_id == id);

    let mut resources = Vec::new();
    for (id, new) in entries(new_res) {
        match old_res.and_then(|o| o.get(id)) {
            Some(old) => resources.extend(modified(id, old, new, cs_for(id))),
            None => resources.push(ResourceDiff {
                logical_id: id.clone(),
                resource_type: type_of(new).to_string(),
                kind: ChangeKind::Added,
                properties: Vec::new(),
                replacement: Replacement::No,
                impact: Impact::Create,
            }),
        }
    }
    for (id, old) in entries(old_res) {
        if new_res.is_some_and(|n| n.contains_key(id)) {
            continue;
        }
        resources.push(ResourceDiff {
            logical_id: id.clone(),
            resource_type: type_of(old).to_string(),
            kind: ChangeKind::Removed,
            properties: Vec::new(),
            replacement: Replacement::No,
            impact: Impact::Destroy,
        });
    }
    // Changes the change set has for resources in neither template.
    for c in cs {
        let known =
            |m: Option<&Map<String, Value>>| m.is_some_and(|m| m.contains_key(&c.logical_id));
        if known(old_res)
            || known(new_res)
            || resources.iter().any(|r| r.logical_id == c.logical_id)
        {
            continue;
        }
        resources.extend(from_change_set(c, c.resource_type.clone(), || {
            change_set_replacement(c).unwrap_or(Replacement::No)
        }));
    }

    StackDiff {
        new_stack: deployed.is_none(),
        resources,
        parameters: compare_named(
            section(deployed, "Parameters"),
            section(Some(synthesized), "Parameters"),
        ),
        outputs: compare_named(
            section(deployed, "Outputs"),
            section(Some(synthesized), "Outputs"),
        ),
        security: compare_security(deployed, synthesized),
    }
}

// ---------------------------------------------------------------------------------------
// Updates that can never succeed
// ---------------------------------------------------------------------------------------

/// The CA registration asked to change mode with the same CA certificate.
///
/// AWS IoT cannot change a registered CA's mode, and registering the same certificate again
/// in the account answers ResourceAlreadyExists, so the provider's replacement can only fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaModeChange {
    /// The stage whose deploy would make the change (for the commands that work).
    pub stage: String,
    pub logical_id: String,
    /// The AWS IoT id of the CA (the SHA-256 of its DER).
    pub certificate_id: String,
    pub from: String,
    pub to: String,
}

/// Refuses, before any change set, a CA registration whose certificate stays the same (by
/// DER) while its `CertificateMode` changes. Pure: the deployed template (`None`: no stack)
/// against the synthesized one (JSON text, as synth wrote it).
pub fn check_ca_mode(
    stage: &str,
    deployed: Option<&Value>,
    synthesized: &str,
) -> Result<(), CaModeChange> {
    let Ok(synthesized) = serde_json::from_str::<Value>(synthesized) else {
        return Ok(());
    };
    let identity = |r: &Value| -> Option<(Certificate, String)> {
        let id = CaIdentity::from_properties(r.get("Properties")?)?;
        Some((
            Certificate::from_pem(&id.ca_certificate_pem).ok()?,
            id.certificate_mode,
        ))
    };
    for (id, new) in entries(section(Some(&synthesized), "Resources")) {
        let Some(old) = section(deployed, "Resources").and_then(|o| o.get(id)) else {
            continue;
        };
        if type_of(new) != CA_RESOURCE_TYPE || type_of(old) != CA_RESOURCE_TYPE {
            continue;
        }
        let (Some((old_ca, from)), Some((new_ca, to))) = (identity(old), identity(new)) else {
            continue;
        };
        if old_ca.der() == new_ca.der() && from != to {
            return Err(CaModeChange {
                stage: stage.to_string(),
                logical_id: id.clone(),
                certificate_id: old_ca.aws_iot_id(),
                from,
                to,
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Security view
// ---------------------------------------------------------------------------------------

struct SecurityItem {
    kind: SecurityKind,
    resource: String,
    /// Identity: canonical JSON of the normalized statement (and its policy).
    key: String,
    detail: Value,
}

/// JSON with object keys sorted at every level, as a string.
fn canonical(v: &Value) -> String {
    sorted(v).to_string()
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// A string or list (or one intrinsic) as a sorted, deduplicated list.
fn as_sorted_list(v: &Value) -> Value {
    let mut items: Vec<Value> = match v {
        Value::Array(a) => a.iter().map(sorted).collect(),
        other => vec![sorted(other)],
    };
    items.sort_by_key(canonical);
    items.dedup();
    Value::Array(items)
}

/// A policy statement in a form where equivalent spellings are equal: keys sorted,
/// `Action`/`Resource` (and their `Not` forms), principal values and condition values as
/// sorted lists.
fn normalize_statement(st: &Value) -> Value {
    let Value::Object(m) = st else {
        return sorted(st);
    };
    let mut out = Map::new();
    for (k, v) in m {
        let nv = match (k.as_str(), v) {
            ("Action" | "NotAction" | "Resource" | "NotResource", _) => as_sorted_list(v),
            ("Principal" | "NotPrincipal", Value::Object(p)) if !is_intrinsic(p) => Value::Object(
                p.iter()
                    .map(|(pk, pv)| (pk.clone(), as_sorted_list(pv)))
                    .collect(),
            ),
            ("Condition", Value::Object(ops)) => Value::Object(
                ops.iter()
                    .map(|(op, keys)| {
                        let nk = match keys {
                            Value::Object(km) if !is_intrinsic(km) => Value::Object(
                                km.iter()
                                    .map(|(ck, cv)| (ck.clone(), as_sorted_list(cv)))
                                    .collect(),
                            ),
                            other => other.clone(),
                        };
                        (op.clone(), nk)
                    })
                    .collect(),
            ),
            _ => v.clone(),
        };
        out.insert(k.clone(), nv);
    }
    sorted(&Value::Object(out))
}

/// The statements of a policy document (an object, or JSON text), one or a list.
fn statements(document: Option<&Value>) -> Vec<Value> {
    let parsed;
    let doc = match document {
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(v) => {
                parsed = v;
                &parsed
            }
            Err(_) => return Vec::new(),
        },
        Some(v) => v,
        None => return Vec::new(),
    };
    match doc.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(one @ Value::Object(_)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// The statements of an IAM policy document, identified with their policy's name.
fn iam_statements(
    policy_name: &Value,
    document: Option<&Value>,
    push: &mut dyn FnMut(SecurityKind, Value, Value),
) {
    for st in statements(document) {
        push(
            SecurityKind::IamStatement,
            json!({ "policyName": policy_name, "statement": normalize_statement(&st) }),
            json!({ "policyName": policy_name, "statement": st }),
        );
    }
}

fn security_items(template: Option<&Value>) -> Vec<SecurityItem> {
    let mut items = Vec::new();
    for (id, res) in entries(section(template, "Resources")) {
        let props = res.get("Properties");
        let prop = |name: &str| props.and_then(|p| p.get(name));
        let mut push = |kind: SecurityKind, key: Value, detail: Value| {
            items.push(SecurityItem {
                kind,
                resource: id.clone(),
                key: canonical(&key),
                detail,
            })
        };
        match type_of(res) {
            "AWS::IAM::Role" => {
                for st in statements(prop("AssumeRolePolicyDocument")) {
                    push(SecurityKind::TrustPolicy, normalize_statement(&st), st);
                }
                for policy in prop("Policies")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let name = policy.get("PolicyName").cloned().unwrap_or(Value::Null);
                    iam_statements(&name, policy.get("PolicyDocument"), &mut push);
                }
                for arn in prop("ManagedPolicyArns")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let detail = json!({ "managedPolicyArn": arn });
                    push(SecurityKind::IamStatement, detail.clone(), detail);
                }
            }
            "AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy" => {
                let name = prop("PolicyName")
                    .or_else(|| prop("ManagedPolicyName"))
                    .cloned()
                    .unwrap_or(Value::Null);
                iam_statements(&name, prop("PolicyDocument"), &mut push);
            }
            "AWS::IoT::Policy" => {
                for st in statements(prop("PolicyDocument")) {
                    push(
                        SecurityKind::DevicePolicyStatement,
                        normalize_statement(&st),
                        st,
                    );
                }
            }
            "AWS::Lambda::Permission" => {
                let p = props.cloned().unwrap_or_else(|| json!({}));
                push(SecurityKind::LambdaPermission, p.clone(), p);
            }
            _ => {}
        }
    }
    items
}

/// Statements and permissions as multisets per resource: what only the old template has is
/// removed, what only the new one has is added. Grouped by resource (synthesized order,
/// then resources only deployed), removals before additions.
fn compare_security(deployed: Option<&Value>, synthesized: &Value) -> Vec<SecurityChange> {
    let old = security_items(deployed);
    let new = security_items(Some(synthesized));
    let mut old_matched = vec![false; old.len()];
    let mut new_matched = vec![false; new.len()];
    for (ni, n) in new.iter().enumerate() {
        if let Some(oi) = old.iter().enumerate().position(|(oi, o)| {
            !old_matched[oi] && o.kind == n.kind && o.resource == n.resource && o.key == n.key
        }) {
            old_matched[oi] = true;
            new_matched[ni] = true;
        }
    }
    let mut order: Vec<&str> = Vec::new();
    for r in new.iter().chain(old.iter()) {
        if !order.contains(&r.resource.as_str()) {
            order.push(&r.resource);
        }
    }
    let mut out = Vec::new();
    for id in order {
        for (item, _) in old
            .iter()
            .zip(&old_matched)
            .filter(|(o, m)| !**m && o.resource == id)
        {
            out.push(SecurityChange {
                kind: item.kind,
                change: ChangeKind::Removed,
                resource: item.resource.clone(),
                detail: item.detail.clone(),
            });
        }
        for (item, _) in new
            .iter()
            .zip(&new_matched)
            .filter(|(n, m)| !**m && n.resource == id)
        {
            out.push(SecurityChange {
                kind: item.kind,
                change: ChangeKind::Added,
                resource: item.resource.clone(),
                detail: item.detail.clone(),
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------

/// Values longer than this (in characters) are shortened in the middle.
const MAX_VALUE_CHARS: usize = 120;

fn truncate_middle(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(1);
    let head = keep.div_ceil(2);
    let tail = keep / 2;
    let mut out: String = s.chars().take(head).collect();
    out.push('…');
    out.extend(s.chars().skip(n - tail));
    out
}

/// Compact JSON, shortened; `(none)` when absent.
fn show(v: Option<&Value>) -> String {
    match v {
        None => "(none)".into(),
        Some(v) => truncate_middle(&v.to_string(), MAX_VALUE_CHARS),
    }
}

/// Characters of unchanged context kept on each side of a difference.
const CONTEXT_CHARS: usize = 24;

/// Old and new values for `old -> new`. Long values are shortened around where they
/// differ (the common start and end cut down to some context), so two long values that
/// differ in the middle do not both come out as the same `head…tail`.
fn show_pair(old: Option<&Value>, new: Option<&Value>) -> (String, String) {
    let (Some(o), Some(n)) = (old, new) else {
        return (show(old), show(new));
    };
    let (o, n) = (o.to_string(), n.to_string());
    let (oc, nc): (Vec<char>, Vec<char>) = (o.chars().collect(), n.chars().collect());
    if oc.len() <= MAX_VALUE_CHARS && nc.len() <= MAX_VALUE_CHARS {
        return (o, n);
    }
    let prefix = oc.iter().zip(&nc).take_while(|(a, b)| a == b).count();
    let limit = oc.len().min(nc.len()) - prefix;
    let suffix = oc
        .iter()
        .rev()
        .zip(nc.iter().rev())
        .take(limit)
        .take_while(|(a, b)| a == b)
        .count();
    let one = |c: &[char]| -> String {
        if c.len() <= MAX_VALUE_CHARS {
            return c.iter().collect();
        }
        let mut out = String::new();
        if prefix > CONTEXT_CHARS {
            out.push('…');
            out.extend(&c[prefix - CONTEXT_CHARS..prefix]);
        } else {
            out.extend(&c[..prefix]);
        }
        let middle: String = c[prefix..c.len() - suffix].iter().collect();
        let budget = MAX_VALUE_CHARS
            .saturating_sub(2 * CONTEXT_CHARS + 2)
            .max(16);
        out.push_str(&truncate_middle(&middle, budget));
        if suffix > CONTEXT_CHARS {
            let end = c.len() - suffix + CONTEXT_CHARS;
            out.extend(&c[c.len() - suffix..end]);
            out.push('…');
        } else {
            out.extend(&c[c.len() - suffix..]);
        }
        out
    };
    (one(&oc), one(&nc))
}

/// A policy value as a reader writes it: strings bare, `Fn::Sub` as its template, `Ref` and
/// `Fn::GetAtt` as `${Id}` / `${Id.Att}`, lists comma-separated; compact JSON otherwise.
fn friendly(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(friendly).collect::<Vec<_>>().join(", "),
        Value::Object(m) if m.len() == 1 => {
            let (k, inner) = m.iter().next().expect("one entry");
            match (k.as_str(), inner) {
                ("Ref", Value::String(id)) => format!("${{{id}}}"),
                ("Fn::Sub", Value::String(s)) => s.clone(),
                ("Fn::GetAtt", Value::Array(a)) if a.len() == 2 => {
                    format!("${{{}.{}}}", friendly(&a[0]), friendly(&a[1]))
                }
                _ => v.to_string(),
            }
        }
        _ => v.to_string(),
    }
}

fn short(v: &Value) -> String {
    truncate_middle(&friendly(v), MAX_VALUE_CHARS)
}

/// One line for a statement: `Allow a, b on r (principal p) when {..} [Sid]`.
fn describe_statement(st: &Value) -> String {
    let get = |k: &str| st.get(k);
    let mut s = get("Effect").map(friendly).unwrap_or_else(|| "?".into());
    for (key, word) in [("Action", ""), ("NotAction", "all but ")] {
        if let Some(v) = get(key) {
            let _ = write!(s, " {word}{}", short(v));
        }
    }
    for (key, word) in [("Resource", "on"), ("NotResource", "on all but")] {
        if let Some(v) = get(key) {
            let _ = write!(s, " {word} {}", short(v));
        }
    }
    for (key, word) in [("Principal", "to"), ("NotPrincipal", "to all but")] {
        if let Some(v) = get(key) {
            let _ = write!(s, " {word} {}", short(v));
        }
    }
    if let Some(c) = get("Condition") {
        let _ = write!(s, " when {}", show(Some(c)));
    }
    if let Some(Value::String(sid)) = get("Sid") {
        let _ = write!(s, " [{sid}]");
    }
    s
}

/// Where a security change is (`ActivatorRole`, `ActivatorRole/least-privilege`) and what
/// it grants.
fn describe_security(c: &SecurityChange) -> (String, String) {
    match c.kind {
        SecurityKind::IamStatement => {
            if let Some(arn) = c.detail.get("managedPolicyArn") {
                return (c.resource.clone(), format!("managed policy {}", short(arn)));
            }
            let place = match c.detail.get("policyName") {
                Some(Value::Null) | None => c.resource.clone(),
                Some(name) => format!("{}/{}", c.resource, friendly(name)),
            };
            let st = c.detail.get("statement").unwrap_or(&Value::Null);
            (place, describe_statement(st))
        }
        SecurityKind::TrustPolicy | SecurityKind::DevicePolicyStatement => {
            (c.resource.clone(), describe_statement(&c.detail))
        }
        SecurityKind::LambdaPermission => {
            let get = |k: &str| c.detail.get(k);
            let mut s = format!(
                "{} may {} {}",
                get("Principal").map(short).unwrap_or_else(|| "?".into()),
                get("Action").map(short).unwrap_or_else(|| "?".into()),
                get("FunctionName").map(short).unwrap_or_else(|| "?".into()),
            );
            for (key, word) in [
                ("SourceArn", "from"),
                ("SourceAccount", "account"),
                ("PrincipalOrgID", "org"),
                ("EventSourceToken", "token"),
                ("FunctionUrlAuthType", "url auth"),
            ] {
                if let Some(v) = get(key) {
                    let _ = write!(s, ", {word} {}", short(v));
                }
            }
            (c.resource.clone(), s)
        }
    }
}

fn marker(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "[+]",
        ChangeKind::Removed => "[-]",
        ChangeKind::Modified => "[~]",
    }
}

fn replacement_note(r: Replacement) -> &'static str {
    match r {
        Replacement::Yes => "(replace)",
        Replacement::Conditional => "(may replace)",
        Replacement::No => "",
    }
}

/// "2 to create, 1 to update, 1 to replace"
fn impact_summary(d: &StackDiff) -> String {
    let count = |i: Impact| d.resources.iter().filter(|r| r.impact == i).count();
    let parts: Vec<String> = [
        (Impact::Create, "to create"),
        (Impact::Update, "to update"),
        (Impact::MayReplace, "may be replaced"),
        (Impact::Replace, "to replace"),
        (Impact::Destroy, "to destroy"),
    ]
    .into_iter()
    .filter_map(|(i, words)| match count(i) {
        0 => None,
        n => Some(format!("{n} {words}")),
    })
    .collect();
    parts.join(", ")
}

struct Paint(bool);

impl Paint {
    fn on(&self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

const RED: &str = "31";
const GREEN: &str = "32";
const YELLOW: &str = "33";
const BOLD: &str = "1";
const BOLD_RED: &str = "1;31";
const DIM: &str = "2";

fn kind_colour(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => GREEN,
        ChangeKind::Removed => RED,
        ChangeKind::Modified => YELLOW,
    }
}

/// The resources section of [`render_text`]: one line per resource, one per property.
fn resources_text(d: &StackDiff, p: &Paint, out: &mut String) {
    let _ = writeln!(out, "{} ({})", p.on(BOLD, "Resources"), impact_summary(d));
    for r in &d.resources {
        let note = replacement_note(r.replacement);
        let head = format!("{} {} {}", marker(r.kind), r.resource_type, r.logical_id);
        out.push_str(&p.on(kind_colour(r.kind), &head));
        if !note.is_empty() {
            out.push(' ');
            out.push_str(&p.on(BOLD_RED, note));
        }
        out.push('\n');
        for pc in &r.properties {
            let mark = if pc.update_fails.is_some() {
                format!(" {}", p.on(BOLD_RED, "(update fails)"))
            } else if pc.causes_replacement {
                format!(" {}", p.on(BOLD_RED, replacement_note(r.replacement)))
            } else {
                String::new()
            };
            let (o, n) = show_pair(pc.old.as_ref(), pc.new.as_ref());
            let _ = writeln!(
                out,
                "    {}{mark}: {} -> {}",
                pc.path,
                p.on(RED, &o),
                p.on(GREEN, &n),
            );
        }
    }
}

/// The diff for a terminal; ANSI colours only when `color`.
pub fn render_text(d: &StackDiff, color: bool) -> String {
    let p = Paint(color);
    if d.is_empty() {
        return "No changes.\n".into();
    }
    let mut out = String::new();
    for (title, messages) in [
        ("!!! FLEET-BREAKING CHANGES !!!", d.fleet_breaking()),
        (
            "!!! CHANGES CLOUDFORMATION WILL REFUSE !!!",
            d.refused_updates(),
        ),
    ] {
        if messages.is_empty() {
            continue;
        }
        out.push_str(&p.on(BOLD_RED, title));
        out.push('\n');
        for m in &messages {
            out.push_str(&p.on(BOLD_RED, &format!("  !! {m}")));
            out.push('\n');
        }
        out.push('\n');
    }
    if d.new_stack {
        out.push_str(&p.on(BOLD, "New stack: every resource below is created."));
        out.push_str("\n\n");
    }
    if !d.security.is_empty() {
        let note = if d.broadens_security() {
            p.on(BOLD_RED, "(broadens permissions)")
        } else {
            p.on(DIM, "(only removes permissions)")
        };
        let _ = writeln!(out, "{} {note}", p.on(BOLD, "Security changes"));
        for c in &d.security {
            let sign = if c.change == ChangeKind::Added {
                "+"
            } else {
                "-"
            };
            let (place, what) = describe_security(c);
            let line = format!("  {sign} {} {place}: {what}", c.kind.label());
            out.push_str(&p.on(kind_colour(c.change), &line));
            out.push('\n');
        }
        out.push('\n');
    }
    if !d.resources.is_empty() {
        resources_text(d, &p, &mut out);
        out.push('\n');
    }
    for (title, list) in [("Parameters", &d.parameters), ("Outputs", &d.outputs)] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{}", p.on(BOLD, title));
        for c in list {
            let head = format!("{} {}", marker(c.kind), c.name);
            let body = match c.kind {
                ChangeKind::Added => show(c.new.as_ref()),
                ChangeKind::Removed => show(c.old.as_ref()),
                ChangeKind::Modified => {
                    let (o, n) = show_pair(c.old.as_ref(), c.new.as_ref());
                    format!("{} -> {}", p.on(RED, &o), p.on(GREEN, &n))
                }
            };
            let _ = writeln!(out, "{}: {body}", p.on(kind_colour(c.kind), &head));
        }
        out.push('\n');
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// Text as a markdown code span that survives a table cell: a fence longer than any
/// backtick run inside, and `|` escaped.
fn code(s: &str) -> String {
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{}{pad}{fence}", s.replace('|', "\\|"))
}

fn md_text(s: &str) -> String {
    s.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The diff for `GITHUB_STEP_SUMMARY`: the same content as [`render_text`], as tables.
pub fn render_markdown(d: &StackDiff, title: &str) -> String {
    let mut out = format!("### {title}\n\n");
    if d.is_empty() {
        out.push_str("No changes.\n");
        return out;
    }
    let fleet = d.fleet_breaking();
    if !fleet.is_empty() {
        out.push_str("> [!CAUTION]\n> **⚠️ FLEET-BREAKING CHANGES**\n>\n");
        for m in &fleet {
            let _ = writeln!(out, "> - {}", md_text(m));
        }
        out.push('\n');
    }
    let refused = d.refused_updates();
    if !refused.is_empty() {
        out.push_str("> [!CAUTION]\n> **Changes CloudFormation will refuse**\n>\n");
        for m in &refused {
            let _ = writeln!(out, "> - {}", md_text(m));
        }
        out.push('\n');
    }
    if d.new_stack {
        out.push_str("**New stack:** every resource below is created.\n\n");
    }
    if !d.security.is_empty() {
        out.push_str("#### Security changes\n\n");
        if d.broadens_security() {
            out.push_str("> [!WARNING]\n> This deploy **broadens permissions**.\n\n");
        } else {
            out.push_str("This deploy only removes permissions.\n\n");
        }
        out.push_str("| | Kind | Where | What |\n|---|---|---|---|\n");
        for c in &d.security {
            let sign = if c.change == ChangeKind::Added {
                "➕"
            } else {
                "➖"
            };
            let (place, what) = describe_security(c);
            let _ = writeln!(
                out,
                "| {sign} | {} | {} | {} |",
                c.kind.label(),
                code(&place),
                code(&what)
            );
        }
        out.push('\n');
    }
    if !d.resources.is_empty() {
        let _ = writeln!(out, "#### Resources\n\n{}\n", impact_summary(d));
        out.push_str("| | Logical id | Type | Impact | Changes |\n|---|---|---|---|---|\n");
        for r in &d.resources {
            let impact = match r.impact {
                Impact::Replace | Impact::MayReplace | Impact::Destroy => {
                    format!("**{}**", r.impact.label())
                }
                _ => r.impact.label().to_string(),
            };
            let changes: Vec<String> = r
                .properties
                .iter()
                .map(|pc| {
                    let mark = if pc.update_fails.is_some() {
                        " **(update fails)**".to_string()
                    } else if pc.causes_replacement {
                        format!(" **{}**", replacement_note(r.replacement))
                    } else {
                        String::new()
                    };
                    let (o, n) = show_pair(pc.old.as_ref(), pc.new.as_ref());
                    format!("{}{mark}: {} → {}", code(&pc.path), code(&o), code(&n))
                })
                .collect();
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {impact} | {} |",
                marker(r.kind),
                code(&r.logical_id),
                code(&r.resource_type),
                changes.join("<br>")
            );
        }
        out.push('\n');
    }
    for (title, list) in [("Parameters", &d.parameters), ("Outputs", &d.outputs)] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "#### {title}\n\n| | Name | Old | New |\n|---|---|---|---|"
        );
        for c in list {
            let (o, n) = show_pair(c.old.as_ref(), c.new.as_ref());
            let cell = |v: Option<&Value>, text: &str| v.map(|_| code(text)).unwrap_or_default();
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                marker(c.kind),
                code(&c.name),
                cell(c.old.as_ref(), &o),
                cell(c.new.as_ref(), &n)
            );
        }
        out.push('\n');
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: &str = include_str!("../tests/snapshots/dev.template.json");

    fn dev() -> Value {
        serde_json::from_str(DEV).unwrap()
    }

    fn template(resources: Value) -> Value {
        json!({ "AWSTemplateFormatVersion": "2010-09-09", "Resources": resources })
    }

    fn device_policy(actions: Value) -> Value {
        template(json!({
            "DevicePolicy": {
                "Type": "AWS::IoT::Policy",
                "Properties": {
                    "PolicyName": "jitr-dev-device",
                    "PolicyDocument": { "Version": "2012-10-17", "Statement": [
                        { "Effect": "Allow", "Action": actions, "Resource": { "Fn::Sub": "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:topic/x" } }
                    ]}
                }
            }
        }))
    }

    fn role(statements: Value) -> Value {
        template(json!({
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "AssumeRolePolicyDocument": { "Statement": [
                        { "Effect": "Allow", "Principal": { "Service": "lambda.amazonaws.com" }, "Action": "sts:AssumeRole" }
                    ]},
                    "Policies": [ { "PolicyName": "least-privilege", "PolicyDocument": { "Statement": statements } } ]
                }
            }
        }))
    }

    fn permission(source_arn: Value) -> Value {
        template(json!({
            "Perm": {
                "Type": "AWS::Lambda::Permission",
                "Properties": {
                    "Action": "lambda:InvokeFunction",
                    "FunctionName": { "Fn::GetAtt": ["Fn", "Arn"] },
                    "Principal": "iot.amazonaws.com",
                    "SourceArn": source_arn
                }
            }
        }))
    }

    fn ca(pem: &str) -> Value {
        template(json!({
            "CaRegistration": {
                "Type": "Custom::JitrCaRegistration",
                "Properties": {
                    "ServiceToken": { "Fn::GetAtt": ["CaProviderFunction", "Arn"] },
                    "CaCertificatePem": pem,
                    "CertificateMode": "SNI_ONLY",
                    "Status": "ACTIVE"
                }
            }
        }))
    }

    fn has_ansi(s: &str) -> bool {
        s.contains('\x1b')
    }

    #[test]
    fn new_stack_is_all_added_and_broadens() {
        let t = dev();
        let d = diff(None, &t, None);
        assert!(d.new_stack);
        let n = t["Resources"].as_object().unwrap().len();
        assert_eq!(d.resources.len(), n);
        assert!(d
            .resources
            .iter()
            .all(|r| r.kind == ChangeKind::Added && r.impact == Impact::Create));
        assert_eq!(d.resources[0].logical_id, "CaProviderLogGroup");
        assert_eq!(d.outputs.len(), 6);
        assert!(d.outputs.iter().all(|o| o.kind == ChangeKind::Added));
        assert!(d.broadens_security());
        assert!(d.security.iter().all(|s| s.change == ChangeKind::Added));
        let count = |k: SecurityKind| d.security.iter().filter(|s| s.kind == k).count();
        // 3 + 7 + 1 role statements; 3 trust statements; 3 device statements; 1 permission.
        assert_eq!(count(SecurityKind::IamStatement), 11);
        assert_eq!(count(SecurityKind::TrustPolicy), 3);
        assert_eq!(count(SecurityKind::DevicePolicyStatement), 3);
        assert_eq!(count(SecurityKind::LambdaPermission), 1);
        assert!(
            d.fleet_breaking().is_empty(),
            "a new CA registration breaks nothing"
        );
        assert_eq!(d.max_impact(), Some(Impact::Create));
        let text = render_text(&d, false);
        assert!(text.contains("New stack"));
        assert!(text.contains("[+] Custom::JitrCaRegistration CaRegistration"));
    }

    #[test]
    fn identical_templates_are_empty() {
        let t = dev();
        let d = diff(Some(&t), &t, None);
        assert!(d.is_empty(), "{d:?}");
        assert!(!d.new_stack);
        assert!(!d.broadens_security());
        assert_eq!(d.max_impact(), None);
        assert_eq!(render_text(&d, true), "No changes.\n");
        assert!(render_markdown(&d, "dev").contains("No changes."));
    }

    #[test]
    fn key_order_and_list_order_do_not_matter() {
        let a = role(
            json!([{ "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "*" }]),
        );
        let b = role(
            json!([{ "Resource": ["*"], "Action": ["s3:PutObject", "s3:GetObject"], "Effect": "Allow" }]),
        );
        let d = diff(Some(&a), &b, None);
        assert!(d.security.is_empty(), "{:?}", d.security);
        // Templates with keys reordered only compare equal.
        let c = role(
            json!([{ "Resource": "*", "Action": ["s3:GetObject", "s3:PutObject"], "Effect": "Allow" }]),
        );
        assert!(diff(Some(&a), &c, None).is_empty());
    }

    #[test]
    fn device_policy_action_added_broadens() {
        let old = device_policy(json!("iot:Publish"));
        let new = device_policy(json!(["iot:Publish", "iot:Subscribe"]));
        let d = diff(Some(&old), &new, None);
        assert!(d.broadens_security());
        let kinds: Vec<_> = d.security.iter().map(|s| (s.kind, s.change)).collect();
        assert_eq!(
            kinds,
            vec![
                (SecurityKind::DevicePolicyStatement, ChangeKind::Removed),
                (SecurityKind::DevicePolicyStatement, ChangeKind::Added)
            ]
        );
        assert_eq!(d.security[1].resource, "DevicePolicy");
        assert_eq!(
            d.security[1].detail["Action"],
            json!(["iot:Publish", "iot:Subscribe"])
        );
        let r = &d.resources[0];
        assert_eq!(r.kind, ChangeKind::Modified);
        assert_eq!(r.replacement, Replacement::No);
        assert_eq!(r.impact, Impact::Update);
        assert_eq!(r.properties[0].path, "PolicyDocument.Statement");
    }

    #[test]
    fn iam_statement_removed_only_does_not_broaden() {
        let keep = json!({ "Sid": "Keep", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": { "Fn::GetAtt": ["Q", "Arn"] } });
        let drop = json!({ "Sid": "Drop", "Effect": "Allow", "Action": "iot:AttachThingPrincipal", "Resource": "*" });
        let old = role(json!([keep.clone(), drop.clone()]));
        let new = role(json!([keep]));
        let d = diff(Some(&old), &new, None);
        assert!(!d.broadens_security());
        assert_eq!(d.security.len(), 1);
        let s = &d.security[0];
        assert_eq!(
            (s.kind, s.change),
            (SecurityKind::IamStatement, ChangeKind::Removed)
        );
        assert_eq!(s.resource, "Role");
        assert_eq!(
            s.detail,
            json!({ "policyName": "least-privilege", "statement": drop })
        );
        let text = render_text(&d, false);
        assert!(text.contains("(only removes permissions)"), "{text}");
        assert!(
            text.contains(
                "- IAM statement Role/least-privilege: Allow iot:AttachThingPrincipal on * [Drop]"
            ),
            "{text}"
        );
    }

    #[test]
    fn trust_statement_widened_is_reported() {
        let mut old = role(json!([]));
        let mut new = old.clone();
        new["Resources"]["Role"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
            ["Principal"] = json!({ "Service": ["lambda.amazonaws.com", "iot.amazonaws.com"] });
        let d = diff(Some(&old), &new, None);
        assert!(d.broadens_security());
        assert!(d
            .security
            .iter()
            .any(|s| s.kind == SecurityKind::TrustPolicy && s.change == ChangeKind::Added));
        // A string and a one-element list are the same principal.
        old["Resources"]["Role"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
            ["Principal"] = json!({ "Service": ["lambda.amazonaws.com"] });
        let same = role(json!([]));
        assert!(diff(Some(&old), &same, None).security.is_empty());
    }

    #[test]
    fn managed_policy_attached_broadens() {
        let old = role(json!([]));
        let mut new = old.clone();
        new["Resources"]["Role"]["Properties"]["ManagedPolicyArns"] =
            json!(["arn:aws:iam::aws:policy/AdministratorAccess"]);
        let d = diff(Some(&old), &new, None);
        assert!(d.broadens_security());
        assert_eq!(
            d.security[0].detail["managedPolicyArn"],
            json!("arn:aws:iam::aws:policy/AdministratorAccess")
        );
    }

    #[test]
    fn lambda_permission_source_arn_change_replaces() {
        let old = permission(json!({ "Fn::GetAtt": ["RuleA", "Arn"] }));
        let new = permission(json!({ "Fn::GetAtt": ["RuleB", "Arn"] }));
        let d = diff(Some(&old), &new, None);
        let r = &d.resources[0];
        assert_eq!(r.replacement, Replacement::Yes);
        assert_eq!(r.impact, Impact::Replace);
        assert_eq!(r.properties.len(), 1);
        assert_eq!(r.properties[0].path, "SourceArn");
        assert!(r.properties[0].causes_replacement);
        let changes: Vec<_> = d.security.iter().map(|s| (s.kind, s.change)).collect();
        assert_eq!(
            changes,
            vec![
                (SecurityKind::LambdaPermission, ChangeKind::Removed),
                (SecurityKind::LambdaPermission, ChangeKind::Added)
            ]
        );
        assert_eq!(
            d.security[1].detail["SourceArn"],
            json!({ "Fn::GetAtt": ["RuleB", "Arn"] })
        );
        assert!(d.broadens_security());
        assert_eq!(d.max_impact(), Some(Impact::Replace));
    }

    #[test]
    fn ca_certificate_change_is_fleet_breaking() {
        let d = diff(Some(&ca("OLD PEM")), &ca("NEW PEM"), None);
        let r = &d.resources[0];
        assert_eq!(r.replacement, Replacement::Yes);
        assert_eq!(r.impact, Impact::Replace);
        assert_eq!(r.properties[0].path, "CaCertificatePem");
        assert!(r.properties[0].causes_replacement);
        let fleet = d.fleet_breaking();
        assert_eq!(fleet.len(), 1);
        assert!(
            fleet[0].contains("CaRegistration") && fleet[0].contains("REPLACED"),
            "{fleet:?}"
        );
        assert!(fleet[0].contains("CaCertificatePem"));
        let text = render_text(&d, false);
        assert!(text.starts_with("!!! FLEET-BREAKING"), "{text}");
        assert!(
            text.contains("[~] Custom::JitrCaRegistration CaRegistration (replace)"),
            "{text}"
        );
        assert!(
            text.contains("CaCertificatePem (replace): \"OLD PEM\" -> \"NEW PEM\""),
            "{text}"
        );
        // A Status change updates in place: nothing fleet-breaking.
        let mut active = ca("OLD PEM");
        active["Resources"]["CaRegistration"]["Properties"]["Status"] = json!("INACTIVE");
        let d = diff(Some(&ca("OLD PEM")), &active, None);
        assert_eq!(d.resources[0].impact, Impact::Update);
        assert!(d.fleet_breaking().is_empty());
    }

    const DEV_CA: &str = include_str!("../certs/dev-ca.pem");
    const PROD_CA: &str = include_str!("../certs/prod-ca.pem");

    /// The same certificate, its base64 wrapped at 76 columns with CRLF line ends.
    fn rewrapped(pem: &str) -> String {
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let lines: Vec<String> = b64
            .as_bytes()
            .chunks(76)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\r\n{}\r\n-----END CERTIFICATE-----\r\n",
            lines.join("\r\n")
        )
    }

    fn with_ca_prop(template: &Value, name: &str, value: Value) -> Value {
        let mut t = template.clone();
        t["Resources"]["CaRegistration"]["Properties"][name] = value;
        t
    }

    #[test]
    fn ca_replacement_follows_the_providers_rule() {
        let deployed = ca(DEV_CA);
        let cs = vec![ChangeSetChange {
            logical_id: "CaRegistration".into(),
            resource_type: CA_RESOURCE_TYPE.into(),
            action: "Modify".into(),
            replacement: Some("True".into()),
        }];
        // A re-wrapped PEM is the same CA: updated in place, nothing fleet-breaking, whatever
        // the change set guesses.
        let same = ca(&rewrapped(DEV_CA));
        assert_ne!(same, deployed);
        for change_set in [None, Some(&cs[..])] {
            let d = diff(Some(&deployed), &same, change_set);
            let r = &d.resources[0];
            assert_eq!((r.replacement, r.impact), (Replacement::No, Impact::Update));
            assert_eq!(r.properties[0].path, "CaCertificatePem");
            assert!(!r.properties[0].causes_replacement);
            assert!(d.fleet_breaking().is_empty(), "{:?}", d.fleet_breaking());
        }
        // A new certificate (DER) or a new mode is a new registration: replaced.
        let mode = with_ca_prop(&deployed, "CertificateMode", json!("DEFAULT"));
        for new in [ca(PROD_CA), mode] {
            let d = diff(Some(&deployed), &new, None);
            assert_eq!(d.resources[0].replacement, Replacement::Yes);
            assert!(d.resources[0].properties[0].causes_replacement);
            assert_eq!(d.fleet_breaking().len(), 1);
        }
        // Known only at deploy time: may be replaced.
        let by_parameter = ca_with_pem(json!({ "Ref": "CaPem" }));
        let d = diff(Some(&deployed), &by_parameter, None);
        assert_eq!(d.resources[0].replacement, Replacement::Conditional);
        // Unchanged templates but a parameter changed (the verification certificate): the
        // provider keeps the same CA.
        let d = diff(Some(&deployed), &deployed, Some(&cs));
        assert_eq!(d.resources[0].replacement, Replacement::No);
        assert_eq!(d.resources[0].impact, Impact::Update);
    }

    fn ca_with_pem(pem: Value) -> Value {
        with_ca_prop(&ca(DEV_CA), "CaCertificatePem", pem)
    }

    #[test]
    fn a_service_token_change_is_refused_by_cloudformation_not_a_replacement() {
        let deployed = ca(DEV_CA);
        let moved = with_ca_prop(
            &deployed,
            "ServiceToken",
            json!({ "Fn::GetAtt": ["OtherProvider", "Arn"] }),
        );
        let d = diff(Some(&deployed), &moved, None);
        let r = &d.resources[0];
        assert_eq!((r.replacement, r.impact), (Replacement::No, Impact::Update));
        assert!(d.fleet_breaking().is_empty());
        assert!(r.properties[0].update_fails.is_some());
        let refused = d.refused_updates();
        assert_eq!(
            refused,
            [
                "CaRegistration ServiceToken: CloudFormation does not allow changing a custom \
              resource's ServiceToken: the update will fail. A new provider needs a new resource \
              (a new logical id)"
            ]
        );
        let text = render_text(&d, false);
        assert!(
            text.starts_with(
                "!!! CHANGES CLOUDFORMATION WILL REFUSE !!!\n  !! CaRegistration ServiceToken"
            ),
            "{text}"
        );
        assert!(text.contains("    ServiceToken (update fails): "), "{text}");
        let md = render_markdown(&d, "dev");
        assert!(
            md.contains("**Changes CloudFormation will refuse**"),
            "{md}"
        );
        assert!(md.contains("**(update fails)**"), "{md}");
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["refusedUpdates"], json!(refused));
    }

    #[test]
    fn a_mode_change_of_the_same_ca_is_refused() {
        let deployed = ca(DEV_CA);
        let json = |t: &Value| t.to_string();
        let to_default = |t: &Value| with_ca_prop(t, "CertificateMode", json!("DEFAULT"));
        let err = check_ca_mode("dev", Some(&deployed), &json(&to_default(&deployed))).unwrap_err();
        assert_eq!(
            err,
            CaModeChange {
                stage: "dev".into(),
                logical_id: "CaRegistration".into(),
                certificate_id: Certificate::from_pem(DEV_CA).unwrap().aws_iot_id(),
                from: "SNI_ONLY".into(),
                to: "DEFAULT".into(),
            }
        );
        // Also with the PEM re-wrapped: the same CA by DER.
        let rewrapped = to_default(&ca(&rewrapped(DEV_CA)));
        assert!(check_ca_mode("dev", Some(&deployed), &json(&rewrapped)).is_err());
        // What can work: a new stack, the same mode, a new CA in the new mode.
        assert!(check_ca_mode("dev", None, &json(&to_default(&deployed))).is_ok());
        assert!(check_ca_mode("dev", Some(&deployed), &json(&deployed)).is_ok());
        let rotated = to_default(&ca(PROD_CA));
        assert!(check_ca_mode("dev", Some(&deployed), &json(&rotated)).is_ok());
        // The shipped dev template deploys over itself.
        assert!(check_ca_mode("dev", Some(&dev()), DEV).is_ok());
    }

    #[test]
    fn ca_registration_removed_is_fleet_breaking() {
        let d = diff(Some(&ca("PEM")), &template(json!({})), None);
        assert_eq!(d.resources[0].kind, ChangeKind::Removed);
        assert_eq!(d.resources[0].impact, Impact::Destroy);
        let fleet = d.fleet_breaking();
        assert_eq!(fleet.len(), 1);
        assert!(fleet[0].contains("REMOVED"), "{fleet:?}");
        assert_eq!(d.max_impact(), Some(Impact::Destroy));
    }

    #[test]
    fn change_set_replacement_overrides_the_table() {
        let mut old = template(
            json!({ "Q": { "Type": "AWS::SQS::Queue", "Properties": { "QueueName": "a", "VisibilityTimeout": 30 } } }),
        );
        let mut new = old.clone();
        new["Resources"]["Q"]["Properties"]["VisibilityTimeout"] = json!(60);
        let cs = |r: &str| {
            vec![ChangeSetChange {
                logical_id: "Q".into(),
                resource_type: "AWS::SQS::Queue".into(),
                action: "Modify".into(),
                replacement: Some(r.into()),
            }]
        };
        assert_eq!(
            diff(Some(&old), &new, None).resources[0].replacement,
            Replacement::No
        );
        let d = diff(Some(&old), &new, Some(&cs("True")));
        assert_eq!(
            (d.resources[0].replacement, d.resources[0].impact),
            (Replacement::Yes, Impact::Replace)
        );
        let d = diff(Some(&old), &new, Some(&cs("Conditional")));
        assert_eq!(d.resources[0].impact, Impact::MayReplace);
        // The table says replace; the change set says it does not.
        new["Resources"]["Q"]["Properties"]["QueueName"] = json!("b");
        let d = diff(Some(&old), &new, Some(&cs("False")));
        assert_eq!(d.resources[0].replacement, Replacement::No);
        assert!(d.resources[0]
            .properties
            .iter()
            .all(|p| !p.causes_replacement));
        // Unchanged templates, but the change set modifies (a parameter value changed).
        old = new.clone();
        let d = diff(Some(&old), &new, Some(&cs("True")));
        assert_eq!(d.resources.len(), 1);
        assert_eq!(d.resources[0].kind, ChangeKind::Modified);
        assert!(d.resources[0].properties.is_empty());
        assert_eq!(d.resources[0].impact, Impact::Replace);
    }

    #[test]
    fn change_set_cannot_lower_a_custom_resource_replacement() {
        let cs = vec![ChangeSetChange {
            logical_id: "CaRegistration".into(),
            resource_type: CA_RESOURCE_TYPE.into(),
            action: "Modify".into(),
            replacement: Some("False".into()),
        }];
        let d = diff(Some(&ca("OLD")), &ca("NEW"), Some(&cs));
        assert_eq!(d.resources[0].replacement, Replacement::Yes);
        assert!(!d.fleet_breaking().is_empty());
    }

    #[test]
    fn change_set_add_or_remove_for_unchanged_resource_is_reported() {
        let t = dev();
        let cs = vec![
            ChangeSetChange {
                logical_id: "ActivatorFailureQueue".into(),
                resource_type: "AWS::SQS::Queue".into(),
                action: "Add".into(),
                replacement: None,
            },
            ChangeSetChange {
                logical_id: "CaRegistration".into(),
                resource_type: CA_RESOURCE_TYPE.into(),
                action: "Remove".into(),
                replacement: None,
            },
            ChangeSetChange {
                logical_id: "Ghost".into(),
                resource_type: "AWS::SNS::Topic".into(),
                action: "Remove".into(),
                replacement: None,
            },
        ];
        let d = diff(Some(&t), &t, Some(&cs));
        let rows: Vec<_> = d
            .resources
            .iter()
            .map(|r| (r.logical_id.as_str(), r.kind, r.properties.len()))
            .collect();
        assert_eq!(
            rows,
            vec![
                ("CaRegistration", ChangeKind::Removed, 0),
                ("ActivatorFailureQueue", ChangeKind::Added, 0),
                ("Ghost", ChangeKind::Removed, 0),
            ]
        );
        assert_eq!(d.resources[0].resource_type, CA_RESOURCE_TYPE);
        assert!(!d.fleet_breaking().is_empty());
        assert!(d.security.is_empty());
    }

    #[test]
    fn nested_paths_and_attributes() {
        let old = dev();
        let mut new = old.clone();
        let rule = &mut new["Resources"]["RegistrationRule"];
        rule["Properties"]["TopicRulePayload"]["Sql"] = json!({ "Fn::Sub": "SELECT * FROM 'x'" });
        rule["Properties"]["TopicRulePayload"]["RuleDisabled"] = json!(true);
        rule["DependsOn"] = json!("ActivatorFunction");
        rule["DeletionPolicy"] = json!("Retain");
        new["Resources"]["ActivatorFunction"]["Properties"]["Environment"]["Variables"]
            ["JITR_CREATE_THING"] = json!("false");
        new["Resources"]["ActivatorFunction"]["Properties"]
            .as_object_mut()
            .unwrap()
            .remove("ReservedConcurrentExecutions");
        let d = diff(Some(&old), &new, None);
        let ids: Vec<_> = d.resources.iter().map(|r| r.logical_id.as_str()).collect();
        assert_eq!(ids, vec!["ActivatorFunction", "RegistrationRule"]);
        let f = &d.resources[0];
        let paths: Vec<_> = f.properties.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "Environment.Variables.JITR_CREATE_THING",
                "ReservedConcurrentExecutions"
            ]
        );
        assert_eq!(f.properties[1].new, None);
        assert_eq!(
            f.properties[1].old,
            Some(
                old["Resources"]["ActivatorFunction"]["Properties"]["ReservedConcurrentExecutions"]
                    .clone()
            )
        );
        let r = &d.resources[1];
        let paths: Vec<_> = r.properties.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "TopicRulePayload.Sql",
                "TopicRulePayload.RuleDisabled",
                "DependsOn",
                "DeletionPolicy"
            ]
        );
        assert!(r.properties.iter().all(|p| !p.causes_replacement));
        assert_eq!(r.impact, Impact::Update);
        assert!(d.security.is_empty());
        let text = render_text(&d, false);
        assert!(
            text.contains("    TopicRulePayload.RuleDisabled: false -> true"),
            "{text}"
        );
        assert!(
            text.contains("    DeletionPolicy: (none) -> \"Retain\""),
            "{text}"
        );
    }

    #[test]
    fn depends_on_is_a_set() {
        let with =
            |d: Value| template(json!({ "Q": { "Type": "AWS::SQS::Queue", "DependsOn": d } }));
        let same = |a: Value, b: Value| diff(Some(&with(a)), &with(b), None).is_empty();
        assert!(same(json!("A"), json!(["A"])));
        assert!(same(json!(["A", "B"]), json!(["B", "A"])));
        assert!(!same(json!(["A"]), json!(["A", "B"])));
    }

    #[test]
    fn rule_rename_replaces_and_type_change_replaces() {
        let old = dev();
        let mut new = old.clone();
        new["Resources"]["RegistrationRule"]["Properties"]["RuleName"] = json!("other");
        new["Resources"]["ActivatorFailureQueue"]["Type"] = json!("AWS::SNS::Topic");
        let d = diff(Some(&old), &new, None);
        let q = d
            .resources
            .iter()
            .find(|r| r.logical_id == "ActivatorFailureQueue")
            .unwrap();
        assert_eq!(q.properties[0].path, "Type");
        assert_eq!(q.replacement, Replacement::Yes);
        let rule = d
            .resources
            .iter()
            .find(|r| r.logical_id == "RegistrationRule")
            .unwrap();
        assert_eq!(rule.impact, Impact::Replace);
    }

    #[test]
    fn unknown_type_name_property_may_replace() {
        let old = template(
            json!({ "T": { "Type": "AWS::SNS::Topic", "Properties": { "TopicName": "a", "DisplayName": "x", "Other": 1 } } }),
        );
        let mut new = old.clone();
        new["Resources"]["T"]["Properties"]["Other"] = json!(2);
        assert_eq!(
            diff(Some(&old), &new, None).resources[0].replacement,
            Replacement::No
        );
        new["Resources"]["T"]["Properties"]["TopicName"] = json!("b");
        let d = diff(Some(&old), &new, None);
        assert_eq!(
            (d.resources[0].replacement, d.resources[0].impact),
            (Replacement::Conditional, Impact::MayReplace)
        );
        assert!(render_text(&d, false).contains("[~] AWS::SNS::Topic T (may replace)"));
    }

    #[test]
    fn removed_resources_come_last_in_deployed_order() {
        let old = template(json!({
            "A": { "Type": "AWS::SQS::Queue" },
            "Gone1": { "Type": "AWS::SQS::Queue" },
            "B": { "Type": "AWS::SQS::Queue", "Properties": { "DelaySeconds": 1 } },
            "Gone2": { "Type": "AWS::SQS::Queue" }
        }));
        let new = template(json!({
            "New": { "Type": "AWS::SQS::Queue" },
            "B": { "Type": "AWS::SQS::Queue", "Properties": { "DelaySeconds": 2 } },
            "A": { "Type": "AWS::SQS::Queue" }
        }));
        let d = diff(Some(&old), &new, None);
        let rows: Vec<_> = d
            .resources
            .iter()
            .map(|r| (r.logical_id.as_str(), r.kind))
            .collect();
        assert_eq!(
            rows,
            vec![
                ("New", ChangeKind::Added),
                ("B", ChangeKind::Modified),
                ("Gone1", ChangeKind::Removed),
                ("Gone2", ChangeKind::Removed)
            ]
        );
        assert_eq!(d.max_impact(), Some(Impact::Destroy));
    }

    #[test]
    fn parameters_and_outputs() {
        let mut old = dev();
        old["Parameters"] = json!({ "Old": { "Type": "String" }, "Same": { "Type": "String" } });
        let mut new = dev();
        new["Parameters"] =
            json!({ "Same": { "Type": "String" }, "New": { "Type": "String", "NoEcho": true } });
        new["Outputs"]["CaCertificateId"]["Description"] = json!("changed");
        new["Outputs"]
            .as_object_mut()
            .unwrap()
            .remove("DevicePolicyName");
        let d = diff(Some(&old), &new, None);
        let params: Vec<_> = d
            .parameters
            .iter()
            .map(|p| (p.name.as_str(), p.kind))
            .collect();
        assert_eq!(
            params,
            vec![("New", ChangeKind::Added), ("Old", ChangeKind::Removed)]
        );
        let outs: Vec<_> = d
            .outputs
            .iter()
            .map(|p| (p.name.as_str(), p.kind))
            .collect();
        assert_eq!(
            outs,
            vec![
                ("CaCertificateId", ChangeKind::Modified),
                ("DevicePolicyName", ChangeKind::Removed)
            ]
        );
        assert!(d.resources.is_empty());
        assert!(!d.is_empty());
        let text = render_text(&d, false);
        assert!(
            text.contains("Parameters\n[+] New: {\"Type\":\"String\",\"NoEcho\":true}"),
            "{text}"
        );
        assert!(text.contains("Outputs\n[~] CaCertificateId: "), "{text}");
    }

    #[test]
    fn text_colour_only_when_asked() {
        let mut new = dev();
        new["Resources"]["CaRegistration"]["Properties"]["CertificateMode"] = json!("DEFAULT");
        new["Resources"]["DevicePolicy"]["Properties"]["PolicyDocument"]["Statement"][1]
            ["Action"] = json!("iot:*");
        let d = diff(Some(&dev()), &new, None);
        let plain = render_text(&d, false);
        assert!(!has_ansi(&plain), "{plain}");
        for needle in [
            "!!! FLEET-BREAKING",
            "Security changes (broadens permissions)",
            "+ device policy statement DevicePolicy: Allow iot:* on arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:topic/devices/${!iot:Connection.Thing.ThingName}/* [OwnTopics]",
            "- device policy statement DevicePolicy: Allow iot:Publish, iot:Receive on",
            "Resources (1 to update, 1 to replace)",
            "[~] Custom::JitrCaRegistration CaRegistration (replace)",
            "CertificateMode (replace): \"SNI_ONLY\" -> \"DEFAULT\"",
            "[~] AWS::IoT::Policy DevicePolicy\n",
        ] {
            assert!(plain.contains(needle), "missing {needle:?} in\n{plain}");
        }
        let fleet_at = plain.find("FLEET-BREAKING").unwrap();
        assert!(fleet_at < plain.find("Security changes").unwrap());
        assert!(plain.find("Security changes").unwrap() < plain.find("Resources").unwrap());
        let coloured = render_text(&d, true);
        assert!(has_ansi(&coloured));
        assert!(coloured.contains("\x1b[1;31m"));
    }

    #[test]
    fn long_values_are_truncated_in_the_middle() {
        let mut new = dev();
        let pem = "A".repeat(100) + &"B".repeat(100);
        new["Resources"]["CaRegistration"]["Properties"]["CaCertificatePem"] = json!(pem);
        let d = diff(Some(&dev()), &new, None);
        let text = render_text(&d, false);
        let line = text
            .lines()
            .find(|l| l.starts_with("    CaCertificatePem"))
            .unwrap();
        let new_part = line.split(" -> ").nth(1).unwrap();
        assert!(new_part.chars().count() <= MAX_VALUE_CHARS, "{new_part}");
        assert!(
            new_part.starts_with("\"AAAA") && new_part.ends_with("BBB\"") && new_part.contains('…')
        );
        assert_eq!(truncate_middle("short", 120), "short");
        assert_eq!(truncate_middle("abcdefghij", 5), "ab…ij");
    }

    #[test]
    fn long_values_differing_in_the_middle_show_the_difference() {
        let old = dev();
        let mut new = dev();
        new["Resources"]["DevicePolicy"]["Properties"]["PolicyDocument"]["Statement"][1]
            ["Action"] = json!("iot:*");
        let d = diff(Some(&old), &new, None);
        let text = render_text(&d, false);
        let line = text
            .lines()
            .find(|l| l.starts_with("    PolicyDocument.Statement"))
            .unwrap();
        let (o, n) = line.split_once(": ").unwrap().1.split_once(" -> ").unwrap();
        assert_ne!(o, n);
        assert!(o.contains("iot:Publish"), "{o}");
        assert!(n.contains("iot:*"), "{n}");
        assert!(o.chars().count() <= MAX_VALUE_CHARS + 2, "{o}");
        // Short values are shown whole.
        let (o, n) = show_pair(Some(&json!(1)), Some(&json!(2)));
        assert_eq!((o.as_str(), n.as_str()), ("1", "2"));
        // A long value against a short one.
        let long = json!("x".repeat(300));
        let (o, n) = show_pair(Some(&long), Some(&json!("y")));
        assert!(
            o.chars().count() <= MAX_VALUE_CHARS + 2 && o.contains('…'),
            "{o}"
        );
        assert_eq!(n, "\"y\"");
    }

    #[test]
    fn markdown_warns_about_fleet_breaking_and_security() {
        let d = diff(Some(&ca("OLD")), &ca("NEW"), None);
        let md = render_markdown(&d, "Stack jitr-dev");
        assert!(md.starts_with("### Stack jitr-dev\n"));
        assert!(md.contains("> [!CAUTION]"), "{md}");
        assert!(md.contains("FLEET-BREAKING"));
        assert!(
            md.contains(
                "| `[~]` | `CaRegistration` | `Custom::JitrCaRegistration` | **replace** |"
            ),
            "{md}"
        );
        assert!(!has_ansi(&md));

        let d = diff(None, &dev(), None);
        let md = render_markdown(&d, "dev");
        assert!(md.contains("**New stack:**"));
        assert!(md.contains("> [!WARNING]"));
        assert!(md.contains("#### Security changes"));
        assert!(!md.contains("[!CAUTION]"));
        // Every table row has the same number of cells as its header (no stray `|`).
        for line in md.lines().filter(|l| l.starts_with("| ➕")) {
            assert_eq!(line.replace("\\|", "").matches('|').count(), 5, "{line}");
        }
    }

    #[test]
    fn markdown_code_spans_escape_pipes_and_backticks() {
        assert_eq!(code("a|b"), "`a\\|b`");
        assert_eq!(code("x `y` z"), "``x `y` z``");
        assert_eq!(code("`edge"), "`` `edge ``");
    }

    #[test]
    fn json_is_camel_case_and_carries_the_verdicts() {
        let d = diff(Some(&ca("OLD")), &ca("NEW"), None);
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["newStack"], json!(false));
        assert_eq!(v["maxImpact"], json!("replace"));
        assert_eq!(v["broadensSecurity"], json!(false));
        assert_eq!(v["fleetBreaking"].as_array().unwrap().len(), 1);
        let r = &v["resources"][0];
        assert_eq!(r["logicalId"], json!("CaRegistration"));
        assert_eq!(r["resourceType"], json!(CA_RESOURCE_TYPE));
        assert_eq!(r["kind"], json!("modified"));
        assert_eq!(r["replacement"], json!("yes"));
        assert_eq!(r["properties"][0]["causesReplacement"], json!(true));
        let d = diff(None, &permission(json!("arn")), None);
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["security"][0]["kind"], json!("lambdaPermission"));
        assert_eq!(v["security"][0]["change"], json!("added"));
        assert_eq!(v["maxImpact"], json!("create"));
    }

    #[test]
    fn may_replace_ordering() {
        assert!(Impact::Update < Impact::Create);
        assert!(Impact::Create < Impact::MayReplace);
        assert!(Impact::MayReplace < Impact::Replace);
        assert!(Impact::Replace < Impact::Destroy);
    }

    #[test]
    fn policy_document_as_json_text_is_read() {
        let doc = json!({ "Statement": [{ "Effect": "Allow", "Action": "iot:Connect", "Resource": "*" }] });
        let as_object = template(
            json!({ "P": { "Type": "AWS::IoT::Policy", "Properties": { "PolicyDocument": doc } } }),
        );
        let as_text = template(
            json!({ "P": { "Type": "AWS::IoT::Policy", "Properties": { "PolicyDocument": doc.to_string() } } }),
        );
        let d = diff(Some(&as_object), &as_text, None);
        assert!(d.security.is_empty(), "{:?}", d.security);
        assert_eq!(diff(None, &as_text, None).security.len(), 1);
    }
}
