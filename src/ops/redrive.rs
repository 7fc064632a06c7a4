//! `jitr-infra redrive`: the failure queue's events through the deployed activator again,
//! then a sweep. A message is deleted only after the activator handled its event without a
//! function error; every other message stays in the queue (visible again at the end) and is
//! reported.

use super::Deployed;
use crate::aws::Clients;
use crate::deploy::{aws_error, Reporter};
use crate::error::Error;
use aws_sdk_lambda::types::InvocationType;
use aws_smithy_types::Blob;
use jitr_contract::sweep::{SweepReport, SweepRequest};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

/// Messages one ReceiveMessage returns at most (SQS's limit).
const BATCH: i32 = 10;
/// SQS's longest visibility timeout, seconds (12 hours).
const MAX_VISIBILITY: u32 = 43_200;

/// What to do.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// List what would be done; change nothing.
    pub dry_run: bool,
    /// At most this many messages; `None`: every message.
    pub max: Option<u32>,
    /// Invoke a sweep after the messages.
    pub sweep: bool,
}

/// What `redrive` did (`--json` prints it as it is).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Redrive {
    pub stage: String,
    pub stack: String,
    pub queue: String,
    pub dry_run: bool,
    /// Messages received from the queue.
    pub received: u64,
    /// Events the activator handled without a function error.
    pub redriven: u64,
    pub deleted: u64,
    /// Messages left in the queue (visible again).
    pub remaining: u64,
    pub results: Vec<Redriven>,
    pub failed: Vec<Failed>,
    pub skipped: Vec<Skipped>,
    /// The sweep's report; `None` with `--no-sweep`, `--dry-run`, or when it failed.
    pub sweep: Option<SweepReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep_error: Option<String>,
}

