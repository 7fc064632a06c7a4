//! The change set: its name, creating it, waiting until CloudFormation has computed it
//! ([`ChangeSetStatus`], [`ExecutionStatus`]), executing or discarding it.

use super::{aws_error, Options, Reporter};
use crate::aws::{self, Clients};
use crate::diff::ChangeSetChange;
use crate::error::Error;
use crate::synth::Synthesized;
use aws_sdk_cloudformation::types::{
    Capability, ChangeSetStatus, ChangeSetType, ExecutionStatus, Parameter, Tag,
};
use std::time::Instant;

/// CloudFormation's longest change-set name.
pub const MAX_CHANGE_SET_NAME: usize = 128;

/// `jitr-<stage>-<millis>`, as CloudFormation accepts change-set names whatever the stage is
/// called: letters, digits and hyphens (anything else in the stage name becomes a hyphen),
/// starting with a letter, at most [`MAX_CHANGE_SET_NAME`] characters (a long stage name is
/// cut, the time is kept).
pub fn change_set_name(stage: &str, millis: u128) -> String {
    let prefix = "jitr-";
    let suffix = format!("-{millis}");
    let room = MAX_CHANGE_SET_NAME.saturating_sub(prefix.len() + suffix.len());
    let stage: String = stage
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(room)
        .collect();
    format!("{prefix}{stage}{suffix}")
}

fn unix_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// The change set deploy asks for.
pub struct ChangeSetRequest<'a> {
    pub stack: &'a str,
    pub name: String,
    /// UPDATE of an existing stack, else CREATE.
    pub update: bool,
    pub parameters: Vec<Parameter>,
    /// The template by URL (too big to pass inline), else its body.
    pub template_url: Option<String>,
}

impl<'a> ChangeSetRequest<'a> {
    /// A change set named for the stage and the time.
    pub fn new(
        s: &'a Synthesized,
        update: bool,
        parameters: Vec<Parameter>,
        template_url: Option<String>,
    ) -> Self {
        ChangeSetRequest {
            stack: &s.stage.stack_name,
            name: change_set_name(&s.stage.name, unix_millis()),
            update,
            parameters,
            template_url,
        }
    }
}

/// A change set CloudFormation accepted.
#[derive(Debug, Clone)]
pub struct ChangeSet {
    pub name: String,
    pub id: String,
}

/// Creates the change set; `None` when CloudFormation refuses it at once for having no
/// changes.
pub async fn create(
    clients: &Clients,
    s: &Synthesized,
    req: &ChangeSetRequest<'_>,
    reporter: &dyn Reporter,
) -> Result<Option<ChangeSet>, Error> {
    let kind = if req.update {
        ChangeSetType::Update
    } else {
        ChangeSetType::Create
    };
    reporter.progress(&format!(
        "creating change set {} ({}) for stack {}",
        req.name,
        kind.as_str(),
        req.stack
    ));
    let tags = s.stage.tags.iter();
    let call = clients
        .cfn
        .create_change_set()
        .stack_name(req.stack)
        .change_set_name(&req.name)
        .change_set_type(kind)
        .description(format!("jitr-infra {}", env!("CARGO_PKG_VERSION")))
        .capabilities(Capability::CapabilityIam)
        .set_parameters(Some(req.parameters.clone()))
        .set_tags(Some(
            tags.map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect(),
        ));
    let call = match &req.template_url {
        Some(url) => call.template_url(url),
        None => call.template_body(&s.template_json),
    };
    match call.send().await {
        Ok(out) => Ok(Some(ChangeSet {
            name: req.name.clone(),
            id: out.id().unwrap_or(&req.name).to_string(),
        })),
        // moto answers this at once; CloudFormation marks the change set FAILED instead.
        Err(e) if is_no_changes(&aws::message(&e)) => Ok(None),
        Err(e) => Err(aws_error("CreateChangeSet", &e)),
    }
}

/// What the computed change set holds.
#[derive(Debug)]
pub enum ChangeSetResult {
    Ready(Vec<ChangeSetChange>),
    NoChanges,
}

fn is_no_changes(reason: &str) -> bool {
    reason.contains("didn't contain changes") || reason.contains("No updates are to be performed")
}

