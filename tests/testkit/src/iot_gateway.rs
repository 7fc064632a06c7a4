//! A stand-in for AWS IoT Core's MQTT broker as a device meets it on port 8883, for
//! `jitr-infra smoke`: TLS on loopback with a server certificate for `localhost` (signed by a
//! root the test hands to the client), client certificates required, and the registry in moto.
//!
//! What AWS documents and this does:
//! - SNI: clients send it; it is required for SNI_ONLY CAs, configurable endpoints and
//!   multi-account registration ("Device communication protocols", "Transport security in AWS
//!   IoT Core"). Here: a ClientHello without SNI gets no certificate (handshake_failure).
//! - Client certificates: verified against the *registered* CAs, not a TLS trust store. Here:
//!   any chain passes the TLS layer (the handshake signature is still verified: the client
//!   holds the key), and the certificate is then looked up in moto.
//! - Just-in-time registration ("Register a client certificate when the client connects to AWS
//!   IoT just-in-time registration (JITR)"): an unknown certificate signed by a registered CA
//!   with auto-registration on is registered PENDING_ACTIVATION, the registered event is
//!   published on `$aws/events/certificates/registered/<caCertificateId>`, and the connection
//!   is dropped. Here: RegisterCertificate in moto, the event handed to the deployed activator
//!   (Lambda Invoke, `Event`, which moto runs with the real `bootstrap`: the topic rule's
//!   Lambda action is an asynchronous invocation), the TCP connection closed.
//! - A certificate that is not ACTIVE cannot connect: dropped. An ACTIVE one is accepted when
//!   the CONNECT's client id is a Thing the certificate is attached to (what the device
//!   policy's `iot:Connection.Thing.IsAttached` condition asks), else CONNACK 5.
//! - PUBLISH at QoS 1 is answered with PUBACK; the gateway records it for the test.

use aws_sdk_iot::types::{AutoRegistrationStatus, CaCertificateStatus, CertificateStatus};
use jitr_lambda_common::pki::Certificate;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One TLS connection as the gateway saw it.
#[derive(Debug, Clone)]
pub struct Connection {
    pub sni: Option<String>,
    /// How many certificates the client presented (device, then CA: 2 for a JITR device).
    pub chain_len: usize,
    pub certificate_id: Option<String>,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The TLS handshake failed (e.g. no SNI): the error.
    Handshake(String),
    /// Unknown certificate of a registered CA: registered PENDING_ACTIVATION, event sent to
    /// the activator, dropped.
    Registered,
    /// Unknown certificate and no registered CA with auto-registration signed it: dropped.
    UnknownCa,
    /// Known but not ACTIVE: dropped (the status).
    NotActive(String),
    /// CONNACK 0 for this client id.
    Accepted(String),
    /// CONNACK 5: the client id is not a Thing the certificate is attached to.
    Refused(String),
    /// Something else went wrong in the gateway.
    Error(String),
}

/// A PUBLISH the gateway acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub client_id: String,
    pub topic: String,
    pub payload: Vec<u8>,
}

#[derive(Default)]
struct Log {
    connections: Vec<Connection>,
    published: Vec<Published>,
}

struct Shared {
    iot: aws_sdk_iot::Client,
    lambda: aws_sdk_lambda::Client,
    activator: String,
    log: Mutex<Log>,
}

/// The running gateway (stopped when dropped).
pub struct IotGateway {
    port: u16,
    root_pem: String,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for IotGateway {
    fn drop(&mut self) {
        // Also from inside a test's runtime, where a blocking shutdown would panic.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl IotGateway {
    /// Starts on a free loopback port, with moto at `moto_endpoint` as the registry and
    /// `activator` (a deployed function's name) as the registered event's consumer.
    /// Callable from sync tests and from inside a tokio runtime alike (it sets up on a thread
    /// of its own).
    pub fn start(moto_endpoint: &str, activator: &str) -> IotGateway {
        Self::start_in(
            moto_endpoint,
            activator,
            &crate::accounts::Creds::default_account(),
            crate::REGION,
        )
    }

    /// [`IotGateway::start`] for the AWS IoT of another account and region: the registry
    /// and the activator are those `creds` (see [`crate::accounts`]) reach in `region`.
    pub fn start_in(
        moto_endpoint: &str,
        activator: &str,
        creds: &crate::accounts::Creds,
        region: &str,
    ) -> IotGateway {
        let (endpoint, activator) = (moto_endpoint.to_string(), activator.to_string());
        let (creds, region) = (creds.clone(), region.to_string());
        std::thread::spawn(move || Self::start_here(&endpoint, &activator, &creds, &region))
            .join()
            .expect("the gateway started")
    }

    fn start_here(
        moto_endpoint: &str,
        activator: &str,
        creds: &crate::accounts::Creds,
        region: &str,
    ) -> IotGateway {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let conf = runtime.block_on(creds.sdk_config(moto_endpoint, region));
        let shared = Arc::new(Shared {
            iot: aws_sdk_iot::Client::new(&conf),
            lambda: aws_sdk_lambda::Client::new(&conf),
            activator: activator.to_string(),
            log: Mutex::new(Log::default()),
        });
        let (root_pem, server) = server_identity();
        let config = Arc::new(server_config(server));
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let s = shared.clone();
        runtime.spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, s) = (acceptor.clone(), s.clone());
                tokio::spawn(async move { serve(&s, acceptor, tcp).await });
            }
        });
        IotGateway {
            port,
            root_pem,
            shared,
            runtime: Some(runtime),
        }
    }

    /// `localhost:PORT`, for `--endpoint`.
    pub fn endpoint(&self) -> String {
        format!("localhost:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The root that signed the server certificate (PEM), for `--trust-root`.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    pub fn connections(&self) -> Vec<Connection> {
        self.shared.log.lock().unwrap().connections.clone()
    }

    pub fn published(&self) -> Vec<Published> {
        self.shared.log.lock().unwrap().published.clone()
    }
}

