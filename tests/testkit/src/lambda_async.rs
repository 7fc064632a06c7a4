//! Lambda's asynchronous invocation, as the IoT rule's Lambda action gets it, around the real
//! `bootstrap`: the harness the burst test and the benchmark run the activator in.
//!
//! What AWS documents ("How Lambda handles errors and retries with asynchronous invocation",
//! <https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html>;
//! "Configuring error handling settings", `invocation-async-configuring.html`; "Capturing
//! records of Lambda asynchronous invocations", `invocation-async-retain-records.html`), and
//! how [`AsyncLambda`] does it:
//!
//! - Events go to an internal queue; the caller gets no answer (the 202 of `Invoke`). Here:
//!   [`AsyncLambda::invoke`], a near-FIFO queue (a free container takes one of the first few
//!   ready events at random, as Lambda's queue is not strictly ordered).
//! - Concurrency is capped by the reserved concurrency R; events beyond it are throttled and
//!   return to the queue, retried for up to 6 hours. Here: R worker processes (warm
//!   containers, each under its own [`RuntimeHost`]); an event waits in the queue until one is
//!   free, which is the throttle-and-retry with its delay compressed to nothing.
//! - A function error (an error the function's code returns, or the runtime's: a timeout, a
//!   crash) is retried twice by default, one minute and then two minutes later
//!   (`MaximumRetryAttempts` 0..=2). Here: the delays are compressed (default 100 ms and
//!   200 ms) and their count is the retry attempts.
//! - An event older than `MaximumEventAgeInSeconds` is discarded instead of run.
//! - An event that fails all its attempts, or expires, goes to the on-failure destination as
//!   an invocation record (shape below, from the "Example invocation record" of
//!   `invocation-async-retain-records.html`); here a standard SQS queue, sent with
//!   `SendMessage` (see [`crate::sqs`]).
//!
//! Nothing else of the function's environment is faked: the workers get the environment the
//! template sets (see [`function_env`]) and reach AWS through `AWS_ENDPOINT_URL` (moto, or
//! the throttling proxy in front of it).

use crate::runtime::{Invocation, RuntimeHost};
use crate::sqs::Sqs;
use aws_sdk_iot::primitives::{DateTime, DateTimeFormat};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// The function's asynchronous invocation settings, with Lambda's delays compressed.
#[derive(Debug, Clone)]
pub struct AsyncConfig {
    pub function_name: String,
    /// Reserved concurrency R: worker processes, each one invocation at a time.
    pub concurrency: usize,
    /// The function's timeout (the stack's default is 30 s).
    pub timeout: Duration,
    /// The wait before each retry of a function error; its length is `MaximumRetryAttempts`
    /// (0..=2). AWS waits 1 min and 2 min; the default here is 100 ms and 200 ms.
    pub retry_delays: Vec<Duration>,
    /// `MaximumEventAgeInSeconds` (AWS: 60 s..=6 h, default 6 h).
    pub maximum_event_age: Duration,
    /// The on-failure destination: an SQS endpoint and queue URL.
    pub on_failure: Option<(Sqs, String)>,
    /// A free worker takes one of the first `pick_window` ready events at random.
    pub pick_window: usize,
}

impl AsyncConfig {
    /// The stack's settings for `function_name` with reserved concurrency `concurrency`:
    /// 30 s timeout, 2 retries (compressed to 100 ms and 200 ms), events kept 6 h.
    pub fn new(function_name: &str, concurrency: usize) -> AsyncConfig {
        AsyncConfig {
            function_name: function_name.to_string(),
            concurrency,
            timeout: Duration::from_secs(30),
            retry_delays: vec![Duration::from_millis(100), Duration::from_millis(200)],
            maximum_event_age: Duration::from_secs(6 * 3600),
            on_failure: None,
            pick_window: 8,
        }
    }

    /// The function's ARN, as invocation records carry it (unqualified: `$LATEST` ran).
    pub fn function_arn(&self) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{}",
            crate::REGION,
            crate::ACCOUNT,
            self.function_name
        )
    }
}