/// One look at the change set: every page of its changes.
struct Described {
    status: Option<ChangeSetStatus>,
    execution: Option<ExecutionStatus>,
    reason: String,
    changes: Vec<ChangeSetChange>,
}

async fn describe(clients: &Clients, stack: &str, id: &str) -> Result<Described, Error> {
    let mut d = Described {
        status: None,
        execution: None,
        reason: String::new(),
        changes: Vec::new(),
    };
    let mut next: Option<String> = None;
    loop {
        let out = clients
            .cfn
            .describe_change_set()
            .stack_name(stack)
            .change_set_name(id)
            .set_next_token(next.take())
            .send()
            .await
            .map_err(|e| aws_error("DescribeChangeSet", &e))?;
        d.status = out.status().cloned();
        d.execution = out.execution_status().cloned();
        d.reason = out.status_reason().unwrap_or_default().to_string();
        d.changes.extend(out.changes().iter().filter_map(|c| {
            let rc = c.resource_change()?;
            Some(ChangeSetChange {
                logical_id: rc.logical_resource_id().unwrap_or_default().to_string(),
                resource_type: rc.resource_type().unwrap_or_default().to_string(),
                action: rc
                    .action()
                    .map(|a| a.as_str().to_string())
                    .unwrap_or_default(),
                replacement: rc.replacement().map(|r| r.as_str().to_string()),
            })
        }));
        next = out.next_token().map(str::to_string);
        if next.is_none() || d.status != Some(ChangeSetStatus::CreateComplete) {
            return Ok(d);
        }
    }
}

/// Waits until CloudFormation has computed the change set. A FAILED one that only says
/// "no changes" is [`ChangeSetResult::NoChanges`]; any other failure deletes it and is an
/// error with CloudFormation's reason.
pub async fn wait(
    clients: &Clients,
    stack: &str,
    id: &str,
    opts: &Options,
) -> Result<ChangeSetResult, Error> {
    let give_up = Instant::now() + opts.timeout;
    let mut interval = opts.poll.first;
    loop {
        let d = describe(clients, stack, id).await?;
        let failure = match (&d.status, &d.execution) {
            (Some(ChangeSetStatus::CreateComplete), Some(ExecutionStatus::Obsolete)) => Some(
                "OBSOLETE: the stack changed after the change set was made; deploy again".into(),
            ),
            (Some(ChangeSetStatus::CreateComplete), _) => {
                return Ok(ChangeSetResult::Ready(d.changes))
            }
            (Some(ChangeSetStatus::Failed), _) if is_no_changes(&d.reason) => {
                return Ok(ChangeSetResult::NoChanges)
            }
            (Some(ChangeSetStatus::Failed), _) => Some(d.reason),
            _ => None,
        };
        if let Some(reason) = failure {
            delete(clients, stack, id).await;
            return Err(Error::ChangeSetFailed {
                stack: stack.to_string(),
                reason,
            });
        }
        if Instant::now() >= give_up {
            return Err(Error::Timeout {
                what: format!("change set for {stack} not ready"),
                after: opts.timeout,
                still_running: false,
            });
        }
        tokio::time::sleep(interval).await;
        interval = opts.poll.next(interval);
    }
}

/// Executes the change set (CloudFormation then runs it on its own).
pub async fn execute(clients: &Clients, stack: &str, id: &str) -> Result<(), Error> {
    clients
        .cfn
        .execute_change_set()
        .stack_name(stack)
        .change_set_name(id)
        .send()
        .await
        .map_err(|e| aws_error("ExecuteChangeSet", &e))?;
    Ok(())
}

/// Deletes the change set, best effort: a leftover change set is clutter, not harm, and the
/// real error matters more.
pub async fn delete(clients: &Clients, stack: &str, id: &str) {
    let _ = clients
        .cfn
        .delete_change_set()
        .stack_name(stack)
        .change_set_name(id)
        .send()
        .await;
}

/// Deletes a change set that will not be executed, and for a CREATE the empty
/// REVIEW_IN_PROGRESS stack it left behind.
pub async fn discard(clients: &Clients, stack: &str, update: bool, id: &str) {
    delete(clients, stack, id).await;
    if !update {
        let _ = clients.cfn.delete_stack().stack_name(stack).send().await;
    }
}
