//! `destroy`: what deleting a stage's stack removes, and the deletion itself, in the order
//! that keeps it from failing halfway:
//!
//! 1. stop onboarding: disable the registration topic rule and throttle the activator
//!    (reserved concurrency 0: Lambda keeps retrying the events it already holds for hours,
//!    so disabling the rule alone is not enough), then wait out activations already running;
//! 2. detach the device policy from the certificates holding it (listed again now, so a
//!    device activated since the plan was shown is not missed);
//! 3. delete the stack and wait.
//!
//! AWS refuses to delete an IoT policy that is attached, so a device activated between the
//! detach and the deletion would fail the deletion halfway; step 1 makes that impossible.
//! A destroy aborted after step 1 (a failed call, a refused or failed deletion) puts
//! onboarding back as it was and says so.

mod onboarding;

use super::events::{self, EventWatcher, Settled};
use super::stack::{deployed_template, describe, in_progress, status_text};
use super::{aws_error, Options, Reporter};
use crate::aws::Clients;
use crate::constructs;
use crate::error::Error;
use crate::stage::Stage;
use aws_sdk_cloudformation::types::StackStatus;
use jitr_contract::ca_registration::CaPhysicalId;
use onboarding::Onboarding;
use serde::Serialize;
use std::path::PathBuf;

/// What `destroy` removes.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestroyPlan {
    pub stack_name: String,
    pub stack_id: String,
    pub stack_status: String,
    /// `(logical id, type)` of every resource.
    pub resources: Vec<(String, String)>,
    /// The CA registration's RetainOnDelete, or an adopted CA: the CA stays registered.
    pub ca_retained: bool,
    /// The device policy's name and the certificates it is attached to. AWS refuses to delete
    /// an attached policy, so a stack with activated devices cannot be deleted as it is.
    pub device_policy: Option<String>,
    pub attached_certificates: Vec<String>,
    /// CloudFormation termination protection is on: the deletion would be refused.
    pub termination_protection: bool,
    /// The registration topic rules (one per CA) and the activator function: onboarding,
    /// stopped first.
    pub registration_rules: Vec<String>,
    pub activator_function: Option<String>,
    /// The stage the stack belongs to (for messages that say which field to change).
    #[serde(skip)]
    pub stage_file: PathBuf,
    #[serde(skip)]
    pub stage_name: String,
}

