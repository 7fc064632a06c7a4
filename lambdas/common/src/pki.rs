//! X.509 facts the Lambdas need, from PEM text: the DER bytes, whether a certificate is a CA,
//! its subject CN and validity, its AWS IoT id, and whether our CA signed it.

use crate::signature::{self, SignatureError};
use sha2::{Digest, Sha256};
use std::fmt;
use x509_parser::pem::parse_x509_pem;
use x509_parser::prelude::*;

/// A certificate problem, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertError(pub String);

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CertError {}

/// A parsed certificate, kept as DER and re-parsed on demand (parsing is cheap and this keeps
/// the type free of borrows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    der: Vec<u8>,
}

impl Certificate {
    /// Parses the first PEM block of `pem`, which must be a `CERTIFICATE`.
    pub fn from_pem(pem: &str) -> Result<Self, CertError> {
        let (_, block) = parse_x509_pem(pem.trim_start().as_bytes())
            .map_err(|_| CertError("not a PEM document (no -----BEGIN ...----- block)".into()))?;
        if block.label != "CERTIFICATE" {
            return Err(CertError(format!(
                "the PEM block is `{}`, expected `CERTIFICATE`",
                block.label
            )));
        }
        let cert = Certificate {
            der: block.contents,
        };
        cert.parsed()?;
        Ok(cert)
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    fn parsed(&self) -> Result<X509Certificate<'_>, CertError> {
        let (rest, cert) = X509Certificate::from_der(&self.der)
            .map_err(|e| CertError(format!("not a valid X.509 certificate: {e}")))?;
        if !rest.is_empty() {
            return Err(CertError(
                "not a valid X.509 certificate: trailing bytes after the DER".into(),
            ));
        }
        Ok(cert)
    }

    fn with<T>(&self, f: impl FnOnce(&X509Certificate<'_>) -> T) -> T {
        // `from_pem` proved the DER parses.
        f(&self
            .parsed()
            .expect("certificate was validated when constructed"))
    }

    /// The id AWS IoT gives this certificate: hex SHA-256 of the DER encoding.
    pub fn aws_iot_id(&self) -> String {
        Sha256::digest(&self.der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Basic constraints say CA:TRUE.
    pub fn is_ca(&self) -> bool {
        self.with(|c| c.is_ca())
    }

    /// The first common name of the subject, if it is a UTF-8 string.
    pub fn subject_cn(&self) -> Option<String> {
        self.with(|c| {
            c.subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_string)
        })
    }

    /// The serial number in normal form (lowercase hex, no leading zeros; see
    /// `jitr_contract::revocation::normalize_serial`).
    pub fn serial_hex(&self) -> String {
        self.with(|c| jitr_contract::revocation::serial_from_bytes(c.raw_serial()))
    }

    /// The subject as RFC 4514 text, for messages.
    pub fn subject(&self) -> String {
        self.with(|c| c.subject().to_string())
    }

    /// `notBefore` and `notAfter`, seconds since the Unix epoch.
    pub fn validity(&self) -> (i64, i64) {
        self.with(|c| {
            (
                c.validity().not_before.timestamp(),
                c.validity().not_after.timestamp(),
            )
        })
    }

    /// Checks the validity period against `now` (seconds since the epoch).
    pub fn check_validity_at(&self, now: i64) -> Result<(), CertError> {
        let (not_before, not_after) = self.validity();
        if now < not_before {
            return Err(CertError(format!(
                "certificate is not valid yet (notBefore {not_before}, now {now})"
            )));
        }
        if now > not_after {
            return Err(CertError(format!(
                "certificate has expired (notAfter {not_after}, now {now})"
            )));
        }
        Ok(())
    }

    /// The issuer as RFC 4514 text, for messages.
    pub fn issuer(&self) -> String {
        self.with(|c| c.issuer().to_string())
    }

    /// Checks that `ca` issued this certificate: the issuer name is `ca`'s subject and `ca`'s
    /// key made the signature. A signature that cannot be checked here (an algorithm or key
    /// [`crate::signature`] does not support) is [`NotIssuedBy::Unsupported`], never taken
    /// for a signature that does not verify.
    pub fn check_issued_by(&self, ca: &Certificate) -> Result<(), NotIssuedBy> {
        let ca_parsed = ca.parsed().map_err(|e| NotIssuedBy::Unsupported(e.0))?;
        self.with(|c| {
            if c.issuer().as_raw() != ca_parsed.subject().as_raw() {
                return Err(NotIssuedBy::OtherIssuer {
                    issuer: c.issuer().to_string(),
                    ca_subject: ca_parsed.subject().to_string(),
                });
            }
            signature::verify(
                ca_parsed.public_key(),
                &c.signature_algorithm,
                &c.signature_value.data,
                c.tbs_certificate.as_ref(),
            )
            .map(|_| ())
            .map_err(|e| match e {
                SignatureError::Unsupported(m) => NotIssuedBy::Unsupported(m),
                SignatureError::Mismatch(m) => NotIssuedBy::Signature(m),
            })
        })
    }

    /// Verifies that `issuer`'s key signed this certificate and that the issuer name matches.
    pub fn verify_signed_by(&self, issuer: &Certificate) -> Result<(), CertError> {
        self.check_issued_by(issuer)
            .map_err(|e| CertError(e.to_string()))
    }

    /// Whether the activator can verify the certificates this CA signs: its key must be one
    /// [`crate::signature`] verifies, and its own signature algorithm one AWS IoT accepts
    /// (checked against its own key when it is self-signed). Err says which and why.
    pub fn check_verifiable_issuer(&self) -> Result<signature::IssuerKey, CertError> {
        self.with(|c| {
            let key = signature::issuer_key(c.public_key()).map_err(|what| {
                CertError(format!(
                    "the CA's key is {what}: the activator could not verify the device \
                     certificates it signs (it verifies {})",
                    signature::SUPPORTED
                ))
            })?;
            signature::scheme(&c.signature_algorithm).map_err(|what| {
                CertError(format!(
                    "the CA certificate is signed with {what}, which the activator does not \
                     verify (it verifies {})",
                    signature::SUPPORTED
                ))
            })?;
            if c.issuer().as_raw() == c.subject().as_raw() {
                let own = signature::verify(
                    c.public_key(),
                    &c.signature_algorithm,
                    &c.signature_value.data,
                    c.tbs_certificate.as_ref(),
                );
                if let Err(e) = own {
                    return Err(CertError(format!(
                        "the CA certificate's self-signature does not check: {e}"
                    )));
                }
            }
            Ok(key)
        })
    }
}

/// Why a certificate was not issued by a given CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotIssuedBy {
    /// The certificate names another issuer (RFC 4514 text of both names).
    OtherIssuer { issuer: String, ca_subject: String },
    /// Issuer name as expected, but the CA's key did not make the signature.
    Signature(String),
    /// The signature cannot be checked: the message names the algorithm or key.
    Unsupported(String),
}

impl fmt::Display for NotIssuedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotIssuedBy::OtherIssuer { issuer, ca_subject } => {
                write!(f, "issued by `{issuer}`, not by our CA `{ca_subject}`")
            }
            NotIssuedBy::Signature(m) => write!(f, "signature does not verify against our CA: {m}"),
            NotIssuedBy::Unsupported(m) => write!(
                f,
                "cannot check the signature: {m}; the activator verifies {}",
                signature::SUPPORTED
            ),
        }
    }
}

