//! Making certificate authorities: a [`CaSpec`] (key algorithm, subject, validity) becomes a
//! [`CaMaterial`] (certificate and PKCS#8 private key, both PEM), with rcgen on aws-lc-rs.
//!
//! The certificate is what AWS IoT's `RegisterCACertificate` accepts and the activator can
//! check: X.509 v3, `CA:TRUE` (here with path length 0: devices are signed by this CA
//! directly), key usage keyCertSign and cRLSign (plus digitalSignature), a subject key
//! identifier, a random positive serial of at most 20 bytes, and a signature algorithm from
//! AWS IoT's list (ECDSA with SHA-256/384, or SHA-256 with RSA). AWS IoT takes at most 10 CA
//! certificates with the same subject per account, so each CA should be named for its use.
//! `init` makes the development CA with it; `ca create` can reuse it for any [`KeyAlgorithm`].
//!
//! Issuing devices: [`CaSigner`] (a CA certificate and its key, checked to match),
//! [`issue_device`] and [`write_device`] (in `pki/device.rs`, `pki/signer.rs`, `pki/files.rs`).

mod device;
mod files;
pub mod inspect;
mod signer;
mod subject;

pub use device::{issue_device, DeviceMaterial, DeviceSpec, Validity, DEFAULT_DEVICE_DAYS};
pub use files::{
    ca_files, device_files, write_ca, write_device, write_new_files, NewFile, WriteError,
    CERT_MODE, KEY_MODE,
};
pub use signer::CaSigner;
pub use subject::{parse_subject, Attr, Subject};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A key algorithm, with the signature algorithm the CA signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// NIST P-256, ECDSA with SHA-256.
    EcP256,
    /// NIST P-384, ECDSA with SHA-384.
    EcP384,
    /// RSA 2048, SHA-256 with RSA (PKCS#1 v1.5).
    Rsa2048,
    /// RSA 3072, SHA-256 with RSA (PKCS#1 v1.5).
    Rsa3072,
}

impl KeyAlgorithm {
    /// Every key algorithm, in the order the CLI lists them.
    pub const ALL: [KeyAlgorithm; 4] = [
        KeyAlgorithm::EcP256,
        KeyAlgorithm::EcP384,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
    ];

    /// The CLI's name (`--key-type`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EcP256 => "ec-p256",
            KeyAlgorithm::EcP384 => "ec-p384",
            KeyAlgorithm::Rsa2048 => "rsa-2048",
            KeyAlgorithm::Rsa3072 => "rsa-3072",
        }
    }

    /// As `ca inspect` names it.
    pub fn describe(self) -> &'static str {
        match self {
            KeyAlgorithm::EcP256 => "EC P-256",
            KeyAlgorithm::EcP384 => "EC P-384",
            KeyAlgorithm::Rsa2048 => "RSA 2048",
            KeyAlgorithm::Rsa3072 => "RSA 3072",
        }
    }

    fn generate(self) -> Result<KeyPair, rcgen::Error> {
        match self {
            KeyAlgorithm::EcP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyAlgorithm::EcP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            KeyAlgorithm::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            }
            KeyAlgorithm::Rsa3072 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072)
            }
        }
    }
}

/// What CA to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSpec {
    pub key: KeyAlgorithm,
    /// Subject common name (CN).
    pub common_name: String,
    /// Subject organization (O), if any.
    pub organization: Option<String>,
    /// More subject attributes (OU, C, ST, L), in order.
    pub more: Vec<(Attr, String)>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// Days of validity from `not_before`.
    pub days: u32,
}

impl CaSpec {
    /// A CA valid from an hour ago (clocks differ) for `days`.
    pub fn new(key: KeyAlgorithm, common_name: impl Into<String>, days: u32) -> CaSpec {
        CaSpec {
            key,
            common_name: common_name.into(),
            organization: None,
            more: Vec::new(),
            not_before: SystemTime::now() - Duration::from_secs(3600),
            days,
        }
    }

    pub fn organization(mut self, organization: impl Into<String>) -> CaSpec {
        self.organization = Some(organization.into());
        self
    }

    /// A CA with the whole `subject` (as [`parse_subject`] read it).
    pub fn with_subject(key: KeyAlgorithm, subject: &Subject, days: u32) -> CaSpec {
        let mut spec = CaSpec::new(key, subject.common_name().unwrap_or_default(), days);
        spec.more = subject
            .attrs
            .iter()
            .filter(|(a, _)| *a != Attr::CommonName)
            .cloned()
            .collect();
        spec
    }
}

