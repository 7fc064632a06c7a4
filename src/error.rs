//! The library's error type and the CLI's exit codes.

use crate::diff::CaModeChange;
use crate::init::InitError;
use crate::stage::StageError;
use std::path::PathBuf;
use std::time::Duration;

/// Exit codes, documented in the README. clap uses 2 for usage errors; ours avoid it.
pub mod exit {
    /// Success; for `diff`, no changes.
    pub const OK: i32 = 0;
    /// Any error: bad input, a failed build, an AWS failure.
    pub const ERROR: i32 = 1;
    /// Command-line usage error (clap's code).
    pub const USAGE: i32 = 2;
    /// `diff` found changes.
    pub const CHANGES: i32 = 3;
    /// A deploy or destroy needed approval that was not given (no terminal to ask on, or
    /// the answer was no). Nothing was changed.
    pub const NOT_APPROVED: i32 = 4;
    /// `status` found something that needs attention, or `redrive` left messages in the
    /// failure queue or its sweep did not finish. The command itself worked.
    pub const ATTENTION: i32 = 5;
}

/// Everything a command can fail with. Each variant's text is what the user reads after
/// `error: `; [`Error::exit_code`] maps it to the documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The stage file is missing or invalid (every problem listed).
    #[error("{0}")]
    Stage(#[from] StageError),
    /// The stack could not be composed (e.g. the device policy template).
    #[error("{}", composing(.stage_file, .problems))]
    Template {
        stage_file: PathBuf,
        problems: Vec<String>,
    },
    /// Reading or writing a file.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `init` refused, or failed and removed what it had written.
    #[error("{0}")]
    Init(#[from] InitError),
    /// The project directory is not a jitr-infra project.
    #[error("{0}")]
    Project(String),
    /// An AWS call failed: the operation and the service's answer (or why there was none).
    #[error("{0}")]
    Aws(#[from] AwsError),
    /// The asset bucket cannot be used (another account's, or access denied).
    #[error("{0}")]
    Bucket(#[from] BucketError),
    /// The deployed template could not be read.
    #[error("GetTemplate {stack}: the deployed template is neither JSON nor YAML: {reason}")]
    DeployedTemplate { stack: String, reason: String },
    /// CloudFormation could not make the change set (the reason is its own).
    #[error("change set for {stack} failed: {reason}")]
    ChangeSetFailed { stack: String, reason: String },
    /// A wait ran out of time; `what` says what was still going on.
    #[error("{what} after {} s{}", .after.as_secs(), still_running_note(.still_running))]
    Timeout {
        what: String,
        after: Duration,
        /// The operation goes on in CloudFormation after we stop waiting.
        still_running: bool,
    },
    /// The caller's credentials belong to another account than the stage's.
    #[error(
        "{}: account: the stage belongs to account {expected}, but the credentials are for \
         account {actual} ({arn}); refusing to deploy. Use the right profile (--profile or \
         AWS_PROFILE)",
        .stage_file.display()
    )]
    WrongAccount {
        stage_file: PathBuf,
        expected: String,
        actual: String,
        arn: String,
    },
    /// `status` or `redrive` was asked about a stage whose stack is not deployed.
    #[error(
        "stack {stack} does not exist in {region}: nothing to {what}; deploy it first \
         (jitr-infra deploy --stage {stage})"
    )]
    NoStack {
        stack: String,
        region: String,
        stage: String,
        what: &'static str,
    },
    /// The deployed stack lacks what a command needs (e.g. a stack deployed by an older
    /// jitr-infra): the resource and what to do.
    #[error("stack {stack}: {problem}")]
    Deployed { stack: String, problem: String },
    /// The stack is in a state a deploy cannot proceed from.
    #[error("stack {stack} is {status}: {advice}")]
    StackState {
        stack: String,
        status: String,
        advice: String,
    },
    /// The change set or deletion ran and the stack ended in a failed state.
    #[error("{}", failed(.stack, .status, .causes))]
    DeployFailed {
        stack: String,
        status: String,
        causes: Vec<String>,
    },
    /// Approval was required and not given.
    #[error("approval required: {0}")]
    ApprovalRequired(String),
    /// `revoke` found no certificate to revoke, or one it must not revoke (the message says
    /// which and why).
    #[error("{0}")]
    Revoke(String),
    /// `smoke` refused its input before making anything (the CA key, the CN, an existing
    /// Thing, the endpoint, the trust roots): the flag and the problem.
    #[error("{0}")]
    Smoke(String),
    /// The stage's `protection` refuses the operation (the message says how to lift it).
    #[error("{0}")]
    Protected(String),
    /// A destroy failed after it had stopped onboarding; what it put back, line by line.
    #[error("{}", aborted(.cause, .restored, .complete))]
    DestroyAborted {
        #[source]
        cause: Box<Error>,
        restored: Vec<String>,
        /// Everything was put back (else a line says what to do by hand).
        complete: bool,
    },
    /// The DEFAULT-mode verification certificate could not be made.
    #[error("verification certificate: {0}")]
    Verification(String),
    /// The deploy would change the mode of the registered CA, which can never succeed.
    #[error("{}", ca_mode_change(.0))]
    CaModeChange(CaModeChange),
    /// `ca create`, `ca inspect` or `device issue` refused its input; the text names the
    /// file, flag or stage field. Nothing was written.
    #[error("{0}")]
    Certs(String),
    /// Certificate or key files were not written (one existed, or a write failed); nothing
    /// was left written.
    #[error("{0}")]
    Files(#[from] crate::pki::WriteError),
    /// Flags that do not fit the stage (a `--target` it does not have, `--region` on a stage
    /// with `targets:`, a command that works on one target given several).
    #[error("{0}")]
    Usage(String),
}

