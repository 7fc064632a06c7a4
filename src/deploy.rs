//! `deploy` and `diff` through CloudFormation change sets (`destroy` is in [`crate::destroy`]).
//!
//! The deploy flow reads top-down: check the caller's account, check the stack's state, decide
//! the activator's reserved concurrency from the account's ([`concurrency`]), prepare the
//! parameters (the verification certificate only when the CA registration is created or
//! replaced), publish the assets ([`publish`]), create the change set and wait for it,
//! short-circuit "no changes", show the diff and the security view, apply the approval rule
//! (never prompting without a terminal), execute, and watch the stack's events until it
//! settles. Everything is reported through [`Reporter`], and the result is a typed
//! [`Outcome`].

use crate::aws::{self, Clients};
use crate::concurrency;
use crate::constructs::{self, CA_REGISTRATION, VERIFICATION_PARAMETER};
use crate::diff::{self, ChangeSetChange, StackDiff};
use crate::error::Error;
use crate::publish;
use crate::stage::{Stage, Verification};
use crate::synth::Synthesized;
use aws_sdk_cloudformation::types::{
    Capability, ChangeSetStatus, ChangeSetType, Parameter, StackStatus, Tag,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// When a deploy needs a human's yes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum RequireApproval {
    /// Never ask.
    Never,
    /// Ask when security broadens (new IAM or device policy statements, new Lambda
    /// permissions) or the CA registration would be replaced or removed. The default.
    #[default]
    Broadening,
    /// Ask for any change.
    AnyChange,
}

/// How often to look at CloudFormation while waiting: fast at first (most of our stacks
/// settle in seconds), then at most once a second.
#[derive(Debug, Clone, Copy)]
pub struct Poll {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Poll {
    fn default() -> Self {
        Poll {
            first: Duration::from_millis(100),
            max: Duration::from_secs(1),
        }
    }
}

impl Poll {
    fn next(&self, current: Duration) -> Duration {
        (current.mul_f64(1.5)).min(self.max)
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub require_approval: RequireApproval,
    /// `--no-execute`: create the change set and stop.
    pub execute: bool,
    /// A terminal is attached (stdin and stderr): prompting is allowed.
    pub interactive: bool,
    /// Longest wait for a stack another operation is changing.
    pub wait_for_other_operation: Duration,
    /// Longest wait for our own change set execution.
    pub timeout: Duration,
    pub poll: Poll,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            require_approval: RequireApproval::default(),
            execute: true,
            interactive: false,
            wait_for_other_operation: Duration::from_secs(30 * 60),
            timeout: Duration::from_secs(60 * 60),
            poll: Poll::default(),
        }
    }
}

/// Where progress, diffs and questions go. The CLI prints; tests record.
pub trait Reporter: Send + Sync {
    /// A progress line (stack events, steps).
    fn progress(&self, line: &str);
    /// The change about to be made (or found, for `diff`).
    fn diff(&self, diff: &StackDiff);
    /// Asks a yes/no question; only called when [`Options::interactive`] is set.
    fn confirm(&self, question: &str) -> bool;
}

/// What `deploy` did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum Outcome {
    /// The stack already matches: nothing was changed, no change set left behind.
    NoChanges { stack_name: String },
    /// The change set was executed and the stack settled in a good state.
    Deployed {
        stack_name: String,
        stack_status: String,
        outputs: BTreeMap<String, String>,
    },
    /// `--no-execute`: the change set is ready for review.
    ChangeSetCreated {
        stack_name: String,
        change_set_name: String,
        change_set_id: String,
    },
}

