//! AWS IoT's API rate quotas in front of moto. moto has none; AWS IoT refuses every request
//! over an operation's per-account rate with `ThrottlingException` (HTTP 400, error type in
//! the `x-amzn-ErrorType` header, body `{"message":"Rate exceeded"}`: the IoT API reference's
//! error lists; `docs/research/onboarding-at-scale.md` A1). [`ThrottlingProxy`] restores
//! that: each limited operation has a token bucket at its rate, shared by every caller as the
//! account's quota is; a request over it is answered as AWS answers and never reaches moto;
//! everything else is forwarded.
//!
//! It is also the failing AWS IoT stand-in: [`ThrottlingProxy::set_fault`] makes chosen
//! operations, or every request naming chosen certificate ids, answer as AWS IoT answers an
//! internal failure (`InternalFailureException`, HTTP 500, "An unexpected error has occurred":
//! the IoT API reference's error lists), until the fault is cleared.

use crate::http::{forward, Handler, HttpRequest, HttpResponse, HttpServer};
use jitr_contract::rates::IotApi;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The IoT operation an SDK request is, from its method and path (the REST bindings of
/// aws-sdk-iot's operations); `None` for any other.
pub fn iot_operation(method: &str, path: &str) -> Option<IotApi> {
    let segments: Vec<&str> = path
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let op = match (method, segments.as_slice()) {
        ("GET", ["certificates", _]) => IotApi::DescribeCertificate,
        ("PUT", ["certificates", _]) => IotApi::UpdateCertificate,
        ("PUT", ["target-policies", _]) => IotApi::AttachPolicy,
        ("POST", ["things", _]) => IotApi::CreateThing,
        ("PUT", ["things", _, "principals"]) => IotApi::AttachThingPrincipal,
        ("PUT", ["thing-groups", "addThingToThingGroup"]) => IotApi::AddThingToThingGroup,
        ("GET", ["certificates-by-ca", _]) => IotApi::ListCertificatesByCA,
        ("GET", ["cacertificate", _]) => IotApi::DescribeCACertificate,
        _ => return None,
    };
    Some(op)
}

/// The AWS service a signed request is for: the service of its SigV4 credential scope
/// (`Credential=<key>/<date>/<region>/<service>/aws4_request`).
pub fn signed_service(request: &HttpRequest) -> Option<String> {
    let auth = request.header("authorization")?;
    let scope = auth.split("Credential=").nth(1)?.split(',').next()?;
    scope.split('/').nth(3).map(str::to_string)
}

/// A token bucket: `rate` tokens a second, at most `capacity` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket holding one second's worth (AWS does not document its burst size).
    pub fn new(rate: f64) -> TokenBucket {
        let capacity = rate.max(1.0);
        TokenBucket {
            rate,
            capacity,
            tokens: capacity,
            last: Instant::now(),
        }
    }

    /// Takes a token if one is there at `now`.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What the proxy did with one operation's requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpStats {
    /// Passed on to moto.
    pub forwarded: u64,
    /// Refused with `ThrottlingException`.
    pub throttled: u64,
    /// Answered with `InternalFailureException` by a fault (see [`ThrottlingProxy::set_fault`]).
    pub faulted: u64,
}

/// What a fault makes fail.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// Every request of this operation.
    Operation(IotApi),
    /// Every IoT request naming this certificate id (in its path, a header such as
    /// AttachThingPrincipal's principal, or its body such as AttachPolicy's target ARN).
    Certificate(String),
}

struct Limits {
    buckets: BTreeMap<IotApi, TokenBucket>,
    stats: BTreeMap<IotApi, OpStats>,
    faults: BTreeSet<Fault>,
}

/// A proxy in front of moto that enforces AWS IoT's rate quotas.
pub struct ThrottlingProxy {
    server: HttpServer,
    limits: Arc<Mutex<Limits>>,
}

