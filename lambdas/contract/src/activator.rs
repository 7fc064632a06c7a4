//! The activator's configuration: environment variables the template sets on the function.
//!
//! Every name is a constant here; the synthesizer writes them and the activator reads them
//! with [`ActivatorConfig::from_lookup`], which validates everything at cold start so that a
//! misconfigured function fails its first invocation loudly instead of half-activating.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The ids of the CA certificates the activator accepts certificates from, comma-separated
/// (one id is a list of one). Required.
pub const ENV_CA_CERTIFICATE_ID: &str = "JITR_CA_CERTIFICATE_ID";
/// At most this many CA ids: 50 ids of 64 hex digits and their commas take 3,249 bytes of the
/// 4 KB Lambda allows a function's whole environment.
pub const MAX_CA_CERTIFICATE_IDS: usize = 50;
/// Name of the shared device IoT policy attached to every activated certificate. Required.
pub const ENV_DEVICE_POLICY_NAME: &str = "JITR_DEVICE_POLICY_NAME";
/// `true` (default) to create a Thing per device and attach the certificate to it.
pub const ENV_CREATE_THING: &str = "JITR_CREATE_THING";
/// Where the Thing name comes from: `subject-cn` (default) or `certificate-id`.
pub const ENV_THING_NAME_SOURCE: &str = "JITR_THING_NAME_SOURCE";
/// Optional thing group every new Thing is added to. The group must exist.
pub const ENV_THING_GROUP: &str = "JITR_THING_GROUP";
/// Optional regular expression the certificate's subject CN must match in full.
pub const ENV_SUBJECT_PATTERN: &str = "JITR_SUBJECT_PATTERN";
/// What happens to a certificate that fails the checks: `leave-pending` (default) or `revoke`.
pub const ENV_REJECT_ACTION: &str = "JITR_REJECT_ACTION";

/// All variables, in the order the README documents them.
pub const ALL_ENV: [&str; 7] = [
    ENV_CA_CERTIFICATE_ID,
    ENV_DEVICE_POLICY_NAME,
    ENV_CREATE_THING,
    ENV_THING_NAME_SOURCE,
    ENV_THING_GROUP,
    ENV_SUBJECT_PATTERN,
    ENV_REJECT_ACTION,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ThingNameSource {
    /// The subject's common name; falls back to the certificate id when the CN is missing
    /// or is not a valid Thing name.
    #[default]
    SubjectCn,
    /// Always the certificate id.
    CertificateId,
}

impl ThingNameSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ThingNameSource::SubjectCn => "subject-cn",
            ThingNameSource::CertificateId => "certificate-id",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RejectAction {
    /// Leave the certificate in `PENDING_ACTIVATION`; it can never connect.
    #[default]
    LeavePending,
    /// Set the certificate to `REVOKED`, so the decision is visible in the registry.
    Revoke,
}

impl RejectAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectAction::LeavePending => "leave-pending",
            RejectAction::Revoke => "revoke",
        }
    }
}

/// The activator's validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivatorConfig {
    /// At least one, at most [`MAX_CA_CERTIFICATE_IDS`], no repeats, in the template's order.
    pub ca_certificate_ids: Vec<String>,
    pub device_policy_name: String,
    pub create_thing: bool,
    pub thing_name_source: ThingNameSource,
    pub thing_group: Option<String>,
    /// Kept as text; the activator compiles it (and so validates it) at cold start.
    pub subject_pattern: Option<String>,
    pub reject_action: RejectAction,
}

/// A configuration problem, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "environment variable {}: {}",
            self.variable, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