/// A failed AWS call: the operation and, in words, the service's code and message or the
/// cause of a call that got no answer, with a hint for the usual suspects.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation}: {detail}")]
pub struct AwsError {
    pub operation: String,
    pub detail: String,
}

/// Why the asset bucket (`jitr-assets-<account>-<region>`) is not used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BucketError {
    #[error(
        "asset bucket {bucket}: the bucket exists but belongs to another AWS account, not \
         {owner} (S3 bucket names are global). Refusing to read from or write to it: the \
         Lambda code would come from a bucket someone else controls. If that account is yours \
         too, delete the bucket there and deploy again"
    )]
    Foreign { bucket: String, owner: String },
    #[error(
        "asset bucket {bucket}: S3 denied access (403) to this account's own bucket: these \
         credentials lack s3:ListBucket on it"
    )]
    DeniedOwn { bucket: String },
    #[error(
        "asset bucket {bucket}: S3 denied access (403) with ExpectedBucketOwner {owner}: the \
         bucket belongs to another account, or these credentials may not use it \
         (s3:ListBucket); refusing to use it"
    )]
    Denied { bucket: String, owner: String },
    /// A call's 403 without a body (HEAD): it cannot name the cause.
    #[error(
        "{operation} s3://{bucket}: S3 denied access (403) with ExpectedBucketOwner {owner}: \
         the bucket is not this account's, or these credentials may not use it"
    )]
    DeniedCall {
        operation: String,
        bucket: String,
        owner: String,
    },
    /// The S3 endpoint resolver has no endpoint for the template's URL.
    #[error("asset bucket {bucket}: no S3 endpoint for region {region}: {detail}")]
    NoEndpoint {
        bucket: String,
        region: String,
        detail: String,
    },
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::ApprovalRequired(_) => exit::NOT_APPROVED,
            Error::Usage(_) => exit::USAGE,
            Error::DestroyAborted { cause, .. } => cause.exit_code(),
            _ => exit::ERROR,
        }
    }
}

fn still_running_note(still_running: &bool) -> &'static str {
    if *still_running {
        "; it is still running in CloudFormation"
    } else {
        ""
    }
}

fn composing(stage_file: &std::path::Path, problems: &[String]) -> String {
    let mut text = format!("{}: the stack cannot be composed:\n", stage_file.display());
    for p in problems {
        text.push_str(&format!("  {p}\n"));
    }
    text
}

