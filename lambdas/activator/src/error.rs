//! How an invocation fails: the error Lambda records (`errorType`, `errorMessage`), retries,
//! and finally sends to the on-failure destination.

use crate::limiter::CallError;
use jitr_lambda_common::describe_sdk_error;
use std::fmt;

/// An invocation that failed and should be retried or land in the on-failure destination.
#[derive(Debug, Clone)]
pub enum ActivatorError {
    /// The function's environment is wrong; every invocation fails until it is fixed.
    Config(String),
    /// An AWS call failed for good, or kept failing for transient reasons until the
    /// invocation's time ran out.
    Aws { step: &'static str, message: String },
    /// AWS IoT kept throttling a call until the invocation's time ran out.
    IotThrottled { step: &'static str, message: String },
    /// Our own CA could not be read back from AWS IoT.
    CaCertificate(String),
    /// The sweep's marker parameter could not be read.
    Marker(String),
    /// The certificate's signature cannot be checked here (an algorithm or key this
    /// activator does not support): whether it is ours is unknown, so it is neither
    /// activated nor ignored but failed, for Lambda's retries and then the failure queue.
    UnsupportedSignature(String),
}

impl fmt::Display for ActivatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivatorError::Config(m) => write!(f, "activator misconfigured: {m}"),
            ActivatorError::Aws { step, message } => write!(f, "{step} failed: {message}"),
            ActivatorError::IotThrottled { step, message } => write!(
                f,
                "{step} throttled until the invocation's time ran out: {message}"
            ),
            ActivatorError::CaCertificate(m) => write!(f, "cannot read our CA certificate: {m}"),
            ActivatorError::Marker(m) => write!(f, "cannot read the sweep's marker: {m}"),
            ActivatorError::UnsupportedSignature(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ActivatorError {}

impl ActivatorError {
    /// A short, stable error type for Lambda's `errorType` and for alarms.
    pub fn kind(&self) -> &'static str {
        match self {
            ActivatorError::Config(_) => "ActivatorConfigError",
            ActivatorError::Aws { .. } => "AwsIotError",
            ActivatorError::IotThrottled { .. } => "IotThrottled",
            ActivatorError::CaCertificate(_) => "CaCertificateError",
            ActivatorError::Marker(_) => "SweepMarkerError",
            ActivatorError::UnsupportedSignature(_) => "UnsupportedSignatureAlgorithm",
        }
    }
}

impl From<ActivatorError> for lambda_runtime::Diagnostic {
    fn from(e: ActivatorError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.kind().to_string(),
            error_message: e.to_string(),
        }
    }
}

pub(crate) type SdkError<E> =
    aws_sdk_iot::error::SdkError<E, aws_sdk_iot::config::http::HttpResponse>;

/// The invocation's error for a call that did not succeed: [`ActivatorError::IotThrottled`]
/// when it was still throttled when time ran out, else the AWS error.
pub fn aws<E>(step: &'static str, err: CallError<SdkError<E>>) -> ActivatorError
where
    E: aws_sdk_iot::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let out_of_time = "no time left in the invocation for another attempt";
    match err {
        CallError::Final(e) => ActivatorError::Aws {
            step,
            message: describe_sdk_error(&e),
        },
        CallError::OutOfTime { last, throttled } => {
            let message = last.map_or(out_of_time.into(), |e| describe_sdk_error(&e));
            if throttled {
                ActivatorError::IotThrottled { step, message }
            } else {
                ActivatorError::Aws { step, message }
            }
        }
    }
}