impl ActivatorConfig {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `get`, which returns a variable's value if set.
    /// Empty values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let required = |name: &'static str| {
            get(name).ok_or(ConfigError {
                variable: name,
                message: "is required but not set".into(),
            })
        };
        let ca_certificate_ids = ca_ids(&required(ENV_CA_CERTIFICATE_ID)?)?;
        let device_policy_name = required(ENV_DEVICE_POLICY_NAME)?;
        if !is_policy_name(&device_policy_name) {
            return Err(ConfigError {
                variable: ENV_DEVICE_POLICY_NAME,
                message: format!(
                    "must be 1-128 characters of [A-Za-z0-9+=,.@_-], got {device_policy_name:?}"
                ),
            });
        }
        let create_thing = match get(ENV_CREATE_THING).as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(ConfigError {
                    variable: ENV_CREATE_THING,
                    message: format!("must be `true` or `false`, got {other:?}"),
                })
            }
        };
        let thing_name_source = match get(ENV_THING_NAME_SOURCE).as_deref() {
            None | Some("subject-cn") => ThingNameSource::SubjectCn,
            Some("certificate-id") => ThingNameSource::CertificateId,
            Some(other) => {
                return Err(ConfigError {
                    variable: ENV_THING_NAME_SOURCE,
                    message: format!("must be `subject-cn` or `certificate-id`, got {other:?}"),
                })
            }
        };
        let thing_group = get(ENV_THING_GROUP);
        if let Some(group) = &thing_group {
            if !is_thing_name(group) {
                return Err(ConfigError {
                    variable: ENV_THING_GROUP,
                    message: format!("must be 1-128 characters of [A-Za-z0-9:_-], got {group:?}"),
                });
            }
        }
        let reject_action = match get(ENV_REJECT_ACTION).as_deref() {
            None | Some("leave-pending") => RejectAction::LeavePending,
            Some("revoke") => RejectAction::Revoke,
            Some(other) => {
                return Err(ConfigError {
                    variable: ENV_REJECT_ACTION,
                    message: format!("must be `leave-pending` or `revoke`, got {other:?}"),
                })
            }
        };
        Ok(ActivatorConfig {
            ca_certificate_ids,
            device_policy_name,
            create_thing,
            thing_name_source,
            thing_group,
            subject_pattern: get(ENV_SUBJECT_PATTERN),
            reject_action,
        })
    }

    /// Whether certificates of CA `id` are this activator's to activate.
    pub fn accepts_ca(&self, id: &str) -> bool {
        self.ca_certificate_ids.iter().any(|c| c == id)
    }

    /// The environment the template sets for this configuration (the inverse of
    /// [`ActivatorConfig::from_lookup`]). Optional values that are unset are left out.
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            (ENV_CA_CERTIFICATE_ID, self.ca_certificate_ids.join(",")),
            (ENV_DEVICE_POLICY_NAME, self.device_policy_name.clone()),
            (ENV_CREATE_THING, self.create_thing.to_string()),
            (
                ENV_THING_NAME_SOURCE,
                self.thing_name_source.as_str().into(),
            ),
            (ENV_REJECT_ACTION, self.reject_action.as_str().into()),
        ];
        if let Some(group) = &self.thing_group {
            env.push((ENV_THING_GROUP, group.clone()));
        }
        if let Some(pattern) = &self.subject_pattern {
            env.push((ENV_SUBJECT_PATTERN, pattern.clone()));
        }
        env
    }
}

/// The regular expression the activator compiles from `activator.subject_pattern`: anchored,
/// so the pattern must match the whole subject CN, not a substring of it. `device issue` and
/// the stage checks compile the same.
pub fn anchored_subject_pattern(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

/// AWS IoT Thing (and thing group) names: 1 to 128 characters of `[a-zA-Z0-9:_-]`.
pub fn is_thing_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

/// AWS IoT policy names: 1 to 128 characters of `[\w+=,.@-]`.
pub fn is_policy_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'+' | b'=' | b',' | b'.' | b'@' | b'_' | b'-')
        })
}

/// What one activator invocation decided. Returned as the Lambda's result and logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivationReport {
    /// The event's certificate id; empty (and left out) when a malformed event had none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub certificate_id: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thing_name: Option<String>,
    /// Why the certificate was not activated, for alarms and queries; `reason` says it in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<ReasonCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// With [`ReasonCode::IssuerNotOurCa`]: the device certificate's issuer DN (RFC 4514).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// With [`ReasonCode::IssuerNotOurCa`]: our CA certificate's subject DN (RFC 4514).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_subject: Option<String>,
    /// True when the answer came from the container's memory of recently settled
    /// certificates, without any AWS call (a duplicate event).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_memory: bool,
}

impl ActivationReport {
    /// A report with only an id and an outcome; the builders below add the rest.
    pub fn new(certificate_id: impl Into<String>, outcome: Outcome) -> Self {
        ActivationReport {
            certificate_id: certificate_id.into(),
            outcome,
            thing_name: None,
            reason_code: None,
            reason: None,
            issuer: None,
            ca_subject: None,
            from_memory: false,
        }
    }

