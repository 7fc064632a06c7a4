//! AWS clients for deploy, diff, destroy, status and redrive, built once from the standard AWS configuration
//! chain (environment, `AWS_PROFILE` or `--profile`, SSO and role profiles, `AWS_ENDPOINT_URL`),
//! with retries and timeouts so no call can hang a CI job.

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use std::time::Duration;

/// Where and as whom to talk to AWS.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// A named profile (`--profile`); otherwise the standard chain decides.
    pub profile: Option<String>,
    /// The region: `--region`, else the stage's region.
    pub region: String,
    /// A role to assume from the credentials the profile or the chain give (a stage
    /// target's `role_arn`), with this session name (CloudTrail shows it).
    pub assume: Option<AssumeRole>,
}

/// A role every call is made as.
#[derive(Debug, Clone)]
pub struct AssumeRole {
    pub role_arn: String,
    pub session_name: String,
}

/// The clients one command needs, sharing one configuration.
#[derive(Clone)]
pub struct Clients {
    pub cfn: aws_sdk_cloudformation::Client,
    pub s3: aws_sdk_s3::Client,
    pub sts: aws_sdk_sts::Client,
    pub iot: aws_sdk_iot::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub region: String,
}

impl Clients {
    /// Clients for `target`; with a role to assume, the role is assumed once here (through
    /// aws-config's `AssumeRoleProvider`, from the profile's or the chain's credentials, with
    /// STS in the target's region), so a role that cannot be assumed is an error naming it
    /// before any other call. The SDK renews the credentials as they expire.
    pub async fn for_target(target: &Target) -> Result<Clients, crate::error::Error> {
        let base = Self::base_config(target).await;
        let Some(assume) = &target.assume else {
            return Ok(Self::from_conf(&base));
        };
        use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
        let provider = aws_config::sts::AssumeRoleProvider::builder(&assume.role_arn)
            .session_name(&assume.session_name)
            .region(Region::new(target.region.clone()))
            .configure(&base)
            .build()
            .await;
        if let Err(e) = provider.provide_credentials().await {
            return Err(crate::error::Error::Aws(crate::error::AwsError {
                operation: format!("AssumeRole {}", assume.role_arn),
                detail: assume_role_detail(&e),
            }));
        }
        let conf = base
            .into_builder()
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .build();
        Ok(Self::from_conf(&conf))
    }

    async fn base_config(target: &Target) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(target.region.clone()))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(5)
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(10)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(30))
                    .operation_timeout(Duration::from_secs(90))
                    .build(),
            );
        if let Some(p) = &target.profile {
            loader = loader.profile_name(p);
        }
        loader.load().await
    }

    /// Clients from an existing configuration (tests pass one with a replay HTTP client).
    pub fn from_conf(conf: &aws_config::SdkConfig) -> Clients {
        let s3 = aws_sdk_s3::config::Builder::from(conf)
            // Path-style works everywhere (including endpoints without wildcard DNS).
            .force_path_style(true)
            .build();
        Clients {
            cfn: aws_sdk_cloudformation::Client::new(conf),
            s3: aws_sdk_s3::Client::from_conf(s3),
            sts: aws_sdk_sts::Client::new(conf),
            iot: aws_sdk_iot::Client::new(conf),
            lambda: aws_sdk_lambda::Client::new(conf),
            sqs: aws_sdk_sqs::Client::new(conf),
            cloudwatch: aws_sdk_cloudwatch::Client::new(conf),
            region: conf.region().map(|r| r.to_string()).unwrap_or_default(),
        }
    }
}

/// Why a role could not be assumed: STS's own code and message when it answered (found in
/// the credential error's source chain), else the chain in words; with what the role needs.
fn assume_role_detail(e: &aws_credential_types::provider::error::CredentialsError) -> String {
    type StsError = aws_sdk_sts::error::SdkError<
        aws_sdk_sts::operation::assume_role::AssumeRoleError,
        aws_sdk_sts::config::http::HttpResponse,
    >;
    let mut said = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(sts) = err.downcast_ref::<StsError>() {
            said = vec![jitr_lambda_common::describe_sdk_error(sts)];
            break;
        }
        said.push(err.to_string());
        source = err.source();
    }
    format!(
        "{} (the role must exist in the target's account and its trust policy must allow \
         sts:AssumeRole for the caller's account or ARN)",
        said.join(": ")
    )
}

/// A failed AWS call, in words (`describe_sdk_error`: the service's code and message, or the
/// cause chain of a call that got no answer), with a hint for the usual suspects
/// (credentials, endpoint, expiry).
pub fn explain<E, R>(operation: &str, err: &aws_sdk_cloudformation::error::SdkError<E, R>) -> String
where
    E: aws_sdk_cloudformation::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    error(operation, err).to_string()
}

/// A failed AWS call as a typed error (see [`explain`]).
pub fn error<E, R>(
    operation: &str,
    err: &aws_sdk_cloudformation::error::SdkError<E, R>,
) -> crate::error::AwsError
where
    E: aws_sdk_cloudformation::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    crate::error::AwsError {
        operation: operation.to_string(),
        detail: detail(err),
    }
}

fn detail<E, R>(err: &aws_sdk_cloudformation::error::SdkError<E, R>) -> String
where
    E: aws_sdk_cloudformation::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let mut text = jitr_lambda_common::describe_sdk_error(err);
    if code(err).is_none() {
        // An answer without an error code ("unhandled error"): its HTTP status at least says
        // whether the endpoint refused (403), lacks the operation (404) or failed (5xx).
        if let Some(status) = http_status(err) {
            text.push_str(&format!(" (HTTP {status})"));
        }
    }
    let lower = text.to_ascii_lowercase();
    let hint = if lower.contains("no credentials")
        || lower.contains("credentials provider")
        || lower.contains("credentialsnotloaded")
    {
        " (no AWS credentials found: set AWS_PROFILE or --profile, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run `aws sso login`)"
    } else if lower.contains("connection refused")
        || lower.contains("dns error")
        || lower.contains("timed out")
        || lower.contains("timeout")
    {
        " (cannot reach the AWS endpoint: check the network, AWS_ENDPOINT_URL and the region)"
    } else if lower.contains("expiredtoken") || lower.contains("expired") {
        " (the credentials have expired: refresh them, e.g. `aws sso login`)"
    } else {
        ""
    };
    format!("{text}{hint}")
}

/// The error code of a service error, if it is one.
pub fn code<E, R>(err: &aws_sdk_cloudformation::error::SdkError<E, R>) -> Option<String>
where
    E: aws_sdk_cloudformation::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.code().map(str::to_string))
}

/// The message of a service error, if it is one.
pub fn message<E, R>(err: &aws_sdk_cloudformation::error::SdkError<E, R>) -> String
where
    E: aws_sdk_cloudformation::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.message().map(str::to_string))
        .unwrap_or_default()
}

/// The HTTP status of the answer a failed call got, if it got one.
pub fn http_status<E, R: 'static>(
    err: &aws_sdk_cloudformation::error::SdkError<E, R>,
) -> Option<u16> {
    let raw: &dyn std::any::Any = err.raw_response()?;
    raw.downcast_ref::<aws_sdk_cloudformation::config::http::HttpResponse>()
        .map(|r| r.status().as_u16())
}
