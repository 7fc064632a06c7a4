//! CloudFormation's custom resource protocol: the request the provider receives and the
//! response it PUTs to the request's `ResponseURL`.

use aws_lambda_events::cloudformation::CloudFormationCustomResourceRequest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `SUCCESS` or `FAILED`, as aws_lambda_events spells CloudFormation's response status.
pub use aws_lambda_events::cloudformation::CloudFormationCustomResourceResponseStatus as Status;

/// CloudFormation reads at most this many bytes of a response body.
pub const MAX_RESPONSE_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

/// A custom resource request: parsed as aws_lambda_events'
/// [`CloudFormationCustomResourceRequest`] (each request type with the fields CloudFormation
/// sends it), then flattened into the one shape the handler reads. Properties stay raw JSON
/// here: a request whose properties do not parse must still be answered (FAILED, with the
/// reason), and a Delete reads only `RetainOnDelete`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub struct Request {
    pub request_type: RequestType,
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub resource_type: String,
    pub logical_resource_id: String,
    /// Absent on Create.
    pub physical_resource_id: Option<String>,
    pub resource_properties: serde_json::Value,
    /// Present on Update.
    pub old_resource_properties: Option<serde_json::Value>,
}

impl TryFrom<serde_json::Value> for Request {
    type Error = String;

    /// Fields CloudFormation always sends, but that the provider has never needed in order
    /// to act, are not required: absent, they read as empty (as they always have here), so
    /// such a request is carried out, or refused for what is really wrong with it.
    fn try_from(mut raw: serde_json::Value) -> Result<Self, String> {
        if let Some(fields) = raw.as_object_mut() {
            for name in ["ResourceType", "PhysicalResourceId"] {
                fields.entry(name).or_insert_with(|| "".into());
            }
            for name in ["ResourceProperties", "OldResourceProperties"] {
                fields.entry(name).or_insert(serde_json::Value::Null);
            }
        }
        serde_json::from_value::<CloudFormationCustomResourceRequest>(raw)
            .map_err(|e| e.to_string())?
            .try_into()
    }
}

impl TryFrom<CloudFormationCustomResourceRequest> for Request {
    type Error = String;

    fn try_from(request: CloudFormationCustomResourceRequest) -> Result<Self, String> {
        use CloudFormationCustomResourceRequest as R;
        Ok(match request {
            R::Create(c) => Request {
                request_type: RequestType::Create,
                response_url: c.response_url,
                stack_id: c.stack_id,
                request_id: c.request_id,
                resource_type: c.resource_type,
                logical_resource_id: c.logical_resource_id,
                physical_resource_id: None,
                resource_properties: c.resource_properties,
                old_resource_properties: None,
            },
            R::Update(u) => Request {
                request_type: RequestType::Update,
                response_url: u.response_url,
                stack_id: u.stack_id,
                request_id: u.request_id,
                resource_type: u.resource_type,
                logical_resource_id: u.logical_resource_id,
                physical_resource_id: Some(u.physical_resource_id),
                resource_properties: u.resource_properties,
                old_resource_properties: Some(u.old_resource_properties),
            },
            R::Delete(d) => Request {
                request_type: RequestType::Delete,
                response_url: d.response_url,
                stack_id: d.stack_id,
                request_id: d.request_id,
                resource_type: d.resource_type,
                logical_resource_id: d.logical_resource_id,
                physical_resource_id: Some(d.physical_resource_id),
                resource_properties: d.resource_properties,
                old_resource_properties: None,
            },
            other => return Err(format!("unsupported request: {other:?}")),
        })
    }
}

/// The answer PUT to `ResponseURL`. Not aws_lambda_events' response type: this one keeps
/// `Data` ordered and leaves out an empty `Reason`, and [`Response::to_body`] keeps the body
/// within what CloudFormation reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    pub status: Status,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    #[serde(default)]
    pub no_echo: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
}

impl Response {
    /// The physical id to report when a request fails: the existing one, or for a failed
    /// Create a placeholder that is not a certificate id, so the Delete CloudFormation sends
    /// during rollback knows there is nothing to deregister.
    pub fn failure_physical_id(request: &Request) -> String {
        match &request.physical_resource_id {
            Some(id) if !id.is_empty() => id.clone(),
            _ => format!(
                "{}-create-failed-{}",
                request.logical_resource_id,
                request.request_id.chars().take(8).collect::<String>()
            ),
        }
    }