impl ThrottlingProxy {
    /// In front of `upstream` (`host:port`), limiting each operation of `rates` (requests
    /// per second); IoT operations not in `rates`, and every other service, pass freely.
    pub fn start(upstream: &str, rates: &[(IotApi, f64)]) -> ThrottlingProxy {
        let limits = Arc::new(Mutex::new(Limits {
            buckets: rates
                .iter()
                .map(|(op, rate)| (*op, TokenBucket::new(*rate)))
                .collect(),
            stats: BTreeMap::new(),
            faults: BTreeSet::new(),
        }));
        let upstream = upstream.to_string();
        let shared = limits.clone();
        let handler: Handler = Arc::new(move |req: HttpRequest| {
            if let Some(op) = limited(&req) {
                // As in AWS, the rate is checked first: a failing request still used a token.
                match admit(&shared, op, &req) {
                    Admission::Throttled => return throttled(),
                    Admission::Faulted => return internal_failure(),
                    Admission::Forward => {}
                }
            }
            forward(&upstream, &req).unwrap_or_else(|e| HttpResponse::new(502, e.to_string()))
        });
        ThrottlingProxy {
            server: HttpServer::start(handler),
            limits,
        }
    }

    /// In front of `upstream` with AWS's default rate for every operation the activator calls.
    pub fn with_default_rates(upstream: &str) -> ThrottlingProxy {
        let rates: Vec<(IotApi, f64)> = IotApi::ALL
            .iter()
            .map(|op| (*op, op.default_rate()))
            .collect();
        Self::start(upstream, &rates)
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Per operation: requests forwarded, throttled and failed by a fault so far.
    pub fn stats(&self) -> BTreeMap<IotApi, OpStats> {
        self.limits.lock().unwrap().stats.clone()
    }

    /// Forgets the counts so far (the buckets keep their state).
    pub fn reset_stats(&self) {
        self.limits.lock().unwrap().stats.clear();
    }

    /// Turns `fault` on (`failing`) or off, effective from the next request.
    pub fn set_fault(&self, fault: Fault, failing: bool) {
        let faults = &mut self.limits.lock().unwrap().faults;
        if failing {
            faults.insert(fault);
        } else {
            faults.remove(&fault);
        }
    }

    /// Turns every fault off.
    pub fn clear_faults(&self) {
        self.limits.lock().unwrap().faults.clear();
    }
}

enum Admission {
    Forward,
    Throttled,
    Faulted,
}

/// The limited IoT operation `req` is, if any.
fn limited(req: &HttpRequest) -> Option<IotApi> {
    if signed_service(req).as_deref() != Some("iot") {
        return None;
    }
    iot_operation(&req.method, req.path())
}

/// Takes a token for `op` (an operation without a bucket always passes), applies the faults,
/// and counts what happened to `req`.
fn admit(limits: &Mutex<Limits>, op: IotApi, req: &HttpRequest) -> Admission {
    let mut limits = limits.lock().unwrap();
    let admitted = limits
        .buckets
        .get_mut(&op)
        .is_none_or(|bucket| bucket.try_take(Instant::now()));
    let faulted = admitted && limits.faults.iter().any(|f| fault_hits(f, op, req));
    let stats = limits.stats.entry(op).or_default();
    if !admitted {
        stats.throttled += 1;
        Admission::Throttled
    } else if faulted {
        stats.faulted += 1;
        Admission::Faulted
    } else {
        stats.forwarded += 1;
        Admission::Forward
    }
}

/// Whether `fault` makes `req` (operation `op`) fail.
fn fault_hits(fault: &Fault, op: IotApi, req: &HttpRequest) -> bool {
    match fault {
        Fault::Operation(o) => *o == op,
        Fault::Certificate(id) => {
            req.target.contains(id.as_str())
                || req.headers.values().any(|v| v.contains(id.as_str()))
                || req.body_text().contains(id.as_str())
        }
    }
}

/// AWS IoT's answer to a request over its rate.
fn throttled() -> HttpResponse {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    HttpResponse::json(400, &serde_json::json!({"message": "Rate exceeded"}))
        .with_header("x-amzn-ErrorType", "ThrottlingException")
        .with_header("x-amzn-RequestId", &format!("throttled-{n:08}"))
}

/// AWS IoT's answer to a request that failed inside the service.
fn internal_failure() -> HttpResponse {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    HttpResponse::json(
        500,
        &serde_json::json!({"message": "An unexpected error has occurred."}),
    )
    .with_header("x-amzn-ErrorType", "InternalFailureException")
    .with_header("x-amzn-RequestId", &format!("failed-{n:08}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sdk_paths_name_their_operations() {
        let cases = [
            (
                "GET",
                "/certificates/abc",
                Some(IotApi::DescribeCertificate),
            ),
            ("PUT", "/certificates/abc", Some(IotApi::UpdateCertificate)),
            (
                "PUT",
                "/target-policies/dev-policy",
                Some(IotApi::AttachPolicy),
            ),
            ("POST", "/things/sensor-1", Some(IotApi::CreateThing)),
            (
                "PUT",
                "/things/sensor-1/principals",
                Some(IotApi::AttachThingPrincipal),
            ),
            (
                "PUT",
                "/thing-groups/addThingToThingGroup",
                Some(IotApi::AddThingToThingGroup),
            ),
            (
                "GET",
                "/certificates-by-ca/ca1",
                Some(IotApi::ListCertificatesByCA),
            ),
            (
                "GET",
                "/cacertificate/ca1",
                Some(IotApi::DescribeCACertificate),
            ),
            ("GET", "/things/sensor-1", None),
        ];
        for (method, path, want) in cases {
            assert_eq!(iot_operation(method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn the_bucket_gives_its_rate_after_a_one_second_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0);
        let burst = (0..50).filter(|_| bucket.try_take(start)).count();
        assert_eq!(burst, 10, "one second's worth at once");
        let later = start + Duration::from_millis(500);
        let refilled = (0..50).filter(|_| bucket.try_take(later)).count();
        assert_eq!(refilled, 5, "half a second refills half the rate");
    }

    #[test]
    fn the_service_comes_from_the_credential_scope() {
        let mut req = HttpRequest {
            method: "GET".into(),
            target: "/certificates/abc".into(),
            headers: BTreeMap::new(),
            body: Vec::new(),
        };
        assert_eq!(signed_service(&req), None);
        req.headers.insert(
            "authorization".into(),
            "AWS4-HMAC-SHA256 Credential=testing/20261129/us-east-1/iot/aws4_request, \
             SignedHeaders=host, Signature=0"
                .into(),
        );
        assert_eq!(signed_service(&req).as_deref(), Some("iot"));
    }
}

#[cfg(test)]
mod against_moto {
    use super::*;
    use aws_sdk_iot::config::retry::RetryConfig;
    use aws_sdk_iot::error::ProvideErrorMetadata;

    /// The SDK, with no retries, against moto behind the proxy: within the bucket's burst
    /// every call goes through, the rest fail as AWS IoT's throttling does, and the SDK reads
    /// them as such (`ThrottlingException`, the code its retry classifier treats as a throttle).
    #[tokio::test(flavor = "multi_thread")]
    async fn calls_over_the_rate_fail_with_throttling_exception() {
        let moto = crate::moto();
        let proxy = ThrottlingProxy::start(moto.host_port(), &[(IotApi::DescribeCertificate, 5.0)]);
        let direct = moto.iot().await;
        let cert = direct.create_keys_and_certificate().send().await.unwrap();
        let id = cert.certificate_id().unwrap().to_string();
        let conf = direct
            .config()
            .to_builder()
            .endpoint_url(proxy.url())
            .retry_config(RetryConfig::disabled())
            .build();
        let iot = aws_sdk_iot::Client::from_conf(conf);
        let calls = (0..20).map(|_| {
            let iot = iot.clone();
            let id = id.clone();
            tokio::spawn(async move { iot.describe_certificate().certificate_id(id).send().await })
        });
        let mut ok: u64 = 0;
        for call in calls {
            match call.await.unwrap() {
                Ok(_) => ok += 1,
                Err(e) => {
                    let e = e.into_service_error();
                    assert_eq!(e.code(), Some("ThrottlingException"), "{e:?}");
                    assert_eq!(e.message(), Some("Rate exceeded"));
                }
            }
        }
        // Five at once, plus what refills (5/s) while the twenty are sent.
        assert!((5..=8).contains(&ok), "{ok} of 20 went through");
        let stats = proxy.stats()[&IotApi::DescribeCertificate];
        assert_eq!(stats.forwarded, ok);
        assert_eq!(stats.forwarded + stats.throttled, 20);
        // Other operations pass.
        direct
            .list_certificates()
            .send()
            .await
            .expect("moto itself is not limited");
    }
}

#[cfg(test)]
mod faults_against_moto {
    use super::*;
    use aws_sdk_iot::config::retry::RetryConfig;
    use aws_sdk_iot::error::ProvideErrorMetadata;
    use aws_sdk_iot::types::CertificateStatus;

    async fn certificate(iot: &aws_sdk_iot::Client) -> (String, String) {
        let cert = iot.create_keys_and_certificate().send().await.unwrap();
        (
            cert.certificate_id().unwrap().to_string(),
            cert.certificate_arn().unwrap().to_string(),
        )
    }

    /// A fault on a certificate fails every request naming it (path, header or body) and no
    /// other; a fault on an operation fails that operation; both answer as AWS IoT's internal
    /// failure does, switch at runtime, and never reach moto.
    #[tokio::test(flavor = "multi_thread")]
    async fn faults_answer_internal_failure_until_cleared() {
        let moto = crate::moto();
        let proxy = ThrottlingProxy::start(moto.host_port(), &[]);
        let direct = moto.iot().await;
        let (a, a_arn) = certificate(&direct).await;
        let (b, _) = certificate(&direct).await;
        let thing = crate::unique("fault-thing");
        direct
            .create_thing()
            .thing_name(&thing)
            .send()
            .await
            .unwrap();
        let conf = direct
            .config()
            .to_builder()
            .endpoint_url(proxy.url())
            .retry_config(RetryConfig::disabled())
            .build();
        let iot = aws_sdk_iot::Client::from_conf(conf);
        let describe = |id: &str| iot.describe_certificate().certificate_id(id).send();

        proxy.set_fault(Fault::Certificate(a.clone()), true);
        let e = describe(&a).await.unwrap_err().into_service_error();
        assert_eq!(e.code(), Some("InternalFailureException"), "{e:?}");
        assert_eq!(e.message(), Some("An unexpected error has occurred."));
        describe(&b)
            .await
            .expect("another certificate is not failed");
        // AttachThingPrincipal names the certificate only in a header.
        let attach = iot
            .attach_thing_principal()
            .thing_name(&thing)
            .principal(&a_arn)
            .send()
            .await;
        assert!(attach.is_err(), "the principal header names the failed id");
        let principals = direct
            .list_thing_principals()
            .thing_name(&thing)
            .send()
            .await
            .unwrap();
        assert!(principals.principals().is_empty(), "moto was not reached");

        proxy.set_fault(Fault::Operation(IotApi::UpdateCertificate), true);
        let update = iot
            .update_certificate()
            .certificate_id(&b)
            .new_status(CertificateStatus::Inactive)
            .send()
            .await;
        let e = update.unwrap_err().into_service_error();
        assert_eq!(e.code(), Some("InternalFailureException"), "{e:?}");

        proxy.clear_faults();
        describe(&a).await.expect("cleared");
        let stats = proxy.stats();
        assert_eq!(stats[&IotApi::DescribeCertificate].faulted, 1);
        assert_eq!(stats[&IotApi::DescribeCertificate].forwarded, 2);
        assert_eq!(stats[&IotApi::AttachThingPrincipal].faulted, 1);
        assert_eq!(stats[&IotApi::UpdateCertificate].faulted, 1);
        proxy.reset_stats();
        assert!(proxy.stats().is_empty());
    }
}
