//! `ca inspect`: the facts of a CA certificate that matter to AWS IoT and the activator, and
//! warnings about what would go wrong. Warnings never fail the inspection: it reports.

use jitr_lambda_common::pki::Certificate;
use jitr_lambda_common::signature::{self, Curve, IssuerKey};
use serde::Serialize;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A CA expiring within this many days is warned about.
pub const EXPIRY_WARNING_DAYS: i64 = 90;

/// What `ca inspect` reports.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inspection {
    /// The id AWS IoT gives the certificate: hex SHA-256 of its DER.
    pub certificate_id: String,
    pub subject: String,
    pub issuer: String,
    /// Hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    pub key_algorithm: String,
    pub signature_algorithm: String,
    /// RFC 3339.
    pub not_before: String,
    pub not_after: String,
    pub is_ca: bool,
    pub path_len: Option<u32>,
    /// Key usage bits (RFC 5280 names); empty when the extension is absent.
    pub key_usage: Vec<String>,
    pub self_signed: bool,
    /// The activator can verify the device certificates this CA signs (its own check).
    pub activator_can_verify: bool,
    pub warnings: Vec<String>,
}

/// Inspects the first certificate of `pem` at `now` (seconds since the epoch).
pub fn inspect(pem: &str, now: i64) -> Result<Inspection, String> {
    let cert = Certificate::from_pem(pem).map_err(|e| e.to_string())?;
    let (_, x) = X509Certificate::from_der(cert.der()).map_err(|e| e.to_string())?;
    let (not_before, not_after) = cert.validity();
    let bc = x
        .basic_constraints()
        .ok()
        .flatten()
        .map(|b| b.value.clone());
    let key_usage = key_usage(&x);
    let self_signed = x.issuer().as_raw() == x.subject().as_raw();
    let verifiable = cert.check_verifiable_issuer();
    let mut i = Inspection {
        certificate_id: cert.aws_iot_id(),
        subject: cert.subject(),
        issuer: cert.issuer(),
        serial: hex(x.raw_serial()),
        key_algorithm: key_algorithm(&x),
        signature_algorithm: signature::describe_oid(&x.signature_algorithm.algorithm),
        not_before: rfc3339(not_before),
        not_after: rfc3339(not_after),
        is_ca: bc.as_ref().is_some_and(|b| b.ca),
        path_len: bc.and_then(|b| b.path_len_constraint),
        key_usage,
        self_signed,
        activator_can_verify: verifiable.is_ok(),
        warnings: Vec::new(),
    };
    i.warnings = warnings(&i, &x, now, (not_before, not_after), verifiable.err());
    Ok(i)
}

fn warnings(
    i: &Inspection,
    x: &X509Certificate<'_>,
    now: i64,
    (not_before, not_after): (i64, i64),
    not_verifiable: Option<jitr_lambda_common::pki::CertError>,
) -> Vec<String> {
    let mut w = Vec::new();
    if now > not_after {
        w.push(format!("expired on {}", i.not_after));
    } else if now < not_before {
        w.push(format!("not valid yet (from {})", i.not_before));
    } else if (not_after - now) / 86_400 < EXPIRY_WARNING_DAYS {
        w.push(format!("expires in {} days", (not_after - now) / 86_400));
    }
    if !i.is_ca {
        w.push(
            "not a CA (basicConstraints do not say CA:TRUE): AWS IoT will not register it as a CA"
                .into(),
        );
    }
    if !i.key_usage.is_empty() && !i.key_usage.iter().any(|u| u == "keyCertSign") {
        w.push("keyUsage lacks keyCertSign: it may not sign certificates".into());
    }
    if i.is_ca && !i.self_signed {
        w.push(format!(
            "an intermediate CA (issued by {}): devices must present their chain up to a CA \
             registered with AWS IoT",
            i.issuer
        ));
    }
    if let Err(what) = signature::scheme(&x.signature_algorithm) {
        w.push(format!("signed with {what}, which AWS IoT does not accept"));
    }
    // Also an RSA key under 2048 bits: the activator's check says that AWS IoT refuses it.
    if let Some(e) = not_verifiable {
        w.push(e.to_string());
    }
    w
}

fn key_algorithm(x: &X509Certificate<'_>) -> String {
    match signature::issuer_key(x.public_key()) {
        Ok(IssuerKey::Rsa { bits }) => format!("RSA {bits}"),
        Ok(IssuerKey::Ec(Curve::P256)) => "EC P-256".into(),
        Ok(IssuerKey::Ec(Curve::P384)) => "EC P-384".into(),
        Ok(IssuerKey::Ec(Curve::P521)) => "EC P-521".into(),
        Ok(IssuerKey::Dsa { bits }) => format!("DSA {bits}"),
        Err(what) => what,
    }
}

fn key_usage(x: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(ku)) = x.key_usage() else {
        return Vec::new();
    };
    let k = ku.value;
    [
        (k.digital_signature(), "digitalSignature"),
        (k.non_repudiation(), "nonRepudiation"),
        (k.key_encipherment(), "keyEncipherment"),
        (k.data_encipherment(), "dataEncipherment"),
        (k.key_agreement(), "keyAgreement"),
        (k.key_cert_sign(), "keyCertSign"),
        (k.crl_sign(), "cRLSign"),
        (k.encipher_only(), "encipherOnly"),
        (k.decipher_only(), "decipherOnly"),
    ]
    .into_iter()
    .filter(|(set, _)| *set)
    .map(|(_, name)| name.to_string())
    .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Seconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339(secs: i64) -> String {
    aws_smithy_types::DateTime::from_secs(secs)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_else(|_| secs.to_string())
}
