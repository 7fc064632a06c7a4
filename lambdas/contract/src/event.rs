//! The event AWS IoT publishes on `$aws/events/certificates/registered/<caCertificateId>`
//! when a device presents an unknown certificate signed by a CA with auto-registration on.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Topic prefix of the registered-certificate event; the CA certificate id follows.
pub const REGISTERED_TOPIC_PREFIX: &str = "$aws/events/certificates/registered/";

/// The status AWS IoT gives an auto-registered certificate, and the only one we activate.
pub const PENDING_ACTIVATION: &str = "PENDING_ACTIVATION";

/// What the activator takes from the `registered` event, as the topic rule's `SELECT *`
/// forwards it: the two ids, nothing more.
///
/// The event is only a hint (the activator reads the certificate's status, CA and PEM back
/// from the registry), and AWS publishes more than its documentation lists: captured events
/// carry `"certificateRegistrationTimestamp": null`, extra fields such as `sourceIp`, and
/// `timestamp` as a number or a string. So every other field is ignored, whatever its type
/// or value: a field the activator does not use can never fail an activation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredEvent {
    pub certificate_id: String,
    pub ca_certificate_id: String,
}

/// Why an event could not be accepted. The message names the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError(pub String);

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed registered-certificate event: {}", self.0)
    }
}

impl std::error::Error for EventError {}

impl RegisteredEvent {
    /// Parses and checks an event. Never panics, whatever the input.
    pub fn from_value(value: serde_json::Value) -> Result<Self, EventError> {
        let serde_json::Value::Object(fields) = value else {
            return Err(EventError(format!(
                "expected a JSON object, got {}",
                json_kind(&value)
            )));
        };
        let id = |field: &str| -> Result<String, EventError> {
            match fields.get(field) {
                None => Err(EventError(format!("missing field `{field}`"))),
                Some(serde_json::Value::String(s)) if crate::is_certificate_id(s) => Ok(s.clone()),
                Some(serde_json::Value::String(s)) => Err(EventError(format!(
                    "field `{field}` must be 64 lowercase hex digits, got {s:?}"
                ))),
                Some(other) => Err(EventError(format!(
                    "field `{field}` must be a string of 64 lowercase hex digits, got {}",
                    json_kind(other)
                ))),
            }
        };
        Ok(RegisteredEvent {
            certificate_id: id("certificateId")?,
            ca_certificate_id: id("caCertificateId")?,
        })
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> serde_json::Value {
        json!({
            "certificateId": "a".repeat(64),
            "caCertificateId": "b".repeat(64),
            "timestamp": 1_700_000_000_000u64,
            "certificateStatus": "PENDING_ACTIVATION",
            "awsAccountId": "123456789012",
            "certificateRegistrationTimestamp": "1700000000000"
        })
    }

    fn expected() -> RegisteredEvent {
        RegisteredEvent {
            certificate_id: "a".repeat(64),
            ca_certificate_id: "b".repeat(64),
        }
    }

    /// The documented shape (shared/aws-samples), placeholders filled in.
    #[test]
    fn the_documented_event() {
        assert_eq!(RegisteredEvent::from_value(sample()).unwrap(), expected());
    }

    /// Captured in the wild: a null registration timestamp and fields the guide does not list.
    /// Before, the null failed every activation as a malformed event.
    #[test]
    fn null_registration_timestamp_and_unknown_fields_are_accepted() {
        let mut v = sample();
        v["certificateRegistrationTimestamp"] = json!(null);
        v["sourceIp"] = json!("203.0.113.7");
        v["somethingNew"] = json!({"nested": [1, 2]});
        assert_eq!(RegisteredEvent::from_value(v).unwrap(), expected());
    }

    /// Fields the activator does not use never fail the event, whatever their type or value.
    #[test]
    fn unused_fields_of_any_type_or_absent_are_ignored() {
        for (field, value) in [
            ("timestamp", json!("1700000000001")),
            ("timestamp", json!(1.5)),
            ("timestamp", json!(true)),
            ("timestamp", json!("yesterday")),
            ("timestamp", json!(null)),
            ("certificateStatus", json!(7)),
            ("awsAccountId", json!(123456789012u64)),
            ("awsAccountId", json!("12")),
            ("certificateRegistrationTimestamp", json!({"ms": 1})),
        ] {
            let mut v = sample();
            v[field] = value.clone();
            assert_eq!(
                RegisteredEvent::from_value(v).as_ref(),
                Ok(&expected()),
                "{field}: {value}"
            );
        }
        let only_ids = json!({"certificateId": "a".repeat(64), "caCertificateId": "b".repeat(64)});
        assert_eq!(RegisteredEvent::from_value(only_ids).unwrap(), expected());
    }

    #[test]
    fn malformed_events_name_the_field() {
        let with = |field: &str, value: serde_json::Value| {
            let mut v = sample();
            v[field] = value;
            v
        };
        let without = |field: &str| {
            let mut v = sample();
            v.as_object_mut().unwrap().remove(field);
            v
        };
        let cases: Vec<(serde_json::Value, &str)> =
            vec![
            (json!("hello"), "expected a JSON object, got a string"),
            (json!([1, 2]), "expected a JSON object, got an array"),
            (json!(null), "expected a JSON object, got null"),
            (json!({}), "missing field `certificateId`"),
            (without("caCertificateId"), "missing field `caCertificateId`"),
            (
                with("certificateId", json!("../../etc")),
                "field `certificateId` must be 64 lowercase hex digits, got \"../../etc\"",
            ),
            (
                with("caCertificateId", json!(42)),
                "field `caCertificateId` must be a string of 64 lowercase hex digits, got a number",
            ),
            (
                with("certificateId", json!(null)),
                "field `certificateId` must be a string of 64 lowercase hex digits, got null",
            ),
        ];
        for (value, want) in cases {
            let err = RegisteredEvent::from_value(value.clone()).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("malformed registered-certificate event: {want}"),
                "{value}"
            );
        }
    }
}
