//! Comparing JSON values leaf by leaf: objects by key, lists of objects element by element
//! (statements by `Sid`, inline policies by `PolicyName`, else by position), lists of plain
//! values as sets, and a JSON document written as text (or as `Fn::Sub` text, the form a
//! policy with variables takes) as the document it is.

use serde_json::{Map, Value};
use std::borrow::Cow;

/// One difference: where, the old and new value (absent: `None`), and whether they are one
/// member of a list compared as a set.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Leaf {
    pub path: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
    pub member: bool,
}

/// `{"Ref": ..}` or `{"Fn::...": ..}`: compared and reported as one value.
pub(crate) fn is_intrinsic(m: &Map<String, Value>) -> bool {
    m.len() == 1
        && m.keys()
            .next()
            .is_some_and(|k| k == "Ref" || k.starts_with("Fn::"))
}

fn is_plain_object(v: &Value) -> bool {
    matches!(v, Value::Object(m) if !is_intrinsic(m))
}

pub(crate) fn join_path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// `A.B[1].C` as `["A", "B", "1", "C"]`.
pub(crate) fn path_segments(path: &str) -> Vec<String> {
    path.split(['.', '['])
        .map(|s| s.trim_end_matches(']').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A JSON document written as text, or as the text of an `Fn::Sub` without variables (its
/// `${!x}` escapes read as the `${x}` the author meant), as the document; anything else as
/// is.
pub(crate) fn document_view(v: &Value) -> Cow<'_, Value> {
    let parse = |text: &str| -> Option<Value> {
        if !text.trim_start().starts_with('{') {
            return None;
        }
        serde_json::from_str::<Value>(text)
            .ok()
            .filter(Value::is_object)
    };
    match v {
        Value::String(text) => parse(text).map_or(Cow::Borrowed(v), Cow::Owned),
        Value::Object(m) if is_intrinsic(m) => match m.get("Fn::Sub") {
            Some(Value::String(text)) => parse(text)
                .map(|doc| Cow::Owned(unescape_sub(&doc)))
                .unwrap_or(Cow::Borrowed(v)),
            _ => Cow::Borrowed(v),
        },
        _ => Cow::Borrowed(v),
    }
}

/// Strings of a document taken from `Fn::Sub` text: `${!x}` (Sub's escape) back to `${x}`.
fn unescape_sub(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace("${!", "${")),
        Value::Array(a) => Value::Array(a.iter().map(unescape_sub).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), unescape_sub(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Leaf differences between two values. Keys in `new`'s order, then keys only in `old` in
/// `old`'s order. What cannot be told apart more finely is one whole-value leaf.
pub(crate) fn diff_values(
    path: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    out: &mut Vec<Leaf>,
) {
    if old == new {
        return;
    }
    let whole = |out: &mut Vec<Leaf>| {
        out.push(Leaf {
            path: path.to_string(),
            old: old.cloned(),
            new: new.cloned(),
            member: false,
        })
    };
    let (Some(o), Some(n)) = (old, new) else {
        return whole(out);
    };
    let (o, n) = (document_view(o), document_view(n));
    let before = out.len();
    match (o.as_ref(), n.as_ref()) {
        (Value::Object(om), Value::Object(nm)) if !is_intrinsic(om) && !is_intrinsic(nm) => {
            for (k, nv) in nm {
                diff_values(&join_path(path, k), om.get(k), Some(nv), out);
            }
            for (k, ov) in om {
                if !nm.contains_key(k) {
                    diff_values(&join_path(path, k), Some(ov), None, out);
                }
            }
        }
        (ov, nv) if ov.is_array() || nv.is_array() => diff_lists(path, ov, nv, out),
        _ => {}
    }
    if out.len() == before {
        // Different only in spelling (a document as text vs as an object), in order, or
        // in a way no finer leaf shows: the whole value.
        whole(out);
    }
}

/// A value as a list: a list, or one value standing for a one-element list.
fn as_list(v: &Value) -> Cow<'_, [Value]> {
    match v {
        Value::Array(a) => Cow::Borrowed(a.as_slice()),
        other => Cow::Owned(vec![other.clone()]),
    }
}

fn diff_lists(path: &str, old: &Value, new: &Value, out: &mut Vec<Leaf>) {
    let (ol, nl) = (as_list(old), as_list(new));
    let scalars = |l: &[Value]| l.iter().all(|v| !v.is_array() && !is_plain_object(v));
    let objects = |l: &[Value]| l.iter().all(is_plain_object);
    if scalars(&ol) && scalars(&nl) {
        let member = |v: &Value, added: bool| Leaf {
            path: path.to_string(),
            old: (!added).then(|| v.clone()),
            new: added.then(|| v.clone()),
            member: true,
        };
        out.extend(
            ol.iter()
                .filter(|v| !nl.contains(v))
                .map(|v| member(v, false)),
        );
        out.extend(
            nl.iter()
                .filter(|v| !ol.contains(v))
                .map(|v| member(v, true)),
        );
    } else if objects(&ol) && objects(&nl) && old.is_array() && new.is_array() {
        diff_object_lists(path, &ol, &nl, out);
    }
}

/// Lists of objects: paired by `Sid` or `PolicyName` when every element has one, else by
/// position; an unpaired element is a member added or removed.
fn diff_object_lists(path: &str, old: &[Value], new: &[Value], out: &mut Vec<Leaf>) {
    let key = ["Sid", "PolicyName"].into_iter().find(|k| {
        old.iter()
            .chain(new)
            .all(|v| v.get(*k).is_some_and(Value::is_string))
    });
    let partner = |v: &Value, i: usize, other: &[Value]| -> Option<usize> {
        match key {
            Some(k) => other.iter().position(|o| o.get(k) == v.get(k)),
            None => (i < other.len()).then_some(i),
        }
    };
    let at = |i: usize| format!("{path}[{i}]");
    for (i, n) in new.iter().enumerate() {
        match partner(n, i, old) {
            Some(j) => diff_values(&at(i), Some(&old[j]), Some(n), out),
            None => out.push(Leaf {
                path: at(i),
                old: None,
                new: Some(n.clone()),
                member: true,
            }),
        }
    }
    for (j, o) in old.iter().enumerate() {
        if partner(o, j, new).is_none() {
            out.push(Leaf {
                path: at(j),
                old: Some(o.clone()),
                new: None,
                member: true,
            });
        }
    }
}

/// Every logical id a value refers to: `Ref` (not a pseudo parameter), `Fn::GetAtt` (list or
/// `Id.Att` form) and `${Id}` / `${Id.Att}` in `Fn::Sub` text (not `${!Literal}`, not
/// `${AWS::...}`, not the Sub's own variables).
pub(crate) fn references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if is_intrinsic(m) => {
            let (k, inner) = m.iter().next().expect("one entry");
            match (k.as_str(), inner) {
                ("Ref", Value::String(id)) if !id.contains("::") => out.push(id.clone()),
                ("Fn::GetAtt", Value::Array(a)) => {
                    out.extend(a.first().and_then(Value::as_str).map(str::to_string))
                }
                ("Fn::GetAtt", Value::String(s)) => {
                    out.push(s.split('.').next().unwrap_or(s).to_string())
                }
                ("Fn::Sub", Value::String(text)) => sub_references(text, &Map::new(), out),
                ("Fn::Sub", Value::Array(a)) => {
                    let empty = Map::new();
                    let vars = a.get(1).and_then(Value::as_object).unwrap_or(&empty);
                    if let Some(text) = a.first().and_then(Value::as_str) {
                        sub_references(text, vars, out);
                    }
                    vars.values().for_each(|v| references(v, out));
                }
                _ => references(inner, out),
            }
        }
        Value::Object(m) => m.values().for_each(|v| references(v, out)),
        Value::Array(a) => a.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

fn sub_references(text: &str, vars: &Map<String, Value>, out: &mut Vec<String>) {
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let name = &after[..end];
        if !name.starts_with('!') && !name.contains("::") && !vars.contains_key(name) {
            out.push(name.split('.').next().unwrap_or(name).to_string());
        }
        rest = &after[end + 1..];
    }
}
