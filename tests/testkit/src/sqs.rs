//! A few Amazon SQS calls for the harness (the on-failure destination of
//! [`crate::lambda_async::AsyncLambda`]) and the tests that read that queue: SQS's JSON
//! protocol (`X-Amz-Target: AmazonSQS.<Action>`, `application/x-amz-json-1.0`), signed with
//! SigV4 as the SDK signs it, over the loopback client of [`crate::http`]. Blocking, so the
//! harness's worker threads call it as they are.

use crate::http::{forward, HttpRequest};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// SQS at `endpoint` (`http://host:port`), with the test credentials and region.
#[derive(Debug, Clone)]
pub struct Sqs {
    host: String,
}

impl Sqs {
    pub fn new(endpoint: &str) -> Sqs {
        Sqs {
            host: endpoint
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string(),
        }
    }

    /// Creates a standard queue (or finds it) and returns its URL.
    pub fn create_queue(&self, name: &str) -> Result<String, String> {
        let answer = self.call("CreateQueue", json!({"QueueName": name}))?;
        text(&answer, "QueueUrl")
    }

    /// Sends `body` to the queue at `url`; returns the message id.
    pub fn send_message(&self, url: &str, body: &str) -> Result<String, String> {
        let answer = self.call("SendMessage", json!({"QueueUrl": url, "MessageBody": body}))?;
        text(&answer, "MessageId")
    }

    /// `ApproximateNumberOfMessages` and `ApproximateNumberOfMessagesNotVisible`.
    pub fn depth(&self, url: &str) -> Result<(u64, u64), String> {
        let names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
        ];
        let answer = self.call(
            "GetQueueAttributes",
            json!({"QueueUrl": url, "AttributeNames": names}),
        )?;
        let get = |name: &str| {
            answer["Attributes"][name]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("GetQueueAttributes: no {name} in {answer}"))
        };
        Ok((get(names[0])?, get(names[1])?))
    }

    /// Receives up to 10 messages (no wait): their bodies, parsed as JSON where they are JSON.
    pub fn receive(&self, url: &str, max: u32) -> Result<Vec<Value>, String> {
        let answer = self.call(
            "ReceiveMessage",
            json!({"QueueUrl": url, "MaxNumberOfMessages": max.clamp(1, 10), "WaitTimeSeconds": 0}),
        )?;
        let messages = answer["Messages"].as_array().cloned().unwrap_or_default();
        Ok(messages
            .iter()
            .map(|m| {
                let body = m["Body"].as_str().unwrap_or_default();
                serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()))
            })
            .collect())
    }

    /// One JSON-protocol call; an error answer becomes its `__type` and message.
    fn call(&self, action: &str, input: Value) -> Result<Value, String> {
        let body = input.to_string().into_bytes();
        let mut headers: BTreeMap<String, String> = [
            ("host", self.host.clone()),
            ("content-type", "application/x-amz-json-1.0".to_string()),
            ("x-amz-target", format!("AmazonSQS.{action}")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let creds = crate::accounts::Creds::default_account();
        for (k, v) in crate::accounts::sign(&self.host, "sqs", &creds, &headers, &body)? {
            headers.insert(k.to_ascii_lowercase(), v);
        }
        let request = HttpRequest {
            method: "POST".into(),
            target: "/".into(),
            headers,
            body,
        };
        let answer = forward(&self.host, &request).map_err(|e| format!("SQS {action}: {e}"))?;
        let value: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        if answer.status != 200 {
            return Err(format!(
                "SQS {action}: HTTP {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            ));
        }
        Ok(value)
    }
}

fn text(answer: &Value, field: &str) -> Result<String, String> {
    answer[field]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no {field} in {answer}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_depth_receive_against_moto() {
        let sqs = Sqs::new(crate::moto().endpoint());
        let url = sqs.create_queue(&crate::unique("sqs-check")).unwrap();
        assert_eq!(sqs.depth(&url).unwrap(), (0, 0));
        sqs.send_message(&url, r#"{"a":1}"#).unwrap();
        sqs.send_message(&url, "plain").unwrap();
        assert_eq!(sqs.depth(&url).unwrap(), (2, 0));
        let mut got = sqs.receive(&url, 10).unwrap();
        got.sort_by_key(|v| v.to_string());
        assert_eq!(got, vec![json!("plain"), json!({"a": 1})]);
        let e = sqs
            .send_message(&format!("{url}-missing"), "x")
            .unwrap_err();
        assert!(e.contains("HTTP 400"), "{e}");
    }
}
