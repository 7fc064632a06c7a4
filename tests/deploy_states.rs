//! Stack states and failures moto cannot produce, replayed through the real AWS SDK with the
//! SDK's own test client (`StaticReplayClient`) and responses shaped like real
//! CloudFormation's (the awsquery XML protocol).

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_cloudformation::config::Credentials;
use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
use aws_smithy_types::body::SdkBody;
use jitr_infra::aws::Clients;
use jitr_infra::concurrency;
use jitr_infra::deploy::{self, ChangeSetResult, Options, Poll, Reporter};
use jitr_infra::destroy::{self, DestroyPlan};
use jitr_infra::diff::StackDiff;
use jitr_infra::error::Error;
use jitr_infra::publish::AssetBucket;
use jitr_infra::stage::Stage;
use std::sync::Mutex;
use std::time::Duration;
use testkit::pki::TestCa;

const STACK: &str = "jitr-dev";
const STACK_ID: &str =
    "arn:aws:cloudformation:eu-west-1:123456789012:stack/jitr-dev/2d3b7a90-6c2e-11ef-9a6b-0a1b2c3d4e5f";
const NS: &str = "http://cloudformation.amazonaws.com/doc/2010-05-15/";

fn ok(xml: String) -> ReplayEvent {
    ReplayEvent::new(
        http::Request::builder()
            .uri("https://cloudformation.eu-west-1.amazonaws.com/")
            .body(SdkBody::empty())
            .unwrap(),
        http::Response::builder()
            .status(200)
            .header("content-type", "text/xml")
            .body(SdkBody::from(xml))
            .unwrap(),
    )
}

fn error(status: u16, code: &str, message: &str) -> ReplayEvent {
    let xml = format!(
        r#"<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>5ccc7dcd-744c-11e5-be70-example</RequestId></ErrorResponse>"#
    );
    ReplayEvent::new(
        http::Request::builder()
            .uri("https://cloudformation.eu-west-1.amazonaws.com/")
            .body(SdkBody::empty())
            .unwrap(),
        http::Response::builder()
            .status(status)
            .header("content-type", "text/xml")
            .body(SdkBody::from(xml))
            .unwrap(),
    )
}

fn stack(status: &str) -> ReplayEvent {
    ok(format!(
        r#"<DescribeStacksResponse xmlns="{NS}">
  <DescribeStacksResult>
    <Stacks>
      <member>
        <StackName>{STACK}</StackName>
        <StackId>{STACK_ID}</StackId>
        <Description>AWS IoT Just-In-Time Registration for stage dev (jitr-infra)</Description>
        <CreationTime>2026-11-28T10:00:00.000Z</CreationTime>
        <StackStatus>{status}</StackStatus>
        <DisableRollback>false</DisableRollback>
        <Tags/>
        <Outputs/>
      </member>
    </Stacks>
  </DescribeStacksResult>
  <ResponseMetadata><RequestId>b9b4b068-3a41-11e5-94eb-example</RequestId></ResponseMetadata>
</DescribeStacksResponse>"#
    ))
}

fn no_stack() -> ReplayEvent {
    error(
        400,
        "ValidationError",
        &format!("Stack with id {STACK} does not exist"),
    )
}

fn event(id: &str, logical: &str, kind: &str, status: &str, reason: &str) -> String {
    format!(
        r#"<member><EventId>{id}</EventId><StackName>{STACK}</StackName><StackId>{STACK_ID}</StackId><LogicalResourceId>{logical}</LogicalResourceId><PhysicalResourceId>p-{id}</PhysicalResourceId><ResourceType>{kind}</ResourceType><Timestamp>2026-11-28T10:00:0{}.000Z</Timestamp><ResourceStatus>{status}</ResourceStatus><ResourceStatusReason>{reason}</ResourceStatusReason></member>"#,
        id.len() % 10
    )
}

fn events(newest_first: &[String]) -> ReplayEvent {
    ok(format!(
        r#"<DescribeStackEventsResponse xmlns="{NS}"><DescribeStackEventsResult><StackEvents>{}</StackEvents></DescribeStackEventsResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeStackEventsResponse>"#,
        newest_first.concat()
    ))
}

async fn clients(replay: &StaticReplayClient) -> Clients {
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            None,
            None,
            "test",
        ))
        .http_client(replay.clone())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(1)),
        )
        .load()
        .await;
    Clients::from_conf(&conf)
}

