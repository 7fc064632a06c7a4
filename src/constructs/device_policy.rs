//! The shared device IoT policy, rendered from a handlebars template users edit
//! (`templates/device-policy.json.hbs`), then parsed back and checked.
//!
//! Handlebars runs in strict mode (an unknown variable is an error) without HTML escaping.
//! The template sees:
//! - `iot_arn`: `arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}`, resolved by
//!   CloudFormation at deploy time (so synth needs no account);
//! - `stack_name`, `stage`, and `vars.*` from the stage file.
//!
//! AWS IoT policy variables (`${iot:Connection.Thing.ThingName}`) pass through untouched;
//! strings that mention `${AWS::...}` become `Fn::Sub` with those variables escaped
//! (`${!iot:...}`), which CloudFormation turns back into `${iot:...}`.

use crate::cfn::Value;
use handlebars::Handlebars;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;

/// AWS IoT's limit on a policy document, counted without whitespace.
pub const MAX_POLICY_CHARS: usize = 2048;

/// What `iot_arn` renders to.
pub const IOT_ARN: &str = "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}";

/// The values the length check substitutes for the pseudo parameters: the longest each can be.
const LONGEST: [(&str, &str); 3] = [
    ("${AWS::Partition}", "aws-us-gov"),
    ("${AWS::Region}", "ap-southeast-55"),
    ("${AWS::AccountId}", "123456789012"),
];

/// A rendered, checked device policy.
#[derive(Debug, Clone, PartialEq)]
pub struct DevicePolicyDocument {
    /// The document as rendered (policy variables and `${AWS::...}` as written).
    pub rendered: Json,
    /// The same document for the template (`Fn::Sub` where needed).
    pub value: Value,
}

/// Renders `template` (named `file` in messages) and checks the result. Every problem is
/// returned.
pub fn render(
    file: &str,
    template: &str,
    stack_name: &str,
    stage: &str,
    vars: &BTreeMap<String, String>,
) -> Result<DevicePolicyDocument, Vec<String>> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    hb.register_template_string(file, template).map_err(|e| {
        let at = e
            .pos()
            .map(|(l, c)| format!(":{l}:{c}"))
            .unwrap_or_default();
        vec![format!(
            "{file}{at}: not a valid handlebars template: {}",
            e.reason()
        )]
    })?;
    let context = json!({
        "iot_arn": IOT_ARN,
        "stack_name": stack_name,
        "stage": stage,
        "vars": vars,
    });
    let text = hb
        .render(file, &context)
        .map_err(|e| vec![render_error(file, &e)])?;
    let rendered: Json = serde_json::from_str(&text).map_err(|e| {
        let line = text
            .lines()
            .nth(e.line().saturating_sub(1))
            .unwrap_or_default()
            .trim();
        vec![format!(
            "{file}: renders to invalid JSON: {e} (rendered line {}: `{line}`)",
            e.line()
        )]
    })?;
    let problems = check(&rendered);
    if !problems.is_empty() {
        return Err(problems
            .into_iter()
            .map(|p| format!("{file}: {p}"))
            .collect());
    }
    let value = to_value(&rendered);
    Ok(DevicePolicyDocument { rendered, value })
}

fn render_error(file: &str, e: &handlebars::RenderError) -> String {
    use handlebars::RenderErrorReason as R;
    let at = match (e.line_no, e.column_no) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    };
    let what = match e.reason() {
        R::MissingVariable(Some(name)) => {
            format!("unknown variable `{name}` (available: iot_arn, stack_name, stage, vars.*)")
        }
        R::MissingVariable(None) => "unknown variable".to_string(),
        R::HelperNotFound(name) => format!("unknown helper `{name}`"),
        other => other.to_string(),
    };
    format!("{file}{at}: does not render: {what}")
}

