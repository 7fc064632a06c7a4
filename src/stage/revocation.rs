//! The stage's `revocation` section: serials written in the stage file and CRL files, each CRL
//! parsed (PEM or DER), its issuer and signature checked against the CA it is filed under, its
//! serials taken. The result is the list the activator reads ([`RevocationList`]).

use super::validate::Validator;
use super::{Ca, RevocationSection};
use jitr_contract::revocation::{normalize_serial, serial_from_bytes, RevocationList, ANY_CA};
use x509_parser::prelude::*;

/// The checked revocation section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Serials (normal form) and the CA ids they are revoked for.
    pub list: RevocationList,
}

impl Validator<'_> {
    /// Checks `r` against the stage's `cas`; `None` when any part is wrong (each problem
    /// recorded).
    pub(super) fn revocation(&mut self, r: &RevocationSection, cas: &[Ca]) -> Option<Revocation> {
        let problems = self.problems.len();
        let mut out = Revocation {
            list: RevocationList::default(),
        };
        for (i, text) in r.serials.iter().enumerate() {
            match normalize_serial(text) {
                Ok(serial) => out.list.add(serial, ANY_CA),
                Err(m) => self.problem(&format!("revocation.serials[{i}]"), m),
            }
        }
        for (name, path) in &r.crl_files {
            let field = format!("revocation.crl_files.{name}");
            let Some(ca) = cas.iter().find(|c| &c.name == name) else {
                let names: Vec<&str> = cas.iter().map(|c| c.name.as_str()).collect();
                self.problem(
                    &field,
                    format!(
                        "`{name}` is not a CA of this stage (its CAs: {})",
                        names.join(", ")
                    ),
                );
                continue;
            };
            let Some(bytes) = self.read_bytes(&field, path) else {
                continue;
            };
            match crl_serials(&bytes, ca, super::unix_now()) {
                Ok((serials, warning)) => {
                    let id = ca.certificate.aws_iot_id();
                    for s in serials {
                        out.list.add(s, &id);
                    }
                    if let Some(w) = warning {
                        // Not a problem: a deploy goes on (the stage's warnings are printed).
                        self.warnings.push(super::Problem {
                            line: super::locate(self.text, &field),
                            message: format!("{path}: {w}"),
                            field,
                        });
                    }
                }
                Err(m) => self.problem(&field, format!("{path}: {m}")),
            }
        }
        (self.problems.len() == problems).then_some(out)
    }
}

/// The serials a CRL revokes, checked to be `ca`'s: parsed from PEM (`X509 CRL`) or DER, the
/// issuer is `ca`'s subject, the signature verifies with `ca`'s key. The warning says when
/// its nextUpdate has passed at `now` (the CA publishes a newer one: fetch it).
pub fn crl_serials(
    bytes: &[u8],
    ca: &Ca,
    now: i64,
) -> Result<(Vec<String>, Option<String>), String> {
    let der = match x509_parser::pem::parse_x509_pem(bytes) {
        Ok((_, pem)) if pem.label == "X509 CRL" => pem.contents,
        Ok((_, pem)) => {
            return Err(format!(
                "the PEM block is `{}`, expected `X509 CRL`",
                pem.label
            ))
        }
        Err(_) => bytes.to_vec(),
    };
    let (_, crl) = CertificateRevocationList::from_der(&der)
        .map_err(|e| format!("not a CRL (PEM `X509 CRL` or DER): {e}"))?;
    let (_, ca_cert) = X509Certificate::from_der(ca.certificate.der())
        .map_err(|e| format!("CA {}: {e}", ca.name))?;
    if crl.issuer().as_raw() != ca_cert.subject().as_raw() {
        return Err(format!(
            "issued by `{}`, not by CA {} (`{}`)",
            crl.issuer(),
            ca.name,
            ca_cert.subject()
        ));
    }
    crl.verify_signature(ca_cert.public_key()).map_err(|e| {
        format!(
            "its signature does not verify with CA {}'s key ({e}): not this CA's CRL",
            ca.name
        )
    })?;
    let serials = crl
        .iter_revoked_certificates()
        .map(|r| serial_from_bytes(r.raw_serial()))
        .collect();
    let warning = crl
        .next_update()
        .filter(|next| next.timestamp() < now)
        .map(|next| {
            format!(
                "the CRL's nextUpdate ({next}) has passed: the CA has published a newer one; its \
                 serials are used all the same"
            )
        });
    Ok((serials, warning))
}
