//! Issuing device certificates with a [`CaSigner`]: what AWS IoT's just-in-time registration
//! takes as a device certificate signed by a registered CA.

use super::{random_serial, CaSigner, KeyAlgorithm, PkiError};
use jitr_lambda_common::pki::{unix_now, Certificate};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
};
use std::time::Duration;

/// How long a device certificate is valid unless told otherwise.
pub const DEFAULT_DEVICE_DAYS: u32 = 365;

/// Clocks differ: a certificate starts an hour before it was made (never before its CA).
const BACKDATE_SECS: i64 = 3600;

/// What device certificate to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    /// Subject common name (CN); the activator derives the Thing name from it.
    pub common_name: String,
    /// The device's key (default EC P-256).
    pub key: KeyAlgorithm,
    /// Days of validity (cut at the CA's notAfter, see [`DeviceMaterial::validity`]).
    pub days: u32,
}

impl DeviceSpec {
    /// An EC P-256 device valid for [`DEFAULT_DEVICE_DAYS`].
    pub fn new(common_name: impl Into<String>) -> DeviceSpec {
        DeviceSpec {
            common_name: common_name.into(),
            key: KeyAlgorithm::EcP256,
            days: DEFAULT_DEVICE_DAYS,
        }
    }
}

/// The validity a device certificate got, seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
    /// The days asked for reached past the CA's notAfter: notAfter is the CA's.
    pub clamped_to_ca: bool,
}

/// A device's certificate, key and chain. The key is secret: write it with mode 0600, never
/// print or log it (`Debug` does not show it).
pub struct DeviceMaterial {
    /// The device certificate, PEM.
    pub cert_pem: String,
    /// The device private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The device certificate, then the CA certificate (PEM), as a device presents it.
    pub chain_pem: String,
    /// The validity the certificate got.
    pub validity: Validity,
}

impl DeviceMaterial {
    /// The id AWS IoT gives the certificate (hex SHA-256 of its DER).
    pub fn certificate_id(&self) -> String {
        Certificate::from_pem(&self.cert_pem)
            .map(|c| c.aws_iot_id())
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for DeviceMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceMaterial")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"(secret)")
            .field("validity", &self.validity)
            .finish()
    }
}

