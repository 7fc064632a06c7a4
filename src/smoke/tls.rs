//! The device's TLS side: the endpoint (`HOST[:PORT]`), the trust roots, the client
//! certificate chain, and one connection.
//!
//! AWS IoT Core ("Device communication protocols", protocols.html): MQTT with X.509 client
//! certificates on port 8883, or on 443 with the ALPN protocol name `x-amzn-mqtt-ca`; TLS 1.2
//! or 1.3; clients send SNI (required for SNI_ONLY CAs and configurable endpoints: rustls sends
//! it for every DNS name, never for an IP address). The `iot:Data-ATS` endpoint's server
//! certificate chains to Amazon Root CA 1, which the system's (Mozilla) trust store holds.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::Arc;

/// MQTT over TLS with client certificates.
pub const MQTT_PORT: u16 = 8883;
/// MQTT on 443 needs this ALPN protocol name.
pub const ALPN_MQTT_443: &[u8] = b"x-amzn-mqtt-ca";

/// Where to connect: host (also the SNI name) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// `HOST[:PORT]` (port 8883 unless given); `flag` names the input in errors.
    pub fn parse(text: &str, flag: &str) -> Result<Endpoint, String> {
        let text = text.trim();
        let (host, port) = match text.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => {
                let port = p
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{flag} {text}: port {p:?} is not a port number"))?;
                (h, port)
            }
            _ => (text, MQTT_PORT),
        };
        if host.is_empty() || host.contains('/') || host.contains(' ') {
            return Err(format!(
                "{flag} {text}: expected HOST[:PORT], e.g. abc123-ats.iot.eu-west-1.amazonaws.com"
            ));
        }
        Ok(Endpoint {
            host: host.to_string(),
            port,
        })
    }

    /// The name TLS checks the server certificate against; `None` for an IP address (no SNI).
    pub fn sni_name(&self) -> Option<String> {
        match ServerName::try_from(self.host.as_str()) {
            Ok(ServerName::DnsName(d)) => Some(d.as_ref().to_string()),
            _ => None,
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The trust roots: every certificate in `file` (`--trust-root`), else the system store.
pub fn trust_roots(file: Option<&Path>) -> Result<(RootCertStore, String), String> {
    let mut roots = RootCertStore::empty();
    if let Some(file) = file {
        let text =
            std::fs::read(file).map_err(|e| format!("--trust-root {}: {e}", file.display()))?;
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&text)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("--trust-root {}: not PEM certificates: {e}", file.display()))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(format!(
                "--trust-root {}: no certificate in it (expected PEM, e.g. AmazonRootCA1.pem)",
                file.display()
            ));
        }
        return Ok((
            roots,
            format!("{} ({})", file.display(), certificates(added)),
        ));
    }
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(format!(
            "no trust roots in the system store ({} errors); pass --trust-root FILE \
             (Amazon Root CA 1: AmazonRootCA1.pem)",
            found.errors.len()
        ));
    }
    Ok((roots, format!("the system store ({})", certificates(added))))
}

fn certificates(n: usize) -> String {
    match n {
        1 => "1 certificate".to_string(),
        n => format!("{n} certificates"),
    }
}

/// The TLS configuration of the device: `chain_pem` (device certificate, then its CA) and
/// `key_pem` as the client certificate, ALPN `x-amzn-mqtt-ca` on port 443.
pub fn client_config(
    roots: RootCertStore,
    chain_pem: &str,
    key_pem: &str,
    port: u16,
) -> Result<Arc<ClientConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the device chain: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("the device key: {e}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("TLS: the device certificate and key: {e}"))?;
    if port == 443 {
        config.alpn_protocols = vec![ALPN_MQTT_443.to_vec()];
    }
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_default_to_8883_and_name_their_flag_when_wrong() {
        let e = Endpoint::parse("abc-ats.iot.eu-west-1.amazonaws.com", "--endpoint").unwrap();
        assert_eq!(e.port, MQTT_PORT);
        assert_eq!(
            e.sni_name().as_deref(),
            Some("abc-ats.iot.eu-west-1.amazonaws.com")
        );
        let e = Endpoint::parse("localhost:443", "--endpoint").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("localhost", 443));
        assert_eq!(e.to_string(), "localhost:443");
        assert_eq!(
            Endpoint::parse("127.0.0.1:1", "--endpoint")
                .unwrap()
                .sni_name(),
            None
        );
        for bad in ["", "host:0", "host:x", "https://host", ":8883"] {
            let err = Endpoint::parse(bad, "--endpoint").unwrap_err();
            assert!(err.starts_with("--endpoint"), "{bad}: {err}");
        }
    }

    #[test]
    fn port_443_asks_for_alpn_x_amzn_mqtt_ca_and_8883_for_none() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["device".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (chain, key) = (cert.pem(), key.serialize_pem());
        let on_443 = client_config(RootCertStore::empty(), &chain, &key, 443).unwrap();
        assert_eq!(on_443.alpn_protocols, vec![b"x-amzn-mqtt-ca".to_vec()]);
        let on_8883 = client_config(RootCertStore::empty(), &chain, &key, 8883).unwrap();
        assert!(on_8883.alpn_protocols.is_empty());
        let err = client_config(RootCertStore::empty(), &chain, "not a key", 8883).unwrap_err();
        assert!(err.contains("the device key"), "{err}");
    }

    #[test]
    fn a_trust_root_file_without_certificates_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("jitr-smoke-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("empty.pem");
        std::fs::write(&f, "nothing here\n").unwrap();
        let err = trust_roots(Some(&f)).unwrap_err();
        assert!(
            err.contains("--trust-root") && err.contains("empty.pem"),
            "{err}"
        );
        let err = trust_roots(Some(&dir.join("missing.pem"))).unwrap_err();
        assert!(err.contains("missing.pem"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