/// Runs the whole deploy flow for a synthesized stage.
pub async fn deploy(
    clients: &Clients,
    root: &Path,
    s: &Synthesized,
    opts: &Options,
    reporter: &dyn Reporter,
) -> Result<Outcome, Error> {
    let stage = &s.stage;
    let stack = stage.stack_name.as_str();
    let account = check_account(clients, stage).await?;
    let existing = prepare_stack(clients, stack, opts, reporter).await?;
    let reservation = concurrency::reserve(clients, root, stage, &account, reporter).await?;
    let deployed_template = match &existing {
        Some(_) => Some(deployed_template(clients, stack).await?),
        None => None,
    };
    diff::check_ca_mode(&stage.name, deployed_template.as_ref(), &s.template_json)?;
    let mut parameters = vec![reservation.parameter()];
    parameters.extend(
        verification_parameter(clients, root, stage, deployed_template.as_ref(), reporter).await?,
    );
    let template_url = publish::publish(clients, &account, s, reporter).await?;

    let change_set = ChangeSetRequest {
        stack,
        name: change_set_name(&stage.name, unix_millis()),
        update: existing.is_some(),
        parameters,
        template_url,
    };
    let Some(change_set_id) = create_change_set(clients, s, &change_set, reporter).await? else {
        return no_changes(clients, stage, reporter).await;
    };
    let changes = match wait_change_set(clients, stack, &change_set_id, opts).await? {
        ChangeSetResult::Ready(changes) => changes,
        ChangeSetResult::NoChanges => {
            delete_change_set(clients, stack, &change_set_id).await;
            return no_changes(clients, stage, reporter).await;
        }
    };
    let synthesized: serde_json::Value =
        serde_json::from_str(&s.template_json).expect("our own template is JSON");
    let d = diff::diff(deployed_template.as_ref(), &synthesized, Some(&changes));
    reporter.diff(&d);
    crate::protection::check_change(clients, stage, &change_set_id, &d).await?;

    if !opts.execute {
        return Ok(Outcome::ChangeSetCreated {
            stack_name: stack.to_string(),
            change_set_name: change_set.name,
            change_set_id,
        });
    }
    if let Some(reason) = approval_needed(opts.require_approval, &d) {
        let approved = opts.interactive
            && reporter.confirm(&format!("{reason}. Deploy these changes to {stack}?"));
        if !approved {
            delete_change_set(clients, stack, &change_set_id).await;
            if existing.is_none() {
                // The CREATE change set left an empty REVIEW_IN_PROGRESS stack behind.
                let _ = clients.cfn.delete_stack().stack_name(stack).send().await;
            }
            return Err(not_approved(&reason, opts));
        }
    }
    execute(
        clients,
        stage,
        change_set.update,
        &change_set.name,
        &change_set_id,
        opts,
        reporter,
    )
    .await
}

/// Nothing to change: the stage's protection is still applied (switching it on in the stage
/// file changes no template).
async fn no_changes(
    clients: &Clients,
    stage: &Stage,
    reporter: &dyn Reporter,
) -> Result<Outcome, Error> {
    reporter.progress("no changes");
    crate::protection::apply(clients, stage, reporter).await?;
    Ok(Outcome::NoChanges {
        stack_name: stage.stack_name.clone(),
    })
}

fn not_approved(reason: &str, opts: &Options) -> Error {
    Error::ApprovalRequired(format!(
        "{reason}; {}",
        if opts.interactive {
            "not approved".to_string()
        } else {
            format!(
                "no terminal to ask on: review the diff above and rerun with \
                 --require-approval never (now: {:?})",
                opts.require_approval
            )
            .to_lowercase()
        }
    ))
}

fn unix_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

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

/// The change set deploy asks for.
struct ChangeSetRequest<'a> {
    stack: &'a str,
    name: String,
    /// UPDATE of an existing stack, else CREATE.
    update: bool,
    parameters: Vec<Parameter>,
    /// The template by URL (too big to pass inline), else its body.
    template_url: Option<String>,
}

/// Creates the change set; its id, or `None` when CloudFormation refuses it at once for
/// having no changes.
async fn create_change_set(
    clients: &Clients,
    s: &Synthesized,
    req: &ChangeSetRequest<'_>,
    reporter: &dyn Reporter,
) -> Result<Option<String>, Error> {
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
    let mut call = clients
        .cfn
        .create_change_set()
        .stack_name(req.stack)
        .change_set_name(&req.name)
        .change_set_type(kind)
        .description(format!("jitr-infra {}", env!("CARGO_PKG_VERSION")))
        .capabilities(Capability::CapabilityIam)
        .set_parameters(Some(req.parameters.clone()))
        .set_tags(Some(
            s.stage
                .tags
                .iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect(),
        ));
    call = match &req.template_url {
        Some(url) => call.template_url(url),
        None => call.template_body(&s.template_json),
    };
    match call.send().await {
        Ok(out) => Ok(Some(out.id().unwrap_or(&req.name).to_string())),
        // moto answers this at once; CloudFormation marks the change set FAILED instead.
        Err(e) if is_no_changes(&aws::message(&e)) => Ok(None),
        Err(e) => Err(aws_error("CreateChangeSet", &e)),
    }
}