    /// Serializes the response, shortening `Reason` until the body fits in
    /// [`MAX_RESPONSE_BYTES`] (everything else is small and fixed).
    pub fn to_body(&self) -> Vec<u8> {
        let mut response = self.clone();
        let mut keep = self.reason.len();
        loop {
            let body = serde_json::to_vec(&response).expect("response serializes");
            if body.len() <= MAX_RESPONSE_BYTES || keep == 0 {
                return body;
            }
            // JSON escaping makes the reason longer on the wire than in memory: shrink it in
            // proportion, with some slack, until the body fits.
            keep = (keep as f64 * MAX_RESPONSE_BYTES as f64 / body.len() as f64 * 0.9) as usize;
            while !self.reason.is_char_boundary(keep) {
                keep -= 1;
            }
            response.reason = format!("{} [truncated]", &self.reason[..keep]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        serde_json::from_value(serde_json::json!({
            "RequestType": "Create",
            "ResponseURL": "http://127.0.0.1:1/x",
            "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/s/1",
            "RequestId": "abcdef12-3456",
            "ResourceType": "Custom::JitrCaRegistration",
            "LogicalResourceId": "CaRegistration",
            "ResourceProperties": {}
        }))
        .unwrap()
    }

    #[test]
    fn requests_parse_by_type_and_absent_ids_read_as_empty() {
        let r = request();
        assert_eq!(r.request_type, RequestType::Create);
        assert_eq!(r.physical_resource_id, None);
        assert_eq!(r.old_resource_properties, None);
        let update: Request = serde_json::from_value(serde_json::json!({
            "RequestType": "Update",
            "ResponseURL": "http://127.0.0.1:1/x",
            "StackId": "s",
            "RequestId": "r",
            "LogicalResourceId": "CaRegistration",
            "PhysicalResourceId": "p",
            "ResourceProperties": {"A": "1"},
            "OldResourceProperties": {"A": "0"}
        }))
        .unwrap();
        assert_eq!(update.request_type, RequestType::Update);
        assert_eq!(update.physical_resource_id.as_deref(), Some("p"));
        assert_eq!(update.resource_type, "");
        assert_eq!(
            update.old_resource_properties,
            Some(serde_json::json!({"A": "0"}))
        );
        let delete: Request = serde_json::from_value(serde_json::json!({
            "RequestType": "Delete", "ResponseURL": "u", "StackId": "s", "RequestId": "r",
            "LogicalResourceId": "CaRegistration"
        }))
        .unwrap();
        assert_eq!(delete.physical_resource_id.as_deref(), Some(""));
        let err = serde_json::from_value::<Request>(serde_json::json!({
            "RequestType": "Upsert", "ResponseURL": "u", "StackId": "s", "RequestId": "r",
            "LogicalResourceId": "CaRegistration"
        }))
        .unwrap_err();
        assert!(err.to_string().contains("Upsert"), "{err}");
    }

    #[test]
    fn failed_create_gets_a_placeholder_that_is_not_a_certificate_id() {
        let id = Response::failure_physical_id(&request());
        assert_eq!(id, "CaRegistration-create-failed-abcdef12");
        assert!(!jitr_contract::is_certificate_id(&id));
    }

    #[test]
    fn long_reasons_are_truncated_to_fit() {
        let r = request();
        let response = Response {
            status: Status::Failed,
            reason: "é\"".repeat(5000),
            physical_resource_id: "p".into(),
            stack_id: r.stack_id,
            request_id: r.request_id,
            logical_resource_id: r.logical_resource_id,
            no_echo: false,
            data: BTreeMap::new(),
        };
        let body = response.to_body();
        assert!(body.len() <= MAX_RESPONSE_BYTES, "{}", body.len());
        let back: Response = serde_json::from_slice(&body).unwrap();
        assert!(back.reason.ends_with("[truncated]"));
        assert!(back.reason.len() > 1000);
    }
}
