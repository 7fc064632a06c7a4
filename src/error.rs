//! The library's error type and the CLI's exit codes.

use crate::assets::AssetError;
use crate::diff::CaModeChange;
use crate::stage::StageError;
use std::fmt;
use std::path::PathBuf;

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
}

#[derive(Debug)]
pub enum Error {
    /// The stage file is missing or invalid (every problem listed).
    Stage(StageError),
    /// Building or bundling a Lambda failed.
    Asset(AssetError),
    /// The stack could not be composed (e.g. the device policy template).
    Template {
        stage_file: PathBuf,
        problems: Vec<String>,
    },
    /// Reading or writing a file.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The project directory is not a jitr-infra project.
    Project(String),
    /// An AWS call failed (the message names the operation and the cause).
    Aws(String),
    /// The caller's credentials belong to another account than the stage's.
    WrongAccount {
        stage_file: PathBuf,
        expected: String,
        actual: String,
        arn: String,
    },
    /// The stack is in a state a deploy cannot proceed from.
    StackState {
        stack: String,
        status: String,
        advice: String,
    },
    /// The change set or deletion ran and the stack ended in a failed state.
    DeployFailed {
        stack: String,
        status: String,
        causes: Vec<String>,
    },
    /// Approval was required and not given.
    ApprovalRequired(String),
    /// The stage's `protection` refuses the operation (the message says how to lift it).
    Protected(String),
    /// A destroy failed after it had stopped onboarding; what it put back, line by line.
    DestroyAborted {
        cause: Box<Error>,
        restored: Vec<String>,
        /// Everything was put back (else a line says what to do by hand).
        complete: bool,
    },
    /// The DEFAULT-mode verification certificate could not be made.
    Verification(String),
    /// The deploy would change the mode of the registered CA, which can never succeed.
    CaModeChange(CaModeChange),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::ApprovalRequired(_) => exit::NOT_APPROVED,
            Error::DestroyAborted { cause, .. } => cause.exit_code(),
            _ => exit::ERROR,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Stage(e) => write!(f, "{e}"),
            Error::Asset(e) => write!(f, "{e}"),
            Error::Template {
                stage_file,
                problems,
            } => {
                writeln!(f, "{}: the stack cannot be composed:", stage_file.display())?;
                for p in problems {
                    writeln!(f, "  {p}")?;
                }
                Ok(())
            }
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Project(m) => f.write_str(m),
            Error::Aws(m) => f.write_str(m),
            Error::WrongAccount {
                stage_file,
                expected,
                actual,
                arn,
            } => write!(
                f,
                "{}: account: the stage belongs to account {expected}, but the credentials are \
                 for account {actual} ({arn}); refusing to deploy. Use the right profile \
                 (--profile or AWS_PROFILE)",
                stage_file.display()
            ),
            Error::StackState {
                stack,
                status,
                advice,
            } => write!(f, "stack {stack} is {status}: {advice}"),
            Error::DeployFailed {
                stack,
                status,
                causes,
            } => {
                writeln!(f, "stack {stack} ended in {status}")?;
                if causes.is_empty() {
                    writeln!(
                        f,
                        "  (no failed resource reported a reason; see the stack's events)"
                    )?;
                } else {
                    writeln!(f, "root cause{}:", if causes.len() == 1 { "" } else { "s" })?;
                    for c in causes {
                        writeln!(f, "  {c}")?;
                    }
                }
                Ok(())
            }
            Error::ApprovalRequired(m) => write!(f, "approval required: {m}"),
            Error::Protected(m) => f.write_str(m),
            Error::DestroyAborted {
                cause,
                restored,
                complete,
            } => {
                let cause = cause.to_string();
                writeln!(f, "{}", cause.trim_end())?;
                writeln!(
                    f,
                    "destroy aborted; onboarding, stopped before the deletion, {}:",
                    if *complete {
                        "is restored"
                    } else {
                        "is NOT fully restored"
                    }
                )?;
                for line in restored {
                    writeln!(f, "  {line}")?;
                }
                Ok(())
            }
            Error::Verification(m) => write!(f, "verification certificate: {m}"),
            Error::CaModeChange(c) => write!(
                f,
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
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Asset(e) => Some(e),
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<StageError> for Error {
    fn from(e: StageError) -> Self {
        Error::Stage(e)
    }
}

impl From<CaModeChange> for Error {
    fn from(c: CaModeChange) -> Self {
        Error::CaModeChange(c)
    }
}

impl From<AssetError> for Error {
    fn from(e: AssetError) -> Self {
        Error::Asset(e)
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
