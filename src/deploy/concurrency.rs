//! The activator's reserved concurrency, decided at deploy from the stage and the account.
//!
//! Lambda keeps 100 units of an account's concurrency unreserved (the whole limit, in an
//! account whose limit is lower: new accounts often have 10 or 50), and refuses a reservation
//! that would cut into them, which fails the stack. So deploy reads the account's limit
//! (`GetAccountSettings`) first:
//!
//! - a value the stage sets (`activator.reserved_concurrency`) is reserved when the account can
//!   give it, and refused before anything is created when it cannot;
//! - without one, what the stage's rates need is reserved (`Stage::default_reservation`: twice
//!   the activations in flight at the quota-bound rate, plus one for the sweep; 7 at AWS's
//!   default quotas) when the account can spare it, and none otherwise (said in the progress
//!   output; the activator's containers then share the rates undivided and back off when
//!   throttled).
//!
//! The decision reaches the template through its parameter (0 = no reservation), so synth
//! stays offline and the same template serves every account.

use super::Reporter;
use crate::aws::{self, Clients};
use crate::constructs::{Names, RESERVED_CONCURRENCY_PARAMETER};
use crate::error::Error;
use crate::stage::{self, Problem, Stage, StageError};
use aws_sdk_cloudformation::types::Parameter;
use std::path::Path;

/// The concurrency Lambda keeps unreserved in an account (or its whole limit, when lower).
pub const KEPT_UNRESERVED: u32 = 100;
/// Service Quotas' code for Lambda's "Concurrent executions" quota.
pub const QUOTA_CODE: &str = "L-B99A9384";

const FIELD: &str = "activator.reserved_concurrency";

/// An account's Lambda concurrency in one region, as far as the activator is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountConcurrency {
    /// `AccountLimit.ConcurrentExecutions`.
    pub limit: u32,
    /// `AccountLimit.UnreservedConcurrentExecutions`.
    pub unreserved: u32,
    /// What the activator reserves now (a redeploy gives it back before reserving anew).
    pub ours: u32,
}

impl AccountConcurrency {
    /// What Lambda keeps unreserved in this account.
    pub fn kept(&self) -> u32 {
        KEPT_UNRESERVED.min(self.limit)
    }

    /// The most the activator can reserve.
    pub fn available(&self) -> u32 {
        (self.unreserved + self.ours).saturating_sub(self.kept())
    }
}

/// What the activator gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// `n` units, as the stage asks.
    Requested(u32),
    /// The formula's units: the stage does not say, and the account can spare them.
    Default(u32),
    /// None: the stage does not say, and the account cannot spare the formula's units.
    None,
}

impl Reservation {
    /// The template parameter's value: the units reserved, 0 for none.
    pub fn units(self) -> u32 {
        match self {
            Reservation::Requested(n) => n,
            Reservation::Default(n) => n,
            Reservation::None => 0,
        }
    }

    pub fn parameter(self) -> Parameter {
        Parameter::builder()
            .parameter_key(RESERVED_CONCURRENCY_PARAMETER)
            .parameter_value(self.units().to_string())
            .build()
    }
}

/// The rule, with `default` the formula's reservation. `Err(available)` when the stage asks
/// for more than the account can give.
pub fn decide(
    requested: Option<u32>,
    default: u32,
    account: AccountConcurrency,
) -> Result<Reservation, u32> {
    let available = account.available();
    match requested {
        Some(n) if n <= available => Ok(Reservation::Requested(n)),
        Some(_) => Err(available),
        None if default <= available => Ok(Reservation::Default(default)),
        None => Ok(Reservation::None),
    }
}

/// Reads the account's concurrency, applies [`decide`] and says what it chose; refuses (as a
/// problem of the stage file's field, with the numbers and the ways out) what the account
/// cannot give. Changes nothing.
pub async fn reserve(
    clients: &Clients,
    root: &Path,
    stage: &Stage,
    account_id: &str,
    reporter: &dyn Reporter,
) -> Result<Reservation, Error> {
    let function = Names::new(&stage.stack_name).activator_function;
    let account = read(clients, &function).await?;
    let numbers = format!(
        "account {account_id} has a Lambda concurrency limit of {} in {} with {} unreserved{}, \
         and Lambda keeps {} unreserved",
        account.limit,
        clients.region,
        account.unreserved,
        if account.ours > 0 {
            format!(" (plus {} the activator reserves now)", account.ours)
        } else {
            String::new()
        },
        account.kept()
    );
    let requested = stage.activator.reserved_concurrency;
    let default = stage.default_reservation();
    let reservation = match decide(requested, default, account) {
        Ok(r) => r,
        Err(available) => {
            let n = requested.unwrap_or_default();
            return Err(refusal(
                root,
                stage,
                n,
                available,
                &numbers,
                &clients.region,
            ));
        }
    };
    reporter.progress(&match reservation {
        Reservation::Requested(n) => {
            format!("activator: reserving {n} concurrent executions ({FIELD})")
        }
        Reservation::Default(n) => format!(
            "activator: reserving {n} concurrent executions (what the stage's API rates need; \
             set {FIELD} to change it)"
        ),
        Reservation::None => format!(
            "activator: deploying without reserved concurrency: {numbers}, so at most {} could \
             be reserved (the stage's API rates need {default}). The activator shares the \
             account's unreserved concurrency; after a quota increase, set {FIELD} to cap it",
            account.available()
        ),
    });
    Ok(reservation)
}

