//! A typed CloudFormation model: values with intrinsic functions, and a template of
//! parameters, resources and outputs that serializes to the JSON CloudFormation reads.
//!
//! Keys keep the order the constructs add them in (and the template's sections come in
//! CloudFormation's customary order), so the same inputs give byte-identical JSON.

use serde_json::{json, Map, Value as Json};
use std::fmt;

/// A logical id: alphanumeric, at most 255 characters. Constructs spell them as constants;
/// renaming one makes CloudFormation replace the resource, which `tests/synth.rs` pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogicalId(pub &'static str);

impl LogicalId {
    pub fn as_str(&self) -> &'static str {
        self.0
    }

    /// A logical id made at run time (e.g. from a name in the stage file), interned.
    pub fn named(id: &str) -> LogicalId {
        LogicalId(intern(id))
    }

    /// `{"Ref": id}`.
    pub fn r#ref(self) -> Value {
        Value::Ref(self.0.to_string())
    }

    /// `{"Fn::GetAtt": [id, attribute]}`.
    pub fn get_att(self, attribute: &str) -> Value {
        Value::GetAtt(self.0.to_string(), attribute.to_string())
    }
}

impl fmt::Display for LogicalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// `s` as a `&'static str`: each distinct string is leaked once and shared after, so the memory
/// is bounded by the names a process makes (a few per CA of a stage), never by the calls.
pub fn intern(s: &str) -> &'static str {
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = names.get(s) {
        return known;
    }
    let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
}

/// Pseudo parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pseudo {
    AccountId,
    Partition,
    Region,
    StackName,
    StackId,
    UrlSuffix,
    /// Removes the property it is the value of (inside `Fn::If`).
    NoValue,
}

impl Pseudo {
    pub fn name(self) -> &'static str {
        match self {
            Pseudo::AccountId => "AWS::AccountId",
            Pseudo::Partition => "AWS::Partition",
            Pseudo::Region => "AWS::Region",
            Pseudo::StackName => "AWS::StackName",
            Pseudo::StackId => "AWS::StackId",
            Pseudo::UrlSuffix => "AWS::URLSuffix",
            Pseudo::NoValue => "AWS::NoValue",
        }
    }
}

/// A template value: plain JSON, or an intrinsic function.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<Value>),
    /// Insertion-ordered.
    Map(Vec<(String, Value)>),
    Ref(String),
    GetAtt(String, String),
    /// `Fn::Sub` with a template string and optional variables.
    Sub(String, Vec<(String, Value)>),
    Join(String, Vec<Value>),
    Pseudo(Pseudo),
    /// `Fn::If`: the first value when the named condition holds, else the second.
    If(String, Box<Value>, Box<Value>),
    /// `Fn::Equals` (for the `Conditions` section).
    Equals(Box<Value>, Box<Value>),
    /// Raw JSON taken as is (e.g. a rendered policy document).
    Json(Json),
}

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// `Fn::Sub` without variables.
    pub fn sub(s: impl Into<String>) -> Value {
        Value::Sub(s.into(), Vec::new())
    }

    pub fn list(items: impl IntoIterator<Item = Value>) -> Value {
        Value::List(items.into_iter().collect())
    }

    pub fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    pub fn to_json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => json!(i),
            Value::Str(s) => Json::String(s.clone()),
            Value::List(items) => Json::Array(items.iter().map(Value::to_json).collect()),
            Value::Map(entries) => {
                let mut m = Map::new();
                for (k, v) in entries {
                    m.insert(k.clone(), v.to_json());
                }
                Json::Object(m)
            }
            Value::Ref(id) => json!({ "Ref": id }),
            Value::GetAtt(id, att) => json!({ "Fn::GetAtt": [id, att] }),
            Value::Sub(s, vars) if vars.is_empty() => json!({ "Fn::Sub": s }),
            Value::Sub(s, vars) => {
                let mut m = Map::new();
                for (k, v) in vars {
                    m.insert(k.clone(), v.to_json());
                }
                json!({ "Fn::Sub": [s, Json::Object(m)] })
            }
            Value::Join(sep, items) => {
                json!({ "Fn::Join": [sep, items.iter().map(Value::to_json).collect::<Vec<_>>()] })
            }
            Value::Pseudo(p) => json!({ "Ref": p.name() }),
            Value::If(condition, then, otherwise) => {
                json!({ "Fn::If": [condition, then.to_json(), otherwise.to_json()] })
            }
            Value::Equals(a, b) => json!({ "Fn::Equals": [a.to_json(), b.to_json()] }),
            Value::Json(j) => j.clone(),
        }
    }

    /// Every logical id this value references (`Ref`, `Fn::GetAtt`, and `${Id}` / `${Id.Att}`
    /// inside `Fn::Sub`), for the template's reference check.
    pub fn references(&self, out: &mut Vec<String>) {
        match self {
            Value::Ref(id) | Value::GetAtt(id, _) => out.push(id.clone()),
            Value::List(items) | Value::Join(_, items) => {
                items.iter().for_each(|v| v.references(out))
            }
            Value::Map(entries) => entries.iter().for_each(|(_, v)| v.references(out)),
            // The condition name of `Fn::If` is checked against the Conditions section.
            Value::If(_, a, b) | Value::Equals(a, b) => {
                a.references(out);
                b.references(out);
            }
            Value::Sub(s, vars) => {
                let mut rest = s.as_str();
                while let Some(start) = rest.find("${") {
                    let after = &rest[start + 2..];
                    let Some(end) = after.find('}') else { break };
                    let name = &after[..end];
                    // `${!Literal}` is an escape; `${AWS::...}` a pseudo parameter.
                    if !name.starts_with('!')
                        && !name.contains("::")
                        && !vars.iter().any(|(k, _)| k == name)
                    {
                        out.push(name.split('.').next().unwrap_or(name).to_string());
                    }
                    rest = &after[end + 1..];
                }
                vars.iter().for_each(|(_, v)| v.references(out));
            }
            Value::Json(j) => json_references(j, out),
            _ => {}
        }
    }

    /// The condition names this value's `Fn::If`s use.
    pub fn conditions_used<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Value::If(condition, a, b) => {
                out.push(condition);
                a.conditions_used(out);
                b.conditions_used(out);
            }
            Value::Equals(a, b) => {
                a.conditions_used(out);
                b.conditions_used(out);
            }
            Value::List(items) | Value::Join(_, items) => {
                items.iter().for_each(|v| v.conditions_used(out))
            }
            Value::Map(entries) | Value::Sub(_, entries) => {
                entries.iter().for_each(|(_, v)| v.conditions_used(out))
            }
            _ => {}
        }
    }
}