/// Executes the approved change set and watches the stack settle.
async fn execute(
    clients: &Clients,
    stage: &Stage,
    update: bool,
    name: &str,
    id: &str,
    opts: &Options,
    reporter: &dyn Reporter,
) -> Result<Outcome, Error> {
    let stack = stage.stack_name.as_str();
    let stack_id = describe(clients, stack)
        .await?
        .and_then(|st| st.stack_id().map(str::to_string))
        .unwrap_or_else(|| stack.to_string());
    let since = latest_event_id(clients, &stack_id).await;
    if update {
        crate::protection::before_execute(clients, stage, reporter).await?;
    }
    reporter.progress(&format!("executing {name}"));
    clients
        .cfn
        .execute_change_set()
        .stack_name(stack)
        .change_set_name(id)
        .send()
        .await
        .map_err(|e| aws_error("ExecuteChangeSet", &e))?;
    let settled = settle(clients, stack, &stack_id, since, opts, reporter).await?;
    crate::protection::apply(clients, stage, reporter).await?;
    Ok(Outcome::Deployed {
        stack_name: stack.to_string(),
        stack_status: settled.status,
        outputs: outputs(clients, stack).await?,
    })
}

/// The template diff between the deployed stack (if any) and the synthesized one.
pub async fn diff_stack(clients: &Clients, s: &Synthesized) -> Result<StackDiff, Error> {
    let stack = s.stage.stack_name.as_str();
    let deployed = match describe(clients, stack).await? {
        Some(st) if st.stack_status() != Some(&StackStatus::ReviewInProgress) => {
            Some(deployed_template(clients, stack).await?)
        }
        _ => None,
    };
    diff::check_ca_mode(&s.stage.name, deployed.as_ref(), &s.template_json)?;
    let synthesized: serde_json::Value =
        serde_json::from_str(&s.template_json).expect("our own template is JSON");
    Ok(diff::diff(deployed.as_ref(), &synthesized, None))
}

/// Why a diff needs approval under `rule`, if it does.
pub fn approval_needed(rule: RequireApproval, d: &StackDiff) -> Option<String> {
    let fleet = !d.fleet_breaking().is_empty();
    match rule {
        RequireApproval::Never => None,
        RequireApproval::Broadening if fleet => {
            Some("the CA registration would be replaced or removed".into())
        }
        RequireApproval::Broadening if d.broadens_security() => Some(
            "security broadens (new IAM or device policy statements, or Lambda permissions)".into(),
        ),
        RequireApproval::Broadening => None,
        RequireApproval::AnyChange if !d.is_empty() => Some("the stack changes".into()),
        RequireApproval::AnyChange => None,
    }
}

/// `jitr-assets-<account>-<region>`: the template's `Code.S3Bucket`, resolved.
pub fn asset_bucket(account: &str, region: &str) -> String {
    constructs::ASSET_BUCKET
        .replace("${AWS::AccountId}", account)
        .replace("${AWS::Region}", region)
}

pub(crate) fn aws_error<E, R>(
    operation: &str,
    e: &aws_sdk_cloudformation::error::SdkError<E, R>,
) -> Error
where
    E: aws_sdk_cloudformation::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    Error::Aws(aws::explain(operation, e))
}

/// Who we are; refuses a stage pinned to another account.
pub async fn check_account(clients: &Clients, stage: &Stage) -> Result<String, Error> {
    let me = clients
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| aws_error("sts:GetCallerIdentity", &e))?;
    let account = me.account().unwrap_or_default().to_string();
    if let Some(want) = &stage.account {
        if *want != account {
            return Err(Error::WrongAccount {
                stage_file: stage.file.clone(),
                expected: want.clone(),
                actual: account,
                arn: me.arn().unwrap_or_default().to_string(),
            });
        }
    }
    Ok(account)
}

