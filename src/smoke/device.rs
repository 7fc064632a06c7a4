//! The device: connect (TLS with the client chain, then MQTT CONNECT) until the broker accepts,
//! with backoff, and publish once at QoS 1.
//!
//! Just-in-time registration (AWS IoT Developer Guide, "Register a client certificate when the
//! client connects to AWS IoT just-in-time registration (JITR)"): the first connection with a
//! certificate AWS IoT does not know, signed by a registered CA with auto-registration, makes
//! it register the certificate as PENDING_ACTIVATION, publish the registered event and drop
//! the connection. The device reconnects until the activator has activated its certificate.

use super::mqtt::{self, Incoming};
use super::tls::Endpoint;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Backoff between connection attempts: full jitter, 0.5 s doubling up to 8 s.
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// One step of one attempt (TCP connect, TLS handshake, CONNACK, PUBACK) waits at most this.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// The keep-alive the CONNECT asks for (AWS IoT takes 30..=1200 s).
const KEEP_ALIVE_SECS: u16 = 30;

/// One connection attempt, for the report: when it started (ms after the first) and how it
/// ended.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub at_ms: u64,
    pub outcome: String,
}

/// How an attempt failed: worth another attempt (the broker dropped us, as JITR does on the
/// first connection) or not (our side refused the server, or the broker refused the client).
#[derive(Debug)]
enum Failure {
    /// Before the TLS handshake completed.
    Retry(String),
    /// After it (the broker knows the device's certificate chain).
    Dropped(String),
    Fatal(String),
}

/// Why connecting ended without an accepted CONNECT.
#[derive(Debug, Clone)]
pub struct NotConnected {
    pub message: String,
    /// Some attempt completed the TLS handshake (the broker saw the device's chain).
    pub handshake_completed: bool,
}

/// A connected device (CONNACK accepted).
pub struct Connected {
    stream: TlsStream<TcpStream>,
}

/// What the loop needs to decide to stop early: the certificate's status as last seen.
pub trait Stop {
    /// A sentence when connecting can no longer succeed (e.g. the certificate was revoked).
    fn reason(&self) -> Option<String>;
}

/// Connects until the broker accepts the CONNECT as `client_id`, or `deadline`, or `stop`
/// says so. Every attempt is appended to `log` (times from `t0`).
pub async fn connect_until(
    config: Arc<ClientConfig>,
    endpoint: &Endpoint,
    client_id: &str,
    t0: Instant,
    deadline: Instant,
    stop: &dyn Stop,
    log: &mut Vec<Attempt>,
) -> Result<Connected, NotConnected> {
    let mut backoff = BACKOFF_START;
    let mut handshake_completed = false;
    let fail = |message: String, handshake_completed: bool| NotConnected {
        message,
        handshake_completed,
    };
    loop {
        let at_ms = t0.elapsed().as_millis() as u64;
        let result = attempt(config.clone(), endpoint, client_id).await;
        let outcome = match &result {
            Ok(_) => "CONNACK accepted".to_string(),
            Err(Failure::Retry(e) | Failure::Dropped(e) | Failure::Fatal(e)) => e.clone(),
        };
        log.push(Attempt { at_ms, outcome });
        handshake_completed |= matches!(result, Ok(_) | Err(Failure::Dropped(_)));
        let last = match result {
            Ok(stream) => return Ok(Connected { stream }),
            Err(Failure::Fatal(e)) => return Err(fail(e, handshake_completed)),
            Err(Failure::Retry(e) | Failure::Dropped(e)) => e,
        };
        let pause = Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64));
        backoff = (backoff * 2).min(BACKOFF_MAX);
        if let Some(reason) = stop.reason() {
            return Err(fail(
                format!("{reason} (last connection: {last})"),
                handshake_completed,
            ));
        }
        if Instant::now() + pause >= deadline {
            let message = format!(
                "not accepted after {} attempts in {} s; the last one: {last}",
                log.len(),
                t0.elapsed().as_secs()
            );
            return Err(fail(message, handshake_completed));
        }
        tokio::time::sleep(pause).await;
    }
}

