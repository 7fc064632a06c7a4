//! `jitr-infra status`: the deployed front door at a glance. Every area is read from AWS
//! (the CA, the topic rule, our CA's pending certificates, the failure queue, the last hour's
//! metrics, the stack's alarms) with the capacity the deployed configuration gives; what
//! needs an operator is a sentence in [`Status::attention`].

use super::Deployed;
use crate::aws::Clients;
use crate::deploy::aws_error;
use crate::error::Error;
use aws_sdk_cloudwatch::types::{AlarmType, Dimension, Metric, MetricDataQuery, MetricStat};
use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_types::DateTime;
use jitr_contract::activator::ActivatorConfig;
use jitr_contract::metrics;
use jitr_contract::rates::{reservation_for, Capacity, RateConfig, Workload};
use jitr_contract::sweep::SweepConfig;
use serde::Serialize;
use std::collections::BTreeMap;

/// `ListCertificatesByCA` pages `status` reads unless told otherwise (250 certificates each).
pub const DEFAULT_MAX_PAGES: u32 = 4;
/// A CA that expires within this many days needs attention.
pub const EXPIRY_WARNING_DAYS: i64 = 30;
/// The window of the metric figures.
pub const METRICS_WINDOW_SECONDS: i64 = 3600;

/// What `status` found (`--json` prints it as it is).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub stage: String,
    pub stack: String,
    pub region: String,
    /// Nothing needs attention.
    pub healthy: bool,
    /// One sentence per thing that needs an operator.
    pub attention: Vec<String>,
    pub ca: Option<CaView>,
    pub rule: Option<RuleView>,
    pub pending: Option<PendingView>,
    /// The other CAs the activator serves (a stage rotating its CA), each with its pending
    /// certificates; `ca` and `pending` above are the CA named `default`'s.
    pub other_cas: Vec<OtherCaView>,
    pub failure_queue: Option<QueueView>,
    pub last_hour: LastHour,
    pub alarms: Vec<AlarmView>,
    pub capacity: CapacityView,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaView {
    pub id: String,
    /// `None`: the CA is not registered (any more).
    pub status: Option<String>,
    pub auto_registration: bool,
    pub not_after: Option<String>,
    pub expires_in_days: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OtherCaView {
    #[serde(flatten)]
    pub ca: CaView,
    pub pending: Option<PendingView>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleView {
    pub name: String,
    pub exists: bool,
    pub enabled: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingView {
    /// `PENDING_ACTIVATION` certificates of our CA among those listed.
    pub count: u64,
    /// Listing stopped on its page bound with more certificates left (older ones).
    pub truncated: bool,
    pub pages: u32,
    pub listed: u64,
    pub oldest_age_seconds: Option<u64>,
    pub over_grace: u64,
    pub grace_seconds: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueView {
    pub url: String,
    pub visible: u64,
    pub in_flight: u64,
}

/// Sums over the last hour: the activator's own counts (`JITR/Activator`) and Lambda's
/// (`AWS/Lambda` Errors and Throttles), all for the activator function.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastHour {
    pub activated: f64,
    pub already_active: f64,
    pub duplicate_skipped: f64,
    pub rejected: f64,
    pub revoked: f64,
    pub ignored: f64,
    pub malformed: f64,
    pub failed: f64,
    pub iot_throttled: f64,
    pub errors: f64,
    pub lambda_throttles: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmView {
    pub name: String,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityView {
    /// Devices the quotas let the activator onboard per second (one event per device).
    pub devices_per_second: f64,
    /// The operation whose quota bounds it, and that quota (times the share).
    pub bound: String,
    pub bound_rate: f64,
    pub api_share: f64,
    /// What the formula reserves for this capacity (`reservation_for`).
    pub recommended_reservation: u32,
    /// The function's actual reserved concurrency; `None`: none.
    pub reserved_concurrency: Option<u32>,
}

/// Reads every area of `d`; `max_pages` bounds the certificate listing.
pub async fn status(clients: &Clients, d: &Deployed, max_pages: u32) -> Result<Status, Error> {
    let now = jitr_lambda_common::pki::unix_now();
    let mut attention = Vec::new();
    let sweep = SweepConfig::from_lookup(|k| d.function.env(k)).unwrap_or_else(|e| {
        attention.push(format!("the activator's configuration is invalid: {e}"));
        SweepConfig::default()
    });
    let mut other_cas = Vec::new();
    for id in d.ca_certificate_ids.iter().skip(1) {
        let view = ca(clients, id, now).await?;
        let pending = match view.status {
            Some(_) => Some(pending(clients, id, sweep.grace_seconds, max_pages, now).await?),
            None => None,
        };
        other_cas.push(OtherCaView { ca: view, pending });
    }
    let ca = match &d.ca_certificate_id {
        Some(id) => Some(ca(clients, id, now).await?),
        None => None,
    };
    let pending = match ca.as_ref().filter(|c| c.status.is_some()) {
        Some(c) => Some(pending(clients, &c.id, sweep.grace_seconds, max_pages, now).await?),
        None => None,
    };
    let rule = match &d.rule_name {
        Some(name) => Some(rule(clients, name).await?),
        None => None,
    };
    let failure_queue = match &d.failure_queue_url {
        Some(url) => Some(queue(clients, url).await?),
        None => None,
    };
    let mut s = Status {
        stage: d.stage.clone(),
        stack: d.stack_name.clone(),
        region: d.region.clone(),
        healthy: false,
        attention: Vec::new(),
        ca,
        rule,
        pending,
        other_cas,
        failure_queue,
        last_hour: last_hour(clients, &d.activator_function).await?,
        alarms: alarms(clients, d).await?,
        capacity: capacity(d, &mut attention),
    };
    attention.extend(needs_attention(&s, &d.stage));
    s.healthy = attention.is_empty();
    s.attention = attention;
    Ok(s)
}

/// DescribeCACertificate: status, auto-registration and expiry.
async fn ca(clients: &Clients, id: &str, now: i64) -> Result<CaView, Error> {
    let out = match clients
        .iot
        .describe_ca_certificate()
        .certificate_id(id)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            return Ok(CaView {
                id: id.to_string(),
                status: None,
                auto_registration: false,
                not_after: None,
                expires_in_days: None,
            })
        }
        Err(e) => return Err(aws_error("iot:DescribeCACertificate", &e)),
    };
    let desc = out.certificate_description();
    let not_after = desc.and_then(|c| c.validity()).and_then(|v| v.not_after());
    Ok(CaView {
        id: id.to_string(),
        status: desc
            .and_then(|c| c.status())
            .map(|s| s.as_str().to_string()),
        auto_registration: desc
            .and_then(|c| c.auto_registration_status())
            .is_some_and(|s| s.as_str() == "ENABLE"),
        not_after: not_after
            .and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok()),
        expires_in_days: not_after.map(|t| (t.secs() - now).div_euclid(86_400)),
    })
}

/// GetTopicRule: whether the registration rule exists and is enabled.
async fn rule(clients: &Clients, name: &str) -> Result<RuleView, Error> {
    match clients.iot.get_topic_rule().rule_name(name).send().await {
        Ok(out) => Ok(RuleView {
            name: name.to_string(),
            exists: true,
            enabled: !out.rule().and_then(|r| r.rule_disabled()).unwrap_or(false),
        }),
        Err(e) if crate::aws::code(&e).as_deref() == Some("ResourceNotFoundException") => {
            Ok(RuleView {
                name: name.to_string(),
                exists: false,
                enabled: false,
            })
        }
        Err(e) => Err(aws_error("iot:GetTopicRule", &e)),
    }
}

/// ListCertificatesByCA, newest first, at most `max_pages` pages of 250.
async fn pending(
    clients: &Clients,
    ca_id: &str,
    grace: u64,
    max_pages: u32,
    now: i64,
) -> Result<PendingView, Error> {
    let mut view = PendingView {
        count: 0,
        truncated: false,
        pages: 0,
        listed: 0,
        oldest_age_seconds: None,
        over_grace: 0,
        grace_seconds: grace,
    };
    let mut marker: Option<String> = None;
    loop {
        let out = clients
            .iot
            .list_certificates_by_ca()
            .ca_certificate_id(ca_id)
            .ascending_order(false)
            .page_size(250)
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| aws_error("iot:ListCertificatesByCA", &e))?;
        view.pages += 1;
        for c in out.certificates() {
            view.listed += 1;
            if c.status().map(|s| s.as_str()) != Some("PENDING_ACTIVATION") {
                continue;
            }
            view.count += 1;
            let age = c
                .creation_date()
                .map(|t| (now - t.secs()).max(0) as u64)
                .unwrap_or(0);
            view.oldest_age_seconds = Some(view.oldest_age_seconds.unwrap_or(0).max(age));
            if age > grace {
                view.over_grace += 1;
            }
        }
        marker = out
            .next_marker()
            .filter(|m| !m.is_empty())
            .map(str::to_string);
        if marker.is_none() {
            return Ok(view);
        }
        if view.pages >= max_pages {
            view.truncated = true;
            return Ok(view);
        }
    }
}

/// GetQueueAttributes: messages visible and in flight.
async fn queue(clients: &Clients, url: &str) -> Result<QueueView, Error> {
    let out = clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| aws_error("sqs:GetQueueAttributes", &e))?;
    let number = |name: QueueAttributeName| {
        out.attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(QueueView {
        url: url.to_string(),
        visible: number(QueueAttributeName::ApproximateNumberOfMessages),
        in_flight: number(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    })
}

/// The metrics `last_hour` sums: (query id, namespace, metric name).
const LAST_HOUR_METRICS: [(&str, &str, &str); 11] = [
    ("activated", metrics::NAMESPACE, metrics::ACTIVATED),
    ("alreadyActive", metrics::NAMESPACE, metrics::ALREADY_ACTIVE),
    (
        "duplicateSkipped",
        metrics::NAMESPACE,
        metrics::DUPLICATE_SKIPPED,
    ),
    ("rejected", metrics::NAMESPACE, metrics::REJECTED),
    ("revoked", metrics::NAMESPACE, metrics::REVOKED),
    ("ignored", metrics::NAMESPACE, metrics::IGNORED),
    ("malformed", metrics::NAMESPACE, metrics::MALFORMED_EVENTS),
    ("failed", metrics::NAMESPACE, metrics::FAILED),
    ("iotThrottled", metrics::NAMESPACE, metrics::IOT_THROTTLED),
    ("errors", "AWS/Lambda", "Errors"),
    ("lambdaThrottles", "AWS/Lambda", "Throttles"),
];

/// GetMetricData: each metric's sum over the last hour, dimension FunctionName.
async fn last_hour(clients: &Clients, function: &str) -> Result<LastHour, Error> {
    // Whole minutes, as CloudWatch rounds a window, the end rounded up so that the data of
    // the current minute (this very second's included) count.
    let end = (jitr_lambda_common::pki::unix_now() / 60 + 1) * 60;
    let start = end - METRICS_WINDOW_SECONDS;
    let queries: Vec<MetricDataQuery> = LAST_HOUR_METRICS
        .iter()
        .map(|(id, namespace, name)| {
            let metric = Metric::builder()
                .namespace(*namespace)
                .metric_name(*name)
                .dimensions(
                    Dimension::builder()
                        .name(metrics::DIMENSION_FUNCTION)
                        .value(function)
                        .build(),
                )
                .build();
            let stat = MetricStat::builder()
                .metric(metric)
                .period(METRICS_WINDOW_SECONDS as i32)
                .stat("Sum")
                .build();
            MetricDataQuery::builder()
                .id(id.to_ascii_lowercase())
                .metric_stat(stat)
                .return_data(true)
                .build()
        })
        .collect();
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let out = clients
            .cloudwatch
            .get_metric_data()
            .set_metric_data_queries(Some(queries.clone()))
            .start_time(DateTime::from_secs(start))
            .end_time(DateTime::from_secs(end))
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| aws_error("cloudwatch:GetMetricData", &e))?;
        for r in out.metric_data_results() {
            let id = r.id().unwrap_or_default().to_string();
            *sums.entry(id).or_default() += r.values().iter().sum::<f64>();
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let sum = |id: &str| sums.get(&id.to_ascii_lowercase()).copied().unwrap_or(0.0);
    Ok(LastHour {
        activated: sum("activated"),
        already_active: sum("alreadyActive"),
        duplicate_skipped: sum("duplicateSkipped"),
        rejected: sum("rejected"),
        revoked: sum("revoked"),
        ignored: sum("ignored"),
        malformed: sum("malformed"),
        failed: sum("failed"),
        iot_throttled: sum("iotThrottled"),
        errors: sum("errors"),
        lambda_throttles: sum("lambdaThrottles"),
    })
}

/// DescribeAlarms: the stack's alarms (its AWS::CloudWatch::Alarm resources) and every alarm
/// named with the stack's prefix, sorted by name.
async fn alarms(clients: &Clients, d: &Deployed) -> Result<Vec<AlarmView>, Error> {
    let mut found: BTreeMap<String, AlarmView> = BTreeMap::new();
    let by_prefix = clients
        .cloudwatch
        .describe_alarms()
        .alarm_name_prefix(&d.alarm_prefix);
    collect_alarms(by_prefix, &mut found).await?;
    let others: Vec<String> = d
        .stack_alarms
        .iter()
        .filter(|n| !found.contains_key(*n))
        .cloned()
        .collect();
    for chunk in others.chunks(100) {
        let named = clients
            .cloudwatch
            .describe_alarms()
            .set_alarm_names(Some(chunk.to_vec()));
        collect_alarms(named, &mut found).await?;
    }
    Ok(found.into_values().collect())
}

async fn collect_alarms(
    request: aws_sdk_cloudwatch::operation::describe_alarms::builders::DescribeAlarmsFluentBuilder,
    found: &mut BTreeMap<String, AlarmView>,
) -> Result<(), Error> {
    let mut pages = request
        .alarm_types(AlarmType::MetricAlarm)
        .alarm_types(AlarmType::CompositeAlarm)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws_error("cloudwatch:DescribeAlarms", &e))?;
        let metric = page.metric_alarms().iter().map(|a| {
            (
                a.alarm_name(),
                a.state_value().map(|s| s.as_str()),
                a.state_reason(),
            )
        });
        let composite = page.composite_alarms().iter().map(|a| {
            (
                a.alarm_name(),
                a.state_value().map(|s| s.as_str()),
                a.state_reason(),
            )
        });
        for (name, state, reason) in metric.chain(composite) {
            let Some(name) = name else { continue };
            found.insert(
                name.to_string(),
                AlarmView {
                    name: name.to_string(),
                    state: state.unwrap_or("INSUFFICIENT_DATA").to_string(),
                    reason: reason.map(str::to_string),
                },
            );
        }
    }
    Ok(())
}

