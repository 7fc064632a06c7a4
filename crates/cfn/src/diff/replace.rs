//! Whether a change replaces a resource: CloudFormation's create-only property lists for the
//! AWS types (vendored from the resource provider schemas, `data/create-only.json`, written
//! by `scripts/gen-create-only`), the caller's rules for custom resource types (only a
//! provider knows when it answers with a new physical id), and replacement spreading through
//! references, as CDK's cloudformation-diff does.

use super::values::{path_segments, references};
use super::{ChangeKind, Impact, ReplacedBecause, Replacement, ResourceDiff};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The create-only property lists (JSON pointers, `/properties/Name`) by resource type.
const CREATE_ONLY_JSON: &str = include_str!("../../data/create-only.json");

fn create_only_table() -> &'static BTreeMap<String, Vec<String>> {
    static TABLE: OnceLock<BTreeMap<String, Vec<String>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        serde_json::from_str(CREATE_ONLY_JSON).expect("data/create-only.json is valid")
    })
}

/// The create-only properties of `resource_type` as CloudFormation's resource provider
/// schema lists them (JSON pointers), if the type is one the vendored data covers.
pub fn create_only_properties(resource_type: &str) -> Option<&'static [String]> {
    create_only_table().get(resource_type).map(Vec::as_slice)
}

/// A custom resource type's replacement rule, given by the caller: the one its provider
/// applies (the core cannot know it, and must not depend on what the provider needs).
#[derive(Clone, Copy)]
pub struct CustomRule {
    pub resource_type: &'static str,
    /// The properties the provider's rule reads; any other property updates in place.
    pub identity: &'static [&'static str],
    /// Whether the provider makes a new resource, given the `identity` properties' old and
    /// new values (in `identity`'s order). Called only when every one is a literal string;
    /// a value known only at deploy time (an intrinsic function) may or may not replace.
    pub replaces: fn(old: &[&str], new: &[&str]) -> bool,
}

impl std::fmt::Debug for CustomRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomRule")
            .field("resource_type", &self.resource_type)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// What the diff knows besides CloudFormation's data: the custom resources' rules.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules<'a> {
    pub custom: &'a [CustomRule],
}

impl<'a> Rules<'a> {
    pub(crate) fn custom_rule(&self, resource_type: &str) -> Option<&'a CustomRule> {
        self.custom
            .iter()
            .find(|r| r.resource_type == resource_type)
    }

    /// A custom resource with a rule: its replacement from old and new resources.
    pub(crate) fn custom_replacement(
        &self,
        rule: &CustomRule,
        old: &Value,
        new: &Value,
    ) -> Replacement {
        let literals = |r: &Value| -> Option<Vec<String>> {
            let props = r.get("Properties")?;
            rule.identity
                .iter()
                .map(|name| props.get(*name)?.as_str().map(str::to_string))
                .collect()
        };
        match (literals(old), literals(new)) {
            (Some(o), Some(n)) => {
                let (o, n): (Vec<&str>, Vec<&str>) = (
                    o.iter().map(String::as_str).collect(),
                    n.iter().map(String::as_str).collect(),
                );
                if o == n || !(rule.replaces)(&o, &n) {
                    Replacement::No
                } else {
                    Replacement::Yes
                }
            }
            _ => Replacement::Conditional,
        }
    }

    /// Whether changing `path` (below `Properties`) of a resource from `old` to `new`
    /// replaces it.
    pub(crate) fn property_replacement(
        &self,
        resource_type: &str,
        path: &str,
        old: &Value,
        new: &Value,
    ) -> Replacement {
        if let Some(rule) = self.custom_rule(resource_type) {
            let top = path_segments(path).into_iter().next().unwrap_or_default();
            return if rule.identity.contains(&top.as_str()) {
                self.custom_replacement(rule, old, new)
            } else {
                Replacement::No
            };
        }
        match is_create_only(resource_type, path) {
            Some(true) => Replacement::Yes,
            Some(false) => Replacement::No,
            // A type we have no data for: a name property is the usual create-only one.
            None if path_segments(path)
                .first()
                .is_some_and(|p| p.ends_with("Name")) =>
            {
                Replacement::Conditional
            }
            None => Replacement::No,
        }
    }
}

