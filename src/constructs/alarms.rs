//! The stack's alarms (the failure queue, the activator's errors and sustained throttling,
//! the topic rule's failed actions, certificates left pending past the sweep's grace period,
//! malformed events) and, when `alarms.email` is set, the SNS topic they notify on ALARM and
//! on OK. Names are `<alarm_prefix><kebab-name>`, which `status` reads back.

use super::{
    scanner, Names, ACTIVATOR_FAILURE_QUEUE, ALARM_ACTIVATOR_ERRORS, ALARM_FAILURE_QUEUE,
    ALARM_IOT_THROTTLING, ALARM_MALFORMED_EVENTS, ALARM_PENDING_OVER_GRACE, ALARM_RULE_FAILURES,
    ALARM_TOPIC,
};
use crate::cfn::{LogicalId, Resource, Template, Value};
use crate::stage::Stage;
use jitr_contract::metrics;

/// Seconds per period of every alarm but the sweep's.
const PERIOD: u32 = 300;
/// Throttled calls per period the activator absorbs without concern (its buckets back off).
pub const THROTTLES_PER_PERIOD: u32 = 60;
/// Periods of throttling above that before the alarm fires.
const THROTTLING_PERIODS: u32 = 3;
/// CloudWatch evaluates at most one day of periods.
const MAX_EVALUATED_SECONDS: u32 = 86_400;