/// The checks a reviewer would make: valid policy grammar, no wildcard action, the size limit.
pub fn check(doc: &Json) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(obj) = doc.as_object() else {
        return vec!["the policy must be a JSON object".into()];
    };
    if obj.get("Version") != Some(&json!("2012-10-17")) {
        problems.push("`Version` must be \"2012-10-17\"".into());
    }
    for key in obj.keys() {
        if key != "Version" && key != "Statement" {
            problems.push(format!("unknown top-level key `{key}`"));
        }
    }
    let statements: Vec<&Json> = match obj.get("Statement") {
        Some(Json::Array(a)) if !a.is_empty() => a.iter().collect(),
        Some(s @ Json::Object(_)) => vec![s],
        _ => {
            problems.push("`Statement` must be a non-empty list".into());
            Vec::new()
        }
    };
    for (i, s) in statements.iter().enumerate() {
        let Some(s) = s.as_object() else {
            problems.push(format!("Statement[{i}] must be an object"));
            continue;
        };
        let effect = s.get("Effect").and_then(Json::as_str);
        if !matches!(effect, Some("Allow") | Some("Deny")) {
            problems.push(format!(
                "Statement[{i}].Effect must be \"Allow\" or \"Deny\""
            ));
        }
        let actions = strings(s.get("Action"));
        match &actions {
            None => problems.push(format!(
                "Statement[{i}].Action must be a string or a list of strings"
            )),
            Some(list) => {
                for a in list {
                    if effect == Some("Allow") && a.contains('*') {
                        problems.push(format!(
                            "Statement[{i}] allows the wildcard action {a:?}: name each action \
                             (iot:Connect, iot:Publish, iot:Subscribe, iot:Receive, ...)"
                        ));
                    } else if !a.starts_with("iot:") && !a.starts_with("greengrass:") {
                        problems.push(format!(
                            "Statement[{i}].Action {a:?} is not an AWS IoT action"
                        ));
                    }
                }
            }
        }
        if strings(s.get("Resource")).is_none_or(|r| r.is_empty()) {
            problems.push(format!(
                "Statement[{i}].Resource must be a string or a list of strings"
            ));
        }
        if s.contains_key("NotAction") || s.contains_key("NotResource") {
            problems.push(format!(
                "Statement[{i}] uses NotAction/NotResource, which grants everything else"
            ));
        }
    }
    let mut compact = serde_json::to_string(doc).unwrap_or_default();
    for (var, longest) in LONGEST {
        compact = compact.replace(var, longest);
    }
    let chars = compact.chars().filter(|c| !c.is_whitespace()).count();
    if chars > MAX_POLICY_CHARS {
        problems.push(format!(
            "the policy is {chars} characters without whitespace (in the longest region and \
             partition); AWS IoT allows {MAX_POLICY_CHARS}"
        ));
    }
    problems
}

fn strings(v: Option<&Json>) -> Option<Vec<String>> {
    match v? {
        Json::String(s) => Some(vec![s.clone()]),
        Json::Array(a) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
        _ => None,
    }
}

/// The rendered document as a template value: strings naming `${AWS::...}` become `Fn::Sub`
/// with IoT policy variables escaped.
fn to_value(doc: &Json) -> Value {
    match doc {
        Json::String(s) if s.contains("${AWS::") => Value::sub(escape_policy_variables(s)),
        Json::Array(a) => Value::list(a.iter().map(to_value)),
        Json::Object(m) => Value::map(m.iter().map(|(k, v)| (k.clone(), to_value(v)))),
        other => Value::Json(other.clone()),
    }
}

/// `${iot:...}` (and any other non-AWS variable) becomes `${!iot:...}` so `Fn::Sub` leaves it
/// for AWS IoT to resolve.
pub fn escape_policy_variables(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        if after.starts_with("AWS::") || after.starts_with('!') {
            out.push_str("${");
        } else {
            out.push_str("${!");
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"{{iot_arn}}:client/${iot:Connection.Thing.ThingName}"}]}"#;

    fn go(t: &str) -> Result<DevicePolicyDocument, Vec<String>> {
        render("p.hbs", t, "jitr-dev", "dev", &BTreeMap::new())
    }

    #[test]
    fn renders_and_keeps_policy_variables() {
        let doc = go(GOOD).unwrap();
        let resource = doc.rendered["Statement"][0]["Resource"].as_str().unwrap();
        assert_eq!(
            resource,
            "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:client/${iot:Connection.Thing.ThingName}"
        );
        assert_eq!(
            doc.value.to_json()["Statement"][0]["Resource"],
            json!({"Fn::Sub": "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:client/${!iot:Connection.Thing.ThingName}"})
        );
    }

    #[test]
    fn rejects_what_a_reviewer_would() {
        let unknown = go(&GOOD.replace("{{iot_arn}}", "{{nope}}")).unwrap_err();
        assert!(unknown[0].contains("does not render"), "{unknown:?}");
        let invalid = go(&GOOD.replace("]}", "]")).unwrap_err();
        assert!(invalid[0].contains("invalid JSON"), "{invalid:?}");
        for wildcard in ["iot:*", "*", "iot:Pub*"] {
            let e = go(&GOOD.replace("iot:Connect", wildcard)).unwrap_err();
            assert!(e[0].contains("wildcard action"), "{wildcard}: {e:?}");
        }
        let huge = GOOD.replace(
            "\"Resource\":\"",
            &format!("\"Resource\":\"{}", "x".repeat(2100)),
        );
        let e = go(&huge).unwrap_err();
        assert!(e[0].contains("AWS IoT allows 2048"), "{e:?}");
    }

    #[test]
    fn no_html_escaping() {
        let mut vars = BTreeMap::new();
        vars.insert("root".to_string(), "a&b<c>".to_string());
        let t = GOOD.replace("client/", "client/{{vars.root}}/");
        let doc = render("p", &t, "s", "d", &vars).unwrap();
        assert!(doc.rendered.to_string().contains("a&b<c>"));
    }
}
