//! Throwaway certificate authorities and device certificates for tests.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A CA with its key, able to issue device and verification certificates.
pub struct TestCa {
    pub pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    /// A valid CA named `cn` (ECDSA P-256).
    pub fn new(cn: &str) -> TestCa {
        Self::build(cn, false)
    }

    /// A CA made elsewhere (e.g. by `jitr-infra init`), from its certificate and its
    /// private key (PEM), to issue device certificates with.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> TestCa {
        let key = KeyPair::from_pem(key_pem).expect("the CA key (PEM)");
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).expect("the CA certificate (PEM)");
        TestCa {
            pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            issuer,
        }
    }

    /// A CRL of this CA revoking `serials` (big-endian bytes), with nextUpdate on 1 January
    /// `next_year`: (PEM, DER).
    pub fn crl(&self, serials: &[&[u8]], next_year: i32) -> (String, Vec<u8>) {
        use rcgen::{
            CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber,
        };
        let params = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(next_year, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).unwrap();
        (crl.pem().unwrap(), crl.der().to_vec())
    }

    /// A CA whose validity ended in 2001.
    pub fn expired(cn: &str) -> TestCa {
        Self::build(cn, true)
    }

    fn build(cn: &str, expired: bool) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = name(cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA's private key, PEM (PKCS#8).
    pub fn key_pem(&self) -> String {
        self.key_pem.clone()
    }

    /// A device certificate with subject CN `cn`, signed by this CA.
    pub fn issue(&self, cn: &str) -> String {
        self.issue_with(Some(cn), false)
    }

    /// A leaf certificate, optionally without a CN, optionally expired.
    pub fn issue_with(&self, cn: Option<&str>, expired: bool) -> String {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = match cn {
            Some(cn) => name(cn),
            None => {
                let mut dn = DistinguishedName::new();
                dn.push(DnType::OrganizationName, "Acme Devices");
                dn
            }
        };
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        params.signed_by(&key, &self.issuer).unwrap().pem()
    }

    /// The verification certificate AWS IoT wants for `DEFAULT` mode: CN = registration code.
    pub fn verification_certificate(&self, registration_code: &str) -> String {
        self.issue(registration_code)
    }
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "Acme Devices");
    dn
}

/// A self-signed certificate that is not a CA.
pub fn leaf_self_signed(cn: &str) -> String {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = name(cn);
    params.self_signed(&key).unwrap().pem()
}
