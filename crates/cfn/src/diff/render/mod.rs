//! Rendering: one walk over the diff's sections ([`walk`]) decides what is said, in
//! what order, and how each value reads; a [`Format`] lays it out, as terminal text
//! ([`text`]) or as GitHub step summary markdown ([`markdown`]). `--json` is the diff's own
//! `Serialize` (its shape is documented on the `diff` module).
//!
//! The security view is never shortened: it is the one place a reviewer must see every
//! action, resource and condition. Long values in the resource view are shortened around
//! where they differ.

mod grouped;
mod markdown;
mod text;

pub use grouped::{render_grouped_markdown, render_grouped_text};
#[cfg(test)]
pub(super) use markdown::code;
pub use markdown::render_markdown;
pub use text::render_text;

use super::values::{diff_values, is_intrinsic};
use super::SecurityKind;
use super::{
    ChangeKind, Impact, NamedChange, Replacement, ResourceDiff, SecurityChange, StackDiff,
};
use serde_json::Value;
use std::fmt::Write as _;

/// The banners above everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Alert {
    FleetBreaking,
    Refused,
}

pub(super) struct SecurityRow {
    pub change: ChangeKind,
    pub kind: &'static str,
    pub place: String,
    pub what: String,
}

/// What a changed value does.
pub(super) enum Body {
    /// `old -> new`.
    Change(String, String),
    /// One member of a set added (`true`) or removed.
    Member(bool, String),
    /// Why, in words.
    Note(String),
}

/// One line under a resource or an output.
pub(super) struct Line {
    pub path: String,
    /// `(replace)`, `(may replace)` or `(update fails)`.
    pub mark: Option<&'static str>,
    pub body: Body,
}

pub(super) struct ResourceRow<'a> {
    pub r: &'a ResourceDiff,
    pub lines: Vec<Line>,
}

pub(super) struct NamedRow {
    pub kind: ChangeKind,
    pub name: String,
    /// `": "` (parameters) or `" = "` (outputs: `Name = GetAtt Resource.Attribute`).
    pub sep: &'static str,
    pub old: Option<String>,
    pub new: Option<String>,
    pub lines: Vec<Line>,
}