/// The capacity the deployed configuration gives (rates, share, create_thing, group), and
/// the function's actual reservation. A configuration that does not parse is an attention
/// item (the activator would fail its cold start); the defaults are shown then.
fn capacity(d: &Deployed, attention: &mut Vec<String>) -> CapacityView {
    let env = |k: &str| d.function.env(k);
    let rates = RateConfig::from_lookup(env).unwrap_or_else(|e| {
        attention.push(format!("the activator's configuration is invalid: {e}"));
        RateConfig::default()
    });
    let activator = ActivatorConfig::from_lookup(env).ok();
    let workload = Workload {
        create_thing: activator.as_ref().is_none_or(|a| a.create_thing),
        thing_group: activator.as_ref().is_some_and(|a| a.thing_group.is_some()),
        events_per_device: 1.0,
    };
    let c = Capacity::of(&workload, |op| rates.rates.get(op) * rates.share);
    CapacityView {
        devices_per_second: c.devices_per_second,
        bound: c.bound.name().to_string(),
        bound_rate: c.bound_rate,
        api_share: rates.share,
        recommended_reservation: reservation_for(&c),
        reserved_concurrency: d.function.reserved_concurrency,
    }
}

/// The attention items of what was read (B9's list), one sentence each.
fn needs_attention(s: &Status, stage: &str) -> Vec<String> {
    let mut out = Vec::new();
    for ca in s.ca.iter().chain(s.other_cas.iter().map(|o| &o.ca)) {
        match ca.status.as_deref() {
            None => out.push(format!("CA {} is not registered in AWS IoT", ca.id)),
            Some("ACTIVE") => {}
            Some(other) => out.push(format!(
                "CA {} is {other}: devices it signed cannot register",
                ca.id
            )),
        }
        if ca.status.is_some() && !ca.auto_registration {
            out.push(format!("auto-registration is off for CA {}", ca.id));
        }
        match ca.expires_in_days {
            Some(d) if d < 0 => out.push(format!("CA {} has expired", ca.id)),
            Some(d) if d < EXPIRY_WARNING_DAYS => {
                out.push(format!("CA {} expires in {d} days", ca.id))
            }
            _ => {}
        }
    }
    if let Some(r) = &s.rule {
        if !r.exists {
            out.push(format!("topic rule {} does not exist", r.name));
        } else if !r.enabled {
            out.push(format!(
                "topic rule {} is disabled: no device is activated on its event",
                r.name
            ));
        }
    }
    if let Some(q) = &s.failure_queue {
        let n = q.visible + q.in_flight;
        if n > 0 {
            out.push(format!(
                "failure queue has {n} message{}: run jitr-infra redrive --stage {stage}",
                if n == 1 { "" } else { "s" }
            ));
        }
    }
    if let Some(p) = &s.pending {
        if p.over_grace > 0 {
            out.push(format!(
                "{} pending certificate{} older than the {}-minute grace period: `jitr-infra \
                 redrive` runs a sweep that activates them (one the stage's checks rejected stays \
                 pending until revoked or deleted)",
                p.over_grace,
                if p.over_grace == 1 { " is" } else { "s are" },
                p.grace_seconds / 60
            ));
        }
    }
    for a in s.alarms.iter().filter(|a| a.state == "ALARM") {
        out.push(format!("alarm {} is in ALARM", a.name));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Status {
        Status {
            stage: "prod".into(),
            stack: "acme-prod".into(),
            region: "eu-west-1".into(),
            healthy: true,
            attention: Vec::new(),
            ca: Some(CaView {
                id: "ab".repeat(32),
                status: Some("ACTIVE".into()),
                auto_registration: true,
                not_after: None,
                expires_in_days: Some(400),
            }),
            rule: Some(RuleView {
                name: "acme_prod_registered".into(),
                exists: true,
                enabled: true,
            }),
            pending: None,
            other_cas: Vec::new(),
            failure_queue: None,
            last_hour: LastHour::default(),
            alarms: vec![AlarmView {
                name: "acme-prod-alarm-errors".into(),
                state: "OK".into(),
                reason: None,
            }],
            capacity: CapacityView {
                devices_per_second: 10.0,
                bound: "UpdateCertificate".into(),
                bound_rate: 10.0,
                api_share: 1.0,
                recommended_reservation: 7,
                reserved_concurrency: Some(7),
            },
        }
    }

    #[test]
    fn each_condition_of_the_list_is_one_sentence() {
        assert_eq!(needs_attention(&healthy(), "prod"), Vec::<String>::new());
        let mut s = healthy();
        let ca = s.ca.as_mut().unwrap();
        ca.status = Some("INACTIVE".into());
        ca.auto_registration = false;
        ca.expires_in_days = Some(29);
        s.rule.as_mut().unwrap().enabled = false;
        s.alarms[0].state = "ALARM".into();
        let id = "ab".repeat(32);
        assert_eq!(
            needs_attention(&s, "prod"),
            [
                format!("CA {id} is INACTIVE: devices it signed cannot register"),
                format!("auto-registration is off for CA {id}"),
                format!("CA {id} expires in 29 days"),
                "topic rule acme_prod_registered is disabled: no device is activated on its event"
                    .to_string(),
                "alarm acme-prod-alarm-errors is in ALARM".to_string(),
            ]
        );
        s.ca.as_mut().unwrap().expires_in_days = Some(-1);
        s.rule.as_mut().unwrap().exists = false;
        let items = needs_attention(&s, "prod");
        assert!(items.contains(&format!("CA {id} has expired")), "{items:?}");
        assert!(items.contains(&"topic rule acme_prod_registered does not exist".to_string()));
        // 30 days or more is not yet a concern.
        let mut s = healthy();
        s.ca.as_mut().unwrap().expires_in_days = Some(EXPIRY_WARNING_DAYS);
        assert!(needs_attention(&s, "prod").is_empty());
    }

    #[test]
    fn every_ca_of_a_rotating_stage_is_reported() {
        let mut s = healthy();
        let other = "cd".repeat(32);
        s.other_cas.push(OtherCaView {
            ca: CaView {
                id: other.clone(),
                status: Some("INACTIVE".into()),
                auto_registration: true,
                not_after: None,
                expires_in_days: Some(10),
            },
            pending: Some(PendingView {
                count: 3,
                truncated: false,
                pages: 1,
                listed: 5,
                oldest_age_seconds: None,
                over_grace: 0,
                grace_seconds: 900,
            }),
        });
        assert_eq!(
            needs_attention(&s, "prod"),
            [
                format!("CA {other} is INACTIVE: devices it signed cannot register"),
                format!("CA {other} expires in 10 days"),
            ]
        );
        let text = crate::ops::status_text::text(&s);
        assert!(text.contains("CA cdcdcdcdcdcd…: INACTIVE, auto-registration on, expires in 10 days\n  pending 3\n"), "{text}");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["otherCas"][0]["id"], serde_json::json!(other));
        assert_eq!(json["otherCas"][0]["pending"]["count"], 3);
    }

    #[test]
    fn the_text_has_one_line_per_area() {
        let text = crate::ops::status_text::text(&healthy());
        assert!(
            text.starts_with("stack acme-prod (eu-west-1), stage prod\n"),
            "{text}"
        );
        assert!(
            text.contains("CA abababababab…: ACTIVE, auto-registration on, expires in 400 days\n")
        );
        assert!(text.contains("rule acme_prod_registered: on\n"));
        assert!(text.contains("alarms: 1 OK\n"));
        assert!(text.contains(
            "capacity ~10.0 devices/s (bound UpdateCertificate 10/s), reserved 7 (formula 7)\n"
        ));
        assert!(text.ends_with("healthy\n"), "{text}");
    }
}