/// A root CA and the `localhost` server certificate it signs: (root PEM, server key).
fn server_identity() -> (String, Arc<CertifiedKey>) {
    let root_key = KeyPair::generate().unwrap();
    let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
    root.distinguished_name
        .push(DnType::CommonName, "Test IoT gateway root");
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let root_cert = root.self_signed(&root_key).unwrap();
    let issuer = Issuer::new(root, root_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let certified = CertifiedKey::from_der(vec![leaf.der().clone()], der, &provider).unwrap();
    (root_cert.pem(), Arc::new(certified))
}

fn server_config(identity: Arc<CertifiedKey>) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(Arc::new(AnyClientChain(provider)))
        .with_cert_resolver(Arc::new(SniRequired(identity)))
}

/// No SNI, no certificate: the handshake fails.
#[derive(Debug)]
struct SniRequired(Arc<CertifiedKey>);

impl ResolvesServerCert for SniRequired {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello.server_name().map(|_| self.0.clone())
    }
}

/// Any client chain at the TLS layer (the registry decides later), but the client must prove
/// it holds the certificate's key.
#[derive(Debug)]
struct AnyClientChain(Arc<rustls::crypto::CryptoProvider>);

impl ClientCertVerifier for AnyClientChain {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn serve(s: &Shared, acceptor: tokio_rustls::TlsAcceptor, tcp: tokio::net::TcpStream) {
    let mut conn = Connection {
        sni: None,
        chain_len: 0,
        certificate_id: None,
        outcome: Outcome::Error("not finished".into()),
    };
    let mut tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(e) => {
            conn.outcome = Outcome::Handshake(e.to_string());
            s.log.lock().unwrap().connections.push(conn);
            return;
        }
    };
    let (_, session) = tls.get_ref();
    conn.sni = session.server_name().map(str::to_string);
    let chain: Vec<Vec<u8>> = session
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|c| c.to_vec())
        .collect();
    conn.chain_len = chain.len();
    let device = pem(&chain[0]);
    let id = Certificate::from_pem(&device).unwrap().aws_iot_id();
    conn.certificate_id = Some(id.clone());
    conn.outcome = match registry_verdict(s, &id, &device, &chain[1..]).await {
        Ok(Some(arn)) => mqtt_session(s, &mut tls, &arn).await,
        Ok(None) => Outcome::Registered,
        Err(o) => o,
    };
    s.log.lock().unwrap().connections.push(conn);
    // Dropping `tls` closes the TCP connection (no close_notify when refused).
}