/// Issues a device certificate: a fresh key, subject CN, a random positive serial,
/// `CA:FALSE`, keyUsage digitalSignature (+ keyEncipherment for RSA), extKeyUsage
/// clientAuth, the CA's subject key id as authority key id, and a validity inside the CA's.
pub fn issue_device(ca: &CaSigner, spec: &DeviceSpec) -> Result<DeviceMaterial, PkiError> {
    let cn = spec.common_name.as_str();
    if cn.trim().is_empty() {
        return Err(PkiError::Device("the common name (CN) is empty".into()));
    }
    if spec.days == 0 {
        return Err(PkiError::Device("validity: at least one day".into()));
    }
    let validity = validity(ca.certificate(), spec.days, unix_now())?;
    let key = spec.key.generate().map_err(super::crypto)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if matches!(spec.key, KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072) {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = ca.has_subject_key_id();
    params.serial_number = Some(random_serial()?);
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + Duration::from_secs(validity.not_before as u64);
    params.not_after = epoch + Duration::from_secs(validity.not_after as u64);
    let cert = params.signed_by(&key, ca.issuer()).map_err(super::crypto)?;
    let cert_pem = cert.pem();
    let chain_pem = format!("{}{}", cert_pem, ca.cert_pem());
    Ok(DeviceMaterial {
        cert_pem,
        key_pem: key.serialize_pem(),
        chain_pem,
        validity,
    })
}

/// From an hour ago (not before the CA) for `days`, cut at the CA's notAfter.
fn validity(ca: &Certificate, days: u32, now: i64) -> Result<Validity, PkiError> {
    let (ca_from, ca_to) = ca.validity();
    let not_before = (now - BACKDATE_SECS).max(ca_from).max(0);
    let wanted = not_before + i64::from(days) * 86_400;
    if not_before >= ca_to {
        return Err(PkiError::Ca("the CA certificate has expired".into()));
    }
    Ok(Validity {
        not_before,
        not_after: wanted.min(ca_to),
        clamped_to_ca: wanted > ca_to,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{make_ca, CaSpec};
    use std::time::SystemTime;

    fn signer(key: KeyAlgorithm, days: u32) -> CaSigner {
        let m = make_ca(&CaSpec::new(key, "Unit CA", days)).unwrap();
        CaSigner::from_pem(&m.cert_pem, &m.key_pem).unwrap()
    }

    #[test]
    fn every_ca_key_issues_every_device_key_and_the_activator_checks_it() {
        for ca_key in [
            KeyAlgorithm::EcP256,
            KeyAlgorithm::EcP384,
            KeyAlgorithm::Rsa2048,
        ] {
            let ca = signer(ca_key, 30);
            for dev_key in [KeyAlgorithm::EcP256, KeyAlgorithm::Rsa2048] {
                let spec = DeviceSpec {
                    key: dev_key,
                    ..DeviceSpec::new("sensor-0001")
                };
                let m = issue_device(&ca, &spec).unwrap();
                let c = Certificate::from_pem(&m.cert_pem).unwrap();
                c.verify_signed_by(ca.certificate()).unwrap();
                assert!(!c.is_ca());
                assert_eq!(c.subject_cn().as_deref(), Some("sensor-0001"));
                assert!(m.chain_pem.starts_with(&m.cert_pem));
                assert!(m.chain_pem.ends_with(ca.cert_pem()));
                assert!(m.validity.clamped_to_ca, "365 days > the CA's 30");
                assert_eq!(c.validity().1, ca.certificate().validity().1);
                assert_eq!(m.certificate_id(), c.aws_iot_id());
                assert!(!format!("{m:?}").contains("PRIVATE KEY"));
            }
        }
    }

    #[test]
    fn validity_starts_an_hour_back_but_not_before_the_ca() {
        let ca = signer(KeyAlgorithm::EcP256, 800);
        let m = issue_device(&ca, &DeviceSpec::new("d")).unwrap();
        assert!(!m.validity.clamped_to_ca);
        assert_eq!(m.validity.not_after - m.validity.not_before, 365 * 86_400);
        let (ca_from, _) = ca.certificate().validity();
        assert!(m.validity.not_before >= ca_from);
        let bad = DeviceSpec {
            days: 0,
            ..DeviceSpec::new("d")
        };
        assert!(issue_device(&ca, &bad).is_err());
        assert!(issue_device(&ca, &DeviceSpec::new(" ")).is_err());
    }

    #[test]
    fn a_signer_refuses_a_wrong_key_a_non_ca_and_an_expired_ca() {
        let a = make_ca(&CaSpec::new(KeyAlgorithm::EcP256, "A", 30)).unwrap();
        let b = make_ca(&CaSpec::new(KeyAlgorithm::EcP256, "B", 30)).unwrap();
        let e = CaSigner::from_pem(&a.cert_pem, &b.key_pem).unwrap_err();
        assert!(e.to_string().contains("does not belong"), "{e}");
        let e = CaSigner::from_pem(&a.cert_pem, "junk").unwrap_err();
        assert!(e.to_string().contains("not a PEM private key"), "{e}");

        let ca = CaSigner::from_pem(&a.cert_pem, &a.key_pem).unwrap();
        let dev = issue_device(&ca, &DeviceSpec::new("leaf")).unwrap();
        let e = CaSigner::from_pem(&dev.cert_pem, &dev.key_pem).unwrap_err();
        assert!(e.to_string().contains("not a CA"), "{e}");

        let mut old = CaSpec::new(KeyAlgorithm::EcP256, "Old", 1);
        old.not_before = SystemTime::now() - Duration::from_secs(10 * 86_400);
        let old = make_ca(&old).unwrap();
        let e = CaSigner::from_pem(&old.cert_pem, &old.key_pem).unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
    }
}
