//! Lambda entry point: logging, the IoT client and the HTTP client for answers are built
//! once per container.

use jitr_ca_provider::{answer, Provider, ResponseSender};
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    jitr_lambda_common::init_logging();
    let provider = Provider::new(jitr_lambda_common::iot_client().await);
    let sender = ResponseSender::new()?;
    // Every invocation borrows them: they live as long as `run`, which is the container's life.
    let (provider, sender) = (&provider, &sender);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let deadline = jitr_ca_provider::respond::deadline_instant(event.context.deadline);
            let log_stream = event.context.env_config.log_stream.clone();
            answer(provider, event.payload, deadline, sender, &log_stream)
                .await
                .map(|response| serde_json::json!({ "Status": response.status }))
        },
    ))
    .await
}
