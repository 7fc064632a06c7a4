//! Certificate signatures as AWS IoT accepts them, checked with aws-lc-rs.
//!
//! AWS IoT lists these certificate-signing algorithms ("Certificate signing algorithms
//! supported by AWS IoT", AWS IoT developer guide, X.509 client certificates):
//! SHA256/384/512WITHRSA, SHA256/384/512WITHRSAANDMGF1 (RSASSA-PSS), DSA_WITH_SHA256 and
//! ECDSA-WITH-SHA256/384/512, with RSA keys of at least 2048 bits or EC keys on NIST P-256,
//! P-384 or P-521. x509-parser's own check covers part of that (no P-521, no ECDSA with
//! SHA-512, RSASSA-PSS only with a salt as long as the hash), and there a signature it cannot
//! check looks just like one that does not verify. Here they are two answers:
//! [`SignatureError::Unsupported`] (we cannot tell: an error someone must look at) and
//! [`SignatureError::Mismatch`] (checked: this key did not make it).
//!
//! aws-lc-rs verifies all of them but DSA_WITH_SHA256, which RustCrypto's `dsa` crate does.
//! Anything else (SHA-1, other curves, RSA keys under 2048 bits, Ed25519, ...) is refused as
//! unsupported, never taken for "not ours".

use aws_lc_rs::signature::{
    self as lc, EcdsaVerificationAlgorithm, RsaParameters, RsaPssSaltLength, VerificationAlgorithm,
};
use dsa::pkcs8::DecodePublicKey;
use dsa::signature::DigestVerifier;
use sha2::Digest;
use std::fmt;
use x509_parser::asn1_rs::Oid;
use x509_parser::objects::{oid2sn, oid_registry};
use x509_parser::signature_algorithm::RsaSsaPssParams;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

/// The dotted object identifiers this module reads.
mod oid {
    pub const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
    pub const MGF1: &str = "1.2.840.113549.1.1.8";
    pub const RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
    pub const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
    pub const SHA384_WITH_RSA: &str = "1.2.840.113549.1.1.12";
    pub const SHA512_WITH_RSA: &str = "1.2.840.113549.1.1.13";
    pub const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
    pub const ECDSA_WITH_SHA256: &str = "1.2.840.10045.4.3.2";
    pub const ECDSA_WITH_SHA384: &str = "1.2.840.10045.4.3.3";
    pub const ECDSA_WITH_SHA512: &str = "1.2.840.10045.4.3.4";
    pub const P256: &str = "1.2.840.10045.3.1.7";
    pub const P384: &str = "1.3.132.0.34";
    pub const P521: &str = "1.3.132.0.35";
    pub const DSA: &str = "1.2.840.10040.4.1";
    pub const SHA256: &str = "2.16.840.1.101.3.4.2.1";
    pub const SHA384: &str = "2.16.840.1.101.3.4.2.2";
    pub const SHA512: &str = "2.16.840.1.101.3.4.2.3";
    /// Not in x509-parser's registry.
    pub const DSA_WITH_SHA256: &str = "2.16.840.1.101.3.4.3.2";
}

/// What is verified, in words, for messages.
pub const SUPPORTED: &str = "sha256/384/512WithRSAEncryption and RSASSA-PSS \
     (SHA-256/384/512, MGF1 with the same hash, any salt length) with RSA keys of 2048 to 8192 \
     bits, ecdsa-with-SHA256/384/512 with EC keys on P-256, P-384 or P-521, and dsa-with-sha256 \
     with DSA keys";

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// The signature cannot be checked here: the algorithm, its parameters or the issuer's
    /// key are not supported. The message names them (with the object identifier).
    Unsupported(String),
    /// Checked, and this key did not make this signature.
    Mismatch(String),
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureError::Unsupported(m) | SignatureError::Mismatch(m) => f.write_str(m),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn from_oid(id: &str) -> Option<Hash> {
        match id {
            oid::SHA256 => Some(Hash::Sha256),
            oid::SHA384 => Some(Hash::Sha384),
            oid::SHA512 => Some(Hash::Sha512),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Hash::Sha256 => "SHA-256",
            Hash::Sha384 => "SHA-384",
            Hash::Sha512 => "SHA-512",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
}

/// An issuer key whose signatures can be verified here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerKey {
    Rsa { bits: u32 },
    Ec(Curve),
    Dsa { bits: usize },
}

impl fmt::Display for IssuerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IssuerKey::Rsa { bits } => write!(f, "RSA {bits}-bit"),
            IssuerKey::Ec(Curve::P256) => f.write_str("EC P-256"),
            IssuerKey::Ec(Curve::P384) => f.write_str("EC P-384"),
            IssuerKey::Ec(Curve::P521) => f.write_str("EC P-521"),
            IssuerKey::Dsa { bits } => write!(f, "DSA {bits}-bit"),
        }
    }
}

