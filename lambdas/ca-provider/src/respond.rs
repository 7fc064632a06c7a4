//! Answering CloudFormation, whatever happens to the work.

use crate::cfn::{Request, Response, Status};
use crate::{Provider, Registered, Success};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Longest time kept back from the work for answering CloudFormation.
const MAX_RESERVE: Duration = Duration::from_secs(3);

/// PUTs responses to presigned S3 URLs (HTTPS in AWS; plain HTTP is allowed for tests).
#[derive(Clone)]
pub struct ResponseSender {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl ResponseSender {
    pub fn new() -> Result<Self, String> {
        // The SDK's crypto provider: one TLS stack in the binary.
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| format!("cannot load the system's root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(ResponseSender {
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// PUTs `body` to `url` with an empty `Content-Type` (the presigned URL is signed for
    /// exactly that), retrying transient failures until `budget` runs out.
    pub async fn put(&self, url: &str, body: Vec<u8>, budget: Duration) -> Result<(), String> {
        let give_up = Instant::now() + budget;
        let body = Bytes::from(body);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let request = hyper::Request::put(url)
                .header("content-type", "")
                .header("content-length", body.len())
                .body(Full::new(body.clone()))
                .map_err(|e| format!("invalid ResponseURL {url:?}: {e}"))?;
            let left = give_up.saturating_duration_since(Instant::now());
            let error = match tokio::time::timeout(left, self.client.request(request)).await {
                Ok(Ok(resp)) if resp.status().is_success() => return Ok(()),
                Ok(Ok(resp)) if resp.status().is_server_error() => {
                    format!("ResponseURL answered {}", resp.status())
                }
                Ok(Ok(resp)) => return Err(format!("ResponseURL answered {}", resp.status())),
                Ok(Err(e)) => format!("cannot reach ResponseURL: {e}"),
                Err(_) => return Err("timed out sending the response".into()),
            };
            let backoff = Duration::from_millis(50 * 2u64.pow(attempt.min(5)));
            if attempt >= 4 || Instant::now() + backoff >= give_up {
                return Err(error);
            }
            tokio::time::sleep(backoff).await;
        }
    }
}

/// Converts Lambda's deadline (milliseconds since the epoch) into an [`Instant`].
pub fn deadline_instant(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

/// Runs `work` and answers `request` with its result: SUCCESS with the physical id and data,
/// or FAILED with the error, the panic message, or a timeout, always before `deadline`.
///
/// A FAILED answer names the physical id `registered` holds, if the work set one (a Create
/// that registered a CA before failing), else the request's own, or a placeholder for a
/// Create ([`Response::failure_physical_id`]).
///
/// A part of the remaining time (a third, at most [`MAX_RESERVE`]) is kept back for the PUT;
/// the work gets the rest and is abandoned when it runs out.
pub async fn answer_within<F>(
    request: &Request,
    deadline: Instant,
    sender: &ResponseSender,
    log_stream: &str,
    registered: &Registered,
    work: F,
) -> Result<Response, String>
where
    F: Future<Output = Result<Success, String>> + Send + 'static,
{
    let remaining = deadline.saturating_duration_since(Instant::now());
    let reserve = (remaining / 3).min(MAX_RESERVE);
    let task = tokio::spawn(work);
    let abort = task.abort_handle();
    let result = match tokio::time::timeout(remaining - reserve, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) if join.is_panic() => {
            let payload = join.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("internal error (panic): {message}"))
        }
        Ok(Err(join)) => Err(format!("internal error: {join}")),
        Err(_) => {
            abort.abort();
            Err(format!(
                "no result within {} ms: answering before the Lambda deadline",
                (remaining - reserve).as_millis()
            ))
        }
    };
    let response = match result {
        Ok(success) => Response {
            status: Status::Success,
            reason: String::new(),
            physical_resource_id: success.physical_resource_id,
            stack_id: request.stack_id.clone(),
            request_id: request.request_id.clone(),
            logical_resource_id: request.logical_resource_id.clone(),
            no_echo: false,
            data: success.data,
        },
        Err(reason) => {
            tracing::error!(request_id = %request.request_id, reason = %reason, "request failed");
            let reason = if log_stream.is_empty() {
                reason
            } else {
                format!("{reason} (log stream {log_stream})")
            };
            Response {
                status: Status::Failed,
                reason,
                physical_resource_id: registered
                    .get()
                    .unwrap_or_else(|| Response::failure_physical_id(request)),
                stack_id: request.stack_id.clone(),
                request_id: request.request_id.clone(),
                logical_resource_id: request.logical_resource_id.clone(),
                no_echo: false,
                data: BTreeMap::new(),
            }
        }
    };
    let budget = deadline.saturating_duration_since(Instant::now());
    sender
        .put(&request.response_url, response.to_body(), budget)
        .await
        .map_err(|e| format!("could not answer CloudFormation: {e}"))?;
    tracing::info!(
        request_id = %request.request_id,
        status = ?response.status,
        physical_resource_id = %response.physical_resource_id,
        "answered CloudFormation"
    );
    Ok(response)
}

/// The Lambda handler: parses the request and answers it, whatever happens.
///
/// A payload without a usable `ResponseURL` cannot be answered; that is the only error left
/// to Lambda.
pub async fn answer(
    provider: &Provider,
    payload: serde_json::Value,
    deadline: Instant,
    sender: &ResponseSender,
    log_stream: &str,
) -> Result<Response, String> {
    let request: Request = match serde_json::from_value(payload.clone()) {
        Ok(r) => r,
        Err(e) => {
            let field = |name: &str| {
                payload
                    .get(name)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let url = field("ResponseURL");
            if url.is_empty() {
                return Err(format!("not a CloudFormation custom resource request: {e}"));
            }
            // Answer what we can, so the stack fails now rather than after ServiceTimeout.
            let request = Request {
                request_type: crate::cfn::RequestType::Create,
                response_url: url,
                stack_id: field("StackId"),
                request_id: field("RequestId"),
                resource_type: field("ResourceType"),
                logical_resource_id: field("LogicalResourceId"),
                physical_resource_id: Some(field("PhysicalResourceId")).filter(|s| !s.is_empty()),
                resource_properties: serde_json::Value::Null,
                old_resource_properties: None,
            };
            let reason = format!("malformed custom resource request: {e}");
            let nothing = Registered::default();
            return answer_within(
                &request,
                deadline,
                sender,
                log_stream,
                &nothing,
                async move { Err(reason) },
            )
            .await;
        }
    };
    let registered = Registered::default();
    // Boxed: the handler's future is deep, and nesting it in every caller's future type
    // would take the compiler past its type-depth limit.
    let work: Pin<Box<dyn Future<Output = Result<Success, String>> + Send>> = {
        let provider = provider.clone();
        let request = request.clone();
        let registered = registered.clone();
        Box::pin(async move { provider.handle(&request, &registered).await })
    };
    answer_within(&request, deadline, sender, log_stream, &registered, work).await
}
