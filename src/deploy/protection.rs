//! A stage's `protection`: CloudFormation termination protection, and a stack policy that
//! denies replacing or removing the CA registration (the fleet's front door: a new
//! registration means a new CA id, a new registration topic, and devices of the old CA
//! locked out).
//!
//! Neither is part of the template, so deploy applies them to the stack itself: after the
//! stack exists and has settled, and also when the template did not change (turning
//! protection on is then the only change). Before executing a change set, a change that
//! replaces or removes the CA registration on a stage that protects it is refused with the
//! steps to lift the protection, instead of a change set that fails halfway. A stack policy
//! applies only to updates; deleting the stack is what termination protection refuses.

use super::stack::describe;
use super::{aws_error, change_set, Reporter};
use crate::aws::Clients;
use crate::constructs::CA_REGISTRATION;
use crate::diff::StackDiff;
use crate::error::Error;
use crate::stage::Stage;
use serde_json::{json, Value};
use std::path::Path;

/// The stack policy of a stage with `protection.ca_registration`: every update allowed,
/// except replacing or deleting a CA registration: `CaRegistration` and every other CA's
/// `CaRegistration<Name>` (stack policies take a `*` wildcard in a logical id, AWS
/// CloudFormation User Guide, "Prevent updates to stack resources").
pub fn ca_registration_policy() -> Value {
    policy_denying(&format!("LogicalResourceId/{CA_REGISTRATION}*"))
}

/// The policy deploy wrote before a stage could have several CAs (the one registration only);
/// still recognized as ours, and replaced by [`ca_registration_policy`] at the next deploy.
fn one_ca_policy() -> Value {
    policy_denying(&format!("LogicalResourceId/{CA_REGISTRATION}"))
}

fn policy_denying(resource: &str) -> Value {
    json!({
        "Statement": [
            {"Effect": "Allow", "Action": "Update:*", "Principal": "*", "Resource": "*"},
            {
                "Effect": "Deny",
                "Action": ["Update:Replace", "Update:Delete"],
                "Principal": "*",
                "Resource": resource
            }
        ]
    })
}

/// What lifting our policy leaves: CloudFormation cannot remove a stack policy, and one
/// allowing every update is the same as none.
pub fn allow_all_policy() -> Value {
    json!({
        "Statement": [
            {"Effect": "Allow", "Action": "Update:*", "Principal": "*", "Resource": "*"}
        ]
    })
}

/// The stack's current policy, as far as deploy is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// No policy, or one allowing every update.
    Open,
    /// The one [`ca_registration_policy`] writes.
    Ours,
    /// The one deploy wrote before several CAs (it protects `CaRegistration` only).
    OursOneCa,
    /// Someone else's.
    Other,
}

/// Classifies a `GetStackPolicy` body (compared as JSON, so formatting does not matter).
pub fn classify(body: Option<&str>) -> Policy {
    let Some(body) = body.filter(|b| !b.trim().is_empty()) else {
        return Policy::Open;
    };
    match serde_json::from_str::<Value>(body) {
        Ok(v) if v == ca_registration_policy() => Policy::Ours,
        Ok(v) if v == one_ca_policy() => Policy::OursOneCa,
        Ok(v) if v == allow_all_policy() => Policy::Open,
        _ => Policy::Other,
    }
}

/// Refuses, before anything is executed, a change that replaces or removes the CA
/// registration of a stage that protects it; deletes the change set then.
pub async fn check_change(
    clients: &Clients,
    stage: &Stage,
    change_set_id: &str,
    d: &StackDiff,
) -> Result<(), Error> {
    match refused_change(stage, d) {
        None => Ok(()),
        Some(e) => {
            change_set::delete(clients, &stage.stack_name, change_set_id).await;
            Err(e)
        }
    }
}

/// The refusal [`check_change`] gives, if any.
pub fn refused_change(stage: &Stage, d: &StackDiff) -> Option<Error> {
    let breaking = d.fleet_breaking();
    if !stage.protection.ca_registration || breaking.is_empty() {
        return None;
    }
    let file = stage.file.display();
    let mut m = format!(
        "{file}: protection.ca_registration: stage {} protects its CA registration, and this \
         change would replace or remove it:\n",
        stage.name
    );
    for b in &breaking {
        m.push_str(&format!("  {b}\n"));
    }
    m.push_str(&format!(
        "Nothing was executed (the change set is deleted). To make this change on purpose: set \
         `protection.ca_registration: false` in {file} and run `jitr-infra deploy --stage {}` \
         (it lifts the stack policy, then executes); afterwards set it back to true and deploy \
         once more to protect the new registration.\n",
        stage.name
    ));
    Some(Error::Protected(m))
}