fn actions(replay: &StaticReplayClient) -> Vec<String> {
    replay
        .actual_requests()
        .map(|r| {
            let body = String::from_utf8_lossy(r.body().bytes().unwrap_or_default()).into_owned();
            body.split('&')
                .find_map(|kv| kv.strip_prefix("Action="))
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Reporter for Recorder {
    fn progress(&self, line: &str) {
        self.0.lock().unwrap().push(line.to_string());
    }
    fn diff(&self, _d: &StackDiff) {}
    fn confirm(&self, _q: &str) -> bool {
        panic!("must not prompt")
    }
}

fn fast() -> Options {
    Options {
        poll: Poll {
            first: Duration::from_millis(1),
            max: Duration::from_millis(5),
        },
        ..Options::default()
    }
}

#[tokio::test]
async fn rollback_complete_is_explained_with_deletion_as_the_way_out() {
    let replay = StaticReplayClient::new(vec![stack("ROLLBACK_COMPLETE")]);
    let c = clients(&replay).await;
    let err = deploy::prepare_stack(&c, STACK, &fast(), &Recorder::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::StackState { .. }), "{err:?}");
    assert!(text.contains("ROLLBACK_COMPLETE"), "{text}");
    assert!(text.contains("only deleted"), "{text}");
    assert!(text.contains("jitr-infra destroy"), "{text}");
    assert_eq!(err.exit_code(), 1);
    assert_eq!(actions(&replay), ["DescribeStacks"], "nothing changed");
}

#[tokio::test]
async fn update_rollback_failed_is_explained_with_continue_update_rollback() {
    let replay = StaticReplayClient::new(vec![stack("UPDATE_ROLLBACK_FAILED")]);
    let c = clients(&replay).await;
    let text = deploy::prepare_stack(&c, STACK, &fast(), &Recorder::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(text.contains("UPDATE_ROLLBACK_FAILED"), "{text}");
    assert!(
        text.contains("continue-update-rollback --stack-name jitr-dev"),
        "{text}"
    );
}

#[tokio::test]
async fn leftover_review_in_progress_is_cleaned_up_then_created() {
    let replay = StaticReplayClient::new(vec![
        stack("REVIEW_IN_PROGRESS"),
        ok(format!(
            r#"<DeleteStackResponse xmlns="{NS}"><ResponseMetadata><RequestId>d</RequestId></ResponseMetadata></DeleteStackResponse>"#
        )),
        stack("DELETE_IN_PROGRESS"),
        stack("DELETE_COMPLETE"),
    ]);
    let c = clients(&replay).await;
    let rec = Recorder::default();
    let existing = deploy::prepare_stack(&c, STACK, &fast(), &rec)
        .await
        .unwrap();
    assert!(existing.is_none(), "a fresh CREATE follows");
    assert_eq!(
        actions(&replay),
        [
            "DescribeStacks",
            "DeleteStack",
            "DescribeStacks",
            "DescribeStacks"
        ]
    );
    assert!(rec.0.lock().unwrap()[0].contains("REVIEW_IN_PROGRESS"));
}

#[tokio::test]
async fn in_progress_stack_is_waited_for() {
    let replay = StaticReplayClient::new(vec![
        stack("UPDATE_IN_PROGRESS"),
        stack("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"),
        stack("UPDATE_COMPLETE"),
    ]);
    let c = clients(&replay).await;
    let rec = Recorder::default();
    let existing = deploy::prepare_stack(&c, STACK, &fast(), &rec)
        .await
        .unwrap();
    assert!(existing.is_some());
    assert!(rec.0.lock().unwrap()[0].contains("waiting"));
}

#[tokio::test]
async fn in_progress_stack_is_refused_after_the_wait_limit() {
    let replay = StaticReplayClient::new(vec![stack("UPDATE_IN_PROGRESS")]);
    let c = clients(&replay).await;
    let opts = Options {
        wait_for_other_operation: Duration::ZERO,
        ..fast()
    };
    let text = deploy::prepare_stack(&c, STACK, &opts, &Recorder::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("UPDATE_IN_PROGRESS") && text.contains("another operation"),
        "{text}"
    );
}

#[tokio::test]
async fn missing_stack_means_create() {
    let replay = StaticReplayClient::new(vec![no_stack()]);
    let c = clients(&replay).await;
    assert!(
        deploy::prepare_stack(&c, STACK, &fast(), &Recorder::default())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn throttling_is_retried() {
    let replay = StaticReplayClient::new(vec![
        error(400, "Throttling", "Rate exceeded"),
        error(400, "Throttling", "Rate exceeded"),
        stack("UPDATE_COMPLETE"),
    ]);
    let c = clients(&replay).await;
    let existing = deploy::prepare_stack(&c, STACK, &fast(), &Recorder::default())
        .await
        .unwrap();
    assert!(existing.is_some());
    assert_eq!(actions(&replay).len(), 3);
}

#[tokio::test]
async fn failed_resource_reports_the_root_cause_not_the_cascade() {
    let stack_kind = "AWS::CloudFormation::Stack";
    let replay = StaticReplayClient::new(vec![events(&[
        event("e6", STACK, stack_kind, "ROLLBACK_COMPLETE", ""),
        event(
            "e5",
            "ActivatorRole",
            "AWS::IAM::Role",
            "DELETE_COMPLETE",
            "",
        ),
        event(
            "e4",
            STACK,
            stack_kind,
            "ROLLBACK_IN_PROGRESS",
            "The following resource(s) failed to create: [CaRegistration].",
        ),
        event(
            "e3",
            "ActivatorRole",
            "AWS::IAM::Role",
            "CREATE_FAILED",
            "Resource creation cancelled",
        ),
        event(
            "e2",
            "CaRegistration",
            "Custom::JitrCaRegistration",
            "CREATE_FAILED",
            "CaCertificatePem: CA certificate has expired (notAfter 978307200, now 1764324000)",
        ),
        event(
            "e1",
            STACK,
            stack_kind,
            "CREATE_IN_PROGRESS",
            "User Initiated",
        ),
    ])]);
    let c = clients(&replay).await;
    let rec = Recorder::default();
    let settled = deploy::watch(
        &c,
        STACK,
        STACK_ID,
        None,
        Duration::from_secs(5),
        fast().poll,
        &rec,
    )
    .await
    .unwrap();
    assert!(!settled.ok);
    assert_eq!(settled.status, "ROLLBACK_COMPLETE");
    assert_eq!(settled.causes.len(), 1, "{:?}", settled.causes);
    assert!(settled.causes[0].starts_with("CaRegistration (Custom::JitrCaRegistration) CREATE_FAILED: CaCertificatePem: CA certificate has expired"));
    let lines = rec.0.lock().unwrap();
    assert_eq!(lines.len(), 6, "every event streamed once, oldest first");
    assert!(lines[0].contains("CREATE_IN_PROGRESS") && lines[5].contains("ROLLBACK_COMPLETE"));
    let err = Error::DeployFailed {
        stack: STACK.into(),
        status: settled.status.clone(),
        causes: settled.causes.clone(),
    };
    assert!(
        err.to_string().contains("root cause:\n  CaRegistration"),
        "{err}"
    );
}

#[tokio::test]
async fn empty_change_set_is_no_changes() {
    let replay = StaticReplayClient::new(vec![ok(format!(
        r#"<DescribeChangeSetResponse xmlns="{NS}"><DescribeChangeSetResult>
  <ChangeSetName>jitr-dev-1</ChangeSetName>
  <ChangeSetId>arn:aws:cloudformation:eu-west-1:123456789012:changeSet/jitr-dev-1/4eca1a01</ChangeSetId>
  <StackId>{STACK_ID}</StackId><StackName>{STACK}</StackName>
  <ExecutionStatus>UNAVAILABLE</ExecutionStatus>
  <Status>FAILED</Status>
  <StatusReason>The submitted information didn't contain changes. Submit different information to create a change set.</StatusReason>
  <Changes/>
</DescribeChangeSetResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeChangeSetResponse>"#
    ))]);
    let c = clients(&replay).await;
    let result = deploy::wait_change_set(&c, STACK, "jitr-dev-1", &fast())
        .await
        .unwrap();
    assert!(matches!(result, ChangeSetResult::NoChanges), "{result:?}");
}

#[tokio::test]
async fn a_failed_change_set_is_an_error_with_the_reason_and_is_deleted() {
    let replay = StaticReplayClient::new(vec![
        ok(format!(
            r#"<DescribeChangeSetResponse xmlns="{NS}"><DescribeChangeSetResult><ChangeSetName>c</ChangeSetName><StackName>{STACK}</StackName><ExecutionStatus>UNAVAILABLE</ExecutionStatus><Status>FAILED</Status><StatusReason>Template format error: Unresolved resource dependencies [Nope] in the Resources block of the template</StatusReason><Changes/></DescribeChangeSetResult></DescribeChangeSetResponse>"#
        )),
        ok(format!(
            r#"<DeleteChangeSetResponse xmlns="{NS}"><DeleteChangeSetResult/><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DeleteChangeSetResponse>"#
        )),
    ]);
    let c = clients(&replay).await;
    let err = deploy::wait_change_set(&c, STACK, "c", &fast())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("Unresolved resource dependencies"),
        "{err}"
    );
    assert_eq!(actions(&replay), ["DescribeChangeSet", "DeleteChangeSet"]);
}

// ---------------------------------------------------------------------------------------------
// The asset bucket is ours or nothing: S3's answers, replayed as real S3 gives them (a HEAD
// answer has no body, so a 403 there names no cause).
// ---------------------------------------------------------------------------------------------

const ACCOUNT: &str = "123456789012";
const BUCKET: &str = "jitr-assets-123456789012-eu-west-1";

fn s3(status: u16, headers: &[(&str, &str)], body: &str) -> ReplayEvent {
    let mut response = http::Response::builder().status(status);
    for (k, v) in headers {
        response = response.header(*k, *v);
    }
    ReplayEvent::new(
        http::Request::builder()
            .uri("https://s3.eu-west-1.amazonaws.com/")
            .body(SdkBody::empty())
            .unwrap(),
        response.body(SdkBody::from(body.to_string())).unwrap(),
    )
}

fn s3_error(status: u16, code: &str, message: &str) -> ReplayEvent {
    s3(
        status,
        &[("content-type", "application/xml")],
        &format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message><RequestId>R</RequestId><HostId>H</HostId></Error>"#
        ),
    )
}

/// (method, path and query, x-amz-expected-bucket-owner) of each request sent.
fn s3_requests(replay: &StaticReplayClient) -> Vec<(String, String, Option<String>)> {
    replay
        .actual_requests()
        .map(|r| {
            let uri: http::Uri = r.uri().parse().unwrap();
            (
                r.method().to_string(),
                uri.path_and_query().unwrap().to_string(),
                r.headers()
                    .get("x-amz-expected-bucket-owner")
                    .map(str::to_string),
            )
        })
        .collect()
}

fn owner() -> Option<String> {
    Some(ACCOUNT.to_string())
}

fn foreign_bucket_message() -> String {
    format!(
        "asset bucket {BUCKET}: the bucket exists but belongs to another AWS account, not \
         {ACCOUNT} (S3 bucket names are global). Refusing to read from or write to it: the \
         Lambda code would come from a bucket someone else controls. If that account is yours \
         too, delete the bucket there and deploy again"
    )
}

#[tokio::test]
async fn a_bucket_of_another_account_is_refused_without_a_write() {
    let replay = StaticReplayClient::new(vec![
        s3(403, &[], ""),
        s3(
            200,
            &[("content-type", "application/xml")],
            r#"<?xml version="1.0" encoding="UTF-8"?><ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Owner><ID>o</ID></Owner><Buckets><Bucket><Name>jitr-assets-123456789012-eu-west-1-old</Name><CreationDate>2026-01-01T00:00:00.000Z</CreationDate></Bucket></Buckets><Prefix>jitr-assets-123456789012-eu-west-1</Prefix></ListAllMyBucketsResult>"#,
        ),
    ]);
    let c = clients(&replay).await;
    let err = AssetBucket::ensure(&c, ACCOUNT).await.err().unwrap();
    assert_eq!(err.to_string(), foreign_bucket_message());
    assert_eq!(
        s3_requests(&replay),
        [
            ("HEAD".into(), format!("/{BUCKET}/"), owner()),
            (
                "GET".into(),
                format!("/?x-id=ListBuckets&prefix={BUCKET}"),
                None
            ),
        ]
    );
}

#[tokio::test]
async fn a_denied_bucket_that_is_ours_is_a_permission_problem() {
    let replay = StaticReplayClient::new(vec![
        s3(403, &[], ""),
        s3(
            200,
            &[("content-type", "application/xml")],
            &format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Owner><ID>o</ID></Owner><Buckets><Bucket><Name>{BUCKET}</Name><CreationDate>2026-01-01T00:00:00.000Z</CreationDate></Bucket></Buckets></ListAllMyBucketsResult>"#
            ),
        ),
    ]);
    let c = clients(&replay).await;
    let err = AssetBucket::ensure(&c, ACCOUNT).await.err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "asset bucket {BUCKET}: S3 denied access (403) to this account's own bucket: these \
             credentials lack s3:ListBucket on it"
        )
    );
}

