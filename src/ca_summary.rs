//! The CA part of a diff: which CA registrations a deploy adds and removes (by name, AWS IoT
//! id and file), and the rotation trap: a CA whose registration moves to another logical id
//! (it was renamed, e.g. the old CA not named `default` when `ca:` became a list), which
//! CloudFormation would carry out as a new registration of the same certificate and the
//! deregistration of the old one.

use crate::constructs::{sorted_cas, CaIds, Names, CA_REGISTRATION};
use crate::stage::{thousands, Stage, DEFAULT_CA_NAME};
use jitr_contract::ca_registration::{CaIdentity, RESOURCE_TYPE};
use jitr_lambda_common::pki::Certificate;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// One CA registration of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaEntry {
    /// The CA's name in the stage (for a removed CA, the one its logical id says).
    pub name: String,
    pub logical_id: String,
    /// AWS IoT's id of the certificate (its DER's SHA-256), when the template has the PEM.
    pub certificate_id: Option<String>,
    /// The certificate file, for a CA of the stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_file: Option<String>,
    /// A removed CA's ACTIVE device certificates (ListCertificatesByCA), once counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_devices: Option<u64>,
}

/// A certificate whose registration leaves one logical id for another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaMove {
    pub certificate_id: String,
    pub from: String,
    pub to: String,
    /// The name that keeps the registration where it is.
    pub keep_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CaSummary {
    pub added: Vec<CaEntry>,
    pub removed: Vec<CaEntry>,
    pub moved: Vec<CaMove>,
}

/// The name a registration's logical id stands for: `default` for `CaRegistration`, else the
/// PascalCase suffix (the stage's lowercase name is not in the template).
fn name_of(logical_id: &str) -> String {
    match logical_id.strip_prefix(CA_REGISTRATION.as_str()) {
        Some("") => DEFAULT_CA_NAME.to_string(),
        Some(suffix) => suffix.to_string(),
        None => logical_id.to_string(),
    }
}

/// Every CA registration of `template`: logical id -> certificate id.
fn registrations(template: Option<&Value>) -> BTreeMap<String, Option<String>> {
    let Some(resources) = template.and_then(|t| t.get("Resources")?.as_object()) else {
        return BTreeMap::new();
    };
    resources
        .iter()
        .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some(RESOURCE_TYPE))
        .map(|(id, r)| {
            let cert = r
                .get("Properties")
                .and_then(CaIdentity::from_properties)
                .and_then(|i| Certificate::from_pem(&i.ca_certificate_pem).ok())
                .map(|c| c.aws_iot_id());
            (id.clone(), cert)
        })
        .collect()
}

/// What the deploy of `stage` (synthesized as `synthesized`) does to the CA registrations of
/// the `deployed` template (`None`: no stack yet, every CA is added).
pub fn ca_summary(deployed: Option<&Value>, synthesized: &Value, stage: &Stage) -> CaSummary {
    let names = Names::new(&stage.stack_name);
    let of_stage: BTreeMap<String, (String, String)> = sorted_cas(stage)
        .into_iter()
        .map(|ca| {
            let id = CaIds::new(&ca.name, &names)
                .registration
                .as_str()
                .to_string();
            (id, (ca.name.clone(), ca.certificate_file.clone()))
        })
        .collect();
    let entry = |logical_id: &str, certificate_id: &Option<String>| {
        let (name, file) = match of_stage.get(logical_id) {
            Some((n, f)) => (n.clone(), Some(f.clone())),
            None => (name_of(logical_id), None),
        };
        CaEntry {
            name,
            logical_id: logical_id.to_string(),
            certificate_id: certificate_id.clone(),
            certificate_file: file,
            active_devices: None,
        }
    };
    let old = registrations(deployed);
    let new = registrations(Some(synthesized));
    let mut s = CaSummary::default();
    for (id, cert) in &new {
        if !old.contains_key(id) {
            s.added.push(entry(id, cert));
        }
    }
    for (id, cert) in &old {
        if !new.contains_key(id) {
            s.removed.push(entry(id, cert));
        }
    }
    for r in &s.removed {
        let moved_to = s
            .added
            .iter()
            .find(|a| a.certificate_id.is_some() && a.certificate_id == r.certificate_id);
        if let (Some(a), Some(cert)) = (moved_to, &r.certificate_id) {
            s.moved.push(CaMove {
                certificate_id: cert.clone(),
                from: r.logical_id.clone(),
                to: a.logical_id.clone(),
                keep_name: r.name.clone(),
            });
        }
    }
    s
}

/// Counts the ACTIVE device certificates of every removed CA (ListCertificatesByCA, paged,
/// each certificate's status).
pub async fn count_active(
    iot: &aws_sdk_iot::Client,
    summary: &mut CaSummary,
) -> Result<(), crate::error::Error> {
    for r in &mut summary.removed {
        let Some(id) = &r.certificate_id else {
            continue;
        };
        let mut marker = None;
        let mut active = 0u64;
        loop {
            let out = iot
                .list_certificates_by_ca()
                .ca_certificate_id(id)
                .page_size(250)
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| crate::deploy::aws_error("iot:ListCertificatesByCA", &e))?;
            active += out
                .certificates()
                .iter()
                .filter(|c| c.status() == Some(&aws_sdk_iot::types::CertificateStatus::Active))
                .count() as u64;
            marker = out.next_marker().map(str::to_string);
            if marker.is_none() {
                break;
            }
        }
        r.active_devices = Some(active);
    }
    Ok(())
}

