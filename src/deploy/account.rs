//! Whose credentials these are: a stage pinned to an account refuses any other.

use super::aws_error;
use crate::aws::Clients;
use crate::error::Error;
use crate::stage::Stage;

/// The caller's account; refuses a stage pinned to another account.
pub async fn check(clients: &Clients, stage: &Stage) -> Result<String, Error> {
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
