//! Device certificates signed with every algorithm AWS IoT accepts verify against their CA;
//! a signature by another key is "not issued by" (ignored by the activator); a signature that
//! cannot be checked is "unsupported" (an error for the activator), never a mismatch.
//!
//! Fixtures come from the openssl CLI at test time (`testkit::openssl`).

use jitr_lambda_common::pki::{Certificate, NotIssuedBy};
use testkit::openssl::{Key, OpensslCa};

fn cert(pem: &str) -> Certificate {
    Certificate::from_pem(pem).unwrap()
}

fn check(ca: &OpensslCa, device_pem: &str) -> Result<(), NotIssuedBy> {
    cert(device_pem).check_issued_by(&cert(&ca.pem))
}

/// openssl's options for an RSASSA-PSS signature with `hash` and salt length `salt`.
fn pss(hash: &str, salt: &str) -> Vec<String> {
    [hash, "-sigopt", "rsa_padding_mode:pss", "-sigopt"]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("rsa_pss_saltlen:{salt}")])
        .collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// x509-parser's `verify-aws` check (used before) failed every one of these but the first
/// two, which the activator then took for another CA's certificates and ignored.
#[test]
fn every_ecdsa_curve_and_hash_verifies() {
    for curve in ["P-256", "P-384", "P-521"] {
        let ca = OpensslCa::root(&format!("EC {curve} CA"), Key::Ec(curve), &["-sha256"]);
        cert(&ca.pem).check_verifiable_issuer().unwrap();
        for hash in ["-sha256", "-sha384", "-sha512"] {
            let device = ca.issue("device", &[hash]);
            assert_eq!(check(&ca, &device), Ok(()), "{curve} {hash}");
        }
    }
}

#[test]
fn rsa_pkcs1_and_pss_with_any_salt_length_verify() {
    let ca = OpensslCa::root("RSA CA", Key::Rsa(2048), &["-sha256"]);
    cert(&ca.pem).check_verifiable_issuer().unwrap();
    for hash in ["-sha256", "-sha384", "-sha512"] {
        assert_eq!(check(&ca, &ca.issue("pkcs1", &[hash])), Ok(()), "{hash}");
        // "digest": as long as the hash (all x509-parser verified); "max": as long as the
        // key allows; 0 and 20: common defaults of other tools.
        for salt in ["digest", "0", "20", "64", "max"] {
            let device = ca.issue("pss", &refs(&pss(hash, salt)));
            assert_eq!(check(&ca, &device), Ok(()), "PSS {hash} salt {salt}");
        }
    }
    // A CA whose key is restricted to RSASSA-PSS (its SPKI says id-RSASSA-PSS).
    let pss_ca = OpensslCa::root(
        "RSA-PSS CA",
        Key::RsaPss(2048),
        &refs(&pss("-sha256", "32")),
    );
    cert(&pss_ca.pem).check_verifiable_issuer().unwrap();
    let device = pss_ca.issue("pss-key", &refs(&pss("-sha384", "48")));
    assert_eq!(check(&pss_ca, &device), Ok(()));
}

/// DSA_WITH_SHA256 is in AWS's list; aws-lc-rs does not verify DSA, RustCrypto's dsa does.
#[test]
fn dsa_with_sha256_verifies() {
    let ca = OpensslCa::root("DSA CA", Key::Dsa(2048), &["-sha256"]);
    assert!(matches!(
        cert(&ca.pem).check_verifiable_issuer(),
        Ok(jitr_lambda_common::signature::IssuerKey::Dsa { bits: 2048 })
    ));
    assert_eq!(check(&ca, &ca.issue("dsa", &["-sha256"])), Ok(()));
    let twin = OpensslCa::root("DSA CA", Key::Dsa(2048), &["-sha256"]);
    match check(&ca, &twin.issue("impostor", &["-sha256"])) {
        Err(NotIssuedBy::Signature(m)) => assert_eq!(
            m,
            "the dsa-with-sha256 signature does not verify with the DSA 2048-bit key"
        ),
        other => panic!("{other:?}"),
    }
    // SHA-1 is not in AWS's list.
    match check(&ca, &ca.issue("dsa-sha1", &["-sha1"])) {
        Err(NotIssuedBy::Unsupported(m)) => assert_eq!(
            m,
            "the signature algorithm is dsa-with-sha1 (1.2.840.10040.4.3)"
        ),
        other => panic!("{other:?}"),
    }
}

