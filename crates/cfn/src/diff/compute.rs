//! The resource, parameter and output views: templates (and a change set) in, changes out.

use super::replace::{impact_of, is_custom, propagate, update_refused, Rules};
use super::security::compare_security;
use super::values::{diff_values, Leaf};
use super::{
    ChangeKind, ChangeSetChange, NamedChange, PropertyChange, Replacement, ResourceDiff, StackDiff,
};
use serde_json::{Map, Value};

/// Compares the deployed template (`None`: the stack does not exist) with the synthesized
/// one. Replacement comes from CloudFormation's create-only property lists and, for custom
/// types, from `rules`; it then spreads through references. A change set, when given,
/// decides replacement (except that it cannot lower a custom resource's: only its provider
/// knows; for a custom type with a rule, the rule decides) and adds the resources it changes
/// that the templates show unchanged (e.g. through a parameter value).
pub fn diff(
    deployed: Option<&Value>,
    synthesized: &Value,
    change_set: Option<&[ChangeSetChange]>,
    rules: Rules<'_>,
) -> StackDiff {
    let old_res = section(deployed, "Resources");
    let new_res = section(Some(synthesized), "Resources");
    let cs = change_set.unwrap_or(&[]);
    let cs_for = |id: &str| cs.iter().find(|c| c.logical_id == id);

    let mut resources = Vec::new();
    for (id, new) in entries(new_res) {
        match old_res.and_then(|o| o.get(id)) {
            Some(old) => resources.extend(modified(rules, id, old, new, cs_for(id))),
            None => resources.push(unpaired(id, new, ChangeKind::Added)),
        }
    }
    for (id, old) in entries(old_res) {
        if !new_res.is_some_and(|n| n.contains_key(id)) {
            resources.push(unpaired(id, old, ChangeKind::Removed));
        }
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
    if deployed.is_some() {
        propagate(&mut resources, new_res);
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

/// A resource in only one of the templates.
fn unpaired(id: &str, resource: &Value, kind: ChangeKind) -> ResourceDiff {
    ResourceDiff {
        logical_id: id.to_string(),
        resource_type: type_of(resource).to_string(),
        kind,
        properties: Vec::new(),
        replacement: Replacement::No,
        impact: impact_of(kind, Replacement::No),
        replaced_because: None,
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
pub(crate) fn section<'a>(
    template: Option<&'a Value>,
    name: &str,
) -> Option<&'a Map<String, Value>> {
    template?.get(name)?.as_object()
}

pub(crate) fn entries(m: Option<&Map<String, Value>>) -> impl Iterator<Item = (&String, &Value)> {
    m.into_iter().flat_map(|m| m.iter())
}

pub(crate) fn type_of(resource: &Value) -> &str {
    resource.get("Type").and_then(Value::as_str).unwrap_or("")
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

/// `DependsOn` as a sorted set: a string or a list, order irrelevant.
fn depends_on_set(v: Option<&Value>) -> Vec<String> {
    let id = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
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

fn change(
    leaf: Leaf,
    causes_replacement: bool,
    update_fails: Option<&'static str>,
) -> PropertyChange {
    PropertyChange {
        path: leaf.path,
        old: leaf.old,
        new: leaf.new,
        causes_replacement,
        member: leaf.member,
        update_fails,
    }
}

/// Property and attribute changes of a resource present in both templates.
fn compare_resource(rules: Rules<'_>, old: &Value, new: &Value) -> Vec<PropertyChange> {
    let new_type = type_of(new);
    let mut changes = Vec::new();
    if type_of(old) != new_type {
        changes.push(PropertyChange {
            path: "Type".into(),
            old: old.get("Type").cloned(),
            new: new.get("Type").cloned(),
            causes_replacement: true,
            member: false,
            update_fails: None,
        });
    }
    let props = |r: &Value| r.get("Properties").and_then(Value::as_object).cloned();
    let (op, np) = (
        props(old).unwrap_or_default(),
        props(new).unwrap_or_default(),
    );
    let mut leaves = Vec::new();
    for (k, nv) in &np {
        diff_values(k, op.get(k), Some(nv), &mut leaves);
    }
    for (k, ov) in &op {
        if !np.contains_key(k) {
            diff_values(k, Some(ov), None, &mut leaves);
        }
    }
    for leaf in leaves {
        let top = leaf.path.split(['.', '[']).next().unwrap_or("").to_string();
        let replaces = rules.property_replacement(new_type, &leaf.path, old, new);
        changes.push(change(
            leaf,
            replaces != Replacement::No,
            update_refused(new_type, &top),
        ));
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
                    member: false,
                    update_fails: None,
                });
            }
            continue;
        }
        let mut leaves = Vec::new();
        diff_values(key, o, n, &mut leaves);
        changes.extend(leaves.into_iter().map(|leaf| change(leaf, false, None)));
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
        let (kind, old) = match old.and_then(|o| o.get(name)) {
            None => (ChangeKind::Added, None),
            Some(ov) if ov != nv => (ChangeKind::Modified, Some(ov.clone())),
            Some(_) => continue,
        };
        out.push(NamedChange {
            name: name.clone(),
            kind,
            old,
            new: Some(nv.clone()),
        });
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
        replaced_because: None,
    })
}

/// A resource in both templates: its property changes and whether it is replaced, or,
/// unchanged in the templates, what the change set says (e.g. a parameter value changed).
fn modified(
    rules: Rules<'_>,
    id: &str,
    old: &Value,
    new: &Value,
    from_cs: Option<&ChangeSetChange>,
) -> Option<ResourceDiff> {
    let resource_type = type_of(new).to_string();
    let rule = rules.custom_rule(&resource_type);
    let mut properties = compare_resource(rules, old, new);
    if properties.is_empty() {
        let c = from_cs?;
        return from_change_set(c, resource_type, || match rule {
            // The provider's rule, over identical templates.
            Some(rule) => rules.custom_replacement(rule, old, new),
            None => change_set_replacement(c).unwrap_or(Replacement::No),
        });
    }
    let table = properties
        .iter()
        .filter(|p| p.causes_replacement)
        .map(|p| {
            if p.path == "Type" {
                Replacement::Yes
            } else {
                rules.property_replacement(&resource_type, &p.path, old, new)
            }
        })
        .max()
        .unwrap_or(Replacement::No);
    let replacement = match from_cs.and_then(change_set_replacement) {
        // The provider's rule is known exactly; CloudFormation's guess is not better.
        Some(_) if rule.is_some() => table,
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
        replaced_because: None,
    })
}
