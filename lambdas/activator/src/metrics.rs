//! The activator's own metrics, as CloudWatch embedded metric format (EMF) log lines.
//!
//! A Lambda function emits a metric without any API call (and without permissions or
//! latency for one) by writing a JSON object with an `_aws` block to its log; CloudWatch
//! Logs extracts the metric (CloudWatch docs, "Specification: Embedded metric format"): the
//! root holds each metric's value and each dimension's value ("target members"),
//! `_aws.Timestamp` is milliseconds since the epoch, and `_aws.CloudWatchMetrics` holds
//! directives naming the namespace, the dimension sets and the metrics. The line must be the
//! whole log event, so it is written as its own line, not inside a tracing record.
//!
//! An invocation adds up what it did in a [`Tally`] and writes it once at its end: one
//! document with the dimension set `[FunctionName]` (outcome counts, AWS IoT calls and
//! throttles, token wait, activation latency, the sweep's counts and gauges), then one per
//! AWS IoT operation it called, with `[FunctionName, Operation]` (`IotCalls`,
//! `IotThrottled`). The per-operation values need documents of their own: a root member has
//! one value per document, and the operation is a root member.

use jitr_contract::metrics::*;
use jitr_contract::rates::IotApi;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

pub use jitr_contract::metrics::{MALFORMED_EVENTS, NAMESPACE};

/// Used as the `FunctionName` dimension outside Lambda (tests, local runs).
const NO_FUNCTION_NAME: &str = "jitr-activator";

/// What one invocation did, written as EMF when it ends.
#[derive(Debug, Default)]
pub struct Tally {
    inner: Mutex<Counts>,
}

#[derive(Debug, Default, Clone)]
struct Counts {
    /// Metric name → (value, unit), in the order first recorded.
    values: Vec<(&'static str, f64, &'static str)>,
    /// Per operation: attempts sent, of which throttled.
    calls: BTreeMap<IotApi, (u64, u64)>,
}

impl Counts {
    fn add(&mut self, metric: &'static str, value: f64, unit: &'static str) {
        match self.values.iter_mut().find(|(m, _, _)| *m == metric) {
            Some(entry) => entry.1 += value,
            None => self.values.push((metric, value, unit)),
        }
    }

    fn set(&mut self, metric: &'static str, value: f64, unit: &'static str) {
        match self.values.iter_mut().find(|(m, _, _)| *m == metric) {
            Some(entry) => entry.1 = value,
            None => self.values.push((metric, value, unit)),
        }
    }
}

/// The outcome counts every event invocation reports, zero or not (so an alarm on one of
/// them sees data, not a gap).
pub const EVENT_COUNTS: [&str; 8] = [
    ACTIVATED,
    ALREADY_ACTIVE,
    DUPLICATE_SKIPPED,
    REJECTED,
    REVOKED,
    IGNORED,
    MALFORMED_EVENTS,
    FAILED,
];

impl Tally {
    /// A tally whose document carries `zeros` (and the AWS IoT totals) even when nothing
    /// happened to them.
    pub fn with(zeros: &[&'static str]) -> Tally {
        let tally = Tally::default();
        {
            let mut c = tally.lock();
            for metric in zeros {
                c.add(metric, 0.0, "Count");
            }
            c.add(IOT_CALLS, 0.0, "Count");
            c.add(IOT_THROTTLED, 0.0, "Count");
            c.add(TOKEN_WAIT, 0.0, "Milliseconds");
        }
        tally
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One more of `metric` (a count).
    pub fn count(&self, metric: &'static str) {
        self.lock().add(metric, 1.0, "Count");
    }

    /// `n` more of `metric` (a count).
    pub fn add(&self, metric: &'static str, n: u64) {
        self.lock().add(metric, n as f64, "Count");
    }

    /// `metric` is `value` (a gauge in `unit`, the last value wins).
    pub fn gauge(&self, metric: &'static str, value: f64, unit: &'static str) {
        self.lock().set(metric, value, unit);
    }

    /// One attempt of `op` sent; `throttled` when AWS IoT refused it for its rate.
    pub fn call(&self, op: IotApi, throttled: bool) {
        let mut c = self.lock();
        let entry = c.calls.entry(op).or_default();
        entry.0 += 1;
        entry.1 += u64::from(throttled);
        c.add(IOT_CALLS, 1.0, "Count");
        c.add(IOT_THROTTLED, if throttled { 1.0 } else { 0.0 }, "Count");
    }

    /// Time spent waiting for a token.
    pub fn token_wait(&self, wait: Duration) {
        self.lock()
            .add(TOKEN_WAIT, wait.as_secs_f64() * 1000.0, "Milliseconds");
    }

    /// From the start of handling to the certificate's activation.
    pub fn activation_latency(&self, latency: Duration) {
        self.lock().set(
            ACTIVATION_LATENCY,
            latency.as_secs_f64() * 1000.0,
            "Milliseconds",
        );
    }

    /// Attempts of `op` sent and, of them, throttled.
    pub fn calls(&self, op: IotApi) -> (u64, u64) {
        self.lock().calls.get(&op).copied().unwrap_or_default()
    }

    /// The value recorded for `metric`, if any.
    pub fn value(&self, metric: &str) -> Option<f64> {
        let c = self.lock();
        c.values.iter().find(|(m, _, _)| *m == metric).map(|e| e.1)
    }

    /// The EMF documents of this tally.
    pub fn documents(&self, function_name: &str, timestamp_ms: u64) -> Vec<Value> {
        let c = self.lock().clone();
        let mut root = Map::new();
        let mut metrics = Vec::new();
        for (name, value, unit) in &c.values {
            root.insert((*name).into(), number(*value));
            metrics.push(json!({"Name": name, "Unit": unit}));
        }
        let mut documents = vec![document(
            &[DIMENSION_FUNCTION],
            metrics,
            root,
            function_name,
            timestamp_ms,
        )];
        for (op, (calls, throttled)) in &c.calls {
            let mut root = Map::new();
            root.insert(DIMENSION_OPERATION.into(), op.name().into());
            root.insert(IOT_CALLS.into(), (*calls).into());
            root.insert(IOT_THROTTLED.into(), (*throttled).into());
            let metrics = vec![
                json!({"Name": IOT_CALLS, "Unit": "Count"}),
                json!({"Name": IOT_THROTTLED, "Unit": "Count"}),
            ];
            documents.push(document(
                &[DIMENSION_FUNCTION, DIMENSION_OPERATION],
                metrics,
                root,
                function_name,
                timestamp_ms,
            ));
        }
        documents
    }
}

/// Whole numbers as integers, the rest as they are.
fn number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 9e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

fn document(
    dimensions: &[&str],
    metrics: Vec<Value>,
    mut root: Map<String, Value>,
    function_name: &str,
    timestamp_ms: u64,
) -> Value {
    root.insert(DIMENSION_FUNCTION.into(), function_name.into());
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions],
                "Metrics": metrics
            }]
        }),
    );
    Value::Object(root)
}

