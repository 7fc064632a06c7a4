//! The topic rule on the CA's registered-certificate events, its permission to invoke the
//! activator, and where it logs the events it failed to deliver.

use super::iam::{role, Statement};
use super::{log_group, CaIds, Names, ACTIVATOR_FUNCTION, RULE_ERROR_LOG_GROUP, RULE_ERROR_ROLE};
use crate::cfn::{Pseudo, Resource, Template, Value};
use crate::stage::Stage;
use jitr_contract::ca_registration::ATTR_CA_CERTIFICATE_ID;

/// One topic rule per CA (a rule's SQL names one CA's topic), each with its permission to
/// invoke the activator; one error log group and role for all of them.
pub(super) fn registration_rule(t: &mut Template, stage: &Stage, names: &Names) {
    let rule_arn = |rule: &str| {
        format!("arn:${{AWS::Partition}}:iot:${{AWS::Region}}:${{AWS::AccountId}}:rule/{rule}")
    };
    let cas = CaIds::all(stage, names);
    t.add(log_group(
        stage,
        RULE_ERROR_LOG_GROUP,
        format!("/aws/iot/rules/{}/errors", names.rule),
    ));
    let arns: Vec<Value> = cas
        .iter()
        .map(|(_, ids)| Value::sub(rule_arn(&ids.rule_name)))
        .collect();
    t.add(error_role(match <[Value; 1]>::try_from(arns) {
        Ok([one]) => one,
        Err(several) => Value::list(several),
    }));
    for (_, ids) in &cas {
        t.add(
            Resource::new(ids.permission, "AWS::Lambda::Permission")
                .prop("Action", "lambda:InvokeFunction")
                .prop("FunctionName", ACTIVATOR_FUNCTION.get_att("Arn"))
                .prop("Principal", "iot.amazonaws.com")
                // The rule's ARN from its (explicit) name rather than `Fn::GetAtt`: the rule
                // then depends on the permission, so it never fires before it may invoke.
                .prop("SourceArn", Value::sub(rule_arn(&ids.rule_name)))
                .prop("SourceAccount", Value::Pseudo(Pseudo::AccountId)),
        );
        t.add(topic_rule(ids));
    }
}

/// The role the rule's error action writes its log with; only our account's rules may assume
/// it (confused-deputy protection): `rule_arns` is one ARN or a list of them (any of which).
fn error_role(rule_arns: Value) -> Resource {
    role(
        RULE_ERROR_ROLE,
        "Lets the JITR topic rule log the events it failed to deliver",
        "iot.amazonaws.com",
        Some(Value::map([
            (
                "StringEquals",
                Value::map([("aws:SourceAccount", Value::Pseudo(Pseudo::AccountId))]),
            ),
            ("ArnLike", Value::map([("aws:SourceArn", rule_arns)])),
        ])),
        &[Statement::new(
            "WriteRuleErrors",
            &[
                "logs:CreateLogStream",
                "logs:DescribeLogStreams",
                "logs:PutLogEvents",
            ],
            vec![RULE_ERROR_LOG_GROUP.get_att("Arn")],
        )],
    )
}

fn topic_rule(ids: &CaIds) -> Resource {
    let sql = format!(
        "SELECT * FROM '{}${{{}.{}}}' WHERE certificateStatus = \"{}\"",
        jitr_contract::event::REGISTERED_TOPIC_PREFIX,
        ids.registration,
        ATTR_CA_CERTIFICATE_ID,
        jitr_contract::event::PENDING_ACTIVATION
    );
    let lambda_action = Value::map([(
        "Lambda",
        Value::map([("FunctionArn", ACTIVATOR_FUNCTION.get_att("Arn"))]),
    )]);
    let error_action = Value::map([(
        "CloudwatchLogs",
        Value::map([
            ("LogGroupName", RULE_ERROR_LOG_GROUP.r#ref()),
            ("RoleArn", RULE_ERROR_ROLE.get_att("Arn")),
        ]),
    )]);
    Resource::new(ids.rule, "AWS::IoT::TopicRule")
        .prop("RuleName", ids.rule_name.as_str())
        .prop(
            "TopicRulePayload",
            Value::map([
                (
                    "Description",
                    Value::str(
                        "JITR: hands the CA's newly registered certificates to the activator",
                    ),
                ),
                ("Sql", Value::sub(sql)),
                ("AwsIotSqlVersion", Value::str("2016-03-23")),
                ("RuleDisabled", Value::Bool(false)),
                ("Actions", Value::list([lambda_action])),
                ("ErrorAction", error_action),
            ]),
        )
        .depends_on(ids.permission)
}