/// A signature scheme that can be verified here, as a signatureAlgorithm names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    RsaPkcs1(Hash),
    RsaPss {
        hash: Hash,
        salt_length: u16,
    },
    Ecdsa(Hash),
    /// AWS IoT lists DSA with SHA-256 only.
    DsaSha256,
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scheme::RsaPkcs1(h) => write!(f, "{}WithRSAEncryption", short(*h)),
            Scheme::RsaPss { hash, salt_length } => write!(
                f,
                "RSASSA-PSS ({}, MGF1, salt length {salt_length})",
                hash.name()
            ),
            Scheme::Ecdsa(h) => write!(f, "ecdsa-with-{}", short(*h).to_ascii_uppercase()),
            Scheme::DsaSha256 => f.write_str("dsa-with-sha256"),
        }
    }
}

fn short(h: Hash) -> &'static str {
    match h {
        Hash::Sha256 => "sha256",
        Hash::Sha384 => "sha384",
        Hash::Sha512 => "sha512",
    }
}

/// "name (dotted OID)" when the registry knows the name, else the dotted OID.
pub fn describe_oid(oid: &Oid) -> String {
    let id = oid.to_id_string();
    if id == oid::DSA_WITH_SHA256 {
        return format!("dsa-with-sha256 ({id})");
    }
    match oid2sn(oid, oid_registry()) {
        Ok(name) => format!("{name} ({id})"),
        Err(_) => id,
    }
}

/// The issuer key, if signatures made with it can be verified here; else what it is.
pub fn issuer_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<IssuerKey, String> {
    let alg = &spki.algorithm.algorithm;
    match alg.to_id_string().as_str() {
        // A key marked RSASSA-PSS-only is still an RSAPublicKey.
        oid::RSA_ENCRYPTION | oid::RSASSA_PSS => {
            let bits = RsaParameters::public_modulus_len(&spki.subject_public_key.data)
                .map_err(|_| "an RSA key that does not parse".to_string())?;
            if (2048..=8192).contains(&bits) {
                Ok(IssuerKey::Rsa { bits })
            } else {
                Err(format!(
                    "an RSA {bits}-bit key (AWS IoT needs at least 2048 bits; 2048 to 8192 are verified)"
                ))
            }
        }
        oid::DSA => dsa_key(spki)
            .map(|key| IssuerKey::Dsa {
                bits: key.components().p().bits(),
            })
            .map_err(|_| "a DSA key that does not parse".to_string()),
        oid::EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            match curve.as_ref().map(|c| c.to_id_string()).as_deref() {
                Some(oid::P256) => Ok(IssuerKey::Ec(Curve::P256)),
                Some(oid::P384) => Ok(IssuerKey::Ec(Curve::P384)),
                Some(oid::P521) => Ok(IssuerKey::Ec(Curve::P521)),
                _ => Err(format!(
                    "an EC key on curve {} (P-256, P-384 and P-521 are verified)",
                    curve
                        .as_ref()
                        .map_or("(not a named curve)".into(), describe_oid)
                )),
            }
        }
        _ => {
            let name = describe_oid(alg);
            let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            Err(format!("{article} {name} key"))
        }
    }
}

/// The signature scheme `alg` names, if it can be verified here; else what it is.
pub fn scheme(alg: &AlgorithmIdentifier<'_>) -> Result<Scheme, String> {
    Ok(match alg.algorithm.to_id_string().as_str() {
        oid::SHA256_WITH_RSA => Scheme::RsaPkcs1(Hash::Sha256),
        oid::SHA384_WITH_RSA => Scheme::RsaPkcs1(Hash::Sha384),
        oid::SHA512_WITH_RSA => Scheme::RsaPkcs1(Hash::Sha512),
        oid::ECDSA_WITH_SHA256 => Scheme::Ecdsa(Hash::Sha256),
        oid::ECDSA_WITH_SHA384 => Scheme::Ecdsa(Hash::Sha384),
        oid::ECDSA_WITH_SHA512 => Scheme::Ecdsa(Hash::Sha512),
        oid::DSA_WITH_SHA256 => Scheme::DsaSha256,
        oid::RSASSA_PSS => pss(alg)?,
        _ => return Err(describe_oid(&alg.algorithm)),
    })
}

/// RSASSA-PSS parameters (RFC 4055): the hash, MGF1 with that same hash, any salt length,
/// trailer field 1. Absent parameters mean SHA-1, which AWS IoT does not accept.
fn pss(alg: &AlgorithmIdentifier<'_>) -> Result<Scheme, String> {
    let unsupported = |what: String| format!("RSASSA-PSS (1.2.840.113549.1.1.10) with {what}");
    let params = alg
        .parameters
        .as_ref()
        .ok_or_else(|| unsupported("no parameters (the SHA-1 defaults)".into()))?;
    let params = RsaSsaPssParams::try_from(params)
        .map_err(|_| unsupported("parameters that do not parse".into()))?;
    let hash_oid = params.hash_algorithm_oid();
    let hash = Hash::from_oid(&hash_oid.to_id_string())
        .ok_or_else(|| unsupported(format!("hash {}", describe_oid(hash_oid))))?;
    let mgf = params
        .mask_gen_algorithm()
        .map_err(|_| unsupported("a mask generation function that does not parse".into()))?;
    if mgf.mgf.to_id_string() != oid::MGF1 || Hash::from_oid(&mgf.hash.to_id_string()) != Some(hash)
    {
        return Err(unsupported(format!(
            "hash {} and mask generation {} with {}",
            hash.name(),
            describe_oid(&mgf.mgf),
            describe_oid(&mgf.hash)
        )));
    }
    if params.trailer_field() != 1 {
        return Err(unsupported(format!(
            "trailer field {}",
            params.trailer_field()
        )));
    }
    let salt_length = u16::try_from(params.salt_length())
        .map_err(|_| unsupported(format!("salt length {}", params.salt_length())))?;
    Ok(Scheme::RsaPss { hash, salt_length })
}

