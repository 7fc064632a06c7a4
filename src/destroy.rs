//! `destroy`: what deleting a stage's stack removes, and the deletion itself.

use crate::aws::Clients;
use crate::constructs;
use crate::deploy::{
    aws_error, deployed_template, describe, latest_event_id, settle, status_text, Options,
    Reporter, Settled,
};
use crate::error::Error;
use serde::Serialize;

/// What `destroy` removes.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestroyPlan {
    pub stack_name: String,
    pub stack_id: String,
    pub stack_status: String,
    /// `(logical id, type)` of every resource.
    pub resources: Vec<(String, String)>,
    /// The CA registration's RetainOnDelete: the CA stays registered.
    pub ca_retained: bool,
    /// The device policy's name and the certificates it is attached to. AWS refuses to delete
    /// an attached policy, so a stack with activated devices cannot be deleted as it is.
    pub device_policy: Option<String>,
    pub attached_certificates: Vec<String>,
}

/// What would be deleted; `None` when there is no stack.
pub async fn destroy_plan(clients: &Clients, stack: &str) -> Result<Option<DestroyPlan>, Error> {
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
    let device_policy = out
        .stack_resources()
        .iter()
        .find(|r| r.logical_resource_id() == Some(constructs::DEVICE_POLICY.as_str()))
        .and_then(|r| r.physical_resource_id().map(str::to_string));
    let mut attached_certificates = Vec::new();
    if let Some(policy) = &device_policy {
        let mut pages = clients
            .iot
            .list_targets_for_policy()
            .policy_name(policy)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            match page {
                Ok(p) => attached_certificates.extend(p.targets().iter().cloned()),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_not_found_exception()) =>
                {
                    break
                }
                Err(e) => return Err(aws_error("iot:ListTargetsForPolicy", &e)),
            }
        }
    }
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
    let ca_retained = template.as_ref().and_then(|t| {
        t["Resources"][constructs::CA_REGISTRATION.as_str()]["Properties"]["RetainOnDelete"]
            .as_str()
    }) == Some("true");
    Ok(Some(DestroyPlan {
        stack_name: stack.to_string(),
        stack_id: st.stack_id().unwrap_or(stack).to_string(),
        stack_status: status_text(&st),
        resources,
        ca_retained,
        device_policy,
        attached_certificates,
    }))
}

/// Deletes the stack and waits; the CA provider honours RetainOnDelete.
pub async fn destroy(
    clients: &Clients,
    plan: &DestroyPlan,
    opts: &Options,
    reporter: &dyn Reporter,
) -> Result<Settled, Error> {
    let stack = plan.stack_name.as_str();
    if plan.stack_status.ends_with("_IN_PROGRESS") {
        return Err(Error::StackState {
            stack: stack.to_string(),
            status: plan.stack_status.clone(),
            advice: "another operation is running; try again when it has finished".into(),
        });
    }
    if let Some(policy) = &plan.device_policy {
        for target in &plan.attached_certificates {
            reporter.progress(&format!("detaching {policy} from {target}"));
            clients
                .iot
                .detach_policy()
                .policy_name(policy)
                .target(target)
                .send()
                .await
                .map_err(|e| aws_error("iot:DetachPolicy", &e))?;
        }
    }
    let since = latest_event_id(clients, &plan.stack_id).await;
    clients
        .cfn
        .delete_stack()
        .stack_name(&plan.stack_id)
        .send()
        .await
        .map_err(|e| aws_error("DeleteStack", &e))?;
    settle(clients, stack, &plan.stack_id, since, opts, reporter).await
}