/// Whether this deploy creates or replaces the CA registration: no stack (or no registration
/// in it) yet, or the provider's own replacement rule
/// ([`jitr_lambda_common::pki::needs_new_registration`]) applied to the deployed template's
/// properties and the stage's.
pub fn creates_registration(deployed: Option<&serde_json::Value>, stage: &Stage) -> bool {
    let Some(t) = deployed else { return true };
    if t["Parameters"].get(VERIFICATION_PARAMETER).is_none() {
        // Nothing to keep with UsePreviousValue.
        return true;
    }
    let props = &t["Resources"][CA_REGISTRATION.as_str()]["Properties"];
    match jitr_contract::ca_registration::CaIdentity::from_properties(props) {
        Some(deployed) => jitr_lambda_common::pki::needs_new_registration(
            &deployed.ca_certificate_pem,
            &deployed.certificate_mode,
            &stage.ca.pem,
            stage.ca.mode.as_str(),
        ),
        None => true,
    }
}

/// The `DEFAULT`-mode verification certificate parameter. Only a deploy that creates or
/// replaces the CA registration needs one (AWS IoT reads it when registering); any other
/// keeps the deployed value (`UsePreviousValue`), so an unchanged stage stays a no-op and
/// needs neither the CA key nor the certificate file.
async fn verification_parameter(
    clients: &Clients,
    root: &Path,
    stage: &Stage,
    deployed: Option<&serde_json::Value>,
    reporter: &dyn Reporter,
) -> Result<Option<Parameter>, Error> {
    let Some(v) = &stage.ca.verification else {
        return Ok(None);
    };
    let param = Parameter::builder().parameter_key(VERIFICATION_PARAMETER);
    if !creates_registration(deployed, stage) {
        reporter.progress(
            "CA registration unchanged: keeping its verification certificate (no CA key needed)",
        );
        return Ok(Some(param.use_previous_value(true).build()));
    }
    let why = "it is needed because this deploy registers the CA (a first deploy, or a new CA \
               certificate or mode)";
    let pem = match v {
        Verification::CertificateFile { pem, .. } => pem.clone(),
        Verification::PrivateKeyFile(path) => {
            let key = std::fs::read_to_string(root.join(path)).map_err(|e| {
                Error::Verification(format!(
                    "{}: ca.verification.private_key_file {path}: {e}; {why}",
                    stage.file.display()
                ))
            })?;
            verification_certificate(clients, stage, &key).await?
        }
        Verification::PrivateKeyEnv(var) => {
            let key = std::env::var(var).map_err(|_| {
                Error::Verification(format!(
                    "{}: ca.verification.private_key_env: environment variable {var} is not set \
                     (it must hold the CA private key, PEM); {why}",
                    stage.file.display()
                ))
            })?;
            verification_certificate(clients, stage, &key).await?
        }
    };
    Ok(Some(param.parameter_value(pem).build()))
}

