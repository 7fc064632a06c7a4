//! IAM roles with inline least-privilege policies.
//!
//! Statements name their resources; a `*` resource is allowed only for actions that AWS does
//! not authorize per resource, and [`Statement::unscoped`] says so where it is used. No
//! statement may carry a wildcard action: [`Statement::new`] refuses one.

use crate::cfn::{LogicalId, Resource, Value};

#[derive(Debug, Clone)]
pub struct Statement {
    pub sid: &'static str,
    pub actions: Vec<&'static str>,
    pub resources: Vec<Value>,
}

impl Statement {
    pub fn new(sid: &'static str, actions: &[&'static str], resources: Vec<Value>) -> Statement {
        for a in actions {
            assert!(!a.contains('*'), "wildcard action {a} in statement {sid}");
        }
        assert!(!resources.is_empty(), "statement {sid} names no resource");
        Statement {
            sid,
            actions: actions.to_vec(),
            resources,
        }
    }

    /// For actions that do not support resource-level permissions (the IAM reference lists
    /// no resource type for them), `Resource` must be `*`.
    pub fn unscoped(sid: &'static str, actions: &[&'static str]) -> Statement {
        Statement::new(sid, actions, vec![Value::str("*")])
    }

    fn to_value(&self) -> Value {
        let resource = if self.resources.len() == 1 {
            self.resources[0].clone()
        } else {
            Value::list(self.resources.clone())
        };
        let action = if self.actions.len() == 1 {
            Value::str(self.actions[0])
        } else {
            Value::list(self.actions.iter().map(|a| Value::str(*a)))
        };
        Value::map([
            ("Sid", Value::str(self.sid)),
            ("Effect", Value::str("Allow")),
            ("Action", action),
            ("Resource", resource),
        ])
    }
}

pub fn policy_document(statements: &[Statement]) -> Value {
    Value::map([
        ("Version", Value::str("2012-10-17")),
        (
            "Statement",
            Value::list(statements.iter().map(Statement::to_value)),
        ),
    ])
}

/// A role `service` can assume, with one inline policy. `conditions` (already a JSON map)
/// restrict the trust, e.g. `aws:SourceAccount` against the confused-deputy problem.
pub fn role(
    id: LogicalId,
    description: &str,
    service: &str,
    trust_condition: Option<Value>,
    statements: &[Statement],
) -> Resource {
    let mut trust = vec![
        ("Effect", Value::str("Allow")),
        ("Principal", Value::map([("Service", Value::str(service))])),
        ("Action", Value::str("sts:AssumeRole")),
    ];
    if let Some(c) = trust_condition {
        trust.push(("Condition", c));
    }
    Resource::new(id, "AWS::IAM::Role")
        .prop("Description", description)
        .prop(
            "AssumeRolePolicyDocument",
            Value::map([
                ("Version", Value::str("2012-10-17")),
                ("Statement", Value::list([Value::map(trust)])),
            ]),
        )
        .prop(
            "Policies",
            Value::list([Value::map([
                ("PolicyName", Value::str("least-privilege")),
                ("PolicyDocument", policy_document(statements)),
            ])]),
        )
}

/// `arn:${AWS::Partition}:<service>:${AWS::Region}:${AWS::AccountId}:<rest>`, as `Fn::Sub`.
pub fn arn(service: &str, rest: &str) -> Value {
    Value::sub(format!(
        "arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}:{rest}"
    ))
}