fn pem(der: &[u8]) -> String {
    let b64 = aws_smithy_types::base64::encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// The registry's answer: `Ok(Some(arn))` ACTIVE; `Ok(None)` just registered (JITR);
/// `Err(outcome)` dropped.
async fn registry_verdict(
    s: &Shared,
    id: &str,
    device_pem: &str,
    presented_cas: &[Vec<u8>],
) -> Result<Option<String>, Outcome> {
    let err = |e: &dyn std::fmt::Display| Outcome::Error(e.to_string());
    match s.iot.describe_certificate().certificate_id(id).send().await {
        Ok(out) => {
            let d = out.certificate_description().unwrap();
            return match d.status() {
                Some(CertificateStatus::Active) => Ok(d.certificate_arn().map(str::to_string)),
                st => Err(Outcome::NotActive(
                    st.map(|s| s.as_str().to_string()).unwrap_or_default(),
                )),
            };
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) => {}
        Err(e) => return Err(err(&aws_sdk_iot::error::DisplayErrorContext(e))),
    }
    let Some((ca_id, ca_pem)) = registering_ca(s, device_pem, presented_cas).await? else {
        return Err(Outcome::UnknownCa);
    };
    s.iot
        .register_certificate()
        .certificate_pem(device_pem)
        .ca_certificate_pem(&ca_pem)
        .status(CertificateStatus::PendingActivation)
        .send()
        .await
        .map_err(|e| err(&aws_sdk_iot::error::DisplayErrorContext(e)))?;
    let event = crate::jitr::registered_event(id, &ca_id);
    s.lambda
        .invoke()
        .function_name(&s.activator)
        .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
        .payload(aws_smithy_types::Blob::new(event.to_string()))
        .send()
        .await
        .map_err(|e| err(&aws_sdk_lambda::error::DisplayErrorContext(e)))?;
    Ok(None)
}

/// The registered CA (ACTIVE, auto-registration on) that signed the device: one the client
/// presented, else any registered one: (CA id, CA PEM).
async fn registering_ca(
    s: &Shared,
    device_pem: &str,
    presented: &[Vec<u8>],
) -> Result<Option<(String, String)>, Outcome> {
    let device = Certificate::from_pem(device_pem).unwrap();
    let presented_ids = presented
        .iter()
        .filter_map(|der| Certificate::from_pem(&pem(der)).ok())
        .map(|c| c.aws_iot_id());
    for id in presented_ids {
        if let Some(found) = usable_ca(s, &id, &device).await {
            return Ok(Some(found));
        }
    }
    let listed = s.iot.list_ca_certificates().send().await.map_err(|e| {
        Outcome::Error(format!(
            "ListCACertificates: {}",
            aws_sdk_iot::error::DisplayErrorContext(e)
        ))
    })?;
    for c in listed.certificates() {
        if let Some(found) = usable_ca(s, c.certificate_id().unwrap_or_default(), &device).await {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The CA `id` if it is registered, ACTIVE, has auto-registration on and signed `device`.
async fn usable_ca(s: &Shared, id: &str, device: &Certificate) -> Option<(String, String)> {
    let out = s
        .iot
        .describe_ca_certificate()
        .certificate_id(id)
        .send()
        .await
        .ok()?;
    let d = out.certificate_description()?;
    let usable = d.status() == Some(&CaCertificateStatus::Active)
        && d.auto_registration_status() == Some(&AutoRegistrationStatus::Enable);
    let ca_pem = d.certificate_pem()?;
    let ca = Certificate::from_pem(ca_pem).ok()?;
    (usable && device.verify_signed_by(&ca).is_ok()).then(|| (id.to_string(), ca_pem.to_string()))
}

/// MQTT after an accepted handshake: CONNECT (client id checked against the certificate's
/// Things), then PUBLISH QoS 0/1 (PUBACK), PINGREQ, until DISCONNECT or EOF.
async fn mqtt_session<S>(s: &Shared, io: &mut S, arn: &str) -> Outcome
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Ok(Some((0x10, body))) = read_packet(io).await else {
        return Outcome::Error("no CONNECT".into());
    };
    let client_id = connect_client_id(&body).unwrap_or_default();
    let things = s.iot.list_principal_things().principal(arn).send().await;
    let attached = things.is_ok_and(|t| t.things().contains(&client_id));
    if !attached {
        let _ = io.write_all(&[0x20, 2, 0, 5]).await;
        return Outcome::Refused(client_id);
    }
    if io.write_all(&[0x20, 2, 0, 0]).await.is_err() {
        return Outcome::Error("writing CONNACK".into());
    }
    while let Ok(Some((first, body))) = read_packet(io).await {
        match first >> 4 {
            3 => {
                let Some((topic, packet_id, payload)) = parse_publish(first, &body) else {
                    return Outcome::Error("malformed PUBLISH".into());
                };
                s.log.lock().unwrap().published.push(Published {
                    client_id: client_id.clone(),
                    topic,
                    payload,
                });
                if let Some(id) = packet_id {
                    let [hi, lo] = id.to_be_bytes();
                    let _ = io.write_all(&[0x40, 2, hi, lo]).await;
                }
            }
            12 => {
                let _ = io.write_all(&[0xd0, 0]).await;
            }
            14 => break,
            _ => {}
        }
    }
    Outcome::Accepted(client_id)
}

async fn read_packet<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut first = [0u8; 1];
    if r.read(&mut first).await? == 0 {
        return Ok(None);
    }
    let mut len = 0usize;
    for i in 0..4 {
        let b = r.read_u8().await?;
        len |= ((b & 0x7f) as usize) << (7 * i);
        if b & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(Some((first[0], body)))
}

fn take_str(b: &[u8]) -> Option<(String, &[u8])> {
    let n = u16::from_be_bytes([*b.first()?, *b.get(1)?]) as usize;
    let s = std::str::from_utf8(b.get(2..2 + n)?).ok()?.to_string();
    Some((s, &b[2 + n..]))
}

/// The client id of a CONNECT body (protocol name, level, flags, keep-alive, then the id).
fn connect_client_id(body: &[u8]) -> Option<String> {
    let (_, rest) = take_str(body)?;
    take_str(rest.get(4..)?).map(|(id, _)| id)
}

/// (topic, packet id for QoS > 0, payload).
fn parse_publish(first: u8, body: &[u8]) -> Option<(String, Option<u16>, Vec<u8>)> {
    let (topic, rest) = take_str(body)?;
    if (first >> 1) & 3 == 0 {
        return Some((topic, None, rest.to_vec()));
    }
    let id = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]);
    Some((topic, Some(id), rest[2..].to_vec()))
}