/// Right before an existing stack's change set is executed: lifts our stack policy when the
/// stage no longer asks for it, so that the change the stage now allows is not denied
/// halfway through the update.
pub async fn before_execute(
    clients: &Clients,
    stage: &Stage,
    reporter: &dyn Reporter,
) -> Result<(), Error> {
    if stage.protection.ca_registration {
        return Ok(());
    }
    if matches!(
        current_policy(clients, &stage.stack_name).await?,
        Policy::Ours | Policy::OursOneCa
    ) {
        lift_policy(clients, stage, reporter).await?;
    }
    Ok(())
}

/// Makes the stack's termination protection and stack policy what the stage asks for. A
/// policy someone else set is replaced when the stage asks for ours, and left alone when it
/// does not.
pub async fn apply(clients: &Clients, stage: &Stage, reporter: &dyn Reporter) -> Result<(), Error> {
    let stack = stage.stack_name.as_str();
    let Some(st) = describe(clients, stack).await? else {
        return Ok(());
    };
    let want = stage.protection.termination;
    if st.enable_termination_protection().unwrap_or(false) != want {
        clients
            .cfn
            .update_termination_protection()
            .stack_name(stack)
            .enable_termination_protection(want)
            .send()
            .await
            .map_err(|e| aws_error("UpdateTerminationProtection", &e))?;
        reporter.progress(&format!(
            "termination protection {} (protection.termination)",
            if want { "on" } else { "off" }
        ));
    }
    match (
        stage.protection.ca_registration,
        current_policy(clients, stack).await?,
    ) {
        (true, Policy::Ours) | (false, Policy::Open | Policy::Other) => {}
        (true, current) => {
            if current == Policy::Other {
                reporter.progress("replacing a stack policy jitr-infra did not write");
            }
            set_policy(clients, stack, &ca_registration_policy()).await?;
            reporter.progress(&format!(
                "stack policy set: an update may not replace or remove any CA registration \
                 ({CA_REGISTRATION}*) (protection.ca_registration)"
            ));
        }
        (false, Policy::Ours | Policy::OursOneCa) => lift_policy(clients, stage, reporter).await?,
    }
    Ok(())
}

async fn current_policy(clients: &Clients, stack: &str) -> Result<Policy, Error> {
    let out = clients
        .cfn
        .get_stack_policy()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| aws_error("GetStackPolicy", &e))?;
    Ok(classify(out.stack_policy_body()))
}

async fn set_policy(clients: &Clients, stack: &str, policy: &Value) -> Result<(), Error> {
    clients
        .cfn
        .set_stack_policy()
        .stack_name(stack)
        .stack_policy_body(policy.to_string())
        .send()
        .await
        .map_err(|e| aws_error("SetStackPolicy", &e))?;
    Ok(())
}

async fn lift_policy(
    clients: &Clients,
    stage: &Stage,
    reporter: &dyn Reporter,
) -> Result<(), Error> {
    set_policy(clients, &stage.stack_name, &allow_all_policy()).await?;
    reporter.progress(&format!(
        "stack policy lifted: the CA registrations ({CA_REGISTRATION}*) may be replaced or removed \
         (protection.ca_registration is off in {})",
        stage.file.display()
    ));
    Ok(())
}