/// Same issuer name, another key: checked, and not ours.
#[test]
fn a_signature_by_another_key_is_a_mismatch_not_an_error() {
    for key in [Key::Ec("P-521"), Key::Rsa(2048)] {
        let ours = OpensslCa::root("Twin CA", key, &["-sha512"]);
        let twin = OpensslCa::root("Twin CA", key, &["-sha512"]);
        let device = twin.issue("impostor", &["-sha512"]);
        match check(&ours, &device) {
            Err(NotIssuedBy::Signature(m)) => assert!(m.contains("does not verify"), "{m}"),
            other => panic!("{key:?}: {other:?}"),
        }
    }
    // An ECDSA signature under the name of an RSA CA: no RSA key makes one.
    let rsa = OpensslCa::root("Mixed CA", Key::Rsa(2048), &["-sha256"]);
    let ec = OpensslCa::root("Mixed CA", Key::Ec("P-256"), &["-sha256"]);
    assert_eq!(
        check(&rsa, &ec.issue("mixed", &["-sha256"])),
        Err(NotIssuedBy::Signature(
            "signed with ecdsa-with-SHA256, which the issuer's RSA 2048-bit key does not make"
                .into()
        ))
    );
}

#[test]
fn another_issuer_names_both_distinguished_names() {
    let root = OpensslCa::root("Acme Root CA", Key::Ec("P-384"), &["-sha384"]);
    let intermediate = root.intermediate("Acme Device CA", Key::Ec("P-256"), &["-sha384"]);
    let device = intermediate.issue("sensor-1", &["-sha256"]);
    assert_eq!(
        check(&root, &device),
        Err(NotIssuedBy::OtherIssuer {
            issuer: "CN=Acme Device CA".into(),
            ca_subject: "CN=Acme Root CA".into(),
        })
    );
    assert_eq!(check(&intermediate, &device), Ok(()));
    cert(&intermediate.pem).check_verifiable_issuer().unwrap();
}

/// What cannot be checked is said, with the algorithm's name and OID: never a mismatch.
#[test]
fn what_cannot_be_checked_is_unsupported_and_named() {
    let unsupported = |ca: &OpensslCa, device: &str| match check(ca, device) {
        Err(NotIssuedBy::Unsupported(m)) => m,
        other => panic!("expected Unsupported, got {other:?}"),
    };
    let ed = OpensslCa::root("Ed25519 CA", Key::Ed25519, &[]);
    assert_eq!(
        unsupported(&ed, &ed.issue("ed", &[])),
        "the issuer's key is an ed25519 (1.3.101.112) key"
    );
    let k1 = OpensslCa::root("secp256k1 CA", Key::Ec("secp256k1"), &["-sha256"]);
    let m = unsupported(&k1, &k1.issue("k1", &["-sha256"]));
    assert!(
        m.starts_with("the issuer's key is an EC key on curve ") && m.contains("1.3.132.0.10"),
        "{m}"
    );
    let rsa = OpensslCa::root("RSA CA", Key::Rsa(2048), &["-sha256"]);
    assert_eq!(
        unsupported(&rsa, &rsa.issue("sha1", &["-sha1"])),
        "the signature algorithm is sha1WithRSAEncryption (1.2.840.113549.1.1.5)"
    );
    let mut mgf1_sha1 = pss("-sha256", "32");
    mgf1_sha1.extend(["-sigopt".into(), "rsa_mgf1_md:sha1".into()]);
    let m = unsupported(&rsa, &rsa.issue("mgf1-sha1", &refs(&mgf1_sha1)));
    assert!(
        m.starts_with("the signature algorithm is RSASSA-PSS (1.2.840.113549.1.1.10) with hash SHA-256 and mask generation"),
        "{m}"
    );
    let small = OpensslCa::root("Small RSA CA", Key::Rsa(1024), &["-sha256"]);
    assert_eq!(
        unsupported(&small, &small.issue("small", &["-sha256"])),
        "the issuer's key is an RSA 1024-bit key (AWS IoT needs at least 2048 bits; 2048 to 8192 are verified)"
    );
    // The full message, as the activator's error and log carry it.
    let err = check(&ed, &ed.issue("ed", &[])).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "cannot check the signature: the issuer's key is an ed25519 (1.3.101.112) key; \
             the activator verifies sha256/384/512WithRSAEncryption"
        ),
        "{err}"
    );
}

/// The stage's CA is refused at validate time when the activator could not verify what it
/// signs (the same checks, from the CA's side).
#[test]
fn a_ca_the_activator_could_not_verify_is_refused() {
    let cases = [
        (
            OpensslCa::root("k1 CA", Key::Ec("secp256k1"), &["-sha256"]),
            "the CA's key is an EC key on curve ",
        ),
        (
            OpensslCa::root("Ed CA", Key::Ed25519, &[]),
            "the CA's key is an ed25519 (1.3.101.112) key",
        ),
        (
            OpensslCa::root("Small CA", Key::Rsa(1024), &["-sha256"]),
            "the CA's key is an RSA 1024-bit key",
        ),
        (
            OpensslCa::root("SHA-1 CA", Key::Rsa(2048), &["-sha1"]),
            "the CA certificate is signed with sha1WithRSAEncryption (1.2.840.113549.1.1.5)",
        ),
    ];
    for (ca, want) in cases {
        let err = cert(&ca.pem).check_verifiable_issuer().unwrap_err();
        assert!(err.0.starts_with(want), "{err}");
    }
}