/// A freshly made CA. The key is secret: write it with mode 0600, never print or log it.
pub struct CaMaterial {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub key_pem: String,
}

impl std::fmt::Debug for CaMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaMaterial")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"(secret)")
            .finish()
    }
}

/// Why a CA could not be made or used, or a device certificate not issued.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PkiError {
    #[error("CA subject: {0}")]
    Subject(String),
    #[error("CA validity: {0}")]
    Validity(String),
    #[error("CA key or certificate: {0}")]
    Crypto(String),
    /// The CA certificate cannot issue (not a CA, expired, unreadable).
    #[error("{0}")]
    Ca(String),
    /// The CA private key is unreadable, of an unusable kind, or not the certificate's.
    #[error("CA private key: {0}")]
    Key(String),
    /// The device specification is unusable.
    #[error("device certificate: {0}")]
    Device(String),
}

/// Makes a self-signed CA: a fresh key pair, a random serial.
pub fn make_ca(spec: &CaSpec) -> Result<CaMaterial, PkiError> {
    if spec.common_name.trim().is_empty() {
        return Err(PkiError::Subject("the common name (CN) is empty".into()));
    }
    if spec.days == 0 {
        return Err(PkiError::Validity("at least one day".into()));
    }
    let key = spec.key.generate().map_err(crypto)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, spec.common_name.as_str());
    if let Some(o) = &spec.organization {
        dn.push(DnType::OrganizationName, o.as_str());
    }
    for (attr, value) in &spec.more {
        if *attr == Attr::Country {
            // X.520: a country name is a PrintableString.
            let printable = rcgen::string::PrintableString::try_from(value.as_str())
                .map_err(|_| PkiError::Subject(format!("C={value:?} is not printable")))?;
            dn.push(attr.dn_type(), rcgen::DnValue::PrintableString(printable));
        } else {
            dn.push(attr.dn_type(), value.as_str());
        }
    }
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial()?);
    let since_epoch = spec
        .not_before
        .duration_since(UNIX_EPOCH)
        .map_err(|_| PkiError::Validity("starts before 1970".into()))?;
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + since_epoch;
    params.not_after = params.not_before + Duration::from_secs(u64::from(spec.days) * 86_400);
    let cert = params.self_signed(&key).map_err(crypto)?;
    Ok(CaMaterial {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// 16 random bytes, positive (RFC 5280: a positive integer of at most 20 octets).
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| PkiError::Crypto("no randomness".into()))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // never a leading zero octet: the serial keeps its 16 bytes
    Ok(SerialNumber::from_slice(&bytes))
}

fn crypto(e: rcgen::Error) -> PkiError {
    PkiError::Crypto(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitr_lambda_common::pki::{unix_now, Certificate};

    #[test]
    fn every_key_algorithm_makes_a_ca_aws_iot_can_check() {
        for key in [
            KeyAlgorithm::EcP256,
            KeyAlgorithm::EcP384,
            KeyAlgorithm::Rsa2048,
        ] {
            let m = make_ca(&CaSpec::new(key, "Acme development CA", 730).organization("Acme"))
                .unwrap();
            assert!(
                m.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"),
                "{key:?}"
            );
            let c = Certificate::from_pem(&m.cert_pem).unwrap();
            assert!(c.is_ca(), "{key:?}");
            assert_eq!(c.subject_cn().as_deref(), Some("Acme development CA"));
            c.check_validity_at(unix_now()).unwrap();
            c.check_verifiable_issuer().unwrap();
            c.verify_signed_by(&c).unwrap();
            let (from, to) = c.validity();
            assert!((3500..=3700).contains(&(unix_now() - from)), "an hour ago");
            assert_eq!(to - from, 730 * 86_400);
        }
    }

    #[test]
    fn bad_specs_are_refused_and_the_key_is_not_debug_printed() {
        assert!(make_ca(&CaSpec::new(KeyAlgorithm::EcP256, " ", 1)).is_err());
        assert!(make_ca(&CaSpec::new(KeyAlgorithm::EcP256, "x", 0)).is_err());
        let m = make_ca(&CaSpec::new(KeyAlgorithm::EcP256, "x", 1)).unwrap();
        assert!(!format!("{m:?}").contains("PRIVATE KEY"));
    }
}