fn json_references(j: &Json, out: &mut Vec<String>) {
    match j {
        Json::Object(m) => {
            if let Some(Json::String(id)) = m.get("Ref") {
                if !id.contains("::") {
                    out.push(id.clone());
                }
            }
            m.values().for_each(|v| json_references(v, out));
        }
        Json::Array(a) => a.iter().for_each(|v| json_references(v, out)),
        _ => {}
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

impl From<u32> for Value {
    fn from(i: u32) -> Value {
        Value::Int(i64::from(i))
    }
}

impl From<Pseudo> for Value {
    fn from(p: Pseudo) -> Value {
        Value::Pseudo(p)
    }
}

/// What CloudFormation does with a resource when it is deleted or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletionPolicy {
    Delete,
    Retain,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub id: LogicalId,
    pub kind: &'static str,
    pub properties: Vec<(String, Value)>,
    pub depends_on: Vec<LogicalId>,
    pub deletion_policy: Option<DeletionPolicy>,
    /// Why a linter rule does not apply here (`Metadata.cfn-lint.config.ignore_checks`).
    pub lint_ignores: Vec<(&'static str, &'static str)>,
    /// Why a security scanner's check does not apply here (`Metadata.checkov.skip`, the form
    /// checkov reads), so a team that runs checkov sees every exception explained.
    pub scanner_skips: Vec<(&'static str, &'static str)>,
}

impl Resource {
    pub fn new(id: LogicalId, kind: &'static str) -> Resource {
        Resource {
            id,
            kind,
            properties: Vec::new(),
            depends_on: Vec::new(),
            deletion_policy: None,
            lint_ignores: Vec::new(),
            scanner_skips: Vec::new(),
        }
    }

    pub fn prop(mut self, name: &str, value: impl Into<Value>) -> Resource {
        self.properties.push((name.to_string(), value.into()));
        self
    }

    pub fn prop_opt(self, name: &str, value: Option<impl Into<Value>>) -> Resource {
        match value {
            Some(v) => self.prop(name, v),
            None => self,
        }
    }

    pub fn depends_on(mut self, id: LogicalId) -> Resource {
        self.depends_on.push(id);
        self
    }

    pub fn deletion_policy(mut self, policy: DeletionPolicy) -> Resource {
        self.deletion_policy = Some(policy);
        self
    }

    /// Suppresses one cfn-lint rule on this resource, with the reason written next to it.
    pub fn lint_ignore(mut self, rule: &'static str, reason: &'static str) -> Resource {
        self.lint_ignores.push((rule, reason));
        self
    }

    /// Marks one checkov check as not applying to this resource, with the reason.
    pub fn scanner_skip(mut self, check: &'static str, reason: &'static str) -> Resource {
        self.scanner_skips.push((check, reason));
        self
    }

    pub fn property(&self, name: &str) -> Option<&Value> {
        self.properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    fn to_json(&self) -> Json {
        let mut m = Map::new();
        m.insert("Type".into(), json!(self.kind));
        let mut metadata = Map::new();
        if !self.lint_ignores.is_empty() {
            let rules: Vec<&str> = self.lint_ignores.iter().map(|(r, _)| *r).collect();
            let reasons: Map<String, Json> = self
                .lint_ignores
                .iter()
                .map(|(r, why)| (r.to_string(), json!(why)))
                .collect();
            metadata.insert(
                "cfn-lint".into(),
                json!({ "config": { "ignore_checks": rules } }),
            );
            metadata.insert("LintReasons".into(), Json::Object(reasons));
        }
        if !self.scanner_skips.is_empty() {
            let skips: Vec<Json> = self
                .scanner_skips
                .iter()
                .map(|(id, why)| json!({ "id": id, "comment": why }))
                .collect();
            metadata.insert("checkov".into(), json!({ "skip": skips }));
        }
        if !metadata.is_empty() {
            m.insert("Metadata".into(), Json::Object(metadata));
        }
        if !self.depends_on.is_empty() {
            m.insert(
                "DependsOn".into(),
                json!(self.depends_on.iter().map(|d| d.0).collect::<Vec<_>>()),
            );
        }
        if let Some(p) = self.deletion_policy {
            let text = match p {
                DeletionPolicy::Delete => "Delete",
                DeletionPolicy::Retain => "Retain",
            };
            m.insert("DeletionPolicy".into(), json!(text));
            m.insert("UpdateReplacePolicy".into(), json!(text));
        }
        if !self.properties.is_empty() {
            m.insert(
                "Properties".into(),
                Value::Map(self.properties.clone()).to_json(),
            );
        }
        Json::Object(m)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    pub name: &'static str,
    pub kind: &'static str,
    pub description: String,
    pub default: Option<String>,
    pub no_echo: bool,
}

/// A named condition (`Conditions` section), evaluated from parameter values at deploy.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub name: &'static str,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub name: &'static str,
    pub description: &'static str,
    pub value: Value,
}

/// A template problem found by [`Template::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// CloudFormation accepts at most this many resources per stack.
pub const MAX_RESOURCES: usize = 500;
/// Larger templates must be uploaded to S3 and passed by URL.
pub const MAX_INLINE_TEMPLATE_BYTES: usize = 51_200;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Template {
    pub description: String,
    pub parameters: Vec<Parameter>,
    pub conditions: Vec<Condition>,
    pub resources: Vec<Resource>,
    pub outputs: Vec<Output>,
}

impl Template {
    pub fn resource(&self, id: LogicalId) -> Option<&Resource> {
        self.resources.iter().find(|r| r.id == id)
    }

    pub fn add(&mut self, resource: Resource) {
        self.resources.push(resource);
    }

    pub fn to_json(&self) -> Json {
        let mut m = Map::new();
        m.insert("AWSTemplateFormatVersion".into(), json!("2010-09-09"));
        if !self.description.is_empty() {
            m.insert("Description".into(), json!(self.description));
        }
        if !self.parameters.is_empty() {
            let mut params = Map::new();
            for p in &self.parameters {
                let mut pm = Map::new();
                pm.insert("Type".into(), json!(p.kind));
                pm.insert("Description".into(), json!(p.description));
                if let Some(d) = &p.default {
                    pm.insert("Default".into(), json!(d));
                }
                if p.no_echo {
                    pm.insert("NoEcho".into(), json!(true));
                }
                params.insert(p.name.to_string(), Json::Object(pm));
            }
            m.insert("Parameters".into(), Json::Object(params));
        }
        if !self.conditions.is_empty() {
            let conditions: Map<String, Json> = self
                .conditions
                .iter()
                .map(|c| (c.name.to_string(), c.value.to_json()))
                .collect();
            m.insert("Conditions".into(), Json::Object(conditions));
        }
        let mut resources = Map::new();
        for r in &self.resources {
            resources.insert(r.id.0.to_string(), r.to_json());
        }
        m.insert("Resources".into(), Json::Object(resources));
        if !self.outputs.is_empty() {
            let mut outputs = Map::new();
            for o in &self.outputs {
                outputs.insert(
                    o.name.to_string(),
                    json!({ "Description": o.description, "Value": o.value.to_json() }),
                );
            }
            m.insert("Outputs".into(), Json::Object(outputs));
        }
        Json::Object(m)
    }

    /// The template as CloudFormation reads it: pretty JSON with a final newline.
    pub fn render(&self) -> String {
        let mut s = serde_json::to_string_pretty(&self.to_json()).expect("template serializes");
        s.push('\n');
        s
    }
}

mod validate;

#[cfg(test)]
mod tests;