/// Whether `path` (`A.B[0].C`, below `Properties`) is, is inside, or contains a create-only
/// property of `resource_type`; `None` when the type is not in the data.
pub(crate) fn is_create_only(resource_type: &str, path: &str) -> Option<bool> {
    let pointers = create_only_properties(resource_type)?;
    let segments = path_segments(path);
    Some(pointers.iter().any(|p| {
        let pointer: Vec<&str> = p.trim_start_matches("/properties/").split('/').collect();
        pointer
            .iter()
            .zip(&segments)
            .all(|(p, s)| *p == "*" || *p == s)
    }))
}

/// Why CloudFormation refuses to change `property` in place or by replacement, if it does.
pub(crate) fn update_refused(resource_type: &str, property: &str) -> Option<&'static str> {
    // AWS::CloudFormation::CustomResource, ServiceToken: "Updates aren't supported"; the
    // update fails ("Modifying service token is not allowed").
    (is_custom(resource_type) && property == "ServiceToken").then_some(
        "CloudFormation does not allow changing a custom resource's ServiceToken: the update \
         will fail. A new provider needs a new resource (a new logical id)",
    )
}

/// Custom resources are replaced when their provider answers with a new physical id, which
/// CloudFormation cannot know when it makes a change set.
pub(crate) fn is_custom(resource_type: &str) -> bool {
    resource_type.starts_with("Custom::") || resource_type == "AWS::CloudFormation::CustomResource"
}

pub(crate) fn impact_of(kind: ChangeKind, replacement: Replacement) -> Impact {
    match (kind, replacement) {
        (ChangeKind::Added, _) => Impact::Create,
        (ChangeKind::Removed, _) => Impact::Destroy,
        (ChangeKind::Modified, Replacement::Yes) => Impact::Replace,
        (ChangeKind::Modified, Replacement::Conditional) => Impact::MayReplace,
        (ChangeKind::Modified, Replacement::No) => Impact::Update,
    }
}

/// Replacement through references (CDK's `propagateReplacedReferences`): a replaced
/// resource gets a new physical id (and attributes), so a resource of the synthesized
/// template whose create-only property refers to it is replaced too, transitively. Each
/// resource's replacement only rises, so cycles end.
pub(crate) fn propagate(
    resources: &mut Vec<ResourceDiff>,
    synthesized: Option<&Map<String, Value>>,
) {
    let Some(synthesized) = synthesized else {
        return;
    };
    let rank = |id: &str| {
        synthesized
            .keys()
            .position(|k| k == id)
            .unwrap_or(usize::MAX)
    };
    let mut queue: Vec<String> = resources
        .iter()
        .filter(|r| r.kind == ChangeKind::Modified && r.replacement != Replacement::No)
        .map(|r| r.logical_id.clone())
        .collect();
    while let Some(source) = queue.pop() {
        let Some(level) = resources
            .iter()
            .find(|r| r.logical_id == source)
            .map(|r| r.replacement)
        else {
            continue;
        };
        for (id, res) in synthesized {
            let resource_type = res.get("Type").and_then(Value::as_str).unwrap_or("");
            let Some(property) = create_only_reference(resource_type, res, &source) else {
                continue;
            };
            let because = ReplacedBecause {
                property,
                refers_to: source.clone(),
            };
            match resources.iter_mut().find(|r| &r.logical_id == id) {
                Some(r) if r.kind != ChangeKind::Modified => {}
                Some(r) if r.replacement >= level => {
                    if r.properties.is_empty() && r.replaced_because.is_none() {
                        r.replaced_because = Some(because);
                    }
                }
                Some(r) => {
                    r.replacement = level;
                    r.impact = impact_of(ChangeKind::Modified, level);
                    r.replaced_because = Some(because);
                    queue.push(id.clone());
                }
                None => {
                    let at = resources
                        .iter()
                        .position(|r| rank(&r.logical_id) > rank(id))
                        .unwrap_or(resources.len());
                    resources.insert(
                        at,
                        ResourceDiff {
                            logical_id: id.clone(),
                            resource_type: resource_type.to_string(),
                            kind: ChangeKind::Modified,
                            properties: Vec::new(),
                            replacement: level,
                            impact: impact_of(ChangeKind::Modified, level),
                            replaced_because: Some(because),
                        },
                    );
                    queue.push(id.clone());
                }
            }
        }
    }
}

/// The first create-only property of `resource` whose value refers to `target`.
fn create_only_reference(resource_type: &str, resource: &Value, target: &str) -> Option<String> {
    let props = resource.get("Properties")?.as_object()?;
    props.iter().find_map(|(name, value)| {
        let mut refs = Vec::new();
        references(value, &mut refs);
        (refs.iter().any(|r| r == target) && is_create_only(resource_type, name) == Some(true))
            .then(|| name.clone())
    })
}
