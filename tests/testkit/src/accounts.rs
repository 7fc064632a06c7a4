//! Other AWS accounts on the one moto server: credentials of an account, roles in it, and
//! STS AssumeRole into it, through the real IAM and STS query APIs, signed with SigV4 as the
//! SDK signs them. Blocking, like [`crate::sqs`].
//!
//! moto attributes a request to the account of its access key: a key made by IAM
//! CreateAccessKey in account B, or returned by AssumeRole of a role of B, acts in B. The only
//! thing outside AWS's APIs is how a test first gets into B: [`admin`] sends moto's
//! `x-moto-account-id` header on the two IAM calls that make a user of B and its key. The
//! harness refuses AssumeRole as AWS does, unless the role exists and its trust policy lets
//! the caller in (tests/moto_jitr/sts_assume_role_trust.py).

use crate::http::{forward, HttpRequest};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// AWS credentials: a long-term key (no session token) or a role session's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl Creds {
    /// The dummy key the tests use everywhere else: moto's default account, 123456789012.
    pub fn default_account() -> Creds {
        Creds {
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
            session_token: None,
        }
    }

    /// The variables a process (the CLI) reads them from: `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` and, for a session, `AWS_SESSION_TOKEN`.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("AWS_ACCESS_KEY_ID".to_string(), self.access_key_id.clone()),
            (
                "AWS_SECRET_ACCESS_KEY".to_string(),
                self.secret_access_key.clone(),
            ),
        ];
        if let Some(token) = &self.session_token {
            env.push(("AWS_SESSION_TOKEN".to_string(), token.clone()));
        }
        env
    }

    /// The SDK's form of these credentials.
    pub fn sdk(&self) -> aws_sdk_iot::config::Credentials {
        aws_sdk_iot::config::Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            self.session_token.clone(),
            None,
            "testkit",
        )
    }

    /// An SDK configuration for `endpoint` and `region` with these credentials.
    pub async fn sdk_config(&self, endpoint: &str, region: &str) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .endpoint_url(endpoint)
            .credentials_provider(self.sdk())
            .load()
            .await
    }
}

/// An AWS error answer: the HTTP status and the error's code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for AwsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {}: {}", self.status, self.code, self.message)
    }
}

/// Credentials of a new IAM user of `account` (made on first use of the account; the
/// account's resources are kept apart from every other account's by moto).
pub fn admin(endpoint: &str, account: &str) -> Creds {
    let moto = Query::new(endpoint, "iam", Creds::default_account()).in_account(account);
    let user = crate::unique("testkit-admin");
    moto.call("CreateUser", &[("UserName", &user)])
        .unwrap_or_else(|e| panic!("CreateUser in {account}: {e}"));
    let key = moto
        .call("CreateAccessKey", &[("UserName", &user)])
        .unwrap_or_else(|e| panic!("CreateAccessKey in {account}: {e}"));
    Creds {
        access_key_id: xml_text(&key, "AccessKeyId").expect("AccessKeyId"),
        secret_access_key: xml_text(&key, "SecretAccessKey").expect("SecretAccessKey"),
        session_token: None,
    }
}

/// Creates the role `name` in the account of `creds` (see [`admin`]), trusting every identity
/// of `trusted_account` (`arn:aws:iam::ACCOUNT:root`, as a cross-account deployer role
/// does); returns its ARN.
pub fn create_role(endpoint: &str, creds: &Creds, name: &str, trusted_account: &str) -> String {
    let principal = format!("arn:aws:iam::{trusted_account}:root");
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}],
    });
    create_role_with_policy(endpoint, creds, name, &policy.to_string())
}

/// Creates the role `name` with this trust policy (AssumeRolePolicyDocument); returns its ARN.
pub fn create_role_with_policy(endpoint: &str, creds: &Creds, name: &str, trust: &str) -> String {
    let answer = Query::new(endpoint, "iam", creds.clone())
        .call(
            "CreateRole",
            &[("RoleName", name), ("AssumeRolePolicyDocument", trust)],
        )
        .unwrap_or_else(|e| panic!("CreateRole {name}: {e}"));
    xml_text(&answer, "Arn").expect("the role's Arn")
}

/// AssumeRole of `role_arn` from the default account's credentials; panics when refused.
pub fn assume(endpoint: &str, role_arn: &str) -> Creds {
    try_assume(endpoint, &Creds::default_account(), role_arn)
        .unwrap_or_else(|e| panic!("AssumeRole {role_arn}: {e}"))
}