/// What would be deleted; `None` when there is no stack.
pub async fn destroy_plan(clients: &Clients, stage: &Stage) -> Result<Option<DestroyPlan>, Error> {
    let stack = stage.stack_name.as_str();
    let Some(st) = describe(clients, stack).await? else {
        return Ok(None);
    };
    let out = clients
        .cfn
        .describe_stack_resources()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| aws_error("DescribeStackResources", &e))?;
    let physical = |id: crate::cfn::LogicalId| {
        out.stack_resources()
            .iter()
            .find(|r| r.logical_resource_id() == Some(id.as_str()))
            .and_then(|r| r.physical_resource_id().map(str::to_string))
            .filter(|p| !p.is_empty())
    };
    let device_policy = physical(constructs::DEVICE_POLICY);
    let attached_certificates = match &device_policy {
        Some(policy) => attached_targets(clients, policy).await?,
        None => Vec::new(),
    };
    let resources = out
        .stack_resources()
        .iter()
        .filter(|r| r.logical_resource_id().is_some_and(|id| !id.is_empty()))
        .map(|r| {
            (
                r.logical_resource_id().unwrap_or_default().to_string(),
                r.resource_type().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let template = deployed_template(clients, stack).await.ok();
    // An adopted CA (its physical id says so) is never deregistered by the provider; the CAs
    // stay registered when every registration (one per CA) is adopted or retained.
    let retained = |r: &aws_sdk_cloudformation::types::StackResource| {
        let adopted = r
            .physical_resource_id()
            .is_some_and(|p| CaPhysicalId::parse(p).is_adopted());
        let id = r.logical_resource_id().unwrap_or_default();
        adopted
            || template
                .as_ref()
                .and_then(|t| t["Resources"][id]["Properties"]["RetainOnDelete"].as_str())
                == Some("true")
    };
    let ca_retained = out
        .stack_resources()
        .iter()
        .filter(|r| r.resource_type() == Some(jitr_contract::ca_registration::RESOURCE_TYPE))
        .all(retained);
    Ok(Some(DestroyPlan {
        stack_name: stack.to_string(),
        stack_id: st.stack_id().unwrap_or(stack).to_string(),
        stack_status: status_text(&st),
        resources,
        ca_retained,
        device_policy,
        attached_certificates,
        termination_protection: st.enable_termination_protection().unwrap_or(false),
        registration_rules: out
            .stack_resources()
            .iter()
            .filter(|r| r.resource_type() == Some("AWS::IoT::TopicRule"))
            .filter_map(|r| r.physical_resource_id().filter(|p| !p.is_empty()))
            .map(str::to_string)
            .collect(),
        activator_function: physical(constructs::ACTIVATOR_FUNCTION),
        stage_file: stage.file.clone(),
        stage_name: stage.name.clone(),
    }))
}

/// The certificates (targets) the device policy is attached to; none when it is gone.
async fn attached_targets(clients: &Clients, policy: &str) -> Result<Vec<String>, Error> {
    let mut targets = Vec::new();
    let mut pages = clients
        .iot
        .list_targets_for_policy()
        .policy_name(policy)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(p) => targets.extend(p.targets().iter().cloned()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                break
            }
            Err(e) => return Err(aws_error("iot:ListTargetsForPolicy", &e)),
        }
    }
    Ok(targets)
}

/// Why the plan cannot be carried out at all, before anything is touched.
pub fn refusal(plan: &DestroyPlan) -> Option<Error> {
    if in_progress(&StackStatus::from(plan.stack_status.as_str())) {
        return Some(Error::StackState {
            stack: plan.stack_name.clone(),
            status: plan.stack_status.clone(),
            advice: "another operation is running; try again when it has finished".into(),
        });
    }
    if plan.termination_protection {
        return Some(super::protection::termination_refusal(
            &plan.stage_file,
            &plan.stage_name,
            &plan.stack_name,
        ));
    }
    None
}

/// Whether the plan may be carried out as asked: [`refusal`], and devices still attached to
/// the device policy without `--detach-devices` (AWS refuses to delete an attached policy,
/// so the deletion would fail halfway).
pub fn admissible(plan: &DestroyPlan, detach_devices: bool) -> Result<(), Error> {
    if let Some(refused) = refusal(plan) {
        return Err(refused);
    }
    if !plan.attached_certificates.is_empty() && !detach_devices {
        return Err(Error::StackState {
            stack: plan.stack_name.clone(),
            status: plan.stack_status.clone(),
            advice: format!(
                "{} device certificate(s) are attached to its device policy, and AWS refuses \
                 to delete an attached policy, so the deletion would fail halfway. \
                 Decommission those devices first, or rerun with --detach-devices (they lose \
                 access)",
                plan.attached_certificates.len()
            ),
        });
    }
    Ok(())
}

/// How far a destroy got before it failed: whether onboarding must be put back.
enum Failure {
    /// Before CloudFormation accepted the deletion, or the deletion failed (DELETE_FAILED):
    /// the stack (or what is left of it) stays, so onboarding is restored.
    Aborted(Error),
    /// The deletion was accepted and is still running (e.g. our wait timed out): onboarding
    /// stays stopped, the stack is going away.
    Running(Error),
}

