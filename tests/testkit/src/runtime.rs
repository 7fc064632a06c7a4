//! A Lambda Runtime API host on loopback: the `/2018-06-01/runtime/...` protocol AWS Lambda
//! runs a `provided.al2023` `bootstrap` with. Tests queue events, start the real binary with
//! `AWS_LAMBDA_RUNTIME_API` pointing here, and read back what it answered.

use crate::http::{Handler, HttpRequest, HttpResponse, HttpServer};
use std::collections::VecDeque;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the function answered for one invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    /// `Ok(response body)` or `Err(error body)`.
    pub result: Result<serde_json::Value, serde_json::Value>,
    /// When the answer arrived.
    pub answered_at: Instant,
}

#[derive(Default)]
struct State {
    queue: VecDeque<(String, serde_json::Value, u64)>,
    results: Vec<Invocation>,
    init_error: Option<serde_json::Value>,
    next_id: u64,
    first_poll: Option<Instant>,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

pub struct RuntimeHost {
    server: HttpServer,
    shared: Shared,
}

impl Default for RuntimeHost {
    fn default() -> Self {
        Self::start()
    }
}

impl RuntimeHost {
    pub fn start() -> RuntimeHost {
        let shared: Shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let s = shared.clone();
        let handler: Handler = Arc::new(move |req: HttpRequest| handle(&s, req));
        RuntimeHost {
            server: HttpServer::start(handler),
            shared,
        }
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn api(&self) -> String {
        self.server.addr().to_string()
    }

    /// Queues an event with `timeout` left before its deadline; returns its request id.
    pub fn invoke(&self, payload: serde_json::Value, timeout: Duration) -> String {
        let id = {
            let mut st = self.shared.0.lock().unwrap();
            st.next_id += 1;
            format!("req-{:04}", st.next_id)
        };
        self.invoke_as(&id, payload, timeout);
        id
    }

    /// Queues an event under the request id `id` (Lambda keeps an asynchronous event's id
    /// across its retries), with `timeout` left before its deadline.
    pub fn invoke_as(&self, id: &str, payload: serde_json::Value, timeout: Duration) {
        let (lock, cv) = &*self.shared;
        let mut st = lock.lock().unwrap();
        let id = id.to_string();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        st.queue
            .push_back((id, payload, now_ms + timeout.as_millis() as u64));
        cv.notify_all();
    }

    /// Waits for the answer to `request_id`.
    pub fn wait_result(&self, request_id: &str, timeout: Duration) -> Option<Invocation> {
        let (lock, cv) = &*self.shared;
        let give_up = Instant::now() + timeout;
        let mut st = lock.lock().unwrap();
        loop {
            if let Some(r) = st.results.iter().find(|r| r.request_id == request_id) {
                return Some(r.clone());
            }
            if st.init_error.is_some() {
                return None;
            }
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            st = cv.wait_timeout(st, left).unwrap().0;
        }
    }

    /// When the function first asked for an invocation: the end of its init phase.
    pub fn first_poll(&self) -> Option<Instant> {
        self.shared.0.lock().unwrap().first_poll
    }

    /// The body the function posted to `/runtime/init/error`, if any.
    pub fn init_error(&self) -> Option<serde_json::Value> {
        self.shared.0.lock().unwrap().init_error.clone()
    }

    /// Starts `bootstrap` as Lambda would, with `env` added to a minimal Lambda environment.
    /// The child gets no other environment from the test process.
    pub fn spawn(&self, bootstrap: &Path, env: &[(String, String)]) -> Child {
        let mut cmd = Command::new(bootstrap);
        cmd.env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", self.api())
            .env("AWS_LAMBDA_FUNCTION_NAME", "test-function")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[$LATEST]test")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/test-function")
            .env("LAMBDA_TASK_ROOT", "/var/task")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        crate::die_with_parent(&mut cmd);
        crate::spawn_executable(&mut cmd)
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bootstrap.display()))
    }
}

fn handle(shared: &Shared, req: HttpRequest) -> HttpResponse {
    let (lock, cv) = &**shared;
    let path = req.path().to_string();
    if req.method == "GET" && path == "/2018-06-01/runtime/invocation/next" {
        let mut st = lock.lock().unwrap();
        st.first_poll.get_or_insert_with(Instant::now);
        loop {
            if let Some((id, payload, deadline)) = st.queue.pop_front() {
                return HttpResponse::json(200, &payload)
                    .with_header("Lambda-Runtime-Aws-Request-Id", &id)
                    .with_header("Lambda-Runtime-Deadline-Ms", &deadline.to_string())
                    .with_header(
                        "Lambda-Runtime-Invoked-Function-Arn",
                        "arn:aws:lambda:eu-west-1:123456789012:function:test-function",
                    )
                    .with_header(
                        "Lambda-Runtime-Trace-Id",
                        "Root=1-00000000-000000000000000000000000",
                    );
            }
            st = cv.wait(st).unwrap();
        }
    }
    if req.method == "POST" && path == "/2018-06-01/runtime/init/error" {
        let mut st = lock.lock().unwrap();
        st.init_error = Some(serde_json::from_slice(&req.body).unwrap_or(serde_json::Value::Null));
        cv.notify_all();
        return HttpResponse::json(202, &serde_json::json!({"status": "OK"}));
    }
    if let Some(rest) = path.strip_prefix("/2018-06-01/runtime/invocation/") {
        if let Some((id, kind)) = rest.split_once('/') {
            if req.method == "POST" && (kind == "response" || kind == "error") {
                let body: serde_json::Value = serde_json::from_slice(&req.body)
                    .unwrap_or_else(|_| serde_json::Value::String(req.body_text()));
                let result = if kind == "response" {
                    Ok(body)
                } else {
                    Err(body)
                };
                let mut st = lock.lock().unwrap();
                st.results.push(Invocation {
                    request_id: id.to_string(),
                    result,
                    answered_at: Instant::now(),
                });
                cv.notify_all();
                return HttpResponse::json(202, &serde_json::json!({"status": "OK"}));
            }
        }
    }
    HttpResponse::new(
        404,
        format!("unknown runtime API call {} {}", req.method, req.target),
    )
}
