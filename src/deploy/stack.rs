//! The stack's state: what CloudFormation says about it, bringing it into a state a change set
//! can apply to, its deployed template and its outputs. States are the SDK's
//! [`StackStatus`], never string suffixes.

use super::{aws_error, Options, Reporter};
use crate::aws::{self, Clients};
use crate::error::Error;
use aws_sdk_cloudformation::types::{Stack, StackStatus, TemplateStage};
use std::collections::BTreeMap;
use std::time::Instant;

/// An operation is running on the stack: it cannot be changed until it ends. A status this
/// SDK does not know yet counts as running (we wait for it rather than act on it).
pub fn in_progress(s: &StackStatus) -> bool {
    use StackStatus as S;
    !matches!(
        s,
        S::CreateComplete
            | S::CreateFailed
            | S::DeleteComplete
            | S::DeleteFailed
            | S::ImportComplete
            | S::ImportRollbackComplete
            | S::ImportRollbackFailed
            | S::RollbackComplete
            | S::RollbackFailed
            | S::UpdateComplete
            | S::UpdateFailed
            | S::UpdateRollbackComplete
            | S::UpdateRollbackFailed
    )
}

/// A failed state the stack cannot be deployed from as it is.
pub fn failed(s: &StackStatus) -> bool {
    use StackStatus as S;
    matches!(
        s,
        S::CreateFailed
            | S::DeleteFailed
            | S::ImportRollbackFailed
            | S::RollbackFailed
            | S::UpdateFailed
            | S::UpdateRollbackFailed
    )
}

/// The operation ended well.
pub fn succeeded(s: &StackStatus) -> bool {
    use StackStatus as S;
    matches!(
        s,
        S::CreateComplete | S::UpdateComplete | S::DeleteComplete | S::ImportComplete
    )
}

/// The stack, or `None` when it does not exist.
pub async fn describe(clients: &Clients, stack: &str) -> Result<Option<Stack>, Error> {
    match clients.cfn.describe_stacks().stack_name(stack).send().await {
        Ok(out) => Ok(out.stacks().first().cloned()),
        Err(e) if aws::message(&e).contains("does not exist") => Ok(None),
        Err(e) => Err(aws_error("DescribeStacks", &e)),
    }
}

/// The stack's status as CloudFormation spells it.
pub fn status_text(s: &Stack) -> String {
    s.stack_status()
        .map(|x| x.as_str().to_string())
        .unwrap_or_default()
}

/// What to do with the stack as it is.
enum Next {
    Update(Box<Stack>),
    Create,
    /// A first deploy that never executed its change set: remove the empty stack.
    RemoveReview(String),
    Wait(String),
    Refuse(Error),
}

/// Brings the stack into a state a change set can apply to. `Some(stack)` when it exists
/// (UPDATE), `None` when it must be created (CREATE).
pub async fn prepare(
    clients: &Clients,
    stack: &str,
    opts: &Options,
    reporter: &dyn Reporter,
) -> Result<Option<Stack>, Error> {
    let give_up = Instant::now() + opts.wait_for_other_operation;
    let mut interval = opts.poll.first;
    let mut announced = false;
    loop {
        let found = describe(clients, stack).await?;
        match next(stack, found, opts, Instant::now() >= give_up) {
            Next::Update(st) => return Ok(Some(*st)),
            Next::Create => return Ok(None),
            Next::Refuse(e) => return Err(e),
            Next::RemoveReview(id) => {
                reporter.progress(&format!(
                    "{stack} is REVIEW_IN_PROGRESS (an earlier first deploy never executed): removing it"
                ));
                clients
                    .cfn
                    .delete_stack()
                    .stack_name(&id)
                    .send()
                    .await
                    .map_err(|e| aws_error("DeleteStack", &e))?;
                wait_gone(clients, &id, opts).await?;
                return Ok(None);
            }
            Next::Wait(status) => {
                if !announced {
                    reporter.progress(&format!(
                        "{stack} is {status}: waiting for that operation to finish"
                    ));
                    announced = true;
                }
                tokio::time::sleep(interval).await;
                interval = opts.poll.next(interval);
            }
        }
    }
}