async fn attempt(
    config: Arc<ClientConfig>,
    endpoint: &Endpoint,
    client_id: &str,
) -> Result<TlsStream<TcpStream>, Failure> {
    let addr = (endpoint.host.as_str(), endpoint.port);
    let tcp = step(TcpStream::connect(addr), "TCP connect")
        .await?
        .map_err(|e| Failure::Retry(format!("TCP connect to {endpoint}: {e}")))?;
    let name = ServerName::try_from(endpoint.host.clone())
        .map_err(|e| Failure::Fatal(format!("{}: {e}", endpoint.host)))?;
    let mut tls = step(
        TlsConnector::from(config).connect(name, tcp),
        "TLS handshake",
    )
    .await?
    .map_err(|e| handshake_failure(endpoint, e))?;
    let connect = mqtt::connect(client_id, KEEP_ALIVE_SECS);
    if let Err(e) = tls.write_all(&connect).await {
        return Err(dropped(&e, "sending CONNECT"));
    }
    match step(mqtt::read(&mut tls), "CONNACK").await? {
        Ok(Some(Incoming::ConnAck { code: 0, .. })) => Ok(tls),
        Ok(Some(Incoming::ConnAck { code, .. })) => Err(Failure::Fatal(format!(
            "the broker refused CONNECT as client id {client_id:?}: return code {code} ({})",
            mqtt::connack_reason(code)
        ))),
        Ok(Some(other)) => Err(Failure::Fatal(format!(
            "the broker answered CONNECT with {other:?} instead of CONNACK"
        ))),
        Ok(None) => Err(Failure::Dropped(
            "the broker closed the connection before CONNACK".into(),
        )),
        Err(e) => Err(dropped(&e, "waiting for CONNACK")),
    }
}

async fn step<T>(f: impl std::future::Future<Output = T>, what: &str) -> Result<T, Failure> {
    tokio::time::timeout(STEP_TIMEOUT, f)
        .await
        .map_err(|_| Failure::Retry(format!("{what}: no answer in {} s", STEP_TIMEOUT.as_secs())))
}

/// The broker's side ended the connection (reset, close, a TLS alert after the handshake).
fn dropped(e: &std::io::Error, during: &str) -> Failure {
    Failure::Dropped(format!("dropped while {during}: {}", tls_detail(e)))
}

/// A failed handshake: our verdict on the server is final; the server's alert is not (the
/// broker refuses unknown certificates until they are registered).
fn handshake_failure(endpoint: &Endpoint, e: std::io::Error) -> Failure {
    let detail = tls_detail(&e);
    let ours = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| {
            matches!(
                r,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            )
        });
    if ours {
        return Failure::Fatal(format!(
            "TLS: the server certificate of {} is not trusted (check --trust-root, or the \
             system store for the iot:Data-ATS endpoint's Amazon Root CA 1): {detail}",
            endpoint.host
        ));
    }
    let sni = if endpoint.sni_name().is_none() {
        format!(
            "; {} is an IP address, so no SNI was sent, which AWS IoT requires: use the \
             endpoint's host name",
            endpoint.host
        )
    } else {
        String::new()
    };
    Failure::Retry(format!("TLS handshake with {endpoint}: {detail}{sni}"))
}

fn tls_detail(e: &std::io::Error) -> String {
    match e.get_ref() {
        Some(inner) => inner.to_string(),
        None => e.to_string(),
    }
}

impl Connected {
    /// Publishes `payload` on `topic` at QoS 1 and waits for its PUBACK; then disconnects.
    pub async fn publish_once(mut self, topic: &str, payload: &[u8]) -> Result<(), String> {
        const PACKET_ID: u16 = 1;
        self.stream
            .write_all(&mqtt::publish_qos1(topic, PACKET_ID, payload))
            .await
            .map_err(|e| format!("PUBLISH on {topic}: {}", tls_detail(&e)))?;
        let until = Instant::now() + STEP_TIMEOUT;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let packet = tokio::time::timeout(left, mqtt::read(&mut self.stream))
                .await
                .map_err(|_| format!("no PUBACK for {topic} in {} s", STEP_TIMEOUT.as_secs()))?
                .map_err(|e| format!("waiting for PUBACK on {topic}: {}", tls_detail(&e)))?;
            match packet {
                Some(Incoming::PubAck { packet_id }) if packet_id == PACKET_ID => break,
                Some(_) => continue,
                None => {
                    return Err(format!(
                        "the broker closed the connection instead of PUBACK on {topic} (does \
                         the device policy allow iot:Publish there?)"
                    ))
                }
            }
        }
        // Best effort: the publish is acknowledged, the disconnect is courtesy.
        let _ = self.stream.write_all(&mqtt::disconnect()).await;
        let _ = self.stream.shutdown().await;
        Ok(())
    }
}
