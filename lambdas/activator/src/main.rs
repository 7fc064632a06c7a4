//! Lambda entry point: wires logging, configuration and the IoT client (once per container),
//! then serves invocations.

use jitr_activator::{Activator, ActivatorError};
use jitr_contract::activator::{ActivationReport, ActivatorConfig};
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    jitr_lambda_common::init_logging();
    // A bad configuration does not crash the container: every invocation fails with the
    // message, which then shows in the logs and in the on-failure destination.
    let activator: Result<Activator, ActivatorError> = match ActivatorConfig::from_env() {
        Ok(config) => Activator::new(jitr_lambda_common::iot_client().await, config),
        Err(e) => Err(ActivatorError::Config(e.to_string())),
    };
    if let Err(e) = &activator {
        tracing::error!(error = %e, "activator cannot start");
    }
    // Every invocation borrows it: it lives as long as `run`, which is the container's life.
    let activator = &activator;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        match activator {
            Ok(a) => a.handle(event.payload).await.map_err(|e| {
                tracing::error!(request_id = %event.context.request_id, error = %e, "activation failed");
                e
            }),
            Err(e) => Err::<ActivationReport, _>(e.clone()),
        }
    }))
    .await
}
