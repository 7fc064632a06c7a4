//! What each CA of a stage is called in the template. Ids follow the CA's name, never its
//! position: the CA named `default` keeps the one-CA ids (`CaRegistration`,
//! `RegistrationRule`, ...), so turning `ca:` into a list replaces nothing, and any other CA
//! gets its name in PascalCase as a suffix (`ca-2026`: `CaRegistrationCa2026`).

use super::VERIFICATION_PARAMETER;
use super::{Names, ACTIVATOR_INVOKE_PERMISSION, CA_REGISTRATION, REGISTRATION_RULE};
use crate::cfn::{intern, LogicalId};
pub use crate::stage::ca_id_suffix as id_suffix;
use crate::stage::{Ca, Stage};

/// The stage's CAs by name: the template does not depend on the order of the list.
pub fn sorted_cas(stage: &Stage) -> Vec<&Ca> {
    let mut cas: Vec<&Ca> = stage.cas().iter().collect();
    cas.sort_by(|a, b| a.name.cmp(&b.name));
    cas
}

/// One CA's logical ids, parameter, outputs and topic rule name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaIds {
    pub suffix: String,
    pub registration: LogicalId,
    pub rule: LogicalId,
    pub permission: LogicalId,
    pub verification_parameter: &'static str,
    pub id_output: &'static str,
    pub arn_output: &'static str,
    pub rule_output: &'static str,
    /// The topic rule's name: `<stack>_registered`, `<stack>_registered_ca_2026`.
    pub rule_name: String,
}

impl CaIds {
    pub fn new(ca_name: &str, names: &Names) -> CaIds {
        let suffix = id_suffix(ca_name);
        let id = |base: LogicalId| LogicalId::named(&format!("{base}{suffix}"));
        let name = |base: &str| intern(&format!("{base}{suffix}"));
        let rule_name = match suffix.is_empty() {
            true => names.rule.clone(),
            false => format!("{}_{}", names.rule, ca_name.replace('-', "_")),
        };
        CaIds {
            registration: id(CA_REGISTRATION),
            rule: id(REGISTRATION_RULE),
            permission: id(ACTIVATOR_INVOKE_PERMISSION),
            verification_parameter: name(VERIFICATION_PARAMETER),
            id_output: name("CaCertificateId"),
            arn_output: name("CaCertificateArn"),
            rule_output: name("RegistrationRuleName"),
            rule_name,
            suffix,
        }
    }

    /// Every CA's ids, by name.
    pub fn all(stage: &Stage, names: &Names) -> Vec<(String, CaIds)> {
        sorted_cas(stage)
            .into_iter()
            .map(|ca| (ca.name.clone(), CaIds::new(&ca.name, names)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_names() {
        let names = Names::new("jitr-dev");
        let d = CaIds::new("default", &names);
        assert_eq!(d.registration, CA_REGISTRATION);
        assert_eq!(d.rule, REGISTRATION_RULE);
        assert_eq!(d.permission, ACTIVATOR_INVOKE_PERMISSION);
        assert_eq!(d.verification_parameter, VERIFICATION_PARAMETER);
        assert_eq!(
            (d.id_output, d.arn_output),
            ("CaCertificateId", "CaCertificateArn")
        );
        assert_eq!(d.rule_name, "jitr_dev_registered");
        let n = CaIds::new("ca-2026", &names);
        assert_eq!(n.registration.as_str(), "CaRegistrationCa2026");
        assert_eq!(n.rule.as_str(), "RegistrationRuleCa2026");
        assert_eq!(n.permission.as_str(), "ActivatorInvokePermissionCa2026");
        assert_eq!(n.verification_parameter, "VerificationCertificatePemCa2026");
        assert_eq!(n.id_output, "CaCertificateIdCa2026");
        assert_eq!(n.rule_name, "jitr_dev_registered_ca_2026");
        assert_eq!(id_suffix("a-b-c1"), "ABC1");
    }
}