/// Whether changing the CA registration from (`old_pem`, `old_mode`) to (`new_pem`,
/// `new_mode`) needs a new registration, that is a new physical id and so a replacement.
///
/// AWS IoT names a CA by its DER encoding and registers a certificate once per account and
/// mode: a different certificate (by DER, not by PEM text: re-wrapping or re-indenting the
/// PEM changes nothing) or a different certificate mode is a new registration. A PEM that does
/// not parse counts as different. The CA provider decides Update vs replacement with this,
/// and the CLI's diff predicts it with this, so the two can never disagree.
pub fn needs_new_registration(
    old_pem: &str,
    old_mode: &str,
    new_pem: &str,
    new_mode: &str,
) -> bool {
    if old_mode != new_mode {
        return true;
    }
    match (
        Certificate::from_pem(old_pem),
        Certificate::from_pem(new_pem),
    ) {
        (Ok(old), Ok(new)) => old.der() != new.der(),
        _ => true,
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_pem_and_wrong_label() {
        let err = Certificate::from_pem("hello").unwrap_err();
        assert!(err.0.contains("not a PEM document"), "{err}");
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let err = Certificate::from_pem(key).unwrap_err();
        assert!(err.0.contains("`PRIVATE KEY`"), "{err}");
        let junk = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = Certificate::from_pem(junk).unwrap_err();
        assert!(err.0.contains("not a valid X.509 certificate"), "{err}");
    }

    #[test]
    fn a_new_registration_is_a_new_der_or_a_new_mode_not_a_rewrapped_pem() {
        let pem = include_str!("../../../certs/dev-ca.pem");
        let other = include_str!("../../../certs/prod-ca.pem");
        // The same DER, wrapped at 76 columns with CRLF line ends instead of 64 and LF.
        let body: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat();
        let rewrapped = format!(
            "-----BEGIN CERTIFICATE-----\r\n{}\r\n-----END CERTIFICATE-----\r\n",
            body.as_bytes()
                .chunks(76)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect::<Vec<_>>()
                .join("\r\n")
        );
        assert_ne!(rewrapped, pem);
        assert!(!needs_new_registration(
            pem, "SNI_ONLY", &rewrapped, "SNI_ONLY"
        ));
        assert!(needs_new_registration(pem, "SNI_ONLY", pem, "DEFAULT"));
        assert!(needs_new_registration(pem, "SNI_ONLY", other, "SNI_ONLY"));
        assert!(needs_new_registration("junk", "SNI_ONLY", pem, "SNI_ONLY"));
    }
}