fn short(id: &Option<String>) -> String {
    id.as_deref().map_or("unknown".to_string(), |i| {
        format!("{}…", &i[..i.len().min(8)])
    })
}

impl CaSummary {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }

    /// The loud warnings: a removed CA that still has ACTIVE devices, a CA moving between
    /// logical ids.
    pub fn warnings(&self) -> Vec<String> {
        let active = self
            .removed
            .iter()
            .filter(|r| r.active_devices.is_some_and(|n| n > 0))
            .map(|r| {
                format!(
                    "WARNING: CA {} has {} ACTIVE device certificates: its registration leaves \
                     the stack, and AWS IoT documents no promise that devices keep connecting \
                     once their CA is deregistered or inactive; move them to another CA first \
                     (README: rotating the device CA)",
                    r.name,
                    thousands(r.active_devices.unwrap_or(0))
                )
            });
        let moved = self.moved.iter().map(|m| {
            format!(
                "WARNING: CA {}… moves from {} to {}: CloudFormation would deregister and \
                     re-register it (the new registration fails while the old one exists, or \
                     the fleet's CA disappears in between); name it `{}` in the stage file",
                &m.certificate_id[..8],
                m.from,
                m.to,
                m.keep_name
            )
        });
        active.chain(moved).collect()
    }

    /// One line per CA added or removed, then the warnings.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for a in &self.added {
            let file = a.certificate_file.as_deref().unwrap_or("?");
            out.push(format!(
                "CA added: {} (id {}, {file})",
                a.name,
                short(&a.certificate_id)
            ));
        }
        for r in &self.removed {
            out.push(format!(
                "CA removed: {} (id {})",
                r.name,
                short(&r.certificate_id)
            ));
        }
        out.extend(self.warnings());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    const DEV_CA: &str = include_str!("../certs/dev-ca.pem");
    const PROD_CA: &str = include_str!("../certs/prod-ca.pem");

    fn template(cas: &[(&str, &str)]) -> Value {
        let resources: serde_json::Map<String, Value> = cas
            .iter()
            .map(|(id, pem)| {
                let r = json!({"Type": RESOURCE_TYPE, "Properties": {
                    "CaCertificatePem": pem, "CertificateMode": "SNI_ONLY"}});
                (id.to_string(), r)
            })
            .collect();
        json!({ "Resources": resources })
    }

    fn dev() -> Stage {
        crate::stage::load(Path::new(env!("CARGO_MANIFEST_DIR")), "dev").unwrap()
    }

    #[test]
    fn added_and_removed_cas_by_name_and_id() {
        let id = |pem| Some(Certificate::from_pem(pem).unwrap().aws_iot_id());
        let old = template(&[("CaRegistration", DEV_CA)]);
        let new = template(&[
            ("CaRegistration", DEV_CA),
            ("CaRegistrationCa2026", PROD_CA),
        ]);
        let s = ca_summary(Some(&old), &new, &dev());
        assert_eq!(s.added.len(), 1);
        assert_eq!(s.added[0].logical_id, "CaRegistrationCa2026");
        assert_eq!(s.added[0].certificate_id, id(PROD_CA));
        assert!(s.removed.is_empty() && s.moved.is_empty());
        assert!(s.lines()[0].starts_with("CA added: Ca2026 (id "));

        // Back again: the new one is removed; its devices counted, the warning says how many.
        let mut s = ca_summary(Some(&new), &old, &dev());
        assert_eq!(s.removed[0].certificate_id, id(PROD_CA));
        assert!(s.warnings().is_empty(), "not counted: no warning");
        s.removed[0].active_devices = Some(1234);
        let w = s.warnings();
        assert!(
            w[0].contains("CA Ca2026 has 1,234 ACTIVE device certificates"),
            "{w:?}"
        );
        s.removed[0].active_devices = Some(0);
        assert!(s.warnings().is_empty());

        // No stack yet: the stage's CA is added, with its file.
        let s = ca_summary(None, &old, &dev());
        assert_eq!(s.added[0].name, "default");
        assert_eq!(
            s.added[0].certificate_file.as_deref(),
            Some("certs/dev-ca.pem")
        );
    }

    #[test]
    fn a_ca_moving_to_another_logical_id_is_warned_about() {
        let old = template(&[("CaRegistration", DEV_CA)]);
        let renamed = template(&[
            ("CaRegistrationOld", DEV_CA),
            ("CaRegistrationCa2026", PROD_CA),
        ]);
        let s = ca_summary(Some(&old), &renamed, &dev());
        assert_eq!(s.moved.len(), 1);
        let w = s.warnings();
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("moves from CaRegistration to CaRegistrationOld")
                && w[0].contains("name it `default`"),
            "{w:?}"
        );
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1234), "1,234");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