impl Redrive {
    /// Everything was redriven and the sweep (if asked for) completed.
    pub fn complete(&self, opts: &Options) -> bool {
        let sweep_ok = !opts.sweep
            || opts.dry_run
            || self.sweep.as_ref().is_some_and(|s| s.complete) && self.sweep_error.is_none();
        self.failed.is_empty() && self.skipped.is_empty() && sweep_ok
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Redriven {
    pub message_id: String,
    pub certificate_id: Option<String>,
    /// The activator's outcome (`activated`, `already-active`, ...); `would-redrive` in a dry
    /// run, `sweep-record` for the record of a failed sweep (superseded by this run's sweep).
    pub outcome: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failed {
    pub message_id: String,
    pub certificate_id: Option<String>,
    pub error_type: String,
    pub error_message: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    pub message_id: String,
    pub reason: String,
}

/// An asynchronous invocation's record, as Lambda sends it to an on-failure destination.
#[derive(Debug, Clone, PartialEq)]
pub struct InvocationRecord {
    pub request_id: Option<String>,
    pub function_arn: String,
    /// `RetriesExhausted`, `EventAgeExceeded`, ...
    pub condition: Option<String>,
    pub approximate_invoke_count: Option<u64>,
    /// The event the function was invoked with, as it was sent.
    pub request_payload: Value,
    /// `Unhandled` or `Handled` when the last attempt failed in the function.
    pub function_error: Option<String>,
    /// The function's answer (its error document after a function error).
    pub response_payload: Option<Value>,
}

impl InvocationRecord {
    /// The function's name, from `functionArn` (`arn:aws:lambda:REGION:ACCOUNT:function:NAME`
    /// with an optional `:QUALIFIER`).
    pub fn function_name(&self) -> Option<&str> {
        let parts: Vec<&str> = self.function_arn.split(':').collect();
        (parts.len() >= 7 && parts[5] == "function").then(|| parts[6])
    }
}

/// Parses an SQS message body as a Lambda invocation record, the document Lambda sends to an
/// asynchronous invocation's on-failure destination. Its shape is AWS's, documented in the
/// AWS Lambda Developer Guide, "Capturing records of Lambda asynchronous invocations"
/// (<https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html>):
/// `version`, `timestamp`, `requestContext` {`requestId`, `functionArn`, `condition`,
/// `approximateInvokeCount`}, `requestPayload` (the event as sent), `responseContext`
/// {`statusCode`, `executedVersion`, `functionError`} and `responsePayload`. The error names
/// what is missing, for the report.
pub fn parse_invocation_record(body: &str) -> Result<InvocationRecord, String> {
    let v: Value = serde_json::from_str(body)
        .map_err(|e| format!("not an invocation record: not JSON ({e})"))?;
    let context = v
        .get("requestContext")
        .filter(|c| c.is_object())
        .ok_or("not an invocation record: no requestContext")?;
    let function_arn = context
        .get("functionArn")
        .and_then(Value::as_str)
        .ok_or("not an invocation record: no requestContext.functionArn")?
        .to_string();
    let request_payload = v
        .get("requestPayload")
        .cloned()
        .ok_or("not an invocation record: no requestPayload")?;
    let text = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).map(str::to_string);
    let response = v.get("responseContext");
    Ok(InvocationRecord {
        request_id: text(context, "requestId"),
        function_arn,
        condition: text(context, "condition"),
        approximate_invoke_count: context
            .get("approximateInvokeCount")
            .and_then(Value::as_u64),
        request_payload,
        function_error: response.and_then(|r| text(r, "functionError")),
        response_payload: v.get("responsePayload").cloned(),
    })
}

/// A message received, and what became of it.
struct Message {
    id: String,
    receipt: String,
}

/// Runs the redrive on `d`'s failure queue and activator.
pub async fn redrive(
    clients: &Clients,
    d: &Deployed,
    opts: &Options,
    reporter: &dyn Reporter,
) -> Result<Redrive, Error> {
    let queue = d.failure_queue_url.clone().ok_or_else(|| Error::Deployed {
        stack: d.stack_name.clone(),
        problem: "no activator failure queue in the stack".into(),
    })?;
    let mut r = Redrive {
        stage: d.stage.clone(),
        stack: d.stack_name.clone(),
        queue: queue.clone(),
        dry_run: opts.dry_run,
        ..Redrive::default()
    };
    // Hidden from others (and from this run's next receive) while the batch is handled, one
    // synchronous invocation after another: twice the function's timeout for each.
    let visibility = (2 * d.function.timeout_seconds * BATCH as u32).min(MAX_VISIBILITY);
    let mut kept: Vec<Message> = Vec::new();
    let mut sweep_records: Vec<Message> = Vec::new();
    let mut seen = BTreeSet::new();
    loop {
        let room = opts
            .max
            .map_or(BATCH, |m| (m as i32 - r.received as i32).min(BATCH));
        if room <= 0 {
            break;
        }
        let batch = receive(clients, &queue, room, visibility).await?;
        if batch.is_empty() {
            break;
        }
        for m in batch {
            let id = m.message_id().unwrap_or_default().to_string();
            if !seen.insert(id.clone()) {
                continue;
            }
            r.received += 1;
            let msg = Message {
                id,
                receipt: m.receipt_handle().unwrap_or_default().to_string(),
            };
            let body = m.body().unwrap_or_default();
            match handle(clients, d, opts, &msg, body, &mut r, reporter).await {
                Disposition::Delete => delete(clients, &queue, &msg, &mut r).await?,
                Disposition::Keep => kept.push(msg),
                Disposition::AfterSweep => sweep_records.push(msg),
            }
        }
    }
    if opts.sweep && !opts.dry_run {
        sweep(clients, d, &mut r, reporter).await;
        if r.sweep.is_some() && r.sweep_error.is_none() {
            for msg in sweep_records.drain(..) {
                delete(clients, &queue, &msg, &mut r).await?;
            }
        }
    }
    kept.append(&mut sweep_records);
    r.remaining = kept.len() as u64;
    for msg in &kept {
        release(clients, &queue, msg).await?;
    }
    Ok(r)
}

enum Disposition {
    Delete,
    Keep,
    AfterSweep,
}

/// One message: parse, check it is our activator's, re-invoke (or say what would be done).
async fn handle(
    clients: &Clients,
    d: &Deployed,
    opts: &Options,
    msg: &Message,
    body: &str,
    r: &mut Redrive,
    reporter: &dyn Reporter,
) -> Disposition {
    let skip = |r: &mut Redrive, reason: String| {
        r.skipped.push(Skipped {
            message_id: msg.id.clone(),
            reason,
        });
        Disposition::Keep
    };
    let record = match parse_invocation_record(body) {
        Ok(record) => record,
        Err(reason) => return skip(r, reason),
    };
    if record.function_name() != Some(d.activator_function.as_str()) {
        let reason = format!(
            "the record of another function ({}), not the activator {}",
            record.function_arn, d.activator_function
        );
        return skip(r, reason);
    }
    let certificate_id = record
        .request_payload
        .get("certificateId")
        .and_then(Value::as_str)
        .map(str::to_string);
    let done = |r: &mut Redrive, outcome: &str| {
        r.results.push(Redriven {
            message_id: msg.id.clone(),
            certificate_id: certificate_id.clone(),
            outcome: outcome.to_string(),
        })
    };
    if SweepRequest::is_sweep(&record.request_payload) {
        done(r, "sweep-record");
        return Disposition::AfterSweep;
    }
    if opts.dry_run {
        done(r, "would-redrive");
        return Disposition::Keep;
    }
    let result = invoke(clients, d, &record.request_payload).await;
    settle(result, &msg.id, certificate_id, r, reporter)
}

/// Records what the activator answered for one message: handled (delete it) or failed (keep).
fn settle(
    result: Result<Invoked, Error>,
    message_id: &str,
    certificate_id: Option<String>,
    r: &mut Redrive,
    reporter: &dyn Reporter,
) -> Disposition {
    let what = certificate_id
        .as_deref()
        .unwrap_or("(no certificate id)")
        .to_string();
    let (error_type, error_message) = match result {
        Ok(Invoked {
            function_error: None,
            payload,
        }) => {
            let outcome = payload
                .get("outcome")
                .and_then(Value::as_str)
                .unwrap_or("handled")
                .to_string();
            reporter.progress(&format!("redriven {what}: {outcome}"));
            r.redriven += 1;
            r.results.push(Redriven {
                message_id: message_id.to_string(),
                certificate_id,
                outcome,
            });
            return Disposition::Delete;
        }
        Ok(Invoked { payload, .. }) => {
            let text = |k: &str| {
                payload
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            (text("errorType"), text("errorMessage"))
        }
        Err(e) => ("InvokeFailed".to_string(), e.to_string()),
    };
    reporter.progress(&format!("failed {what}: {error_type}: {error_message}"));
    r.failed.push(Failed {
        message_id: message_id.to_string(),
        certificate_id,
        error_type,
        error_message,
    });
    Disposition::Keep
}

struct Invoked {
    function_error: Option<String>,
    payload: Value,
}

/// A synchronous (RequestResponse) invocation of the activator, given the function's timeout
/// (plus a margin) to answer.
async fn invoke(clients: &Clients, d: &Deployed, payload: &Value) -> Result<Invoked, Error> {
    let answer = u64::from(d.function.timeout_seconds) + 15;
    let timeouts = aws_sdk_lambda::config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(Duration::from_secs(answer))
        .operation_timeout(Duration::from_secs(answer * 3))
        .build();
    let out = clients
        .lambda
        .invoke()
        .function_name(&d.activator_function)
        .invocation_type(InvocationType::RequestResponse)
        .payload(Blob::new(payload.to_string()))
        .customize()
        .config_override(aws_sdk_lambda::config::Builder::default().timeout_config(timeouts))
        .send()
        .await
        .map_err(|e| aws_error("lambda:Invoke", &e))?;
    let payload = out
        .payload()
        .and_then(|p| serde_json::from_slice(p.as_ref()).ok())
        .unwrap_or(Value::Null);
    Ok(Invoked {
        function_error: out.function_error().map(str::to_string),
        payload,
    })
}

/// Invokes a sweep (`SweepRequest::new("redrive")`) and keeps its report or its error.
async fn sweep(clients: &Clients, d: &Deployed, r: &mut Redrive, reporter: &dyn Reporter) {
    let request = serde_json::to_value(SweepRequest::new("redrive")).expect("serializes");
    reporter.progress("sweeping: pending certificates of the CA older than the grace period");
    match invoke(clients, d, &request).await {
        Ok(Invoked {
            function_error: None,
            payload,
        }) => match serde_json::from_value::<SweepReport>(payload.clone()) {
            Ok(report) => r.sweep = Some(report),
            Err(_) => {
                r.sweep_error = Some(format!(
                    "the activator did not answer with a sweep report (a version without the \
                     sweep?): {payload}"
                ))
            }
        },
        Ok(Invoked { payload, .. }) => {
            r.sweep_error = Some(format!("the sweep failed in the activator: {payload}"))
        }
        Err(e) => r.sweep_error = Some(e.to_string()),
    }
}

async fn receive(
    clients: &Clients,
    queue: &str,
    max: i32,
    visibility: u32,
) -> Result<Vec<aws_sdk_sqs::types::Message>, Error> {
    let out = clients
        .sqs
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(max)
        .visibility_timeout(visibility as i32)
        // Long polling (1 s): short polling samples some of SQS's servers and may answer
        // empty while messages wait.
        .wait_time_seconds(1)
        .send()
        .await
        .map_err(|e| aws_error("sqs:ReceiveMessage", &e))?;
    Ok(out.messages().to_vec())
}

async fn delete(
    clients: &Clients,
    queue: &str,
    msg: &Message,
    r: &mut Redrive,
) -> Result<(), Error> {
    clients
        .sqs
        .delete_message()
        .queue_url(queue)
        .receipt_handle(&msg.receipt)
        .send()
        .await
        .map_err(|e| aws_error("sqs:DeleteMessage", &e))?;
    r.deleted += 1;
    Ok(())
}

/// Makes a kept message visible again at once (it was hidden while this run handled it).
async fn release(clients: &Clients, queue: &str, msg: &Message) -> Result<(), Error> {
    clients
        .sqs
        .change_message_visibility()
        .queue_url(queue)
        .receipt_handle(&msg.receipt)
        .visibility_timeout(0)
        .send()
        .await
        .map_err(|e| aws_error("sqs:ChangeMessageVisibility", &e))?;
    Ok(())
}

/// The text output: what was done with each message, then the sweep.
pub fn text(r: &Redrive) -> String {
    let mut t = format!(
        "{}failure queue of {}: {} received, {} redriven, {} deleted, {} left in the queue\n",
        if r.dry_run { "dry run: " } else { "" },
        r.stack,
        r.received,
        r.redriven,
        r.deleted,
        r.remaining
    );
    for x in &r.results {
        t.push_str(&format!(
            "  {} {}: {}\n",
            x.message_id,
            x.certificate_id.as_deref().unwrap_or("-"),
            x.outcome
        ));
    }
    for f in &r.failed {
        t.push_str(&format!(
            "  {} {}: FAILED {}: {}\n",
            f.message_id,
            f.certificate_id.as_deref().unwrap_or("-"),
            f.error_type,
            f.error_message
        ));
    }
    for s in &r.skipped {
        t.push_str(&format!("  {}: skipped, {}\n", s.message_id, s.reason));
    }
    match (&r.sweep, &r.sweep_error) {
        (_, Some(e)) => t.push_str(&format!("sweep: FAILED: {e}\n")),
        (Some(s), None) => t.push_str(&format!(
            "sweep: {} listed over {} page(s), {} pending ({} over grace), {} activated, {} \
             failed, {}\n",
            s.listed,
            s.pages,
            s.pending,
            s.over_grace,
            s.activated,
            s.failed,
            if s.complete {
                "complete"
            } else {
                "incomplete (resumes next run)"
            }
        )),
        (None, None) => t.push_str("sweep: not run\n"),
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invocation_record_is_parsed_and_anything_else_is_named() {
        let body = serde_json::json!({
            "version": "1.0",
            "timestamp": "2026-11-29T10:00:00.000Z",
            "requestContext": {"requestId": "r-1",
                "functionArn": "arn:aws:lambda:eu-west-1:123456789012:function:jitr-dev-activator:$LATEST",
                "condition": "RetriesExhausted", "approximateInvokeCount": 3},
            "requestPayload": {"certificateId": "abc", "caCertificateId": "def"},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                "functionError": "Unhandled"},
            "responsePayload": {"errorType": "AwsIotError", "errorMessage": "boom"}
        })
        .to_string();
        let r = parse_invocation_record(&body).unwrap();
        assert_eq!(r.function_name(), Some("jitr-dev-activator"));
        assert_eq!(r.condition.as_deref(), Some("RetriesExhausted"));
        assert_eq!(r.approximate_invoke_count, Some(3));
        assert_eq!(r.request_payload["certificateId"], "abc");
        assert_eq!(r.function_error.as_deref(), Some("Unhandled"));
        for (bad, why) in [
            ("nope", "not JSON"),
            ("{}", "no requestContext"),
            (r#"{"requestContext":{}}"#, "functionArn"),
            (
                r#"{"requestContext":{"functionArn":"arn:aws:lambda:r:a:function:f"}}"#,
                "requestPayload",
            ),
        ] {
            let e = parse_invocation_record(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn complete_means_nothing_left_and_the_sweep_finished() {
        let run = Options {
            dry_run: false,
            max: None,
            sweep: true,
        };
        let mut r = Redrive::default();
        assert!(!r.complete(&run), "no sweep report yet");
        r.sweep = Some(SweepReport {
            complete: true,
            ..SweepReport::default()
        });
        assert!(r.complete(&run));
        r.sweep.as_mut().unwrap().complete = false;
        assert!(!r.complete(&run), "a sweep that left a marker");
        let no_sweep = Options {
            sweep: false,
            ..run
        };
        assert!(r.complete(&no_sweep));
        r.skipped.push(Skipped {
            message_id: "m".into(),
            reason: "x".into(),
        });
        assert!(!r.complete(&no_sweep), "a message stays");
    }
}