/// Verifies that `key` made `signature` (as `alg` names it) over `signed`.
pub fn verify(
    key: &SubjectPublicKeyInfo<'_>,
    alg: &AlgorithmIdentifier<'_>,
    signature: &[u8],
    signed: &[u8],
) -> Result<Scheme, SignatureError> {
    let issuer = issuer_key(key)
        .map_err(|what| SignatureError::Unsupported(format!("the issuer's key is {what}")))?;
    let scheme = scheme(alg).map_err(|what| {
        SignatureError::Unsupported(format!("the signature algorithm is {what}"))
    })?;
    let key_bytes: &[u8] = &key.subject_public_key.data;
    let checked = match (scheme, issuer) {
        (Scheme::RsaPkcs1(hash), IssuerKey::Rsa { .. }) => {
            pkcs1(hash).verify_sig(key_bytes, signed, signature)
        }
        (Scheme::RsaPss { hash, salt_length }, IssuerKey::Rsa { .. }) => rsa_pss(hash)
            .with_pss_salt_length(RsaPssSaltLength::Custom(salt_length))
            .verify_sig(key_bytes, signed, signature),
        (Scheme::Ecdsa(hash), IssuerKey::Ec(curve)) => {
            ecdsa(curve, hash).verify_sig(key_bytes, signed, signature)
        }
        (Scheme::DsaSha256, IssuerKey::Dsa { .. }) => verify_dsa(key, signature, signed),
        // Not an algorithm problem: this key cannot have made a signature of that kind.
        _ => {
            return Err(SignatureError::Mismatch(format!(
                "signed with {scheme}, which the issuer's {issuer} key does not make"
            )))
        }
    };
    checked.map(|()| scheme).map_err(|_| {
        SignatureError::Mismatch(format!(
            "the {scheme} signature does not verify with the {issuer} key"
        ))
    })
}

fn dsa_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<dsa::VerifyingKey, ()> {
    dsa::VerifyingKey::from_public_key_der(spki.raw).map_err(|_| ())
}

fn verify_dsa(
    key: &SubjectPublicKeyInfo<'_>,
    signature: &[u8],
    signed: &[u8],
) -> Result<(), aws_lc_rs::error::Unspecified> {
    let key = dsa_key(key).map_err(|()| aws_lc_rs::error::Unspecified)?;
    let signature =
        dsa::Signature::try_from(signature).map_err(|_| aws_lc_rs::error::Unspecified)?;
    key.verify_digest(sha2::Sha256::new_with_prefix(signed), &signature)
        .map_err(|_| aws_lc_rs::error::Unspecified)
}

fn pkcs1(hash: Hash) -> RsaParameters {
    match hash {
        Hash::Sha256 => lc::RSA_PKCS1_2048_8192_SHA256,
        Hash::Sha384 => lc::RSA_PKCS1_2048_8192_SHA384,
        Hash::Sha512 => lc::RSA_PKCS1_2048_8192_SHA512,
    }
}

fn rsa_pss(hash: Hash) -> RsaParameters {
    match hash {
        Hash::Sha256 => lc::RSA_PSS_2048_8192_SHA256,
        Hash::Sha384 => lc::RSA_PSS_2048_8192_SHA384,
        Hash::Sha512 => lc::RSA_PSS_2048_8192_SHA512,
    }
}

fn ecdsa(curve: Curve, hash: Hash) -> &'static EcdsaVerificationAlgorithm {
    match (curve, hash) {
        (Curve::P256, Hash::Sha256) => &lc::ECDSA_P256_SHA256_ASN1,
        (Curve::P256, Hash::Sha384) => &lc::ECDSA_P256_SHA384_ASN1,
        (Curve::P256, Hash::Sha512) => &lc::ECDSA_P256_SHA512_ASN1,
        (Curve::P384, Hash::Sha256) => &lc::ECDSA_P384_SHA256_ASN1,
        (Curve::P384, Hash::Sha384) => &lc::ECDSA_P384_SHA384_ASN1,
        (Curve::P384, Hash::Sha512) => &lc::ECDSA_P384_SHA512_ASN1,
        (Curve::P521, Hash::Sha256) => &lc::ECDSA_P521_SHA256_ASN1,
        (Curve::P521, Hash::Sha384) => &lc::ECDSA_P521_SHA384_ASN1,
        (Curve::P521, Hash::Sha512) => &lc::ECDSA_P521_SHA512_ASN1,
    }
}