/// How one output format lays out the sections the walk hands it, in order.
pub(super) trait Format {
    fn alert(&mut self, alert: Alert, messages: &[String]);
    fn new_stack(&mut self);
    fn security(&mut self, broadens: bool, rows: &[SecurityRow]);
    fn resources(&mut self, summary: &str, rows: &[ResourceRow<'_>]);
    fn named(&mut self, title: &str, rows: &[NamedRow]);
}

/// The one walk over a (non-empty) diff: banners, new-stack note, security, resources,
/// parameters, outputs.
pub(super) fn walk(d: &StackDiff, f: &mut dyn Format) {
    for (alert, messages) in [
        (Alert::FleetBreaking, d.fleet_breaking()),
        (Alert::Refused, d.refused_updates()),
    ] {
        if !messages.is_empty() {
            f.alert(alert, &messages);
        }
    }
    if d.new_stack {
        f.new_stack();
    }
    if !d.security.is_empty() {
        let rows: Vec<SecurityRow> = d.security.iter().map(security_row).collect();
        f.security(d.broadens_security(), &rows);
    }
    if !d.resources.is_empty() {
        let rows: Vec<ResourceRow> = d.resources.iter().map(resource_row).collect();
        f.resources(&impact_summary(d), &rows);
    }
    if !d.parameters.is_empty() {
        let rows: Vec<NamedRow> = d.parameters.iter().map(parameter_row).collect();
        f.named("Parameters", &rows);
    }
    if !d.outputs.is_empty() {
        let rows: Vec<NamedRow> = d.outputs.iter().map(output_row).collect();
        f.named("Outputs", &rows);
    }
}

fn security_row(c: &SecurityChange) -> SecurityRow {
    let (place, what) = describe_security(c);
    SecurityRow {
        change: c.change,
        kind: c.kind.label(),
        place,
        what,
    }
}

fn resource_row(r: &ResourceDiff) -> ResourceRow<'_> {
    let mut lines: Vec<Line> = r
        .properties
        .iter()
        .map(|pc| {
            let mark = if pc.update_fails.is_some() {
                Some("(update fails)")
            } else if pc.causes_replacement {
                Some(replacement_note(r.replacement))
            } else {
                None
            };
            let body = if pc.member {
                match (&pc.old, &pc.new) {
                    (_, Some(v)) => Body::Member(true, member(v)),
                    (Some(v), None) => Body::Member(false, member(v)),
                    (None, None) => Body::Note(String::new()),
                }
            } else {
                let (o, n) = show_pair(pc.old.as_ref().map(expr), pc.new.as_ref().map(expr));
                Body::Change(o, n)
            };
            Line {
                path: pc.path.clone(),
                mark,
                body,
            }
        })
        .collect();
    if let Some(b) = &r.replaced_because {
        let (verb, is) = match r.replacement {
            Replacement::Conditional => ("may be replaced", "may be replaced"),
            _ => ("replaced", "is replaced"),
        };
        lines.push(Line {
            path: String::new(),
            mark: None,
            body: Body::Note(format!(
                "{verb} because {} refers to {}, which {is}",
                b.property, b.refers_to
            )),
        });
    }
    ResourceRow { r, lines }
}

fn parameter_row(c: &NamedChange) -> NamedRow {
    let (old, new) = show_pair(c.old.as_ref().map(expr), c.new.as_ref().map(expr));
    NamedRow {
        kind: c.kind,
        name: c.name.clone(),
        sep: ": ",
        old: c.old.as_ref().map(|_| old),
        new: c.new.as_ref().map(|_| new),
        lines: Vec::new(),
    }
}

/// An output as `Name = <value>`, and below it any other field that changed
/// (`Description`, `Export`, `Condition`).
fn output_row(c: &NamedChange) -> NamedRow {
    let value = |v: &Option<Value>| {
        v.as_ref()
            .map(|o| o.get("Value").map(expr).unwrap_or_default())
    };
    let mut leaves = Vec::new();
    if let (Some(Value::Object(o)), Some(Value::Object(n))) = (&c.old, &c.new) {
        let strip = |m: &serde_json::Map<String, Value>| {
            let mut m = m.clone();
            m.remove("Value");
            Value::Object(m)
        };
        diff_values("", Some(&strip(o)), Some(&strip(n)), &mut leaves);
    }
    let lines = leaves
        .into_iter()
        .map(|l| {
            let (o, n) = show_pair(l.old.as_ref().map(expr), l.new.as_ref().map(expr));
            Line {
                path: l.path,
                mark: None,
                body: Body::Change(o, n),
            }
        })
        .collect();
    NamedRow {
        kind: c.kind,
        name: c.name.clone(),
        sep: " = ",
        old: value(&c.old),
        new: value(&c.new),
        lines,
    }
}

/// Values longer than this (in characters) are shortened in the middle (resource view).
pub(super) const MAX_VALUE_CHARS: usize = 120;

pub(super) fn truncate_middle(s: &str, max: usize) -> String {
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

/// Characters of unchanged context kept on each side of a difference.
const CONTEXT_CHARS: usize = 24;

/// Old and new values for `old -> new` (`(none)` when absent). Long values are shortened
/// around where they differ (the common start and end cut down to some context), so two
/// long values that differ in the middle do not both come out as the same `head…tail`.
pub(super) fn show_pair(old: Option<String>, new: Option<String>) -> (String, String) {
    let (Some(o), Some(n)) = (&old, &new) else {
        let show = |v: Option<String>| {
            v.map(|s| truncate_middle(&s, MAX_VALUE_CHARS))
                .unwrap_or_else(|| "(none)".into())
        };
        return (show(old), show(new));
    };
    let (oc, nc): (Vec<char>, Vec<char>) = (o.chars().collect(), n.chars().collect());
    if oc.len() <= MAX_VALUE_CHARS && nc.len() <= MAX_VALUE_CHARS {
        return (o.clone(), n.clone());
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

/// `Fn::Sub` text as its author meant it: `${!x}` (the escape) as `${x}`.
fn unescape_sub(s: &str) -> String {
    s.replace("${!", "${")
}

/// A template value as a reader writes it: `Ref X`, `GetAtt X.Attr`, `Sub text`,
/// `Join "," [..]`; other values as compact JSON.
pub(super) fn expr(v: &Value) -> String {
    let Value::Object(m) = v else {
        return v.to_string();
    };
    if !is_intrinsic(m) {
        return v.to_string();
    }
    let (k, inner) = m.iter().next().expect("one entry");
    match (k.as_str(), inner) {
        ("Ref", Value::String(id)) => format!("Ref {id}"),
        ("Fn::GetAtt", Value::Array(a)) if a.len() == 2 => {
            format!("GetAtt {}.{}", friendly(&a[0]), friendly(&a[1]))
        }
        ("Fn::GetAtt", Value::String(s)) => format!("GetAtt {s}"),
        ("Fn::Sub", Value::String(s)) => format!("Sub {}", unescape_sub(s)),
        ("Fn::Sub", Value::Array(a)) if a.len() == 2 && a[0].is_string() => {
            format!("Sub {} with {}", unescape_sub(&friendly(&a[0])), a[1])
        }
        ("Fn::Join", Value::Array(a)) if a.len() == 2 => {
            let items = match &a[1] {
                Value::Array(items) => items.iter().map(expr).collect::<Vec<_>>().join(", "),
                other => expr(other),
            };
            format!("Join {} [{items}]", a[0])
        }
        _ => v.to_string(),
    }
}

/// One member of a set: a string bare, anything else as [`expr`].
fn member(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => expr(other),
    }
}

/// A policy value as a reader writes it: strings bare, `Fn::Sub` as its template (policy
/// variables as written), `Ref` and `Fn::GetAtt` as `${Id}` / `${Id.Att}`, lists
/// comma-separated; compact JSON otherwise. Never shortened.
pub(super) fn friendly(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(friendly).collect::<Vec<_>>().join(", "),
        Value::Object(m) if m.len() == 1 => {
            let (k, inner) = m.iter().next().expect("one entry");
            match (k.as_str(), inner) {
                ("Ref", Value::String(id)) => format!("${{{id}}}"),
                ("Fn::Sub", Value::String(s)) => unescape_sub(s),
                ("Fn::GetAtt", Value::Array(a)) if a.len() == 2 => {
                    format!("${{{}.{}}}", friendly(&a[0]), friendly(&a[1]))
                }
                _ => v.to_string(),
            }
        }
        _ => v.to_string(),
    }
}

/// One line for a statement: `Allow a, b on r (principal p) when {..} [Sid]`, whole.
fn describe_statement(st: &Value) -> String {
    let get = |k: &str| st.get(k);
    let mut s = get("Effect").map(friendly).unwrap_or_else(|| "?".into());
    for (key, word) in [("Action", ""), ("NotAction", "all but ")] {
        if let Some(v) = get(key) {
            let _ = write!(s, " {word}{}", friendly(v));
        }
    }
    for (key, word) in [
        ("Resource", "on"),
        ("NotResource", "on all but"),
        ("Principal", "to"),
        ("NotPrincipal", "to all but"),
    ] {
        if let Some(v) = get(key) {
            let _ = write!(s, " {word} {}", friendly(v));
        }
    }
    if let Some(c) = get("Condition") {
        let _ = write!(s, " when {c}");
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
                return (
                    c.resource.clone(),
                    format!("managed policy {}", friendly(arn)),
                );
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
            let get = |k: &str| c.detail.get(k).map(friendly).unwrap_or_else(|| "?".into());
            let mut s = format!(
                "{} may {} {}",
                get("Principal"),
                get("Action"),
                get("FunctionName")
            );
            for (key, word) in [
                ("SourceArn", "from"),
                ("SourceAccount", "account"),
                ("PrincipalOrgID", "org"),
                ("EventSourceToken", "token"),
                ("FunctionUrlAuthType", "url auth"),
            ] {
                if let Some(v) = c.detail.get(key) {
                    let _ = write!(s, ", {word} {}", friendly(v));
                }
            }
            (c.resource.clone(), s)
        }
    }
}

pub(super) fn marker(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "[+]",
        ChangeKind::Removed => "[-]",
        ChangeKind::Modified => "[~]",
    }
}

pub(super) fn replacement_note(r: Replacement) -> &'static str {
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