fn next(stack: &str, found: Option<Stack>, opts: &Options, out_of_time: bool) -> Next {
    let Some(st) = found else { return Next::Create };
    let status = status_text(&st);
    let refuse = |advice: String| {
        Next::Refuse(Error::StackState {
            stack: stack.to_string(),
            status: status.clone(),
            advice,
        })
    };
    let Some(s) = st.stack_status() else {
        return Next::Update(Box::new(st));
    };
    match s {
        StackStatus::ReviewInProgress => {
            Next::RemoveReview(st.stack_id().unwrap_or(stack).to_string())
        }
        StackStatus::RollbackComplete => refuse(format!(
            "its first deploy failed and was rolled back; such a stack cannot be updated, only \
             deleted. Delete it with `jitr-infra destroy --stage <stage>` (or `aws \
             cloudformation delete-stack --stack-name {stack}`), then deploy again"
        )),
        StackStatus::UpdateRollbackFailed => refuse(format!(
            "a rollback failed. Fix the cause shown in the stack's events, then run `aws \
             cloudformation continue-update-rollback --stack-name {stack}` (skipping resources \
             that cannot be rolled back with --resources-to-skip), and deploy again"
        )),
        s if in_progress(s) && out_of_time => refuse(format!(
            "another operation is still running after {} s; try again when it has finished",
            opts.wait_for_other_operation.as_secs()
        )),
        s if in_progress(s) => Next::Wait(status),
        s if failed(s) => refuse(
            "the stack is in a failed state; see its events in the CloudFormation console, fix \
             the cause, and delete or repair it before deploying"
                .into(),
        ),
        _ => Next::Update(Box::new(st)),
    }
}

/// Waits until the stack is deleted.
pub async fn wait_gone(clients: &Clients, stack_id: &str, opts: &Options) -> Result<(), Error> {
    let give_up = Instant::now() + opts.timeout;
    let mut interval = opts.poll.first;
    loop {
        let st = match describe(clients, stack_id).await? {
            None => return Ok(()),
            Some(st) => st,
        };
        match st.stack_status() {
            Some(StackStatus::DeleteComplete) => return Ok(()),
            Some(StackStatus::DeleteFailed) => {
                return Err(Error::StackState {
                    stack: stack_id.to_string(),
                    status: status_text(&st),
                    advice: "deleting it failed; see its events".into(),
                })
            }
            _ if Instant::now() >= give_up => {
                return Err(Error::Timeout {
                    what: format!("{stack_id}: still deleting"),
                    after: opts.timeout,
                    still_running: false,
                })
            }
            _ => {
                tokio::time::sleep(interval).await;
                interval = opts.poll.next(interval);
            }
        }
    }
}

/// The template the stack was deployed with, as its author wrote it.
pub async fn deployed_template(clients: &Clients, stack: &str) -> Result<serde_json::Value, Error> {
    let out = clients
        .cfn
        .get_template()
        .stack_name(stack)
        .template_stage(TemplateStage::Original)
        .send()
        .await
        .map_err(|e| aws_error("GetTemplate", &e))?;
    let body = out.template_body().unwrap_or("{}");
    serde_json::from_str(body)
        .or_else(|_| serde_yaml::from_str(body))
        .map_err(|e: serde_yaml::Error| Error::DeployedTemplate {
            stack: stack.to_string(),
            reason: e.to_string(),
        })
}

/// The deployed template of a stack that exists; `None` for a CREATE.
pub async fn deployed_template_of(
    clients: &Clients,
    existing: Option<&Stack>,
    stack: &str,
) -> Result<Option<serde_json::Value>, Error> {
    match existing {
        Some(_) => Ok(Some(deployed_template(clients, stack).await?)),
        None => Ok(None),
    }
}

/// The stack's outputs by key.
pub async fn outputs(clients: &Clients, stack: &str) -> Result<BTreeMap<String, String>, Error> {
    Ok(describe(clients, stack)
        .await?
        .map(|st| {
            st.outputs()
                .iter()
                .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
                .collect()
        })
        .unwrap_or_default())
}

/// The stack's id (its ARN), which still names it after deletion.
pub async fn stack_id(clients: &Clients, stack: &str) -> Result<String, Error> {
    Ok(describe(clients, stack)
        .await?
        .and_then(|st| st.stack_id().map(str::to_string))
        .unwrap_or_else(|| stack.to_string()))
}