/// AssumeRole of `role_arn` as `caller`, session `testkit`: the session's credentials, or
/// AWS's refusal.
pub fn try_assume(endpoint: &str, caller: &Creds, role_arn: &str) -> Result<Creds, AwsError> {
    let answer = Query::new(endpoint, "sts", caller.clone()).call(
        "AssumeRole",
        &[("RoleArn", role_arn), ("RoleSessionName", "testkit")],
    )?;
    let field = |name: &str| xml_text(&answer, name).unwrap_or_default();
    Ok(Creds {
        access_key_id: field("AccessKeyId"),
        secret_access_key: field("SecretAccessKey"),
        session_token: Some(field("SessionToken")),
    })
}

/// STS GetCallerIdentity: `(account, arn)` of these credentials.
pub fn caller_identity(endpoint: &str, creds: &Creds) -> (String, String) {
    let answer = Query::new(endpoint, "sts", creds.clone())
        .call("GetCallerIdentity", &[])
        .unwrap_or_else(|e| panic!("GetCallerIdentity: {e}"));
    (
        xml_text(&answer, "Account").expect("Account"),
        xml_text(&answer, "Arn").expect("Arn"),
    )
}

/// The AWS query protocol (form-encoded `Action=...&Version=...`, XML answers) of IAM or STS.
struct Query {
    host: String,
    service: &'static str,
    creds: Creds,
    account: Option<String>,
}

impl Query {
    fn new(endpoint: &str, service: &'static str, creds: Creds) -> Query {
        let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
        Query {
            host: host.to_string(),
            service,
            creds,
            account: None,
        }
    }

    /// moto's `x-moto-account-id`: the request is made in `account`, whatever the key.
    fn in_account(mut self, account: &str) -> Query {
        self.account = Some(account.to_string());
        self
    }

    fn call(&self, action: &str, params: &[(&str, &str)]) -> Result<String, AwsError> {
        let version = if self.service == "iam" {
            "2010-05-08"
        } else {
            "2011-06-15"
        };
        let mut form = format!("Action={action}&Version={version}");
        for (k, v) in params {
            form.push_str(&format!("&{}={}", percent_encode(k), percent_encode(v)));
        }
        let body = form.into_bytes();
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        headers.insert("host".into(), self.host.clone());
        headers.insert(
            "content-type".into(),
            "application/x-www-form-urlencoded; charset=utf-8".into(),
        );
        let signed = sign(&self.host, self.service, &self.creds, &headers, &body);
        for (k, v) in signed.map_err(|message| transport_error(action, message))? {
            headers.insert(k.to_ascii_lowercase(), v);
        }
        if let Some(account) = &self.account {
            headers.insert("x-moto-account-id".into(), account.clone());
        }
        let request = HttpRequest {
            method: "POST".into(),
            target: "/".into(),
            headers,
            body,
        };
        let answer =
            forward(&self.host, &request).map_err(|e| transport_error(action, e.to_string()))?;
        let text = String::from_utf8_lossy(&answer.body).into_owned();
        if answer.status != 200 {
            return Err(AwsError {
                status: answer.status,
                code: xml_text(&text, "Code").unwrap_or_default(),
                message: xml_text(&text, "Message").unwrap_or(text),
            });
        }
        Ok(text)
    }
}

fn transport_error(action: &str, message: String) -> AwsError {
    AwsError {
        status: 0,
        code: "Transport".into(),
        message: format!("{action}: {message}"),
    }
}

/// The text of the first `<tag>` element, unescaped.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(
        xml[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The SigV4 headers (`authorization`, `x-amz-date`, and `x-amz-security-token` for a
/// session) for a POST to `/` of `host`, as `service` in the test region.
pub(crate) fn sign(
    host: &str,
    service: &str,
    creds: &Creds,
    headers: &BTreeMap<String, String>,
    body: &[u8],
) -> Result<Vec<(String, String)>, String> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let identity = creds.sdk().into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(crate::REGION)
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let uri = format!("http://{host}/");
    let signable = SignableRequest::new(
        "POST",
        &uri,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_and_percent_encoding() {
        let xml = "<A><Arn>arn:x</Arn><Message>a &amp; &lt;b&gt;</Message></A>";
        assert_eq!(xml_text(xml, "Arn").as_deref(), Some("arn:x"));
        assert_eq!(xml_text(xml, "Message").as_deref(), Some("a & <b>"));
        assert_eq!(xml_text(xml, "Nope"), None);
        assert_eq!(percent_encode("a b{\"c\":1}~"), "a%20b%7B%22c%22%3A1%7D~");
    }
}