#[tokio::test]
async fn a_bucket_name_taken_at_creation_is_refused() {
    let replay = StaticReplayClient::new(vec![
        s3(404, &[], ""),
        s3_error(
            409,
            "BucketAlreadyExists",
            "The requested bucket name is not available.",
        ),
    ]);
    let c = clients(&replay).await;
    let err = AssetBucket::ensure(&c, ACCOUNT).await.err().unwrap();
    assert_eq!(err.to_string(), foreign_bucket_message());
    assert_eq!(s3_requests(&replay).len(), 2, "nothing after CreateBucket");
}

#[tokio::test]
async fn a_new_bucket_is_made_private_and_every_call_names_its_owner() {
    let replay = StaticReplayClient::new(vec![
        s3(404, &[], ""),
        s3(200, &[("location", "/jitr-assets")], ""),
        s3(200, &[], ""),
        s3(200, &[], ""),
    ]);
    let c = clients(&replay).await;
    AssetBucket::ensure(&c, ACCOUNT).await.unwrap();
    assert_eq!(
        s3_requests(&replay),
        [
            ("HEAD".into(), format!("/{BUCKET}/"), owner()),
            // The one call S3 offers no owner condition for.
            ("PUT".into(), format!("/{BUCKET}/"), None),
            (
                "PUT".into(),
                format!("/{BUCKET}/?publicAccessBlock"),
                owner()
            ),
            ("PUT".into(), format!("/{BUCKET}/?encryption"), owner()),
        ]
    );
}