/// The metric an alarm watches.
enum Watched {
    /// One metric: namespace, name, dimensions, statistic.
    Metric(
        &'static str,
        &'static str,
        Vec<(&'static str, Value)>,
        &'static str,
    ),
    /// A CloudWatch Metrics Insights query returning one series.
    Query(String),
}

/// One alarm: `>= threshold` (or `>` with `strictly`) over `periods` of `period` seconds.
struct Alarm {
    id: LogicalId,
    name: &'static str,
    description: String,
    watched: Watched,
    period: u32,
    periods: u32,
    threshold: u32,
    strictly: bool,
    missing: &'static str,
}

pub(super) fn alarms(t: &mut Template, stage: &Stage, names: &Names) {
    let topic = stage.alarms.email.as_deref().map(|email| {
        t.add(topic(stage, email));
        ALARM_TOPIC.r#ref()
    });
    for alarm in definitions(stage, names) {
        t.add(alarm.resource(names, topic.as_ref()));
    }
}

fn definitions(stage: &Stage, names: &Names) -> Vec<Alarm> {
    let function = || {
        vec![(
            "FunctionName",
            Value::str(names.activator_function.as_str()),
        )]
    };
    let ours = |metric| Watched::Metric(metrics::NAMESPACE, metric, function(), "Sum");
    let alarm = |id, name, description: &str, watched, threshold| Alarm {
        id,
        name,
        description: description.to_string(),
        watched,
        period: PERIOD,
        periods: 1,
        threshold,
        strictly: false,
        missing: "notBreaching",
    };
    let mut list = vec![
        alarm(
            ALARM_FAILURE_QUEUE,
            "failure-queue-not-empty",
            "Events the activator failed on after Lambda's retries wait in the failure queue: \
             run jitr-infra redrive",
            Watched::Metric(
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                vec![("QueueName", ACTIVATOR_FAILURE_QUEUE.get_att("QueueName"))],
                "Maximum",
            ),
            1,
        ),
        alarm(
            ALARM_ACTIVATOR_ERRORS,
            "activator-errors",
            "The activator's invocations failed (Lambda retries them, then the failure queue \
             keeps them)",
            Watched::Metric("AWS/Lambda", "Errors", function(), "Sum"),
            1,
        ),
        Alarm {
            periods: THROTTLING_PERIODS,
            strictly: true,
            ..alarm(
                ALARM_IOT_THROTTLING,
                "iot-throttling-sustained",
                "AWS IoT throttled the activator for 15 minutes on end: another caller shares \
                 the quota, or activator.api_rates is above the account's quotas",
                ours(metrics::IOT_THROTTLED),
                THROTTLES_PER_PERIOD,
            )
        },
        alarm(
            ALARM_RULE_FAILURES,
            "rule-failures",
            "The topic rule failed to invoke the activator (see the rule's error log group)",
            Watched::Query(format!(
                "SELECT SUM(Failure) FROM SCHEMA(\"AWS/IoT\", ActionType, RuleName) WHERE \
                 RuleName = '{}'",
                names.rule
            )),
            1,
        ),
        alarm(
            ALARM_MALFORMED_EVENTS,
            "malformed-events",
            "The activator received payloads that are not registered-certificate events",
            ours(metrics::MALFORMED_EVENTS),
            1,
        ),
    ];
    if stage.reconciler.enabled {
        list.push(pending_over_grace(stage, function()));
    }
    list
}

/// Pending certificates older than the grace period, as the sweep counts them; a period
/// with no sweep at all is breaching, so a sweep that stopped running alarms too.
fn pending_over_grace(stage: &Stage, dimensions: Vec<(&'static str, Value)>) -> Alarm {
    let every = stage.reconciler.every_minutes * 60;
    Alarm {
        id: ALARM_PENDING_OVER_GRACE,
        name: "pending-over-grace",
        description: format!(
            "The sweep found certificates pending longer than {} minutes, or did not run for \
             two intervals: run jitr-infra status",
            stage.reconciler.grace_minutes
        ),
        watched: Watched::Metric(
            metrics::NAMESPACE,
            metrics::PENDING_OVER_GRACE,
            dimensions,
            "Maximum",
        ),
        period: (2 * every).min(MAX_EVALUATED_SECONDS),
        periods: 1,
        threshold: 1,
        strictly: false,
        missing: "breaching",
    }
}

impl Alarm {
    fn resource(&self, names: &Names, topic: Option<&Value>) -> Resource {
        let operator = if self.strictly {
            "GreaterThanThreshold"
        } else {
            "GreaterThanOrEqualToThreshold"
        };
        let r = Resource::new(self.id, "AWS::CloudWatch::Alarm")
            .prop("AlarmName", format!("{}{}", names.alarm_prefix, self.name))
            .prop("AlarmDescription", self.description.as_str())
            .prop("ComparisonOperator", operator)
            .prop("Threshold", self.threshold)
            .prop("EvaluationPeriods", self.periods)
            .prop("DatapointsToAlarm", self.periods)
            .prop("TreatMissingData", self.missing);
        let r = match &self.watched {
            Watched::Metric(namespace, metric, dimensions, statistic) => r
                .prop("Namespace", *namespace)
                .prop("MetricName", *metric)
                .prop(
                    "Dimensions",
                    Value::list(dimensions.iter().map(|(name, value)| {
                        Value::map([("Name", Value::str(*name)), ("Value", value.clone())])
                    })),
                )
                .prop("Statistic", *statistic)
                .prop("Period", self.period),
            Watched::Query(query) => r.prop(
                "Metrics",
                Value::list([Value::map([
                    ("Id", Value::str("q1")),
                    ("Expression", Value::str(query.as_str())),
                    ("Period", Value::from(self.period)),
                    ("ReturnData", Value::Bool(true)),
                ])]),
            ),
        };
        match topic {
            Some(topic) => r
                .prop("AlarmActions", Value::list([topic.clone()]))
                .prop("OKActions", Value::list([topic.clone()])),
            None => r,
        }
    }
}

/// The topic the alarms notify, with the stage's address subscribed (AWS mails it a
/// confirmation link first). With a stage key the topic is encrypted with it; CloudWatch then
/// needs the key policy grant the README describes.
fn topic(stage: &Stage, email: &str) -> Resource {
    let r = Resource::new(ALARM_TOPIC, "AWS::SNS::Topic")
        .prop("DisplayName", format!("JITR alarms ({})", stage.stack_name))
        .prop(
            "Subscription",
            Value::list([Value::map([
                ("Endpoint", Value::str(email)),
                ("Protocol", Value::str("email")),
            ])]),
        );
    match &stage.kms_key_arn {
        Some(key) => r.prop("KmsMasterKeyId", key.as_str()),
        None => r.scanner_skip("CKV_AWS_26", scanner::ALARM_TOPIC_UNENCRYPTED),
    }
}