/// Signs the `DEFAULT`-mode verification certificate (CN = this account and region's
/// registration code) with the operator's CA key. The key stays in this process's memory.
async fn verification_certificate(
    clients: &Clients,
    stage: &Stage,
    key_pem: &str,
) -> Result<String, Error> {
    let code = clients
        .iot
        .get_registration_code()
        .send()
        .await
        .map_err(|e| aws_error("iot:GetRegistrationCode", &e))?
        .registration_code()
        .unwrap_or_default()
        .to_string();
    let key = rcgen::KeyPair::from_pem(key_pem).map_err(|_| {
        Error::Verification(format!(
            "{}: ca.verification: the CA private key is not a PEM private key rcgen can use \
             (PKCS#8 ECDSA P-256/P-384, Ed25519 or RSA)",
            stage.file.display()
        ))
    })?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&stage.ca.pem, key).map_err(|e| {
        Error::Verification(format!("{}: ca.certificate: {e}", stage.file.display()))
    })?;
    let leaf_key = rcgen::KeyPair::generate()
        .map_err(|e| Error::Verification(format!("generating the verification key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| Error::Verification(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, code);
    let cert = params
        .signed_by(&leaf_key, &issuer)
        .map_err(|e| Error::Verification(format!("signing the verification certificate: {e}")))?;
    // A certificate signed by some other key would be refused by AWS anyway; say so now.
    let ca = jitr_lambda_common::pki::Certificate::from_pem(&stage.ca.pem)
        .map_err(|e| Error::Verification(e.to_string()))?;
    let made = jitr_lambda_common::pki::Certificate::from_pem(&cert.pem())
        .map_err(|e| Error::Verification(e.to_string()))?;
    made.verify_signed_by(&ca).map_err(|_| {
        Error::Verification(format!(
            "{}: ca.verification: the private key does not belong to the CA certificate {}",
            stage.file.display(),
            stage.ca.certificate_file
        ))
    })?;
    Ok(cert.pem())
}

pub(crate) async fn describe(
    clients: &Clients,
    stack: &str,
) -> Result<Option<aws_sdk_cloudformation::types::Stack>, Error> {
    match clients.cfn.describe_stacks().stack_name(stack).send().await {
        Ok(out) => Ok(out.stacks().first().cloned()),
        Err(e) if aws::message(&e).contains("does not exist") => Ok(None),
        Err(e) => Err(aws_error("DescribeStacks", &e)),
    }
}

pub(crate) fn status_text(s: &aws_sdk_cloudformation::types::Stack) -> String {
    s.stack_status()
        .map(|x| x.as_str().to_string())
        .unwrap_or_default()
}

/// Brings the stack into a state a change set can apply to. `Some(stack)` when it exists
/// (UPDATE), `None` when it must be created (CREATE).
pub async fn prepare_stack(
    clients: &Clients,
    stack: &str,
    opts: &Options,
    reporter: &dyn Reporter,
) -> Result<Option<aws_sdk_cloudformation::types::Stack>, Error> {
    let give_up = Instant::now() + opts.wait_for_other_operation;
    let mut interval = opts.poll.first;
    let mut announced = false;
    loop {
        let Some(st) = describe(clients, stack).await? else {
            return Ok(None);
        };
        let status = status_text(&st);
        match st.stack_status() {
            Some(StackStatus::ReviewInProgress) => {
                // A first deploy that never executed its change set: nothing was created.
                reporter.progress(&format!(
                    "{stack} is REVIEW_IN_PROGRESS (an earlier first deploy never executed): removing it"
                ));
                let id = st.stack_id().unwrap_or(stack).to_string();
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
            Some(StackStatus::RollbackComplete) => {
                return Err(Error::StackState {
                    stack: stack.to_string(),
                    status,
                    advice: format!(
                        "its first deploy failed and was rolled back; such a stack cannot be \
                         updated, only deleted. Delete it with `jitr-infra destroy --stage <stage>` \
                         (or `aws cloudformation delete-stack --stack-name {stack}`), then deploy again"
                    ),
                });
            }
            Some(StackStatus::UpdateRollbackFailed) => {
                return Err(Error::StackState {
                    stack: stack.to_string(),
                    status,
                    advice: format!(
                        "a rollback failed. Fix the cause shown in the stack's events, then run \
                         `aws cloudformation continue-update-rollback --stack-name {stack}` \
                         (skipping resources that cannot be rolled back with \
                         --resources-to-skip), and deploy again"
                    ),
                });
            }
            Some(s) if s.as_str().ends_with("_IN_PROGRESS") => {
                if Instant::now() >= give_up {
                    return Err(Error::StackState {
                        stack: stack.to_string(),
                        status,
                        advice: format!(
                            "another operation is still running after {} s; try again when it \
                             has finished",
                            opts.wait_for_other_operation.as_secs()
                        ),
                    });
                }
                if !announced {
                    reporter.progress(&format!(
                        "{stack} is {status}: waiting for that operation to finish"
                    ));
                    announced = true;
                }
                tokio::time::sleep(interval).await;
                interval = opts.poll.next(interval);
            }
            Some(s) if s.as_str().ends_with("_FAILED") => {
                return Err(Error::StackState {
                    stack: stack.to_string(),
                    status,
                    advice: "the stack is in a failed state; see its events in the CloudFormation \
                             console, fix the cause, and delete or repair it before deploying"
                        .into(),
                });
            }
            _ => return Ok(Some(st)),
        }
    }
}

async fn wait_gone(clients: &Clients, stack_id: &str, opts: &Options) -> Result<(), Error> {
    let give_up = Instant::now() + opts.timeout;
    let mut interval = opts.poll.first;
    loop {
        match describe(clients, stack_id).await? {
            None => return Ok(()),
            Some(st) if st.stack_status() == Some(&StackStatus::DeleteComplete) => return Ok(()),
            Some(st) if st.stack_status() == Some(&StackStatus::DeleteFailed) => {
                return Err(Error::StackState {
                    stack: stack_id.to_string(),
                    status: status_text(&st),
                    advice: "deleting it failed; see its events".into(),
                })
            }
            Some(_) if Instant::now() >= give_up => {
                return Err(Error::Aws(format!(
                    "{stack_id}: still deleting after {} s",
                    opts.timeout.as_secs()
                )))
            }
            Some(_) => {
                tokio::time::sleep(interval).await;
                interval = opts.poll.next(interval);
            }
        }
    }
}

pub(crate) async fn deployed_template(
    clients: &Clients,
    stack: &str,
) -> Result<serde_json::Value, Error> {
    use aws_sdk_cloudformation::types::TemplateStage;
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
        .map_err(|e| {
            Error::Aws(format!(
                "GetTemplate {stack}: the deployed template is neither JSON nor YAML: {e}"
            ))
        })
}

#[derive(Debug)]
pub enum ChangeSetResult {
    Ready(Vec<ChangeSetChange>),
    NoChanges,
}

fn is_no_changes(reason: &str) -> bool {
    reason.contains("didn't contain changes") || reason.contains("No updates are to be performed")
}

pub async fn wait_change_set(
    clients: &Clients,
    stack: &str,
    id: &str,
    opts: &Options,
) -> Result<ChangeSetResult, Error> {
    let give_up = Instant::now() + opts.timeout;
    let mut interval = opts.poll.first;
    loop {
        let mut changes = Vec::new();
        let mut next: Option<String> = None;
        let (status, reason) = loop {
            let out = clients
                .cfn
                .describe_change_set()
                .stack_name(stack)
                .change_set_name(id)
                .set_next_token(next.clone())
                .send()
                .await
                .map_err(|e| aws_error("DescribeChangeSet", &e))?;
            let status = out.status().cloned();
            let reason = out.status_reason().unwrap_or_default().to_string();
            for c in out.changes() {
                if let Some(rc) = c.resource_change() {
                    changes.push(ChangeSetChange {
                        logical_id: rc.logical_resource_id().unwrap_or_default().to_string(),
                        resource_type: rc.resource_type().unwrap_or_default().to_string(),
                        action: rc
                            .action()
                            .map(|a| a.as_str().to_string())
                            .unwrap_or_default(),
                        replacement: rc.replacement().map(|r| r.as_str().to_string()),
                    });
                }
            }
            next = out.next_token().map(str::to_string);
            if next.is_none() || status != Some(ChangeSetStatus::CreateComplete) {
                break (status, reason);
            }
        };
        match status {
            Some(ChangeSetStatus::CreateComplete) => return Ok(ChangeSetResult::Ready(changes)),
            Some(ChangeSetStatus::Failed) if is_no_changes(&reason) => {
                return Ok(ChangeSetResult::NoChanges)
            }
            Some(ChangeSetStatus::Failed) => {
                delete_change_set(clients, stack, id).await;
                return Err(Error::Aws(format!(
                    "change set for {stack} failed: {reason}"
                )));
            }
            _ if Instant::now() >= give_up => {
                return Err(Error::Aws(format!(
                    "change set for {stack} not ready after {} s",
                    opts.timeout.as_secs()
                )))
            }
            _ => {
                tokio::time::sleep(interval).await;
                interval = opts.poll.next(interval);
            }
        }
    }
}

pub(crate) async fn delete_change_set(clients: &Clients, stack: &str, id: &str) {
    // Best effort: a leftover change set is clutter, not harm, and the real error matters more.
    let _ = clients
        .cfn
        .delete_change_set()
        .stack_name(stack)
        .change_set_name(id)
        .send()
        .await;
}

pub(crate) async fn latest_event_id(clients: &Clients, stack: &str) -> Option<String> {
    clients
        .cfn
        .describe_stack_events()
        .stack_name(stack)
        .send()
        .await
        .ok()
        .and_then(|o| {
            o.stack_events()
                .first()
                .and_then(|e| e.event_id().map(str::to_string))
        })
}

/// How a watched operation ended.
#[derive(Debug, Clone)]
pub struct Settled {
    pub ok: bool,
    pub status: String,
    /// The first failures and their reasons, in order: the root cause, not the cascade.
    pub causes: Vec<String>,
}

fn is_terminal(status: &str) -> bool {
    !status.ends_with("_IN_PROGRESS")
}

fn is_good(status: &str) -> bool {
    matches!(
        status,
        "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "DELETE_COMPLETE" | "IMPORT_COMPLETE"
    )
}

/// Streams the stack's new events until the stack itself settles. Polls fast at first, then
/// once a second; checks the stack's status directly now and then in case an event is missed.
pub async fn watch(
    clients: &Clients,
    stack: &str,
    stack_id: &str,
    since: Option<String>,
    timeout: Duration,
    poll: Poll,
    reporter: &dyn Reporter,
) -> Result<Settled, Error> {
    let started = Instant::now();
    let stack_id = stack_id.to_string();
    let mut seen = since;
    let mut failures: Vec<String> = Vec::new();
    let mut interval = poll.first;
    let mut ticks = 0u32;
    loop {
        ticks += 1;
        // Every tenth look asks the stack itself instead of its events (covers an event we
        // did not get): one describe call per tick either way.
        let mut settled_status = None;
        if ticks % 10 == 0 {
            match describe(clients, &stack_id).await? {
                Some(st) if is_terminal(&status_text(&st)) => {
                    settled_status = Some(status_text(&st))
                }
                None => settled_status = Some("DELETE_COMPLETE".to_string()),
                _ => {
                    tokio::time::sleep(interval).await;
                    interval = poll.next(interval);
                    continue;
                }
            }
        }
        let out = clients
            .cfn
            .describe_stack_events()
            .stack_name(&stack_id)
            .send()
            .await
            .map_err(|e| aws_error("DescribeStackEvents", &e))?;
        // Newest first; take those after the last one seen, oldest first.
        let mut fresh = Vec::new();
        for e in out.stack_events() {
            if seen.is_some() && e.event_id() == seen.as_deref() {
                break;
            }
            fresh.push(e.clone());
        }
        fresh.reverse();
        if let Some(last) = fresh.last() {
            seen = last.event_id().map(str::to_string);
        }
        for e in &fresh {
            let status = e.resource_status().map(|s| s.as_str()).unwrap_or_default();
            let id = e.logical_resource_id().unwrap_or_default();
            let kind = e.resource_type().unwrap_or_default();
            let reason = e.resource_status_reason().unwrap_or_default();
            reporter.progress(&format!(
                "{:>7.1}s  {status:<28} {kind:<32} {id}{}",
                started.elapsed().as_secs_f64(),
                if reason.is_empty() {
                    String::new()
                } else {
                    format!("  {reason}")
                }
            ));
            if status.ends_with("_FAILED")
                && !reason.contains("cancelled")
                && kind != "AWS::CloudFormation::Stack"
            {
                failures.push(format!("{id} ({kind}) {status}: {reason}"));
            }
            if kind == "AWS::CloudFormation::Stack"
                && id == stack
                && is_terminal(status)
                && !status.is_empty()
            {
                settled_status = Some(status.to_string());
            }
        }
        if let Some(status) = settled_status {
            return Ok(Settled {
                ok: is_good(&status),
                status,
                causes: failures.into_iter().take(5).collect(),
            });
        }
        if started.elapsed() >= timeout {
            return Err(Error::Aws(format!(
                "{stack}: not settled after {} s; it is still running in CloudFormation",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(interval).await;
        interval = poll.next(interval);
    }
}

async fn outputs(clients: &Clients, stack: &str) -> Result<BTreeMap<String, String>, Error> {
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

/// [`watch`]es until the stack settles; a bad final state is an error with its root causes.
pub(crate) async fn settle(
    clients: &Clients,
    stack: &str,
    stack_id: &str,
    since: Option<String>,
    opts: &Options,
    reporter: &dyn Reporter,
) -> Result<Settled, Error> {
    let settled = watch(
        clients,
        stack,
        stack_id,
        since,
        opts.timeout,
        opts.poll,
        reporter,
    )
    .await?;
    if !settled.ok {
        return Err(Error::DeployFailed {
            stack: stack.to_string(),
            status: settled.status,
            causes: settled.causes,
        });
    }
    Ok(settled)
}