/// What the harness has done so far.
#[derive(Debug, Clone, Default)]
pub struct AsyncStats {
    /// Events accepted by [`AsyncLambda::invoke`].
    pub enqueued: u64,
    /// Attempts run (each a Lambda invocation of the function).
    pub invocations: u64,
    /// Function errors, by their `errorType`.
    pub function_errors: BTreeMap<String, u64>,
    /// Successful answers, by the event's `certificateId` ("" for events without one).
    pub results: BTreeMap<String, Vec<Answer>>,
    /// Finished events (succeeded or given up), by the number of attempts they took.
    pub attempts: BTreeMap<u32, u64>,
    /// Invocation records sent to the on-failure destination, by their `condition`.
    pub failure_records: BTreeMap<String, u64>,
    /// Records that could not be sent (Lambda's `DestinationDeliveryFailures`).
    pub destination_failures: u64,
    /// Events given up with no destination to send them to.
    pub discarded: u64,
    /// Attempts that waited for a free container (more than [`THROTTLED_AFTER`]): Lambda
    /// throttles them and retries them from its queue (its `Throttles` metric).
    pub throttles: u64,
    /// The longest an attempt waited for a free container.
    pub max_queue_wait: Duration,
    /// The most invocations that ran at once (never more than R).
    pub peak_concurrency: usize,
    /// The first event accepted and the last attempt finished.
    pub first_enqueued: Option<Instant>,
    pub last_finished: Option<Instant>,
}

impl AsyncStats {
    /// Function errors of every type.
    pub fn function_error_count(&self) -> u64 {
        self.function_errors.values().sum()
    }
}

/// A successful answer and when it came.
#[derive(Debug, Clone)]
pub struct Answer {
    pub at: Instant,
    pub value: Value,
}

/// An attempt that waits longer than this for a container counts as throttled.
pub const THROTTLED_AFTER: Duration = Duration::from_millis(50);

/// One queued event.
#[derive(Debug, Clone)]
struct Event {
    request_id: String,
    payload: Value,
    /// When Lambda accepted it: its age counts from here.
    accepted: Instant,
    /// When it may run (its acceptance, or the end of its retry delay).
    due: Instant,
    attempts: u32,
    /// The last function error's `errorType` and answer.
    last_error: Option<(String, Value)>,
}

#[derive(Default)]
struct State {
    ready: VecDeque<Event>,
    delayed: Vec<Event>,
    in_flight: usize,
    stats: AsyncStats,
    stopping: bool,
    next_id: u64,
    rng: u64,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    config: AsyncConfig,
    logs: Mutex<Vec<String>>,
}

/// The asynchronous invocation of one function, run by R warm worker processes.
pub struct AsyncLambda {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

/// The environment the stack sets on the activator, pointed at `endpoint` (moto, or the
/// throttling proxy): test credentials and region, the activator's configuration, and its
/// rates with the reserved concurrency they are split over.
pub fn function_env(
    endpoint: &str,
    config: &jitr_contract::activator::ActivatorConfig,
    rates: &jitr_contract::rates::RateConfig,
) -> Vec<(String, String)> {
    use jitr_contract::rates::{ENV_API_RATES, ENV_API_SHARE, ENV_CONCURRENCY};
    let mut env = crate::aws_env(endpoint);
    env.extend(config.to_env().into_iter().map(|(k, v)| (k.to_string(), v)));
    env.push((ENV_API_RATES.into(), rates.rates.to_env()));
    env.push((ENV_API_SHARE.into(), rates.share.to_string()));
    env.push((ENV_CONCURRENCY.into(), rates.concurrency.to_string()));
    env
}

impl AsyncLambda {
    /// Starts `config.concurrency` containers of `bootstrap` with `env` (plus
    /// `AWS_LAMBDA_FUNCTION_NAME`), each waiting for its first event.
    pub fn start(bootstrap: &Path, env: &[(String, String)], config: AsyncConfig) -> AsyncLambda {
        assert!(
            config.concurrency > 0,
            "reserved concurrency 0 runs nothing"
        );
        assert!(
            config.retry_delays.len() <= 2,
            "MaximumRetryAttempts is 0..=2"
        );
        let mut env = env.to_vec();
        env.push((
            "AWS_LAMBDA_FUNCTION_NAME".into(),
            config.function_name.clone(),
        ));
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                rng: seed | 1,
                ..State::default()
            }),
            cv: Condvar::new(),
            config,
            logs: Mutex::new(Vec::new()),
        });
        let workers = (0..shared.config.concurrency)
            .map(|_| {
                let worker = Worker::start(bootstrap, &env, shared.clone());
                std::thread::spawn(move || worker.run())
            })
            .collect();
        AsyncLambda { shared, workers }
    }

    /// Accepts an event now (`Invoke` with `InvocationType: Event`).
    pub fn invoke(&self, payload: Value) {
        self.invoke_after(payload, Duration::ZERO);
    }

    /// Accepts an event `delay` from now (a device that publishes later); its age counts
    /// from then.
    pub fn invoke_after(&self, payload: Value, delay: Duration) {
        let mut st = self.shared.state.lock().unwrap();
        st.next_id += 1;
        let due = Instant::now() + delay;
        let event = Event {
            request_id: request_id(st.next_id, st.rng),
            payload,
            accepted: due,
            due,
            attempts: 0,
            last_error: None,
        };
        st.delayed.push(event);
        self.shared.cv.notify_all();
    }

    /// Waits until every event accepted so far is finished; false if `timeout` passed first.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let give_up = Instant::now() + timeout;
        let mut st = self.shared.state.lock().unwrap();
        while !(st.ready.is_empty() && st.delayed.is_empty() && st.in_flight == 0) {
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .shared
                .cv
                .wait_timeout(st, left.min(Duration::from_millis(100)))
                .unwrap()
                .0;
        }
        true
    }

    pub fn stats(&self) -> AsyncStats {
        self.shared.state.lock().unwrap().stats.clone()
    }

    /// Every line the containers wrote to stdout and stderr so far.
    pub fn logs(&self) -> Vec<String> {
        self.shared.logs.lock().unwrap().clone()
    }

    /// The sum of `metric` over the embedded-metric-format documents in the logs.
    pub fn emf_sum(&self, metric: &str) -> f64 {
        let logs = self.shared.logs.lock().unwrap();
        logs.iter()
            .filter(|l| l.contains("\"_aws\""))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v.get(metric).and_then(Value::as_f64))
            .fold(0.0, |a, b| a + b)
    }
}