/// Uploads `bytes` into an existing asset bucket whose object answers `head`.
async fn upload_over(head: ReplayEvent, bytes: &[u8]) -> (Vec<String>, StaticReplayClient) {
    let replay = StaticReplayClient::new(vec![
        s3(200, &[], ""),
        head,
        s3(200, &[("etag", "\"e\"")], ""),
    ]);
    let c = clients(&replay).await;
    let rec = Recorder::default();
    let bucket = AssetBucket::ensure(&c, ACCOUNT).await.unwrap();
    bucket
        .upload("asset.x.zip", bytes.to_vec(), &rec)
        .await
        .unwrap();
    let lines = rec.0.lock().unwrap().clone();
    (lines, replay)
}

fn sha256_b64(bytes: &[u8]) -> String {
    use sha2::Digest;
    aws_smithy_types::base64::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test]
async fn an_existing_object_is_trusted_only_with_our_checksum() {
    let bytes = b"PK\x03\x04 the zip";
    let ours = sha256_b64(bytes);

    // Our checksum: trusted, nothing uploaded.
    let (lines, replay) = upload_over(
        s3(
            200,
            &[("x-amz-checksum-sha256", &ours), ("content-length", "15")],
            "",
        ),
        bytes,
    )
    .await;
    assert!(lines.is_empty(), "{lines:?}");
    let sent = s3_requests(&replay);
    assert_eq!(sent.len(), 2, "{sent:?}");
    let head = replay.actual_requests().nth(1).unwrap();
    assert_eq!(head.headers().get("x-amz-checksum-mode"), Some("ENABLED"));

    // Other bytes under our key, or no checksum to tell: ours replaces them.
    let theirs = sha256_b64(b"something else");
    for (head, said) in [
        (
            s3(
                200,
                &[("x-amz-checksum-sha256", &theirs), ("content-length", "14")],
                "",
            ),
            format!(
                "s3://{BUCKET}/asset.x.zip holds other bytes (SHA-256 {theirs}, ours {ours}): \
                 replacing them"
            ),
        ),
        (
            s3(200, &[("content-length", "15")], ""),
            format!(
                "s3://{BUCKET}/asset.x.zip has no SHA-256 checksum to verify: uploading ours \
                 over it"
            ),
        ),
        (s3(404, &[], ""), "uploading asset.x.zip".to_string()),
    ] {
        let (lines, replay) = upload_over(head, bytes).await;
        assert_eq!(lines[0], said);
        let sent = s3_requests(&replay);
        assert_eq!(
            sent[2],
            (
                "PUT".into(),
                format!("/{BUCKET}/asset.x.zip?x-id=PutObject"),
                owner()
            )
        );
        let put = replay.actual_requests().nth(2).unwrap();
        assert_eq!(
            put.headers().get("x-amz-checksum-sha256"),
            Some(ours.as_str()),
            "S3 verifies the bytes it receives against our checksum"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// DEFAULT mode: the verification certificate only when the CA registration is created or
// replaced (the provider's own rule, on the deployed template's properties).
// ---------------------------------------------------------------------------------------------

/// A stage in a throwaway project; `activator` is the stage file's activator section.
struct StageDir(std::path::PathBuf);

impl StageDir {
    fn new(ca_yaml: &str, activator: &str) -> (StageDir, Stage) {
        let dir = std::env::temp_dir().join(testkit::unique("jitr-states"));
        std::fs::create_dir_all(dir.join("stacks")).unwrap();
        std::fs::create_dir_all(dir.join("certs")).unwrap();
        std::fs::create_dir_all(dir.join("templates")).unwrap();
        std::fs::copy(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("templates/device-policy.json.hbs"),
            dir.join("templates/device-policy.json.hbs"),
        )
        .unwrap();
        let ca = TestCa::new("States CA");
        std::fs::write(dir.join("certs/ca.pem"), &ca.pem).unwrap();
        let text = format!(
            "stack_name: jitr-dev\nregion: eu-west-1\nca:\n  certificate: certs/ca.pem\n{ca_yaml}activator:\n{activator}"
        );
        std::fs::write(dir.join("stacks/dev.yaml"), &text).unwrap();
        let stage = jitr_infra::stage::load(&dir, "dev").unwrap();
        (StageDir(dir), stage)
    }
}

impl Drop for StageDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The deployed template's parts that decide it.
fn deployed(pem: &str, mode: &str) -> serde_json::Value {
    serde_json::json!({
        "Parameters": { "VerificationCertificatePem": { "Type": "String" } },
        "Resources": { "CaRegistration": { "Type": "Custom::JitrCaRegistration", "Properties": {
            "CaCertificatePem": pem,
            "CertificateMode": mode,
            "VerificationCertificatePem": { "Ref": "VerificationCertificatePem" }
        }}}
    })
}

#[test]
fn only_a_new_or_replaced_registration_needs_a_verification_certificate() {
    let (_dir, stage) = StageDir::new(
        "  mode: DEFAULT\n  verification:\n    private_key_env: CA_KEY\n",
        "  memory_mb: 128\n",
    );
    let pem = stage.ca.pem.clone();
    assert!(deploy::creates_registration(None, &stage), "no stack yet");
    assert!(!deploy::creates_registration(
        Some(&deployed(&pem, "DEFAULT")),
        &stage
    ));
    // The same certificate written differently (CRLF line ends) is the same registration.
    assert!(!deploy::creates_registration(
        Some(&deployed(&pem.replace('\n', "\r\n"), "DEFAULT")),
        &stage
    ));
    let other = TestCa::new("Other CA").pem;
    assert!(deploy::creates_registration(
        Some(&deployed(&other, "DEFAULT")),
        &stage
    ));
    assert!(deploy::creates_registration(
        Some(&deployed(&pem, "SNI_ONLY")),
        &stage
    ));
    // A stack deployed in SNI_ONLY mode has no parameter to keep.
    let mut sni = deployed(&pem, "DEFAULT");
    sni["Parameters"] = serde_json::json!({});
    assert!(deploy::creates_registration(Some(&sni), &stage));
}

// ---------------------------------------------------------------------------------------------
// The activator's reserved concurrency against GetAccountSettings as Lambda answers it.
// ---------------------------------------------------------------------------------------------

fn lambda(status: u16, headers: &[(&str, &str)], body: &str) -> ReplayEvent {
    let mut response = http::Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (k, v) in headers {
        response = response.header(*k, *v);
    }
    ReplayEvent::new(
        http::Request::builder()
            .uri("https://lambda.eu-west-1.amazonaws.com/")
            .body(SdkBody::empty())
            .unwrap(),
        response.body(SdkBody::from(body.to_string())).unwrap(),
    )
}

fn account_settings(limit: u32, unreserved: u32) -> ReplayEvent {
    lambda(
        200,
        &[],
        &format!(
            r#"{{"AccountLimit":{{"TotalCodeSize":80530636800,"CodeSizeUnzipped":262144000,"CodeSizeZipped":52428800,"ConcurrentExecutions":{limit},"UnreservedConcurrentExecutions":{unreserved}}},"AccountUsage":{{"TotalCodeSize":0,"FunctionCount":0}}}}"#
        ),
    )
}

fn no_function() -> ReplayEvent {
    lambda(
        404,
        &[("x-amzn-errortype", "ResourceNotFoundException")],
        r#"{"Type":"User","Message":"Function not found: arn:aws:lambda:eu-west-1:123456789012:function:jitr-dev-activator"}"#,
    )
}

#[tokio::test]
async fn a_new_account_refuses_an_explicit_reservation_with_the_numbers_and_ways_out() {
    let replay = StaticReplayClient::new(vec![account_settings(50, 50), no_function()]);
    let c = clients(&replay).await;
    let (dir, stage) = StageDir::new(
        "  mode: SNI_ONLY\n",
        "  memory_mb: 128\n  reserved_concurrency: 20\n",
    );
    let err = concurrency::reserve(&c, &dir.0, &stage, ACCOUNT, &Recorder::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "stacks/dev.yaml: 1 problem\n  stacks/dev.yaml:8: activator.reserved_concurrency: 20 \
         cannot be reserved: account 123456789012 has a Lambda concurrency limit of 50 in \
         eu-west-1 with 50 unreserved, and Lambda keeps 50 unreserved, so at most 0 can be \
         reserved for the activator. Either remove activator.reserved_concurrency (the activator \
         then runs without a reservation), or ask for a higher Lambda \"Concurrent executions\" \
         quota in eu-west-1 (Service Quotas, quota code L-B99A9384)\n"
    );
    assert_eq!(err.exit_code(), 1);
}

#[tokio::test]
async fn a_reservation_larger_than_what_is_left_names_the_most_there_is() {
    // Limit 1000, 850 reserved by other functions, 20 by the activator itself.
    let replay = StaticReplayClient::new(vec![
        account_settings(1000, 130),
        lambda(200, &[], r#"{"ReservedConcurrentExecutions":20}"#),
    ]);
    let c = clients(&replay).await;
    let (dir, stage) = StageDir::new("  mode: SNI_ONLY\n", "  reserved_concurrency: 60\n");
    let err = concurrency::reserve(&c, &dir.0, &stage, ACCOUNT, &Recorder::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "60 cannot be reserved: account 123456789012 has a Lambda concurrency limit of 1000 \
             in eu-west-1 with 130 unreserved (plus 20 the activator reserves now), and Lambda \
             keeps 100 unreserved, so at most 50 can be reserved for the activator. Either lower \
             activator.reserved_concurrency to 50 or less, or ask for a higher Lambda"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn an_answer_without_an_error_code_names_its_http_status() {
    // An endpoint that lacks the operation answers 404 with a page, not an AWS error.
    let replay = StaticReplayClient::new(vec![ReplayEvent::new(
        http::Request::builder()
            .uri("https://lambda.eu-west-1.amazonaws.com/")
            .body(SdkBody::empty())
            .unwrap(),
        http::Response::builder()
            .status(404)
            .header("content-type", "text/html")
            .body(SdkBody::from("<html><h1>Not Found</h1></html>"))
            .unwrap(),
    )]);
    let c = clients(&replay).await;
    let (dir, stage) = StageDir::new("  mode: SNI_ONLY\n", "  memory_mb: 128\n");
    let err = concurrency::reserve(&c, &dir.0, &stage, ACCOUNT, &Recorder::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "lambda:GetAccountSettings: unhandled error (HTTP 404)"
    );
}

#[tokio::test]
async fn an_unset_reservation_in_a_new_account_is_none() {
    let replay = StaticReplayClient::new(vec![account_settings(10, 10), no_function()]);
    let c = clients(&replay).await;
    let (dir, stage) = StageDir::new("  mode: SNI_ONLY\n", "  memory_mb: 128\n");
    let rec = Recorder::default();
    let r = concurrency::reserve(&c, &dir.0, &stage, ACCOUNT, &rec)
        .await
        .unwrap();
    assert_eq!(r, concurrency::Reservation::None);
    assert_eq!(r.parameter().parameter_value(), Some("0"));
    assert!(
        rec.0.lock().unwrap()[0].starts_with("activator: deploying without reserved concurrency")
    );
}

// ---------------------------------------------------------------------------------------------
// Change-set names: letters, digits and hyphens, a letter first, at most 128 characters.
// ---------------------------------------------------------------------------------------------

fn valid_change_set_name(name: &str) -> bool {
    name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[test]
fn change_set_names_are_valid_whatever_the_stage_name() {
    let now = 1_764_400_000_123u128;
    assert_eq!(
        deploy::change_set_name("eu_prod", now),
        "jitr-eu-prod-1764400000123"
    );
    assert_eq!(
        deploy::change_set_name("dev", now),
        "jitr-dev-1764400000123"
    );
    for stage in [
        "eu_prod",
        "9lives",
        "_x_",
        "a.b",
        "émoji",
        &"long_".repeat(60),
    ] {
        let name = deploy::change_set_name(stage, now);
        assert!(valid_change_set_name(&name), "{stage:?} -> {name:?}");
        assert!(name.ends_with("-1764400000123"), "the time is kept: {name}");
    }
    assert_eq!(
        deploy::change_set_name(&"a".repeat(300), u128::MAX).len(),
        deploy::MAX_CHANGE_SET_NAME
    );
}

fn json_ok(body: &str) -> ReplayEvent {
    ReplayEvent::new(
        http::Request::builder()
            .uri("https://example.amazonaws.com/")
            .body(SdkBody::empty())
            .unwrap(),
        http::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(SdkBody::from(body.to_string()))
            .unwrap(),
    )
}

/// Each request as its CloudFormation `Action`, or `METHOD path` for the REST services.
fn operations(replay: &StaticReplayClient) -> Vec<String> {
    replay
        .actual_requests()
        .map(|r| {
            let body = String::from_utf8_lossy(r.body().bytes().unwrap_or_default()).into_owned();
            match body.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
                Some(a) => a.to_string(),
                None => {
                    let uri = r.uri();
                    let path = uri
                        .split("://")
                        .nth(1)
                        .and_then(|u| u.find('/').map(|i| &u[i..]))
                        .unwrap_or(uri);
                    format!("{} {}", r.method(), path.split('?').next().unwrap_or(path))
                }
            }
        })
        .collect()
}

#[tokio::test]
async fn a_deletion_still_running_when_destroy_stops_waiting_keeps_onboarding_stopped() {
    let stack_kind = "AWS::CloudFormation::Stack";
    let replay = StaticReplayClient::new(vec![
        json_ok(
            r#"{"ruleArn":"arn:aws:iot:eu-west-1:123456789012:rule/jitr_dev_registered","rule":{"ruleName":"jitr_dev_registered","sql":"SELECT * FROM 'x'","ruleDisabled":false}}"#,
        ),
        json_ok(""),
        json_ok(r#"{"ReservedConcurrentExecutions":5}"#),
        json_ok(r#"{"FunctionName":"jitr-dev-activator","Timeout":1}"#),
        json_ok(r#"{"ReservedConcurrentExecutions":0}"#),
        json_ok(r#"{"targets":[]}"#),
        events(&[event("e1", STACK, stack_kind, "CREATE_COMPLETE", "")]),
        ok(format!(
            r#"<DeleteStackResponse xmlns="{NS}"><ResponseMetadata><RequestId>d</RequestId></ResponseMetadata></DeleteStackResponse>"#
        )),
        events(&[
            event(
                "e22",
                STACK,
                stack_kind,
                "DELETE_IN_PROGRESS",
                "User Initiated",
            ),
            event("e1", STACK, stack_kind, "CREATE_COMPLETE", ""),
        ]),
    ]);
    let c = clients(&replay).await;
    let plan = DestroyPlan {
        stack_name: STACK.into(),
        stack_id: STACK_ID.into(),
        stack_status: "CREATE_COMPLETE".into(),
        resources: Vec::new(),
        ca_retained: false,
        device_policy: Some("jitr-dev-device".into()),
        attached_certificates: Vec::new(),
        termination_protection: false,
        registration_rule: Some("jitr_dev_registered".into()),
        activator_function: Some("jitr-dev-activator".into()),
        stage_file: "stacks/dev.yaml".into(),
        stage_name: "dev".into(),
    };
    let opts = Options {
        timeout: Duration::ZERO,
        ..fast()
    };
    let rec = Recorder::default();
    let err = destroy::destroy(&c, &plan, false, &opts, &rec)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("still running in CloudFormation"),
        "{err}"
    );
    // Nothing was put back: the stack is going away.
    assert_eq!(
        operations(&replay),
        [
            "GET /rules/jitr_dev_registered",
            "POST /rules/jitr_dev_registered/disable",
            "GET /2019-09-30/functions/jitr-dev-activator/concurrency",
            "GET /2015-03-31/functions/jitr-dev-activator/configuration",
            "PUT /2017-10-31/functions/jitr-dev-activator/concurrency",
            "POST /policy-targets/jitr-dev-device",
            "DescribeStackEvents",
            "DeleteStack",
            "DescribeStackEvents",
        ]
    );
    let lines = rec.0.lock().unwrap();
    assert_eq!(
        lines.last().map(String::as_str),
        Some("the deletion was accepted and is still running: onboarding stays stopped"),
        "{lines:#?}"
    );
}
