//! The reconciler's schedule: an EventBridge rule that invokes the activator with a sweep
//! payload every `reconciler.every_minutes`, its permission to invoke, and the SSM parameter
//! where an unfinished sweep leaves its marker. None of it when `reconciler.enabled` is false.

use super::{
    Names, ACTIVATOR_FUNCTION, SWEEP_INVOKE_PERMISSION, SWEEP_MARKER_PARAMETER, SWEEP_SCHEDULE,
};
use crate::cfn::{Pseudo, Resource, Template, Value};
use crate::stage::Stage;
use jitr_contract::sweep::{SweepRequest, MARKER_START};

/// Who asks for the scheduled sweep (the payload's `trigger`).
pub const SCHEDULE_TRIGGER: &str = "schedule";

pub(super) fn reconciler(t: &mut Template, stage: &Stage, names: &Names) {
    if !stage.reconciler.enabled {
        return;
    }
    t.add(
        Resource::new(SWEEP_MARKER_PARAMETER, "AWS::SSM::Parameter")
            .prop("Name", names.sweep_marker.as_str())
            .prop("Type", "String")
            .prop("Value", MARKER_START)
            .prop(
                "Description",
                "Where the JITR sweep resumes listing the CA's certificates (- = the newest)",
            ),
    );
    let rule_arn = format!(
        "arn:${{AWS::Partition}}:events:${{AWS::Region}}:${{AWS::AccountId}}:rule/{}",
        names.sweep_schedule
    );
    t.add(
        Resource::new(SWEEP_INVOKE_PERMISSION, "AWS::Lambda::Permission")
            .prop("Action", "lambda:InvokeFunction")
            .prop("FunctionName", ACTIVATOR_FUNCTION.get_att("Arn"))
            .prop("Principal", "events.amazonaws.com")
            // From the rule's explicit name, as the topic rule's permission: the schedule then
            // depends on the permission and never fires before it may invoke.
            .prop("SourceArn", Value::sub(rule_arn))
            .prop("SourceAccount", Value::Pseudo(Pseudo::AccountId)),
    );
    let input = serde_json::to_string(&SweepRequest::new(SCHEDULE_TRIGGER))
        .expect("the sweep request serializes");
    t.add(
        Resource::new(SWEEP_SCHEDULE, "AWS::Events::Rule")
            .prop("Name", names.sweep_schedule.as_str())
            .prop(
                "Description",
                "JITR reconciler: activates the CA's certificates whose events were lost",
            )
            .prop(
                "ScheduleExpression",
                rate_expression(stage.reconciler.every_minutes),
            )
            .prop("State", "ENABLED")
            .prop(
                "Targets",
                Value::list([Value::map([
                    ("Id", Value::str("sweep")),
                    ("Arn", ACTIVATOR_FUNCTION.get_att("Arn")),
                    ("Input", Value::str(input)),
                ])]),
            )
            .depends_on(SWEEP_INVOKE_PERMISSION),
    );
}

/// EventBridge's rate expression: the unit is singular for 1 and plural above ("rate(1
/// minute)", "rate(5 minutes)"; the other forms are refused).
pub fn rate_expression(minutes: u32) -> String {
    if minutes == 1 {
        "rate(1 minute)".to_string()
    } else {
        format!("rate({minutes} minutes)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_minute_is_singular() {
        assert_eq!(rate_expression(1), "rate(1 minute)");
        assert_eq!(rate_expression(5), "rate(5 minutes)");
        assert_eq!(rate_expression(1440), "rate(1440 minutes)");
    }
}