/// Why `destroy` refuses a stack with termination protection, and how to lift it.
pub fn termination_refusal(stage_file: &Path, stage_name: &str, stack: &str) -> Error {
    let file = stage_file.display();
    Error::Protected(format!(
        "stack {stack} has termination protection: CloudFormation refuses to delete it. \
         Nothing was changed. To delete it on purpose: set `protection.termination: false` in \
         {file} and run `jitr-infra deploy --stage {stage_name}` (it turns termination \
         protection off), then destroy again; or turn it off directly with `aws cloudformation \
         update-termination-protection --no-enable-termination-protection --stack-name {stack}`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_recognized_whatever_their_formatting() {
        let ours = serde_json::to_string_pretty(&ca_registration_policy()).unwrap();
        assert_eq!(classify(Some(&ours)), Policy::Ours);
        assert_eq!(
            classify(Some(&allow_all_policy().to_string())),
            Policy::Open
        );
        assert_eq!(classify(None), Policy::Open);
        assert_eq!(classify(Some("")), Policy::Open);
        let other = r#"{"Statement":[{"Effect":"Deny","Action":"Update:*","Principal":"*","Resource":"*"}]}"#;
        assert_eq!(classify(Some(other)), Policy::Other);
        assert_eq!(classify(Some("not json")), Policy::Other);
    }

    #[test]
    fn the_policy_denies_replacing_and_deleting_the_ca_registration_only() {
        let p = ca_registration_policy();
        let deny = &p["Statement"][1];
        assert_eq!(deny["Effect"], "Deny");
        assert_eq!(deny["Action"], json!(["Update:Replace", "Update:Delete"]));
        // Every CA's registration: CaRegistration, CaRegistrationCa2026, ...
        assert_eq!(deny["Resource"], "LogicalResourceId/CaRegistration*");
        assert_eq!(p["Statement"][0]["Action"], "Update:*");
        // The one-CA policy deploys wrote before is still ours (and lifted or upgraded).
        let before = one_ca_policy();
        assert_eq!(
            before["Statement"][1]["Resource"],
            "LogicalResourceId/CaRegistration"
        );
        assert_eq!(classify(Some(&before.to_string())), Policy::OursOneCa);
    }

    /// The CA registration with the shipped `OLD` (dev) or `NEW` (prod) example CA: two
    /// different certificates, so going from one to the other is a replacement.
    fn ca_template(which: &str) -> Value {
        let pem = match which {
            "OLD" => include_str!("../../certs/dev-ca.pem"),
            _ => include_str!("../../certs/prod-ca.pem"),
        };
        json!({"Resources": {"CaRegistration": {
            "Type": jitr_contract::ca_registration::RESOURCE_TYPE,
            "Properties": {"CaCertificatePem": pem, "CertificateMode": "SNI_ONLY", "Status": "ACTIVE"}
        }}})
    }

    fn prod(ca_registration: bool) -> Stage {
        let mut s = crate::stage::load(Path::new(env!("CARGO_MANIFEST_DIR")), "prod").unwrap();
        s.protection.ca_registration = ca_registration;
        s
    }

    #[test]
    fn a_protected_stage_refuses_replacing_its_ca_registration_and_says_how_to_lift_it() {
        let replace = crate::diff::diff(Some(&ca_template("OLD")), &ca_template("NEW"), None);
        let e = refused_change(&prod(true), &replace).expect("refused");
        let text = e.to_string();
        assert!(
            text.starts_with(
                "stacks/prod.yaml: protection.ca_registration: stage prod protects its CA \
                 registration, and this change would replace or remove it:\n  CaRegistration \
                 (Custom::JitrCaRegistration) is REPLACED (changed: CaCertificatePem)"
            ),
            "{text}"
        );
        assert!(
            text.ends_with(
                "Nothing was executed (the change set is deleted). To make this change on \
                 purpose: set `protection.ca_registration: false` in stacks/prod.yaml and run \
                 `jitr-infra deploy --stage prod` (it lifts the stack policy, then executes); \
                 afterwards set it back to true and deploy once more to protect the new \
                 registration.\n"
            ),
            "{text}"
        );
        assert_eq!(e.exit_code(), 1);
        let removed = crate::diff::diff(Some(&ca_template("OLD")), &json!({"Resources": {}}), None);
        assert!(refused_change(&prod(true), &removed).is_some());
        // Unprotected, or an in-place update: no refusal.
        assert!(refused_change(&prod(false), &replace).is_none());
        let mut inactive = ca_template("OLD");
        inactive["Resources"]["CaRegistration"]["Properties"]["Status"] = json!("INACTIVE");
        let update = crate::diff::diff(Some(&ca_template("OLD")), &inactive, None);
        assert!(refused_change(&prod(true), &update).is_none());
    }

    #[test]
    fn termination_refusal_says_how_to_lift_it() {
        let e = termination_refusal(Path::new("stacks/prod.yaml"), "prod", "jitr-prod");
        assert_eq!(
            e.to_string(),
            "stack jitr-prod has termination protection: CloudFormation refuses to delete it. \
             Nothing was changed. To delete it on purpose: set `protection.termination: false` \
             in stacks/prod.yaml and run `jitr-infra deploy --stage prod` (it turns termination \
             protection off), then destroy again; or turn it off directly with `aws \
             cloudformation update-termination-protection --no-enable-termination-protection \
             --stack-name jitr-prod`"
        );
        assert_eq!(e.exit_code(), 1);
    }
}
