//! The topic rule on the CA's registered-certificate events, its permission to invoke the
//! activator, and where it logs the events it failed to deliver.

use super::iam::{role, Statement};
use super::{
    log_group, Names, ACTIVATOR_FUNCTION, ACTIVATOR_INVOKE_PERMISSION, CA_REGISTRATION,
    REGISTRATION_RULE, RULE_ERROR_LOG_GROUP, RULE_ERROR_ROLE,
};
use crate::cfn::{Pseudo, Resource, Template, Value};
use crate::stage::Stage;
use jitr_contract::ca_registration::ATTR_CA_CERTIFICATE_ID;

pub(super) fn registration_rule(t: &mut Template, stage: &Stage, names: &Names) {
    let rule_arn = format!(
        "arn:${{AWS::Partition}}:iot:${{AWS::Region}}:${{AWS::AccountId}}:rule/{}",
        names.rule
    );
    t.add(log_group(
        stage,
        RULE_ERROR_LOG_GROUP,
        format!("/aws/iot/rules/{}/errors", names.rule),
    ));
    t.add(error_role(&rule_arn));
    t.add(
        Resource::new(ACTIVATOR_INVOKE_PERMISSION, "AWS::Lambda::Permission")
            .prop("Action", "lambda:InvokeFunction")
            .prop("FunctionName", ACTIVATOR_FUNCTION.get_att("Arn"))
            .prop("Principal", "iot.amazonaws.com")
            // The rule's ARN from its (explicit) name rather than `Fn::GetAtt`: the rule then
            // depends on the permission, so it never fires before it may invoke.
            .prop("SourceArn", Value::sub(rule_arn))
            .prop("SourceAccount", Value::Pseudo(Pseudo::AccountId)),
    );
    t.add(topic_rule(names));
}

/// The role the rule's error action writes its log with; only our account's rule may assume it
/// (confused-deputy protection).
fn error_role(rule_arn: &str) -> Resource {
    role(
        RULE_ERROR_ROLE,
        "Lets the JITR topic rule log the events it failed to deliver",
        "iot.amazonaws.com",
        Some(Value::map([
            (
                "StringEquals",
                Value::map([("aws:SourceAccount", Value::Pseudo(Pseudo::AccountId))]),
            ),
            (
                "ArnLike",
                Value::map([("aws:SourceArn", Value::sub(rule_arn))]),
            ),
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

fn topic_rule(names: &Names) -> Resource {
    let sql = format!(
        "SELECT * FROM '{}${{{}.{}}}' WHERE certificateStatus = \"{}\"",
        jitr_contract::event::REGISTERED_TOPIC_PREFIX,
        CA_REGISTRATION,
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
    Resource::new(REGISTRATION_RULE, "AWS::IoT::TopicRule")
        .prop("RuleName", names.rule.as_str())
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
        .depends_on(ACTIVATOR_INVOKE_PERMISSION)
}