impl Drop for AsyncLambda {
    fn drop(&mut self) {
        self.shared.state.lock().unwrap().stopping = true;
        self.shared.cv.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A Lambda request id (a UUID's shape), unique within the harness.
fn request_id(n: u64, salt: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        (salt >> 32) as u32,
        (salt >> 16) as u16,
        (salt >> 4) & 0xfff,
        salt & 0xfff,
        n
    )
}

/// What one attempt gave.
enum Attempt {
    Answered(Value),
    /// `errorType`, the error answer.
    Failed(String, Value),
}

/// What a worker does with an event it took from the queue.
enum Take {
    Run(Event),
    /// Too old to run: give it up.
    Expired(Event),
}

/// One warm container: a Runtime API host and the `bootstrap` process under it.
struct Worker {
    host: RuntimeHost,
    child: Child,
    bootstrap: PathBuf,
    env: Vec<(String, String)>,
    shared: Arc<Shared>,
}

impl Worker {
    fn start(bootstrap: &Path, env: &[(String, String)], shared: Arc<Shared>) -> Worker {
        let host = RuntimeHost::start();
        let child = spawn(&host, bootstrap, env, &shared);
        Worker {
            host,
            child,
            bootstrap: bootstrap.to_path_buf(),
            env: env.to_vec(),
            shared,
        }
    }

    fn run(mut self) {
        while let Some(take) = next_event(&self.shared) {
            match take {
                Take::Expired(event) => give_up(&self.shared, event, "EventAgeExceeded"),
                Take::Run(mut event) => {
                    event.attempts += 1;
                    let attempt = self.attempt(&event);
                    finish(&self.shared, event, attempt);
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Runs one attempt of `event` and waits for its answer, as Lambda does: until the
    /// function's timeout, after which the container is replaced (a timeout is a function
    /// error); a container that exits mid-invocation is replaced too.
    fn attempt(&mut self, event: &Event) -> Attempt {
        let timeout = self.shared.config.timeout;
        self.host
            .invoke_as(&event.request_id, event.payload.clone(), timeout);
        let deadline = Instant::now() + timeout + Duration::from_millis(500);
        loop {
            let slice = Duration::from_millis(200);
            if let Some(Invocation { result, .. }) = self.host.wait_result(&event.request_id, slice)
            {
                return match result {
                    Ok(answer) => Attempt::Answered(answer),
                    Err(error) => Attempt::Failed(error_type(&error), error),
                };
            }
            if let Some(init) = self.host.init_error() {
                return Attempt::Failed(error_type(&init), init);
            }
            let exited = self.child.try_wait().ok().flatten().is_some();
            if exited || Instant::now() >= deadline {
                let (kind, message) = if exited {
                    ("Runtime.ExitError", "the runtime exited before answering")
                } else {
                    ("Sandbox.Timedout", "Task timed out")
                };
                self.replace_container();
                let message = format!("RequestId: {} Error: {message}", event.request_id);
                return Attempt::Failed(
                    kind.to_string(),
                    json!({"errorType": kind, "errorMessage": message}),
                );
            }
        }
    }

    fn replace_container(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.host = RuntimeHost::start();
        self.child = spawn(&self.host, &self.bootstrap, &self.env, &self.shared);
    }
}

/// Starts `bootstrap` under `host`, its output collected into the shared log.
fn spawn(
    host: &RuntimeHost,
    bootstrap: &Path,
    env: &[(String, String)],
    shared: &Arc<Shared>,
) -> Child {
    let mut child = host.spawn(bootstrap, env);
    let out: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("piped stdout"));
    let err: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("piped stderr"));
    for stream in [out, err] {
        let shared = shared.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                shared.logs.lock().unwrap().push(line);
            }
        });
    }
    child
}

/// The `errorType` of an error answer (Lambda's runtime API error body).
fn error_type(error: &Value) -> String {
    error["errorType"]
        .as_str()
        .unwrap_or("Unhandled")
        .to_string()
}

/// Blocks until an event is due and a container (the caller) is free; `None` when stopping.
fn next_event(shared: &Shared) -> Option<Take> {
    let mut st = shared.state.lock().unwrap();
    loop {
        if st.stopping {
            return None;
        }
        promote_due(&mut st);
        if !st.ready.is_empty() {
            let window = st.ready.len().min(shared.config.pick_window.max(1));
            let pick = (next_random(&mut st.rng) % window as u64) as usize;
            let event = st.ready.remove(pick).expect("within the window");
            st.in_flight += 1;
            if event.accepted.elapsed() > shared.config.maximum_event_age {
                return Some(Take::Expired(event));
            }
            let waited = event.due.elapsed();
            st.stats.max_queue_wait = st.stats.max_queue_wait.max(waited);
            if waited > THROTTLED_AFTER {
                st.stats.throttles += 1;
            }
            st.stats.invocations += 1;
            st.stats.peak_concurrency = st.stats.peak_concurrency.max(st.in_flight);
            return Some(Take::Run(event));
        }
        let next_due = st.delayed.iter().map(|e| e.due).min();
        let wait = next_due.map_or(Duration::from_millis(100), |d| {
            d.saturating_duration_since(Instant::now())
        });
        st = shared
            .cv
            .wait_timeout(st, wait.max(Duration::from_millis(1)))
            .unwrap()
            .0;
    }
}

/// Moves the events whose time has come to the ready queue, in the order they came due.
fn promote_due(st: &mut State) {
    let now = Instant::now();
    let mut due: Vec<Event> = Vec::new();
    let mut i = 0;
    while i < st.delayed.len() {
        if st.delayed[i].due > now {
            i += 1;
        } else {
            due.push(st.delayed.swap_remove(i));
        }
    }
    due.sort_by_key(|e| e.due);
    for event in due {
        if event.attempts == 0 {
            st.stats.enqueued += 1;
            let first = st.stats.first_enqueued.get_or_insert(event.accepted);
            *first = (*first).min(event.accepted);
        }
        st.ready.push_back(event);
    }
}

/// xorshift64: the queue's pick, no statistics asked of it.
fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// Records an attempt's outcome: a success is final; a function error is retried after its
/// delay while retries remain, else the event is given up.
fn finish(shared: &Shared, mut event: Event, attempt: Attempt) {
    let mut st = shared.state.lock().unwrap();
    st.stats.last_finished = Some(Instant::now());
    match attempt {
        Attempt::Answered(answer) => {
            let id = event.payload["certificateId"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let answer = Answer {
                at: Instant::now(),
                value: answer,
            };
            st.stats.results.entry(id).or_default().push(answer);
            *st.stats.attempts.entry(event.attempts).or_default() += 1;
            st.in_flight -= 1;
            shared.cv.notify_all();
        }
        Attempt::Failed(kind, error) => {
            *st.stats.function_errors.entry(kind.clone()).or_default() += 1;
            event.last_error = Some((kind, error));
            let retry = shared.config.retry_delays.get(event.attempts as usize - 1);
            if let Some(delay) = retry {
                event.due = Instant::now() + *delay;
                st.delayed.push(event);
                st.in_flight -= 1;
                shared.cv.notify_all();
            } else {
                drop(st);
                give_up(shared, event, "RetriesExhausted");
            }
        }
    }
}

/// Sends `event`'s invocation record to the on-failure destination (if any) and counts it;
/// the caller's slot is released after the record is sent.
fn give_up(shared: &Shared, event: Event, condition: &str) {
    let sent = match &shared.config.on_failure {
        Some((sqs, url)) => {
            let record = invocation_record(&shared.config, &event, condition);
            Some(sqs.send_message(url, &record.to_string()).is_ok())
        }
        None => None,
    };
    let mut st = shared.state.lock().unwrap();
    *st.stats.attempts.entry(event.attempts).or_default() += 1;
    match sent {
        Some(true) => {
            *st.stats
                .failure_records
                .entry(condition.into())
                .or_default() += 1
        }
        Some(false) => st.stats.destination_failures += 1,
        None => st.stats.discarded += 1,
    }
    st.stats.last_finished = Some(Instant::now());
    st.in_flight -= 1;
    shared.cv.notify_all();
}

/// The invocation record Lambda sends to an on-failure destination. Its shape is the
/// "Example invocation record" of
/// <https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html>:
/// `version` "1.0", an ISO-8601 `timestamp`, `requestContext` {`requestId`, `functionArn`
/// (qualified with the version that ran), `condition` (`RetriesExhausted`,
/// `EventAgeExceeded`), `approximateInvokeCount`}, the event as `requestPayload`, and
/// `responseContext` {`statusCode` 200, `executedVersion`, `functionError` "Unhandled"} with
/// the error answer as `responsePayload`. An event that expired before any attempt has no
/// response: AWS documents none for it, so both response fields are left out.
fn invocation_record(config: &AsyncConfig, event: &Event, condition: &str) -> Value {
    let timestamp = DateTime::from(SystemTime::now())
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_default();
    let mut record = json!({
        "version": "1.0",
        "timestamp": timestamp,
        "requestContext": {
            "requestId": event.request_id,
            "functionArn": format!("{}:$LATEST", config.function_arn()),
            "condition": condition,
            "approximateInvokeCount": event.attempts,
        },
        "requestPayload": event.payload,
    });
    if let Some((_, error)) = &event.last_error {
        record["responseContext"] = json!({
            "statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"
        });
        record["responsePayload"] = error.clone();
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64, due: Instant, attempts: u32) -> Event {
        Event {
            request_id: request_id(n, 0x1234_5678_9abc_def0),
            payload: json!({"n": n}),
            accepted: due,
            due,
            attempts,
            last_error: None,
        }
    }

    #[test]
    fn due_events_become_ready_in_the_order_they_came_due_and_count_once() {
        let now = Instant::now();
        let mut st = State {
            delayed: vec![
                event(1, now - Duration::from_millis(5), 0),
                event(2, now + Duration::from_secs(60), 0),
                event(3, now - Duration::from_millis(9), 0),
                event(4, now - Duration::from_millis(1), 1),
            ],
            ..State::default()
        };
        promote_due(&mut st);
        let order: Vec<u64> = st
            .ready
            .iter()
            .map(|e| e.payload["n"].as_u64().unwrap())
            .collect();
        assert_eq!(order, [3, 1, 4]);
        assert_eq!(st.delayed.len(), 1, "the future event waits");
        assert_eq!(st.stats.enqueued, 2, "a retry is not a new event");
        assert_eq!(
            st.stats.first_enqueued,
            Some(now - Duration::from_millis(9))
        );
    }

    #[test]
    fn records_carry_the_last_error_and_request_ids_look_like_lambdas() {
        let config = AsyncConfig::new("fn-a", 2);
        let mut e = event(7, Instant::now(), 3);
        let id = e.request_id.clone();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        let never_run =
            invocation_record(&config, &event(8, Instant::now(), 0), "EventAgeExceeded");
        assert!(never_run.get("responseContext").is_none());
        assert_eq!(never_run["requestPayload"], json!({"n": 8}));
        e.last_error = Some((
            "Boom".into(),
            json!({"errorType": "Boom", "errorMessage": "x"}),
        ));
        let r = invocation_record(&config, &e, "RetriesExhausted");
        assert_eq!(r["requestContext"]["requestId"], json!(id));
        assert_eq!(r["requestContext"]["approximateInvokeCount"], 3);
        assert_eq!(
            r["requestContext"]["functionArn"],
            "arn:aws:lambda:eu-west-1:123456789012:function:fn-a:$LATEST"
        );
        assert_eq!(r["responseContext"]["functionError"], "Unhandled");
        assert_eq!(r["responsePayload"]["errorType"], "Boom");
        let ts = r["timestamp"].as_str().unwrap();
        assert!(
            ts.len() >= 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
            "{ts}"
        );
    }
}
