//! The security view: IAM statements, trust statements, device policy statements and Lambda
//! permissions of both templates, normalized and compared as multisets.

use super::compute::{entries, section, type_of};
use super::values::{document_view, is_intrinsic};
use super::{ChangeKind, SecurityChange, SecurityKind};
use serde_json::{json, Map, Value};

pub(crate) struct SecurityItem {
    kind: SecurityKind,
    resource: String,
    /// Identity: canonical JSON of the normalized statement (and its policy).
    key: String,
    detail: Value,
}

/// JSON with object keys sorted at every level, as a string.
pub(crate) fn canonical(v: &Value) -> String {
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

/// The statements of a policy document (an object, JSON text, or `Fn::Sub` JSON text), one
/// or a list.
fn statements(document: Option<&Value>) -> Vec<Value> {
    let Some(doc) = document.map(document_view) else {
        return Vec::new();
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
pub(crate) fn compare_security(
    deployed: Option<&Value>,
    synthesized: &Value,
) -> Vec<SecurityChange> {
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
