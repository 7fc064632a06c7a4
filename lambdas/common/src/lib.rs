//! What both bundled Lambdas share: JSON logging, the AWS IoT client (built once per
//! container, with retries and timeouts that fit inside a Lambda invocation), and the few
//! X.509 facts they need from a PEM certificate.

pub mod pki;
pub mod signature;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use std::time::Duration;

/// Structured JSON logs on stdout, which Lambda ships to CloudWatch Logs.
///
/// The level comes from `AWS_LAMBDA_LOG_LEVEL` (Lambda's own log-level setting), INFO by
/// default. Never log certificates' private material: the Lambdas never see any, and log
/// only ids, names and outcomes.
///
/// Not `lambda_runtime`'s `init_default_subscriber`: it writes JSON only when the function's
/// `LoggingConfig` says so (`AWS_LAMBDA_LOG_FORMAT`), and plain text otherwise, which is what
/// the template leaves it at; its lines carry no timestamp but every span's fields; it panics
/// when called twice (the tests call this per test). Its `tracing` feature is therefore off,
/// which also keeps tracing-subscriber's env-filter (and a regex engine) out of the build.
pub fn init_logging() {
    let level = match std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .unwrap_or_default()
        .to_ascii_uppercase()
        .as_str()
    {
        "TRACE" => tracing::Level::TRACE,
        "DEBUG" => tracing::Level::DEBUG,
        "WARN" => tracing::Level::WARN,
        "ERROR" | "FATAL" => tracing::Level::ERROR,
        _ => tracing::Level::INFO,
    };
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

/// The shared AWS configuration: standard retries with jittered exponential backoff (which
/// cover throttling and transient errors), and timeouts short enough that a stuck call fails
/// inside the function's own timeout instead of consuming it.
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config_with(
        RetryConfig::standard()
            .with_max_attempts(6)
            .with_initial_backoff(Duration::from_millis(100))
            .with_max_backoff(Duration::from_secs(5)),
    )
    .await
}

/// The same timeouts with the SDK's retries off: for a caller that runs its own retry loop
/// (the activator's rate limiter sees, paces and counts every attempt).
pub async fn aws_config_without_retries() -> aws_config::SdkConfig {
    aws_config_with(RetryConfig::disabled()).await
}

async fn aws_config_with(retry: RetryConfig) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(8))
                .operation_timeout(Duration::from_secs(30))
                .build(),
        )
        .load()
        .await
}

/// An AWS IoT client from [`aws_config`].
pub async fn iot_client() -> aws_sdk_iot::Client {
    aws_sdk_iot::Client::new(&aws_config().await)
}

/// Renders an SDK error with its service error code and message, not just "service error".
pub fn describe_sdk_error<E, R>(err: &aws_sdk_iot::error::SdkError<E, R>) -> String
where
    E: aws_sdk_iot::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_iot::error::SdkError;
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            match (e.code(), e.message()) {
                (Some(code), Some(msg)) => format!("{code}: {msg}"),
                (Some(code), None) => code.to_string(),
                _ => e.to_string(),
            }
        }
        other => {
            // Walk the source chain: the top level alone says only "dispatch failure".
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                // Wrappers often repeat their cause's text; say each thing once.
                let s_text = s.to_string();
                if !text.contains(&s_text) {
                    text.push_str(": ");
                    text.push_str(&s_text);
                }
                source = s.source();
            }
            text
        }
    }
}