    pub fn because(mut self, code: ReasonCode, reason: impl Into<String>) -> Self {
        self.reason_code = Some(code);
        self.reason = Some(reason.into());
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Thing, policy and activation done by this invocation.
    Activated,
    /// The certificate was already ACTIVE: nothing changed (the event is re-published
    /// every time a pending device reconnects).
    AlreadyActive,
    /// The certificate failed a check and was left pending.
    Rejected,
    /// The certificate failed a check and was revoked.
    Revoked,
    /// The certificate is not ours to handle (another CA, or not pending): untouched.
    Ignored,
    /// The payload is not a registered-certificate event. Handled, not failed: retrying the
    /// same bytes cannot succeed, so Lambda must not retry it; it is logged loudly and
    /// counted in the `MalformedEvents` metric instead.
    Malformed,
}

/// Why a certificate was not activated: stable codes for alarms and log queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReasonCode {
    /// The event or the registry names another CA certificate id.
    OtherCa,
    /// The certificate's issuer DN is not our CA's subject: another CA issued it. Typically
    /// the stage registers a root while an intermediate signs the devices.
    IssuerNotOurCa,
    /// The issuer DN is our CA's, but the signature does not verify with our CA's key.
    SignatureNotByOurCa,
    /// The certificate is not `PENDING_ACTIVATION` (revoked, inactive, ...).
    NotPending,
    /// The certificate is no longer in the registry.
    CertificateNotFound,
    /// The registry's PEM does not parse as an X.509 certificate.
    UnparsableCertificate,
    /// Outside its validity period.
    Validity,
    /// The subject CN is missing or does not match the stage's pattern.
    SubjectPattern,
    /// The payload is not a registered-certificate event.
    MalformedEvent,
    /// The certificate's serial is on the stage's revocation list: set REVOKED, never
    /// activated, whatever `on_reject` says.
    RevokedList,
}

impl ReasonCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::OtherCa => "other-ca",
            ReasonCode::IssuerNotOurCa => "issuer-not-our-ca",
            ReasonCode::SignatureNotByOurCa => "signature-not-by-our-ca",
            ReasonCode::NotPending => "not-pending",
            ReasonCode::CertificateNotFound => "certificate-not-found",
            ReasonCode::UnparsableCertificate => "unparsable-certificate",
            ReasonCode::Validity => "validity",
            ReasonCode::SubjectPattern => "subject-pattern",
            ReasonCode::MalformedEvent => "malformed-event",
            ReasonCode::RevokedList => "revoked-list",
        }
    }
}

