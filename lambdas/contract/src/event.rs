//! The event AWS IoT publishes on `$aws/events/certificates/registered/<caCertificateId>`
//! when a device presents an unknown certificate signed by a CA with auto-registration on.

use serde::{de, Deserialize, Deserializer, Serialize};
use std::fmt;

/// Topic prefix of the registered-certificate event; the CA certificate id follows.
pub const REGISTERED_TOPIC_PREFIX: &str = "$aws/events/certificates/registered/";

/// The status AWS IoT gives an auto-registered certificate, and the only one we activate.
pub const PENDING_ACTIVATION: &str = "PENDING_ACTIVATION";

/// The `registered` event, as the topic rule's `SELECT *` forwards it.
///
/// Unknown fields are ignored (AWS may add some); missing or mistyped known fields are an
/// error that names the field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredEvent {
    pub certificate_id: String,
    pub ca_certificate_id: String,
    /// Milliseconds since the epoch. AWS's own documentation shows it both as a JSON number
    /// and as a string, so both are accepted.
    #[serde(deserialize_with = "millis")]
    pub timestamp: u64,
    pub certificate_status: String,
    pub aws_account_id: String,
    #[serde(default, deserialize_with = "opt_millis")]
    pub certificate_registration_timestamp: Option<u64>,
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
        if !value.is_object() {
            return Err(EventError(format!(
                "expected a JSON object, got {}",
                json_kind(&value)
            )));
        }
        let event: RegisteredEvent =
            serde_json::from_value(value).map_err(|e| EventError(e.to_string()))?;
        event.validate()?;
        Ok(event)
    }

    fn validate(&self) -> Result<(), EventError> {
        for (field, value) in [
            ("certificateId", &self.certificate_id),
            ("caCertificateId", &self.ca_certificate_id),
        ] {
            if !crate::is_certificate_id(value) {
                return Err(EventError(format!(
                    "field `{field}` must be 64 lowercase hex digits, got {value:?}"
                )));
            }
        }
        if self.aws_account_id.len() != 12
            || !self.aws_account_id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(EventError(format!(
                "field `awsAccountId` must be 12 digits, got {:?}",
                self.aws_account_id
            )));
        }
        Ok(())
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

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrString {
    Num(u64),
    Str(String),
}

fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match NumOrString::deserialize(d)
        .map_err(|_| de::Error::custom("expected milliseconds as a number or a string"))?
    {
        NumOrString::Num(n) => Ok(n),
        NumOrString::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| de::Error::custom(format!("expected milliseconds, got the string {s:?}"))),
    }
}

fn opt_millis<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    millis(d).map(Some)
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

    #[test]
    fn timestamp_as_number_or_string() {
        let e = RegisteredEvent::from_value(sample()).unwrap();
        assert_eq!(e.timestamp, 1_700_000_000_000);
        assert_eq!(
            e.certificate_registration_timestamp,
            Some(1_700_000_000_000)
        );
        let mut v = sample();
        v["timestamp"] = json!("1700000000001");
        assert_eq!(
            RegisteredEvent::from_value(v).unwrap().timestamp,
            1_700_000_000_001
        );
    }

    #[test]
    fn unknown_fields_are_ignored_and_registration_timestamp_is_optional() {
        let mut v = sample();
        v["somethingNew"] = json!(1);
        v.as_object_mut()
            .unwrap()
            .remove("certificateRegistrationTimestamp");
        assert!(RegisteredEvent::from_value(v).is_ok());
    }

    #[test]
    fn malformed_events_name_the_field() {
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (json!("hello"), "expected a JSON object, got a string"),
            (json!([1, 2]), "an array"),
            (json!({}), "missing field `certificateId`"),
            (
                {
                    let mut v = sample();
                    v["timestamp"] = json!(true);
                    v
                },
                "milliseconds",
            ),
            (
                {
                    let mut v = sample();
                    v["timestamp"] = json!("yesterday");
                    v
                },
                "\"yesterday\"",
            ),
            (
                {
                    let mut v = sample();
                    v["certificateId"] = json!("../../etc");
                    v
                },
                "`certificateId` must be 64 lowercase hex digits",
            ),
            (
                {
                    let mut v = sample();
                    v["awsAccountId"] = json!("12");
                    v
                },
                "`awsAccountId`",
            ),
        ];
        for (value, want) in cases {
            let err = RegisteredEvent::from_value(value.clone()).unwrap_err();
            assert!(err.to_string().contains(want), "{value} -> {err}");
        }
    }
}
