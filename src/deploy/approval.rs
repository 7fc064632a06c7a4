//! When a deploy needs a human's yes, and asking for it (never without a terminal).

use super::{Options, Reporter};
use crate::diff::StackDiff;
use crate::error::Error;

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

/// Asks when the diff needs approval; the refusal when it is not given.
pub fn obtain(
    opts: &Options,
    d: &StackDiff,
    stack: &str,
    reporter: &dyn Reporter,
) -> Result<(), Error> {
    let Some(reason) = approval_needed(opts.require_approval, d) else {
        return Ok(());
    };
    let approved = opts.interactive
        && reporter.confirm(&format!("{reason}. Deploy these changes to {stack}?"));
    if approved {
        return Ok(());
    }
    Err(Error::ApprovalRequired(format!(
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
    )))
}