fn failed(stack: &str, status: &str, causes: &[String]) -> String {
    let mut text = format!("stack {stack} ended in {status}\n");
    if causes.is_empty() {
        text.push_str("  (no failed resource reported a reason; see the stack's events)\n");
    } else {
        text.push_str(&format!(
            "root cause{}:\n",
            if causes.len() == 1 { "" } else { "s" }
        ));
        for c in causes {
            text.push_str(&format!("  {c}\n"));
        }
    }
    text
}

fn aborted(cause: &Error, restored: &[String], complete: &bool) -> String {
    let mut text = format!("{}\n", cause.to_string().trim_end());
    text.push_str(&format!(
        "destroy aborted; onboarding, stopped before the deletion, {}:\n",
        if *complete {
            "is restored"
        } else {
            "is NOT fully restored"
        }
    ));
    for line in restored {
        text.push_str(&format!("  {line}\n"));
    }
    text
}

fn ca_mode_change(c: &CaModeChange) -> String {
    format!(
        "{logical_id}: the stage keeps the same CA certificate (AWS IoT id {id}) but \
         changes ca.mode from {from} to {to}. AWS IoT cannot change a registered CA's \
         mode, and registering the same certificate again in this account fails \
         (ResourceAlreadyExists), so this deploy would fail; nothing was changed. To \
         change the mode, deregister the CA, then register it in the other mode:\n  \
         1. jitr-infra destroy --stage {stage}\n     \
         a CA kept by ca.retain_on_delete or ca.adopt stays registered; deregister it \
         with\n       \
         aws iot update-ca-certificate --certificate-id {id} --new-status INACTIVE\n       \
         aws iot delete-ca-certificate --certificate-id {id}\n  \
         2. jitr-infra deploy --stage {stage}   (registers the CA in {to} mode)\n\
         Devices signed by this CA cannot register between the two steps.",
        logical_id = c.logical_id,
        id = c.certificate_id,
        from = c.from,
        to = c.to,
        stage = c.stage,
    )
}

impl From<CaModeChange> for Error {
    fn from(c: CaModeChange) -> Self {
        Error::CaModeChange(c)
    }
}

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_mode_change_says_what_works() {
        let e = Error::from(CaModeChange {
            stage: "prod".into(),
            logical_id: "CaRegistration".into(),
            certificate_id: "ab12".into(),
            from: "SNI_ONLY".into(),
            to: "DEFAULT".into(),
        });
        assert_eq!(e.exit_code(), exit::ERROR);
        assert_eq!(
            e.to_string(),
            "CaRegistration: the stage keeps the same CA certificate (AWS IoT id ab12) but \
             changes ca.mode from SNI_ONLY to DEFAULT. AWS IoT cannot change a registered CA's \
             mode, and registering the same certificate again in this account fails \
             (ResourceAlreadyExists), so this deploy would fail; nothing was changed. To change \
             the mode, deregister the CA, then register it in the other mode:
  1. jitr-infra destroy --stage prod
     a CA kept by ca.retain_on_delete or ca.adopt stays registered; deregister it with
       aws iot update-ca-certificate --certificate-id ab12 --new-status INACTIVE
       aws iot delete-ca-certificate --certificate-id ab12
  2. jitr-infra deploy --stage prod   (registers the CA in DEFAULT mode)
Devices signed by this CA cannot register between the two steps."
        );
    }

    #[test]
    fn wrong_account_reads_as_one_sentence() {
        let e = Error::WrongAccount {
            stage_file: PathBuf::from("stacks/prod.yaml"),
            expected: "123456789012".into(),
            actual: "210987654321".into(),
            arn: "arn:aws:iam::210987654321:user/ci".into(),
        };
        assert_eq!(
            e.to_string(),
            "stacks/prod.yaml: account: the stage belongs to account 123456789012, but the \
             credentials are for account 210987654321 (arn:aws:iam::210987654321:user/ci); \
             refusing to deploy. Use the right profile (--profile or AWS_PROFILE)"
        );
    }
}