type LineWriter = dyn Fn(&str) + Send + Sync;

/// Writes EMF lines.
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

    /// Writes `tally`'s documents, stamped now.
    pub fn emit(&self, tally: &Tally) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        for doc in tally.documents(&self.function_name, now_ms) {
            (self.write)(&doc.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn an_invocation_is_one_document_plus_one_per_operation() {
        let tally = Tally::with(&EVENT_COUNTS);
        tally.count(ACTIVATED);
        tally.call(IotApi::DescribeCertificate, true);
        tally.call(IotApi::DescribeCertificate, false);
        tally.call(IotApi::UpdateCertificate, false);
        tally.token_wait(Duration::from_millis(250));
        tally.activation_latency(Duration::from_millis(1500));
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        Emf::to("jitr-dev-activator", move |l| {
            sink.lock().unwrap().push(l.into())
        })
        .emit(&tally);
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines.iter().all(|l| !l.contains('\n')));
        let mut docs: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let ts = docs[0]["_aws"]["Timestamp"].take();
        assert!(ts.as_u64().unwrap() > 1_700_000_000_000, "{ts}");
        let main = &docs[0];
        assert_eq!(main["FunctionName"], "jitr-dev-activator");
        assert_eq!(main["Activated"], 1);
        assert_eq!(main["MalformedEvents"], 0);
        assert_eq!(main["IotCalls"], 3);
        assert_eq!(main["IotThrottled"], 1);
        assert_eq!(main["TokenWaitMs"], 250);
        assert_eq!(main["ActivationLatency"], 1500);
        let directive = &main["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "JITR/Activator");
        assert_eq!(directive["Dimensions"], json!([["FunctionName"]]));
        // Every metric a directive names is a root member (the spec's target members).
        for m in directive["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(main[name].is_number(), "{name} missing from {main}");
        }
        assert!(directive["Metrics"]
            .as_array()
            .unwrap()
            .contains(&json!({"Name": "TokenWaitMs", "Unit": "Milliseconds"})));
        let describe = &docs[1];
        assert_eq!(
            describe["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["FunctionName", "Operation"]])
        );
        assert_eq!(describe["Operation"], "DescribeCertificate");
        assert_eq!(describe["IotCalls"], 2);
        assert_eq!(describe["IotThrottled"], 1);
        assert_eq!(docs[2]["Operation"], "UpdateCertificate");
        assert_eq!(docs[2]["IotThrottled"], 0);
    }

    #[test]
    fn gauges_keep_the_last_value_and_counts_add_up() {
        let tally = Tally::default();
        tally.gauge(OLDEST_PENDING_AGE, 30.0, "Seconds");
        tally.gauge(OLDEST_PENDING_AGE, 90.0, "Seconds");
        tally.add(SWEEP_LISTED, 7);
        tally.add(SWEEP_LISTED, 3);
        assert_eq!(tally.value(OLDEST_PENDING_AGE), Some(90.0));
        assert_eq!(tally.value(SWEEP_LISTED), Some(10.0));
        let docs = tally.documents("f", 1);
        assert_eq!(docs.len(), 1, "no operation called");
        assert_eq!(docs[0]["OldestPendingAgeSeconds"], 90);
    }
}
