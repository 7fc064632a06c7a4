//! The activator's own metrics, as CloudWatch embedded metric format (EMF) log lines.
//!
//! A Lambda function emits a metric without any API call (and without permissions or
//! latency for one) by writing a JSON object with an `_aws` block to its log; CloudWatch
//! Logs extracts the metric (CloudWatch docs, "Specification: Embedded metric format"): the
//! root holds the metric's value and the dimension values, `_aws.Timestamp` is milliseconds
//! since the epoch, and `_aws.CloudWatchMetrics` names the namespace, dimension sets and
//! metrics. The line must be the whole log event, so it is written as its own line, not
//! inside a tracing record.

use serde_json::json;
use std::io::Write;

/// The CloudWatch namespace of the activator's metrics.
pub const NAMESPACE: &str = "JITR/Activator";
/// Events that were not registered-certificate events (handled, not retried).
pub const MALFORMED_EVENTS: &str = "MalformedEvents";
/// Used as the `FunctionName` dimension outside Lambda (tests, local runs).
const NO_FUNCTION_NAME: &str = "jitr-activator";

type LineWriter = dyn Fn(&str) + Send + Sync;

/// Writes EMF lines, one per counted event.
pub struct Emf {
    function_name: String,
    write: Box<LineWriter>,
}

impl Emf {
    /// To stdout, which Lambda ships to CloudWatch Logs, with the function's name (Lambda's
    /// `AWS_LAMBDA_FUNCTION_NAME`) as the dimension, so each stage's function has its own metric.
    pub fn stdout() -> Emf {
        let function_name = std::env::var("AWS_LAMBDA_FUNCTION_NAME")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| NO_FUNCTION_NAME.into());
        Emf::to(function_name, |line| {
            // A log line that cannot be written has nowhere better to go.
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        })
    }

    /// To `write`, one call per line (tests capture the lines this way).
    pub fn to(
        function_name: impl Into<String>,
        write: impl Fn(&str) + Send + Sync + 'static,
    ) -> Emf {
        Emf {
            function_name: function_name.into(),
            write: Box::new(write),
        }
    }

    /// Counts one occurrence of `metric` now.
    pub fn count(&self, metric: &str) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        (self.write)(&count_line(metric, &self.function_name, now_ms).to_string());
    }
}

/// One EMF document: `metric` = 1 (unit Count) with the dimension `FunctionName`.
pub fn count_line(metric: &str, function_name: &str, timestamp_ms: u64) -> serde_json::Value {
    json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["FunctionName"]],
                "Metrics": [{"Name": metric, "Unit": "Count"}]
            }]
        },
        "FunctionName": function_name,
        metric: 1
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_count_is_one_emf_document_on_one_line() {
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        let emf = Emf::to("jitr-dev-activator", move |l| {
            sink.lock().unwrap().push(l.into())
        });
        emf.count(MALFORMED_EVENTS);
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 1);
        assert!(!lines[0].contains('\n'));
        let mut doc: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        let ts = doc["_aws"]["Timestamp"].take();
        assert!(ts.as_u64().unwrap() > 1_700_000_000_000, "{ts}");
        assert_eq!(
            doc,
            json!({
                "_aws": {
                    "Timestamp": null,
                    "CloudWatchMetrics": [{
                        "Namespace": "JITR/Activator",
                        "Dimensions": [["FunctionName"]],
                        "Metrics": [{"Name": "MalformedEvents", "Unit": "Count"}]
                    }]
                },
                "FunctionName": "jitr-dev-activator",
                "MalformedEvents": 1
            })
        );
    }
}
