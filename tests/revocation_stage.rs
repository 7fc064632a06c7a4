//! The stage's `revocation` section through the real binary's `validate`: serials in any
//! spelling, a CRL per CA name (PEM or DER) checked to be that CA's, and every problem named
//! by its field; a CRL past its nextUpdate is a warning, not an error.

use testkit::pki::TestCa;
use testkit::project::Project;

const BIN: &str = env!("CARGO_BIN_EXE_jitr-infra");

/// A CRL of `ca` revoking `serials`, with nextUpdate in `next_year`: (PEM, DER).
fn crl(ca: &TestCa, serials: &[&[u8]], next_year: i32) -> (String, Vec<u8>) {
    ca.crl(serials, next_year)
}

fn project(ca: &TestCa, revocation: &str) -> Project {
    let p = Project::new("jitr-revocation-stage");
    p.write("certs/ca.pem", &ca.pem);
    p.stage(
        "t",
        &format!(
            "stack_name: jitr-rev\nregion: eu-west-1\nca:\n  certificate: certs/ca.pem\n  \
             mode: SNI_ONLY\n{revocation}"
        ),
    );
    p
}

fn validate(p: &Project) -> (i32, String, String) {
    let o = p
        .cli(BIN)
        .args(["validate", "--stage", "t"])
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn serials_and_crls_of_the_stage_cas_validate() {
    let ca = TestCa::new("Revocation CA");
    let (pem, _) = crl(&ca, &[&[0x0a, 0x0b]], 2099);
    let p = project(
        &ca,
        "revocation:\n  serials: [\"1A:2B:3C\", \"0x00ff\"]\n  crl_files:\n    default: certs/ca.crl\n",
    );
    p.write("certs/ca.crl", &pem);
    let (code, out, err) = validate(&p);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!err.contains("warning"), "{err}");
    // synth ships the list: the layer's zip is written beside the Lambda zips.
    let o = p
        .cli(BIN)
        .args(["synth", "--stage", "t", "--json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let layer = v["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["layer"] == "RevocationListLayer")
        .unwrap_or_else(|| panic!("no layer asset: {v:#}"));
    let file = p
        .dir
        .join(v["outDir"].as_str().unwrap())
        .join(layer["file"].as_str().unwrap());
    assert!(file.is_file(), "{}", file.display());

    // DER works as well; an expired CRL is a warning, the stage still validates.
    let (_, der) = crl(&ca, &[&[0x0a, 0x0b]], 2025);
    p.write("certs/ca.crl", &der);
    let (code, out, err) = validate(&p);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("warning: stacks/t.yaml:")
            && err.contains(": revocation.crl_files.default: certs/ca.crl: the CRL's nextUpdate"),
        "{err}"
    );
}

#[test]
fn bad_serials_foreign_crls_and_unknown_ca_names_are_each_named() {
    let ca = TestCa::new("Revocation CA");
    let other = TestCa::new("Other CA");
    let (foreign, _) = crl(&other, &[&[1]], 2099);
    let p = project(
        &ca,
        "revocation:\n  serials: [\"12:zz\", \"0x1a\"]\n  crl_files:\n    default: certs/other.crl\n    \
         backup: certs/other.crl\n",
    );
    p.write("certs/other.crl", &foreign);
    let (code, out, err) = validate(&p);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("revocation.serials[0]") && err.contains("'z' is not a hex digit"),
        "{err}"
    );
    assert!(!err.contains("revocation.serials[1]"), "{err}");
    assert!(
        err.contains("revocation.crl_files.default") && err.contains("not by CA default"),
        "{err}"
    );
    assert!(
        err.contains("revocation.crl_files.backup")
            && err.contains("`backup` is not a CA of this stage (its CAs: default)"),
        "{err}"
    );

    // Same issuer name, another key: the signature does not verify.
    let twin = TestCa::new("Revocation CA");
    let (forged, _) = crl(&twin, &[&[1]], 2099);
    let p = project(
        &ca,
        "revocation:\n  crl_files:\n    default: certs/forged.crl\n",
    );
    p.write("certs/forged.crl", &forged);
    let (code, _, err) = validate(&p);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("its signature does not verify with CA default's key"),
        "{err}"
    );

    // Not a CRL at all.
    p.write("certs/forged.crl", &ca.pem);
    let (code, _, err) = validate(&p);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("the PEM block is `CERTIFICATE`, expected `X509 CRL`"),
        "{err}"
    );
}
