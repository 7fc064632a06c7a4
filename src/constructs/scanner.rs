//! Why checkov's checks that do not apply to this stack do not, written into the flagged
//! resources' `Metadata.checkov.skip`. Each applies only where the stage leaves the choice open
//! (a customer-managed key replaces the first three), so nothing is skipped that the stage fixed.

pub const AWS_MANAGED_LOGS: &str = "Encrypted at rest by CloudWatch Logs with AWS-managed \
    keys; set encryption.kms_key_arn in the stage file for a customer-managed key";
pub const SSE_SQS: &str = "Encrypted at rest with SSE-SQS (SqsManagedSseEnabled), which this \
    check does not recognise; set encryption.kms_key_arn for a customer-managed key";
pub const AWS_MANAGED_ENVIRONMENT: &str = "The environment holds ids and names, no secrets; \
    Lambda encrypts it at rest with an AWS-managed key; set encryption.kms_key_arn for a \
    customer-managed key";
pub const NO_VPC: &str = "Calls only the public AWS IoT and CloudWatch APIs and reaches no \
    VPC resource; a VPC would add NAT or interface endpoints and nothing to protect";
pub const PROVIDER_NO_DLQ: &str = "CloudFormation invokes it once per resource operation and \
    reports a provider that never answers after ServiceTimeout; a queued request would have \
    no consumer";
pub const PROVIDER_NO_RESERVATION: &str = "Runs once per CA registration change; a reservation \
    would take from the account's unreserved concurrency (100 must stay unreserved), which \
    fails deploys in new accounts";
pub const ACTIVATOR_DESTINATION: &str = "Failed events go to the on-failure destination \
    (ActivatorInvokeConfig -> ActivatorFailureQueue), which supersedes a dead-letter queue \
    and keeps the request and the error";
pub const ALARM_TOPIC_UNENCRYPTED: &str = "Carries only alarm state changes (names, \
    thresholds, no device data); CloudWatch cannot publish to a topic under the AWS-managed \
    alias/aws/sns key, whose policy cannot grant it; set encryption.kms_key_arn to encrypt the \
    topic with a customer-managed key";