async fn read(clients: &Clients, function: &str) -> Result<AccountConcurrency, Error> {
    let settings = clients
        .lambda
        .get_account_settings()
        .send()
        .await
        .map_err(|e| Error::Aws(aws::error("lambda:GetAccountSettings", &e)))?;
    let limit = settings
        .account_limit()
        .map(|l| l.concurrent_executions())
        .unwrap_or(0);
    let unreserved = settings
        .account_limit()
        .and_then(|l| l.unreserved_concurrent_executions())
        .unwrap_or(limit);
    let ours = match clients
        .lambda
        .get_function_concurrency()
        .function_name(function)
        .send()
        .await
    {
        Ok(out) => out.reserved_concurrent_executions().unwrap_or(0),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            0
        }
        Err(e) => {
            return Err(Error::Aws(aws::error(
                &format!("lambda:GetFunctionConcurrency {function}"),
                &e,
            )))
        }
    };
    let units = |n: i32| u32::try_from(n).unwrap_or(0);
    Ok(AccountConcurrency {
        limit: units(limit),
        unreserved: units(unreserved),
        ours: units(ours),
    })
}

fn refusal(
    root: &Path,
    stage: &Stage,
    requested: u32,
    available: u32,
    numbers: &str,
    region: &str,
) -> Error {
    let lower = if available == 0 {
        format!("remove {FIELD} (the activator then runs without a reservation)")
    } else {
        format!("lower {FIELD} to {available} or less")
    };
    let message = format!(
        "{requested} cannot be reserved: {numbers}, so at most {available} can be reserved for \
         the activator. Either {lower}, or ask for a higher Lambda \"Concurrent executions\" \
         quota in {region} (Service Quotas, quota code {QUOTA_CODE})"
    );
    let text = std::fs::read_to_string(root.join(&stage.file)).unwrap_or_default();
    Error::Stage(StageError {
        file: stage.file.clone(),
        problems: vec![Problem {
            field: FIELD.to_string(),
            line: stage::locate(&text, FIELD),
            message,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`decide`] with the default stage's formula reservation (7).
    fn decide7(requested: Option<u32>, account: AccountConcurrency) -> Result<Reservation, u32> {
        decide(requested, 7, account)
    }

    fn account(limit: u32, unreserved: u32, ours: u32) -> AccountConcurrency {
        AccountConcurrency {
            limit,
            unreserved,
            ours,
        }
    }

    #[test]
    fn a_big_account_gives_what_is_asked_and_the_default() {
        let big = account(1000, 1000, 0);
        assert_eq!(big.available(), 900);
        assert_eq!(decide7(Some(50), big), Ok(Reservation::Requested(50)));
        assert_eq!(decide7(Some(900), big), Ok(Reservation::Requested(900)));
        assert_eq!(decide7(Some(901), big), Err(900));
        assert_eq!(decide7(None, big), Ok(Reservation::Default(7)));
        assert_eq!(Reservation::Default(7).units(), 7);
    }

    #[test]
    fn a_new_account_keeps_its_whole_limit_unreserved() {
        for limit in [10, 50, 100] {
            let new = account(limit, limit, 0);
            assert_eq!(new.available(), 0, "limit {limit}");
            assert_eq!(decide7(Some(1), new), Err(0));
            assert_eq!(decide7(None, new), Ok(Reservation::None));
            assert_eq!(Reservation::None.units(), 0);
        }
    }

    #[test]
    fn our_own_reservation_counts_as_available_on_a_redeploy() {
        // Limit 110: the activator holds 10, leaving 100 unreserved (all kept).
        let redeploy = account(110, 100, 10);
        assert_eq!(decide7(Some(10), redeploy), Ok(Reservation::Requested(10)));
        assert_eq!(decide7(None, redeploy), Ok(Reservation::Default(7)));
        assert_eq!(decide7(Some(11), redeploy), Err(10));
    }

    #[test]
    fn other_reservations_are_not_ours_to_take() {
        let busy = account(1000, 105, 0);
        assert_eq!(decide7(None, busy), Ok(Reservation::None));
        assert_eq!(decide7(Some(5), busy), Ok(Reservation::Requested(5)));
        assert_eq!(decide7(Some(6), busy), Err(5));
    }
}
