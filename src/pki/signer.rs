//! [`CaSigner`]: a CA certificate with its private key, checked to belong together and to be
//! usable for issuing device certificates now.

use super::PkiError;
use jitr_lambda_common::pki::{unix_now, Certificate};
use rcgen::{Issuer, KeyPair};
use x509_parser::prelude::{FromDer, X509Certificate};

/// A CA certificate with its private key, checked to match. The key stays in memory only;
/// `Debug` never shows it.
pub struct CaSigner {
    cert_pem: String,
    cert: Certificate,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate carries a subject key identifier (devices get it as their
    /// authority key identifier).
    has_ski: bool,
}

impl std::fmt::Debug for CaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaSigner")
            .field("subject", &self.cert.subject())
            .field("key", &"(secret)")
            .finish()
    }
}

impl CaSigner {
    /// Checks: the PEMs parse; the certificate is a CA (`CA:TRUE`, and keyCertSign when it
    /// has a key usage extension); the key matches the certificate's public key and signs
    /// with an algorithm AWS IoT accepts (ECDSA P-256/P-384, RSA); the CA is within its
    /// validity now. Errors name the problem.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<CaSigner, PkiError> {
        let cert = Certificate::from_pem(cert_pem)
            .map_err(|e| PkiError::Ca(format!("the CA certificate: {e}")))?;
        let (_, x509) = X509Certificate::from_der(cert.der())
            .map_err(|e| PkiError::Ca(format!("the CA certificate: {e}")))?;
        check_is_ca(&x509)?;
        cert.check_validity_at(unix_now()).map_err(|e| {
            PkiError::Ca(format!(
                "the CA certificate {} cannot issue now: {e}",
                cert.subject()
            ))
        })?;
        let key = KeyPair::from_pem(key_pem).map_err(|_| {
            PkiError::Key(
                "not a PEM private key (unencrypted PKCS#8, SEC1 or PKCS#1; ECDSA P-256/P-384 \
                 or RSA)"
                    .into(),
            )
        })?;
        check_key_algorithm(&key)?;
        if key.public_key_raw() != x509.public_key().subject_public_key.data.as_ref() {
            return Err(PkiError::Key(format!(
                "the private key does not belong to the CA certificate {} (its public key \
                 differs)",
                cert.subject()
            )));
        }
        let has_ski = x509.iter_extensions().any(|e| {
            matches!(
                e.parsed_extension(),
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(_)
            )
        });
        let issuer = Issuer::from_ca_cert_der(&cert.der().to_vec().into(), key)
            .map_err(|e| PkiError::Ca(format!("the CA certificate: {e}")))?;
        Ok(CaSigner {
            cert_pem: cert_pem.trim().to_string() + "\n",
            cert,
            issuer,
            has_ski,
        })
    }

    /// The CA certificate, PEM (one trailing newline).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, parsed.
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    pub(super) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    pub(super) fn has_subject_key_id(&self) -> bool {
        self.has_ski
    }
}

fn check_is_ca(x509: &X509Certificate<'_>) -> Result<(), PkiError> {
    let subject = x509.subject().to_string();
    let is_ca = matches!(x509.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    if !is_ca {
        return Err(PkiError::Ca(format!(
            "the certificate {subject} is not a CA (its basicConstraints do not say CA:TRUE)"
        )));
    }
    match x509.key_usage() {
        Ok(Some(ku)) if !ku.value.key_cert_sign() => Err(PkiError::Ca(format!(
            "the CA certificate {subject} may not sign certificates (its keyUsage lacks \
             keyCertSign)"
        ))),
        Err(e) => Err(PkiError::Ca(format!(
            "the CA certificate {subject}: keyUsage: {e}"
        ))),
        _ => Ok(()),
    }
}

/// AWS IoT accepts ECDSA and RSA (PKCS#1 v1.5) signatures with SHA-256/384/512 (and DSA);
/// rcgen signs with the key's own algorithm, so the key decides.
fn check_key_algorithm(key: &KeyPair) -> Result<(), PkiError> {
    let alg = key.algorithm();
    let accepted = [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_RSA_SHA256,
        &rcgen::PKCS_RSA_SHA384,
        &rcgen::PKCS_RSA_SHA512,
    ];
    if accepted.contains(&alg) {
        Ok(())
    } else {
        Err(PkiError::Key(format!(
            "the CA private key signs with {alg:?}, which AWS IoT does not accept for device \
             certificates (use an ECDSA P-256/P-384 or RSA key)"
        )))
    }
}
