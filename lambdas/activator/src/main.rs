//! Lambda entry point: wires logging, configuration and the AWS clients (once per
//! container), then serves invocations: registered events and sweep requests alike.

use jitr_activator::{Activator, ActivatorError};
use jitr_contract::activator::ActivatorConfig;
use jitr_contract::rates::RateConfig;
use jitr_contract::sweep::SweepConfig;
use lambda_runtime::{service_fn, LambdaEvent};

/// The activator from the function's environment: the IoT client without the SDK's retries
/// (the activator paces and retries every call itself), the SSM client (the sweep's marker)
/// with them.
async fn build() -> Result<Activator, ActivatorError> {
    let lookup = |name: &str| std::env::var(name).ok();
    let config = ActivatorConfig::from_env().map_err(|e| ActivatorError::Config(e.to_string()))?;
    let rates =
        RateConfig::from_lookup(lookup).map_err(|e| ActivatorError::Config(e.to_string()))?;
    let sweep =
        SweepConfig::from_lookup(lookup).map_err(|e| ActivatorError::Config(e.to_string()))?;
    let revocation = jitr_activator::revocation_from_env(lookup)?;
    let unretried = jitr_lambda_common::aws_config_without_retries().await;
    let iot = aws_sdk_iot::Client::new(&unretried);
    let ssm = aws_sdk_ssm::Client::new(&jitr_lambda_common::aws_config().await);
    Ok(Activator::new(iot, config)?
        .with_rates(&rates)
        .with_sweep(ssm, sweep)
        .with_revocation(revocation))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    jitr_lambda_common::init_logging();
    // A bad configuration does not crash the container: every invocation fails with the
    // message, which then shows in the logs and in the on-failure destination.
    let activator = build().await;
    if let Err(e) = &activator {
        tracing::error!(error = %e, "activator cannot start");
    }
    // Every invocation borrows it: it lives as long as `run`, which is the container's life.
    let activator = &activator;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        match activator {
            Ok(a) => a
                .invoke(event.payload, event.context.deadline)
                .await
                .map_err(|e| {
                    tracing::error!(request_id = %event.context.request_id, error = %e, "invocation failed");
                    e
                }),
            Err(e) => Err::<serde_json::Value, _>(e.clone()),
        }
    }))
    .await
}
