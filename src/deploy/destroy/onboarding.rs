//! Onboarding (the registration topic rule and the activator) stopped for a destroy, and put
//! back exactly as it was when the destroy is aborted.

use crate::aws::{self, Clients};
use crate::deploy::{aws_error, Reporter};
use crate::error::Error;
use std::time::Duration;

const NOT_FOUND: &str = "ResourceNotFoundException";

/// Lambda's default function timeout, for a configuration that does not say.
const DEFAULT_TIMEOUT_SECONDS: i32 = 3;

/// What [`Onboarding::stop`] changed, so that [`Onboarding::restore`] undoes exactly that.
#[derive(Debug, Default)]
pub(super) struct Onboarding {
    /// The topic rules disabled here (they were enabled).
    disabled_rules: Vec<String>,
    throttled: Option<Throttled>,
}

/// The activator, throttled here.
#[derive(Debug)]
struct Throttled {
    function: String,
    /// Its reserved concurrency before (`None`: it used the account's unreserved pool).
    previous: Option<i32>,
    /// Its timeout: how long an invocation that started before the throttle may still run.
    timeout: Duration,
}

/// One line of what restoring did; `ok` is false when something is left stopped.
pub(super) struct Restored {
    pub ok: bool,
    pub text: String,
}

fn is_not_found<E, R>(e: &aws_sdk_cloudformation::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_cloudformation::error::ProvideErrorMetadata,
{
    aws::code(e).as_deref() == Some(NOT_FOUND)
}

fn reservation(r: Option<i32>) -> String {
    match r {
        Some(n) => n.to_string(),
        None => "unreserved".into(),
    }
}

impl Onboarding {
    /// Disables the rules (one per CA), then throttles the activator. Any may be missing
    /// already (a stack whose deletion failed earlier): nothing to stop then.
    pub(super) async fn stop(
        &mut self,
        clients: &Clients,
        rules: &[String],
        function: Option<&str>,
        reporter: &dyn Reporter,
    ) -> Result<(), Error> {
        for rule in rules {
            self.disable_rule(clients, rule, reporter).await?;
        }
        if let Some(function) = function {
            self.throttle(clients, function, reporter).await?;
        }
        Ok(())
    }

    async fn disable_rule(
        &mut self,
        clients: &Clients,
        rule: &str,
        reporter: &dyn Reporter,
    ) -> Result<(), Error> {
        let enabled = match clients.iot.get_topic_rule().rule_name(rule).send().await {
            Ok(out) => !out.rule().and_then(|r| r.rule_disabled()).unwrap_or(false),
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(aws_error("iot:GetTopicRule", &e)),
        };
        if !enabled {
            reporter.progress(&format!("topic rule {rule} is already disabled"));
            return Ok(());
        }
        clients
            .iot
            .disable_topic_rule()
            .rule_name(rule)
            .send()
            .await
            .map_err(|e| aws_error("iot:DisableTopicRule", &e))?;
        self.disabled_rules.push(rule.to_string());
        reporter.progress(&format!(
            "disabled topic rule {rule}: new registrations no longer reach the activator"
        ));
        Ok(())
    }

    async fn throttle(
        &mut self,
        clients: &Clients,
        function: &str,
        reporter: &dyn Reporter,
    ) -> Result<(), Error> {
        let previous = match clients
            .lambda
            .get_function_concurrency()
            .function_name(function)
            .send()
            .await
        {
            Ok(out) => out.reserved_concurrent_executions(),
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(aws_error("lambda:GetFunctionConcurrency", &e)),
        };
        let timeout = clients
            .lambda
            .get_function_configuration()
            .function_name(function)
            .send()
            .await
            .map_err(|e| aws_error("lambda:GetFunctionConfiguration", &e))?
            .timeout()
            .unwrap_or(DEFAULT_TIMEOUT_SECONDS);
        clients
            .lambda
            .put_function_concurrency()
            .function_name(function)
            .reserved_concurrent_executions(0)
            .send()
            .await
            .map_err(|e| aws_error("lambda:PutFunctionConcurrency", &e))?;
        self.throttled = Some(Throttled {
            function: function.to_string(),
            previous,
            timeout: Duration::from_secs(u64::try_from(timeout).unwrap_or(0)),
        });
        reporter.progress(&format!(
            "throttled activator {function} (reserved concurrency 0, was {}): events Lambda \
             still holds are kept waiting instead of activating devices",
            reservation(previous)
        ));
        Ok(())
    }

    /// Waits out the activations that started before the throttle (at most the function's
    /// timeout): one of them could otherwise attach the device policy after the detach.
    pub(super) async fn drain(&self, reporter: &dyn Reporter) {
        let Some(t) = &self.throttled else {
            return;
        };
        if t.previous == Some(0) || t.timeout.is_zero() {
            return; // it could not run before either
        }
        reporter.progress(&format!(
            "waiting {} s (the activator's timeout) for activations already running to finish",
            t.timeout.as_secs()
        ));
        tokio::time::sleep(t.timeout).await;
    }

    /// Puts back what [`Onboarding::stop`] changed; never fails, reports each item instead
    /// (with the command to finish by hand what could not be restored).
    pub(super) async fn restore(&self, clients: &Clients) -> Vec<Restored> {
        let mut done = Vec::new();
        for rule in &self.disabled_rules {
            let result = clients.iot.enable_topic_rule().rule_name(rule).send().await;
            done.push(match result {
                Ok(_) => Restored {
                    ok: true,
                    text: format!("topic rule {rule}: enabled again"),
                },
                Err(e) if is_not_found(&e) => Restored {
                    ok: true,
                    text: format!("topic rule {rule}: already deleted with the stack"),
                },
                Err(e) => Restored {
                    ok: false,
                    text: format!(
                        "topic rule {rule}: NOT enabled again ({}); enable it with \
                         `aws iot enable-topic-rule --rule-name {rule}`",
                        aws::explain("iot:EnableTopicRule", &e)
                    ),
                },
            });
        }
        if let Some(t) = &self.throttled {
            done.push(t.restore(clients).await);
        }
        done
    }
}

impl Throttled {
    async fn restore(&self, clients: &Clients) -> Restored {
        let f = &self.function;
        let (result, by_hand) = match self.previous {
            Some(n) => (
                clients
                    .lambda
                    .put_function_concurrency()
                    .function_name(f)
                    .reserved_concurrent_executions(n)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        (
                            is_not_found(&e),
                            aws::explain("lambda:PutFunctionConcurrency", &e),
                        )
                    }),
                format!(
                    "aws lambda put-function-concurrency --function-name {f} \
                     --reserved-concurrent-executions {n}"
                ),
            ),
            None => (
                clients
                    .lambda
                    .delete_function_concurrency()
                    .function_name(f)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        (
                            is_not_found(&e),
                            aws::explain("lambda:DeleteFunctionConcurrency", &e),
                        )
                    }),
                format!("aws lambda delete-function-concurrency --function-name {f}"),
            ),
        };
        match result {
            Ok(()) => Restored {
                ok: true,
                text: format!(
                    "activator {f}: reserved concurrency {} again",
                    reservation(self.previous)
                ),
            },
            Err((true, _)) => Restored {
                ok: true,
                text: format!("activator {f}: already deleted with the stack"),
            },
            Err((false, why)) => Restored {
                ok: false,
                text: format!(
                    "activator {f}: still throttled ({why}); restore it with `{by_hand}`"
                ),
            },
        }
    }
}