/// Stops onboarding, detaches the device policy (only with `detach_devices`, from every
/// certificate holding it by then), deletes the stack and waits. The CA provider honours
/// RetainOnDelete.
pub async fn destroy(
    clients: &Clients,
    plan: &DestroyPlan,
    detach_devices: bool,
    opts: &Options,
    reporter: &dyn Reporter,
) -> Result<Settled, Error> {
    if let Some(refused) = refusal(plan) {
        return Err(refused);
    }
    let mut onboarding = Onboarding::default();
    let mut detached = Vec::new();
    let failure = match run(
        clients,
        plan,
        detach_devices,
        opts,
        reporter,
        &mut onboarding,
        &mut detached,
    )
    .await
    {
        Ok(settled) => return Ok(settled),
        Err(Failure::Running(e)) => {
            reporter.progress(
                "the deletion was accepted and is still running: onboarding stays stopped",
            );
            return Err(e);
        }
        Err(Failure::Aborted(e)) => e,
    };
    let restored = onboarding.restore(clients).await;
    let complete = restored.iter().all(|r| r.ok);
    let mut lines: Vec<String> = restored.into_iter().map(|r| r.text).collect();
    if let (Some(policy), false) = (&plan.device_policy, detached.is_empty()) {
        lines.push(format!(
            "device policy {policy}: stays detached from the {} certificate(s) detached before \
             the failure (those devices have no access until it is attached again)",
            detached.len()
        ));
    }
    if lines.is_empty() {
        return Err(failure);
    }
    Err(Error::DestroyAborted {
        cause: Box::new(failure),
        restored: lines,
        complete,
    })
}

async fn run(
    clients: &Clients,
    plan: &DestroyPlan,
    detach_devices: bool,
    opts: &Options,
    reporter: &dyn Reporter,
    onboarding: &mut Onboarding,
    detached: &mut Vec<String>,
) -> Result<Settled, Failure> {
    onboarding
        .stop(
            clients,
            &plan.registration_rules,
            plan.activator_function.as_deref(),
            reporter,
        )
        .await
        .map_err(Failure::Aborted)?;
    onboarding.drain(reporter).await;
    detach(clients, plan, detach_devices, reporter, detached)
        .await
        .map_err(Failure::Aborted)?;
    let mut watcher = EventWatcher::before_operation(clients, &plan.stack_id).await;
    reporter.progress(&format!("deleting stack {}", plan.stack_name));
    clients
        .cfn
        .delete_stack()
        .stack_name(&plan.stack_id)
        .send()
        .await
        .map_err(|e| Failure::Aborted(aws_error("DeleteStack", &e)))?;
    events::settle(&plan.stack_name, &mut watcher, opts, reporter)
        .await
        .map_err(|e| match e {
            Error::DeployFailed { .. } => Failure::Aborted(e),
            e => Failure::Running(e),
        })
}

/// Detaches the device policy from every certificate holding it now that nothing can attach
/// it any more. The plan's list is not enough: a device may have been activated while the
/// operator read it.
async fn detach(
    clients: &Clients,
    plan: &DestroyPlan,
    detach_devices: bool,
    reporter: &dyn Reporter,
    detached: &mut Vec<String>,
) -> Result<(), Error> {
    let Some(policy) = &plan.device_policy else {
        return Ok(());
    };
    let targets = attached_targets(clients, policy).await?;
    if targets.is_empty() {
        return Ok(());
    }
    if !detach_devices {
        return Err(Error::StackState {
            stack: plan.stack_name.clone(),
            status: plan.stack_status.clone(),
            advice: format!(
                "{} device certificate(s) hold its device policy {policy} (activated since the \
                 plan was read), and AWS refuses to delete an attached policy, so the deletion \
                 would fail halfway. Decommission those devices first, or rerun with \
                 --detach-devices (they lose access)",
                targets.len()
            ),
        });
    }
    for target in targets {
        reporter.progress(&format!("detaching {policy} from {target}"));
        clients
            .iot
            .detach_policy()
            .policy_name(policy)
            .target(&target)
            .send()
            .await
            .map_err(|e| aws_error("iot:DetachPolicy", &e))?;
        detached.push(target);
    }
    Ok(())
}