/// `JITR_CA_CERTIFICATE_ID`: comma-separated ids, each 64 lowercase hex digits.
fn ca_ids(value: &str) -> Result<Vec<String>, ConfigError> {
    let fail = |message: String| ConfigError {
        variable: ENV_CA_CERTIFICATE_ID,
        message,
    };
    let mut ids: Vec<String> = Vec::new();
    for id in value.split(',').map(str::trim) {
        if !crate::is_certificate_id(id) {
            return Err(fail(format!(
                "each id must be 64 lowercase hex digits (ids separated by commas), got {id:?}"
            )));
        }
        if ids.iter().any(|i| i == id) {
            return Err(fail(format!("lists {id} twice")));
        }
        ids.push(id.to_string());
    }
    if ids.len() > MAX_CA_CERTIFICATE_IDS {
        return Err(fail(format!(
            "lists {} CA ids; at most {MAX_CA_CERTIFICATE_IDS}",
            ids.len()
        )));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn ca_ids_are_a_comma_separated_list() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        assert_eq!(ca_ids(&a).unwrap(), vec![a.clone()]);
        assert_eq!(
            ca_ids(&format!("{a}, {b}")).unwrap(),
            vec![a.clone(), b.clone()]
        );
        for bad in [
            format!("{a},"),
            format!("{a},{a}"),
            format!("{a};{b}"),
            "A".repeat(64),
        ] {
            let e = ca_ids(&bad).unwrap_err();
            assert_eq!(e.variable, ENV_CA_CERTIFICATE_ID, "{bad}");
        }
        let fifty: Vec<String> = (0..50).map(|i| format!("{i:064x}")).collect();
        assert_eq!(ca_ids(&fifty.join(",")).unwrap().len(), 50);
        assert_eq!(fifty.join(",").len(), 3_249);
        let e = ca_ids(
            &(0..51)
                .map(|i| format!("{i:064x}"))
                .collect::<Vec<_>>()
                .join(","),
        );
        assert!(e.unwrap_err().message.contains("at most 50"));
        let cfg = ActivatorConfig::from_lookup(lookup(&[
            (ENV_CA_CERTIFICATE_ID, &format!("{a},{b}")),
            (ENV_DEVICE_POLICY_NAME, "p"),
        ]))
        .unwrap();
        assert!(cfg.accepts_ca(&a) && cfg.accepts_ca(&b) && !cfg.accepts_ca(&"c".repeat(64)));
    }

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_and_round_trip() {
        let ca = "c".repeat(64);
        let cfg = ActivatorConfig::from_lookup(lookup(&[
            (ENV_CA_CERTIFICATE_ID, &ca),
            (ENV_DEVICE_POLICY_NAME, "jitr-device"),
        ]))
        .unwrap();
        assert!(cfg.create_thing);
        assert_eq!(cfg.thing_name_source, ThingNameSource::SubjectCn);
        assert_eq!(cfg.reject_action, RejectAction::LeavePending);
        assert_eq!(cfg.thing_group, None);
        let env: Vec<(String, String)> = cfg
            .to_env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(ActivatorConfig::from_lookup(lookup(&pairs)).unwrap(), cfg);
    }

    #[test]
    fn errors_name_the_variable() {
        let ca = "c".repeat(64);
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![], ENV_CA_CERTIFICATE_ID),
            (vec![(ENV_CA_CERTIFICATE_ID, "abc")], ENV_CA_CERTIFICATE_ID),
            (vec![(ENV_CA_CERTIFICATE_ID, &ca)], ENV_DEVICE_POLICY_NAME),
            (
                vec![
                    (ENV_CA_CERTIFICATE_ID, &ca),
                    (ENV_DEVICE_POLICY_NAME, "a b"),
                ],
                ENV_DEVICE_POLICY_NAME,
            ),
            (
                vec![
                    (ENV_CA_CERTIFICATE_ID, &ca),
                    (ENV_DEVICE_POLICY_NAME, "p"),
                    (ENV_CREATE_THING, "yes"),
                ],
                ENV_CREATE_THING,
            ),
            (
                vec![
                    (ENV_CA_CERTIFICATE_ID, &ca),
                    (ENV_DEVICE_POLICY_NAME, "p"),
                    (ENV_REJECT_ACTION, "delete"),
                ],
                ENV_REJECT_ACTION,
            ),
            (
                vec![
                    (ENV_CA_CERTIFICATE_ID, &ca),
                    (ENV_DEVICE_POLICY_NAME, "p"),
                    (ENV_THING_NAME_SOURCE, "serial"),
                ],
                ENV_THING_NAME_SOURCE,
            ),
        ];
        for (pairs, var) in cases {
            let err = ActivatorConfig::from_lookup(lookup(&pairs)).unwrap_err();
            assert_eq!(err.variable, var, "{err}");
        }
    }

    #[test]
    fn names() {
        assert!(is_thing_name("device-0001:a_b"));
        assert!(!is_thing_name("device 1"));
        assert!(!is_thing_name(&"x".repeat(129)));
        assert!(is_policy_name("jitr.device-policy@v1"));
        assert!(!is_policy_name("a/b"));
    }

    #[test]
    fn report_json_shape() {
        let report = ActivationReport::new("", Outcome::Malformed).because(
            ReasonCode::MalformedEvent,
            "expected a JSON object, got null",
        );
        assert_eq!(
            serde_json::to_value(&report).unwrap(),
            serde_json::json!({
                "outcome": "malformed",
                "reasonCode": "malformed-event",
                "reason": "expected a JSON object, got null"
            })
        );
        for code in [
            ReasonCode::OtherCa,
            ReasonCode::IssuerNotOurCa,
            ReasonCode::SignatureNotByOurCa,
            ReasonCode::NotPending,
            ReasonCode::CertificateNotFound,
            ReasonCode::UnparsableCertificate,
            ReasonCode::Validity,
            ReasonCode::SubjectPattern,
            ReasonCode::MalformedEvent,
            ReasonCode::RevokedList,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }
}
