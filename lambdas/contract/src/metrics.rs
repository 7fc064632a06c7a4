//! The activator's CloudWatch metrics: written by the activator as embedded-metric-format log
//! lines, alarmed on by the stack, and read back by `jitr-infra status`. One spelling here.

/// The namespace of every activator metric.
pub const NAMESPACE: &str = "JITR/Activator";
/// The dimension every metric carries: the function's name, so each stage has its own.
pub const DIMENSION_FUNCTION: &str = "FunctionName";
/// A second dimension of [`IOT_CALLS`] and [`IOT_THROTTLED`]: the AWS IoT operation.
pub const DIMENSION_OPERATION: &str = "Operation";

// Outcomes of handled events, one count each.
pub const ACTIVATED: &str = "Activated";
pub const ALREADY_ACTIVE: &str = "AlreadyActive";
/// A duplicate event answered from the container's memory, without any AWS call.
pub const DUPLICATE_SKIPPED: &str = "DuplicateSkipped";
pub const REJECTED: &str = "Rejected";
pub const REVOKED: &str = "Revoked";
pub const IGNORED: &str = "Ignored";
/// Certificates set REVOKED because the stage's revocation list names their serial (also
/// counted in [`REVOKED`]).
pub const REVOKED_BY_LIST: &str = "RevokedByList";
/// Payloads that were not registered-certificate events (handled, not retried).
pub const MALFORMED_EVENTS: &str = "MalformedEvents";
/// Invocations that failed (Lambda retries them, then the failure queue holds them).
pub const FAILED: &str = "Failed";

// AWS IoT calls.
/// Calls sent (every attempt).
pub const IOT_CALLS: &str = "IotCalls";
/// Calls AWS IoT answered with `ThrottlingException`.
pub const IOT_THROTTLED: &str = "IotThrottled";
/// Milliseconds an invocation waited for its rate limiter.
pub const TOKEN_WAIT: &str = "TokenWaitMs";
/// Milliseconds from the start of handling to the certificate's activation.
pub const ACTIVATION_LATENCY: &str = "ActivationLatency";

// The sweep.
pub const SWEEP_LISTED: &str = "SweepListed";
pub const SWEEP_ACTIVATED: &str = "SweepActivated";
pub const SWEEP_FAILED: &str = "SweepFailed";
/// Pending certificates older than the grace period that one run listed but could not settle
/// (an error, or not reached before its time ran out): [`crate::sweep::SweepReport::unsettled`].
/// Certificates it activated, or rejected on purpose, do not count: the alarm on this gauge
/// means "something is stuck", not "an event was lost and the sweep caught it".
pub const PENDING_OVER_GRACE: &str = "PendingOverGrace";
/// Age of the oldest pending certificate one run found, seconds (a gauge).
pub const OLDEST_PENDING_AGE: &str = "OldestPendingAgeSeconds";
/// 1 when a run reached its horizon or the list's end, 0 when it left a marker.
pub const SWEEP_COMPLETE: &str = "SweepComplete";
