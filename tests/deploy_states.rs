//! Stack states and failures moto cannot produce, played through the real AWS SDK clients
//! with the SDK's own mocks (`aws-smithy-mocks`): typed outputs and errors for the states,
//! and the wire itself (query XML, S3's bodiless HEAD answers, an error page) where what is
//! on the wire is the point: the empty change set's FAILED status reason, the error shapes,
//! a throttled answer retried.

use aws_sdk_cloudformation::config::http::HttpResponse;
use aws_sdk_cloudformation::types::{
    ChangeSetStatus, ExecutionStatus, ResourceStatus, Stack, StackEvent, StackStatus,
};
use aws_smithy_mocks::{
    create_mock_http_client, mock, MockResponse, MockResponseInterceptor, Rule, RuleBuilder,
    RuleMode,
};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::DateTime;
use jitr_infra::aws::Clients;
use jitr_infra::deploy::concurrency;
use jitr_infra::deploy::destroy::{self, DestroyPlan};
use jitr_infra::deploy::events::{self, EventWatcher};
use jitr_infra::deploy::publish::AssetBucket;
use jitr_infra::deploy::{self, change_set, stack, ChangeSetResult, Options, Poll, Reporter};
use jitr_infra::diff::StackDiff;
use jitr_infra::error::Error;
use jitr_infra::stage::Stage;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::pki::TestCa;

const STACK: &str = "jitr-dev";
const STACK_ID: &str =
    "arn:aws:cloudformation:eu-west-1:123456789012:stack/jitr-dev/2d3b7a90-6c2e-11ef-9a6b-0a1b2c3d4e5f";
const NS: &str = "http://cloudformation.amazonaws.com/doc/2010-05-15/";

/// The operations the mocks answered, in order, across every service.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<&'static str>>>);

impl Calls {
    fn push(&self, name: &'static str) {
        self.0.lock().unwrap().push(name);
    }

    fn list(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().clone()
    }

    /// Answers `rule` with a typed output.
    fn output<I, O, E>(
        &self,
        name: &'static str,
        rule: RuleBuilder<I, O, E>,
        output: impl Fn() -> O + Send + Sync + 'static,
    ) -> Rule
    where
        I: std::fmt::Debug + Send + Sync + 'static,
        O: std::fmt::Debug + Send + Sync + 'static,
        E: std::fmt::Debug + Send + Sync + std::error::Error + 'static,
    {
        let calls = self.clone();
        rule.then_compute_output(move |_| {
            calls.push(name);
            output()
        })
    }

    /// Answers `rule` with a typed error.
    fn error<I, O, E>(
        &self,
        name: &'static str,
        rule: RuleBuilder<I, O, E>,
        error: impl Fn() -> E + Send + Sync + 'static,
    ) -> Rule
    where
        I: std::fmt::Debug + Send + Sync + 'static,
        O: std::fmt::Debug + Send + Sync + 'static,
        E: std::fmt::Debug + Send + Sync + std::error::Error + 'static,
    {
        let calls = self.clone();
        rule.then_compute_response(move |_| {
            calls.push(name);
            MockResponse::Error(error())
        })
    }

    /// Answers `rule` on the wire: this status, headers and body go through the SDK's own
    /// deserializer.
    fn wire<I, O, E>(&self, name: &'static str, rule: RuleBuilder<I, O, E>, answer: Wire) -> Rule
    where
        I: std::fmt::Debug + Send + Sync + 'static,
        O: std::fmt::Debug + Send + Sync + 'static,
        E: std::fmt::Debug + Send + Sync + std::error::Error + 'static,
    {
        let calls = self.clone();
        rule.then_compute_response(move |_| {
            calls.push(name);
            MockResponse::Http(answer.response())
        })
    }
}

/// An HTTP answer as a service gives it.
#[derive(Clone)]
struct Wire {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Wire {
    fn new(status: u16, headers: &[(&'static str, &str)], body: &str) -> Wire {
        Wire {
            status,
            headers: headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            body: body.to_string(),
        }
    }

    fn response(&self) -> HttpResponse {
        let mut r = HttpResponse::new(
            self.status.try_into().unwrap(),
            SdkBody::from(self.body.clone()),
        );
        for (k, v) in &self.headers {
            r.headers_mut().insert(*k, v.clone());
        }
        r
    }
}

/// A CloudFormation error as the awsquery protocol puts it on the wire.
fn query_error(status: u16, code: &str, message: &str) -> Wire {
    Wire::new(
        status,
        &[("content-type", "text/xml")],
        &format!(
            r#"<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>5ccc7dcd-744c-11e5-be70-example</RequestId></ErrorResponse>"#
        ),
    )
}

/// The mocked services; a call without a rule left fails the test.
#[derive(Default)]
struct Mocks {
    cfn: Vec<Rule>,
    s3: Vec<Rule>,
    lambda: Vec<Rule>,
    iot: Vec<Rule>,
    sts: Vec<Rule>,
}

macro_rules! client {
    ($krate:ident, $rules:expr) => {{
        let mut mocks = MockResponseInterceptor::new().rule_mode(RuleMode::Sequential);
        for rule in $rules {
            mocks = mocks.with_rule(rule);
        }
        $krate::Client::from_conf(
            $krate::Config::builder()
                .behavior_version($krate::config::BehaviorVersion::latest())
                .region($krate::config::Region::new("eu-west-1"))
                .credentials_provider($krate::config::Credentials::new(
                    "AKIDEXAMPLE",
                    "secret",
                    None,
                    None,
                    "test",
                ))
                .http_client(create_mock_http_client())
                .interceptor(mocks)
                .retry_config(
                    $krate::config::retry::RetryConfig::standard()
                        .with_max_attempts(3)
                        .with_initial_backoff(Duration::from_millis(1)),
                )
                .build(),
        )
    }};
}

fn clients(m: Mocks) -> Clients {
    Clients {
        cfn: client!(aws_sdk_cloudformation, &m.cfn),
        s3: client!(aws_sdk_s3, &m.s3),
        sts: client!(aws_sdk_sts, &m.sts),
        iot: client!(aws_sdk_iot, &m.iot),
        lambda: client!(aws_sdk_lambda, &m.lambda),
        // Neither deploy nor destroy calls them (status and redrive do).
        sqs: client!(aws_sdk_sqs, &Vec::<Rule>::new()),
        cloudwatch: client!(aws_sdk_cloudwatch, &Vec::<Rule>::new()),
        region: "eu-west-1".into(),
    }
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

// ---------------------------------------------------------------------------------------------
// The stack's state before a change set.
// ---------------------------------------------------------------------------------------------

type Cfn = aws_sdk_cloudformation::Client;

fn a_stack(
    status: StackStatus,
) -> aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksOutput {
    aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksOutput::builder()
        .stacks(
            Stack::builder()
                .stack_name(STACK)
                .stack_id(STACK_ID)
                .description("AWS IoT Just-In-Time Registration for stage dev (jitr-infra)")
                .creation_time(DateTime::from_secs(1_764_324_000))
                .stack_status(status)
                .disable_rollback(false)
                .build(),
        )
        .build()
}

/// DescribeStacks answering each status in turn.
fn stack_states(calls: &Calls, states: &[StackStatus]) -> Vec<Rule> {
    states
        .iter()
        .map(|s| {
            let s = s.clone();
            calls.output(
                "DescribeStacks",
                mock!(Cfn::describe_stacks).match_requests(|r| r.stack_name().is_some()),
                move || a_stack(s.clone()),
            )
        })
        .collect()
}

#[tokio::test]
async fn rollback_complete_is_explained_with_deletion_as_the_way_out() {
    let calls = Calls::default();
    let c = clients(Mocks {
        cfn: stack_states(&calls, &[StackStatus::RollbackComplete]),
        ..Mocks::default()
    });
    let err = stack::prepare(&c, STACK, &fast(), &Recorder::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::StackState { .. }), "{err:?}");
    assert!(text.contains("ROLLBACK_COMPLETE"), "{text}");
    assert!(text.contains("only deleted"), "{text}");
    assert!(text.contains("jitr-infra destroy"), "{text}");
    assert_eq!(err.exit_code(), 1);
    assert_eq!(calls.list(), ["DescribeStacks"], "nothing changed");
}

#[tokio::test]
async fn update_rollback_failed_is_explained_with_continue_update_rollback() {
    let calls = Calls::default();
    let c = clients(Mocks {
        cfn: stack_states(&calls, &[StackStatus::UpdateRollbackFailed]),
        ..Mocks::default()
    });
    let text = stack::prepare(&c, STACK, &fast(), &Recorder::default())
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
    let calls = Calls::default();
    let mut cfn = stack_states(&calls, &[StackStatus::ReviewInProgress]);
    cfn.push(calls.output(
        "DeleteStack",
        // The stack is deleted by its id, so a stack of the same name made meanwhile is not.
        mock!(Cfn::delete_stack).match_requests(|r| r.stack_name() == Some(STACK_ID)),
        || aws_sdk_cloudformation::operation::delete_stack::DeleteStackOutput::builder().build(),
    ));
    cfn.extend(stack_states(
        &calls,
        &[StackStatus::DeleteInProgress, StackStatus::DeleteComplete],
    ));
    let c = clients(Mocks {
        cfn,
        ..Mocks::default()
    });
    let rec = Recorder::default();
    let existing = stack::prepare(&c, STACK, &fast(), &rec).await.unwrap();
    assert!(existing.is_none(), "a fresh CREATE follows");
    assert_eq!(
        calls.list(),
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
    let calls = Calls::default();
    let c = clients(Mocks {
        cfn: stack_states(
            &calls,
            &[
                StackStatus::UpdateInProgress,
                StackStatus::UpdateCompleteCleanupInProgress,
                StackStatus::UpdateComplete,
            ],
        ),
        ..Mocks::default()
    });
    let rec = Recorder::default();
    let existing = stack::prepare(&c, STACK, &fast(), &rec).await.unwrap();
    assert!(existing.is_some());
    assert_eq!(calls.list().len(), 3);
    assert!(rec.0.lock().unwrap()[0].contains("waiting"));
}

#[tokio::test]
async fn in_progress_stack_is_refused_after_the_wait_limit() {
    let calls = Calls::default();
    let c = clients(Mocks {
        cfn: stack_states(&calls, &[StackStatus::UpdateInProgress]),
        ..Mocks::default()
    });
    let opts = Options {
        wait_for_other_operation: Duration::ZERO,
        ..fast()
    };
    let text = stack::prepare(&c, STACK, &opts, &Recorder::default())
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
    // On the wire: CloudFormation says "does not exist" with a ValidationError, not a code
    // of its own, so the message is what tells.
    let calls = Calls::default();
    let c = clients(Mocks {
        cfn: vec![calls.wire(
            "DescribeStacks",
            mock!(Cfn::describe_stacks),
            query_error(
                400,
                "ValidationError",
                &format!("Stack with id {STACK} does not exist"),
            ),
        )],
        ..Mocks::default()
    });
    assert!(stack::prepare(&c, STACK, &fast(), &Recorder::default())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn throttling_is_retried() {
    // On the wire: the retry classifier reads the error code from the query XML.
    let calls = Calls::default();
    let throttled = query_error(400, "Throttling", "Rate exceeded");
    let (log, log2) = (calls.clone(), calls.clone());
    let rule = mock!(Cfn::describe_stacks)
        .sequence()
        .http_response(move || {
            log.push("DescribeStacks");
            throttled.response()
        })
        .times(2)
        .output(move || {
            log2.push("DescribeStacks");
            a_stack(StackStatus::UpdateComplete)
        })
        .build();
    let c = clients(Mocks {
        cfn: vec![rule],
        ..Mocks::default()
    });
    let existing = stack::prepare(&c, STACK, &fast(), &Recorder::default())
        .await
        .unwrap();
    assert!(existing.is_some());
    assert_eq!(calls.list().len(), 3);
}

// ---------------------------------------------------------------------------------------------
// Watching an operation: typed events, every page, nothing from before it began.
// ---------------------------------------------------------------------------------------------

const STACK_TYPE: &str = "AWS::CloudFormation::Stack";

fn event(
    id: &str,
    logical: &str,
    kind: &str,
    status: ResourceStatus,
    reason: &str,
    secs: i64,
) -> StackEvent {
    StackEvent::builder()
        .event_id(id)
        .stack_name(STACK)
        .stack_id(STACK_ID)
        .logical_resource_id(logical)
        .physical_resource_id(format!("p-{id}"))
        .resource_type(kind)
        .timestamp(DateTime::from_secs(1_764_324_000 + secs))
        .resource_status(status)
        .resource_status_reason(reason)
        .build()
}

type EventsOut =
    aws_sdk_cloudformation::operation::describe_stack_events::DescribeStackEventsOutput;

/// One page of DescribeStackEvents (newest first), asked for with `token`.
fn events_page(
    calls: &Calls,
    token: Option<&'static str>,
    newest_first: Vec<StackEvent>,
    next: Option<&'static str>,
) -> Rule {
    calls.output(
        "DescribeStackEvents",
        mock!(Cfn::describe_stack_events)
            .match_requests(move |r| r.stack_name() == Some(STACK_ID) && r.next_token() == token),
        move || {
            EventsOut::builder()
                .set_stack_events(Some(newest_first.clone()))
                .set_next_token(next.map(str::to_string))
                .build()
        },
    )
}

#[tokio::test]
async fn failed_resource_reports_the_root_cause_not_the_cascade() {
    use ResourceStatus as R;
    let calls = Calls::default();
    let c = clients(Mocks {
        cfn: vec![events_page(
            &calls,
            None,
            vec![
                event("e6", STACK, STACK_TYPE, R::RollbackComplete, "", 6),
                event("e5", "ActivatorRole", "AWS::IAM::Role", R::DeleteComplete, "", 5),
                event(
                    "e4",
                    STACK,
                    STACK_TYPE,
                    R::RollbackInProgress,
                    "The following resource(s) failed to create: [CaRegistration].",
                    4,
                ),
                event(
                    "e3",
                    "ActivatorRole",
                    "AWS::IAM::Role",
                    R::CreateFailed,
                    "Resource creation cancelled",
                    3,
                ),
                event(
                    "e2",
                    "CaRegistration",
                    "Custom::JitrCaRegistration",
                    R::CreateFailed,
                    "CaCertificatePem: CA certificate has expired (notAfter 978307200, now 1764324000)",
                    2,
                ),
                event("e1", STACK, STACK_TYPE, R::CreateInProgress, "User Initiated", 1),
            ],
            None,
        )],
        ..Mocks::default()
    });
    let rec = Recorder::default();
    let mut watcher = EventWatcher::after(&c, STACK_ID, None);
    let settled = events::watch(
        STACK,
        &mut watcher,
        Duration::from_secs(5),
        fast().poll,
        &rec,
    )
    .await
    .unwrap();
    assert!(!settled.ok);
    assert_eq!(settled.status, StackStatus::RollbackComplete);
    assert_eq!(settled.causes.len(), 1, "{:?}", settled.causes);
    assert!(settled.causes[0].starts_with("CaRegistration (Custom::JitrCaRegistration) CREATE_FAILED: CaCertificatePem: CA certificate has expired"));
    let lines = rec.0.lock().unwrap();
    assert_eq!(lines.len(), 6, "every event streamed once, oldest first");
    assert!(lines[0].contains("CREATE_IN_PROGRESS") && lines[5].contains("ROLLBACK_COMPLETE"));
    let ids: Vec<&str> = settled.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(
        ids,
        ["e1", "e2", "e3", "e4", "e5", "e6"],
        "the events are kept, typed"
    );
    let err = Error::DeployFailed {
        stack: STACK.into(),
        status: settled.status.as_str().into(),
        causes: settled.causes.clone(),
    };
    assert!(
        err.to_string().contains("root cause:\n  CaRegistration"),
        "{err}"
    );
}

#[tokio::test]
async fn a_burst_longer_than_a_page_loses_no_event() {
    use ResourceStatus as R;
    let role = |id: &str, status: R, secs: i64| {
        event(id, "ActivatorRole", "AWS::IAM::Role", status, "", secs)
    };
    let calls = Calls::default();
    let c = clients(Mocks {
        cfn: vec![
            events_page(
                &calls,
                None,
                vec![
                    role("e5", R::CreateComplete, 5),
                    role("e4", R::CreateInProgress, 4),
                ],
                Some("t1"),
            ),
            events_page(
                &calls,
                Some("t1"),
                vec![
                    role("e3", R::CreateInProgress, 3),
                    role("e2", R::CreateInProgress, 2),
                ],
                Some("t2"),
            ),
            // The page holding the last event seen ends the walk: no fourth page is asked for.
            events_page(
                &calls,
                Some("t2"),
                vec![
                    role("e1", R::CreateInProgress, 1),
                    role("e0", R::CreateComplete, 0),
                ],
                Some("t3"),
            ),
            // The next look: only what is new since e5.
            events_page(
                &calls,
                None,
                vec![
                    role("e6", R::UpdateInProgress, 6),
                    role("e5", R::CreateComplete, 5),
                ],
                Some("t4"),
            ),
        ],
        ..Mocks::default()
    });
    let mut watcher = EventWatcher::after(&c, STACK_ID, Some("e0".into()));
    let first: Vec<String> = watcher
        .next_events()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(
        first,
        ["e1", "e2", "e3", "e4", "e5"],
        "oldest first, across three pages"
    );
    let second: Vec<String> = watcher
        .next_events()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(second, ["e6"]);
    assert_eq!(calls.list().len(), 4);
}

#[tokio::test]
async fn only_events_after_the_operation_began_are_yielded() {
    use ResourceStatus as R;
    let calls = Calls::default();
    let c = clients(Mocks {
        cfn: vec![
            // Before the operation: the newest event marks where it begins.
            events_page(
                &calls,
                None,
                vec![event("e9", STACK, STACK_TYPE, R::UpdateComplete, "", 100)],
                Some("old"),
            ),
            events_page(
                &calls,
                None,
                vec![
                    event("e11", STACK, STACK_TYPE, R::UpdateComplete, "", 110),
                    event(
                        "e10",
                        STACK,
                        STACK_TYPE,
                        R::UpdateInProgress,
                        "User Initiated",
                        105,
                    ),
                ],
                Some("t1"),
            ),
            // The marker itself is not on this page (CloudFormation pages by its own rules):
            // the walk still stops at the first event older than it.
            events_page(
                &calls,
                Some("t1"),
                vec![event(
                    "e7",
                    STACK,
                    STACK_TYPE,
                    R::UpdateInProgress,
                    "earlier",
                    50,
                )],
                Some("t2"),
            ),
        ],
        ..Mocks::default()
    });
    let mut watcher = EventWatcher::before_operation(&c, STACK_ID).await;
    let ids: Vec<String> = watcher
        .next_events()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(ids, ["e10", "e11"]);
    assert_eq!(calls.list().len(), 3);
}

// ---------------------------------------------------------------------------------------------
// The change set.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn empty_change_set_is_no_changes() {
    // On the wire, as CloudFormation answers it: the "no changes" news is only in the FAILED
    // change set's status reason.
    let calls = Calls::default();
    let c = clients(Mocks {
        cfn: vec![calls.wire(
            "DescribeChangeSet",
            mock!(Cfn::describe_change_set),
            Wire::new(
                200,
                &[("content-type", "text/xml")],
                &format!(
                    r#"<DescribeChangeSetResponse xmlns="{NS}"><DescribeChangeSetResult>
  <ChangeSetName>jitr-dev-1</ChangeSetName>
  <ChangeSetId>arn:aws:cloudformation:eu-west-1:123456789012:changeSet/jitr-dev-1/4eca1a01</ChangeSetId>
  <StackId>{STACK_ID}</StackId><StackName>{STACK}</StackName>
  <ExecutionStatus>UNAVAILABLE</ExecutionStatus>
  <Status>FAILED</Status>
  <StatusReason>The submitted information didn't contain changes. Submit different information to create a change set.</StatusReason>
  <Changes/>
</DescribeChangeSetResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeChangeSetResponse>"#
                ),
            ),
        )],
        ..Mocks::default()
    });
    let result = change_set::wait(&c, STACK, "jitr-dev-1", &fast())
        .await
        .unwrap();
    assert!(matches!(result, ChangeSetResult::NoChanges), "{result:?}");
}

type DescribeChangeSetOut =
    aws_sdk_cloudformation::operation::describe_change_set::DescribeChangeSetOutput;

#[tokio::test]
async fn a_failed_change_set_is_an_error_with_the_reason_and_is_deleted() {
    let calls = Calls::default();
    let c = clients(Mocks {
        cfn: vec![
            calls.output("DescribeChangeSet", mock!(Cfn::describe_change_set), || {
                DescribeChangeSetOut::builder()
                    .change_set_name("c")
                    .stack_name(STACK)
                    .execution_status(ExecutionStatus::Unavailable)
                    .status(ChangeSetStatus::Failed)
                    .status_reason("Template format error: Unresolved resource dependencies [Nope] in the Resources block of the template")
                    .build()
            }),
            calls.output(
                "DeleteChangeSet",
                mock!(Cfn::delete_change_set).match_requests(|r| r.change_set_name() == Some("c")),
                || aws_sdk_cloudformation::operation::delete_change_set::DeleteChangeSetOutput::builder().build(),
            ),
        ],
        ..Mocks::default()
    });
    let err = change_set::wait(&c, STACK, "c", &fast()).await.unwrap_err();
    assert!(
        err.to_string().contains("Unresolved resource dependencies"),
        "{err}"
    );
    assert!(matches!(err, Error::ChangeSetFailed { .. }), "{err:?}");
    assert_eq!(calls.list(), ["DescribeChangeSet", "DeleteChangeSet"]);
}

#[tokio::test]
async fn an_obsolete_change_set_is_not_executed() {
    let calls = Calls::default();
    let c = clients(Mocks {
        cfn: vec![
            calls.output("DescribeChangeSet", mock!(Cfn::describe_change_set), || {
                DescribeChangeSetOut::builder()
                    .status(ChangeSetStatus::CreateComplete)
                    .execution_status(ExecutionStatus::Obsolete)
                    .build()
            }),
            calls.output("DeleteChangeSet", mock!(Cfn::delete_change_set), || {
                aws_sdk_cloudformation::operation::delete_change_set::DeleteChangeSetOutput::builder().build()
            }),
        ],
        ..Mocks::default()
    });
    let err = change_set::wait(&c, STACK, "c", &fast()).await.unwrap_err();
    assert!(err.to_string().contains("OBSOLETE"), "{err}");
    assert_eq!(calls.list(), ["DescribeChangeSet", "DeleteChangeSet"]);
}

// ---------------------------------------------------------------------------------------------
// The asset bucket is ours or nothing. S3's bodiless HEAD answers stay on the wire (a 403
// there names no cause); the rest are typed, and each request is checked to name the owner.
// ---------------------------------------------------------------------------------------------

const ACCOUNT: &str = "123456789012";
const BUCKET: &str = "jitr-assets-123456789012-eu-west-1";

type S3 = aws_sdk_s3::Client;

fn head_bucket(calls: &Calls, status: u16) -> Rule {
    calls.wire(
        "HeadBucket",
        mock!(S3::head_bucket).match_requests(|r| {
            r.bucket() == Some(BUCKET) && r.expected_bucket_owner() == Some(ACCOUNT)
        }),
        Wire::new(status, &[], ""),
    )
}

fn list_buckets(calls: &Calls, names: &'static [&'static str]) -> Rule {
    calls.output(
        "ListBuckets",
        // ListBuckets lists the caller's own buckets and touches no other.
        mock!(S3::list_buckets).match_requests(|r| r.prefix() == Some(BUCKET)),
        move || {
            aws_sdk_s3::operation::list_buckets::ListBucketsOutput::builder()
                .set_buckets(Some(
                    names
                        .iter()
                        .map(|n| aws_sdk_s3::types::Bucket::builder().name(*n).build())
                        .collect(),
                ))
                .build()
        },
    )
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
    let calls = Calls::default();
    let c = clients(Mocks {
        s3: vec![
            head_bucket(&calls, 403),
            list_buckets(&calls, &["jitr-assets-123456789012-eu-west-1-old"]),
        ],
        ..Mocks::default()
    });
    let err = AssetBucket::ensure(&c, ACCOUNT).await.err().unwrap();
    assert_eq!(err.to_string(), foreign_bucket_message());
    assert_eq!(calls.list(), ["HeadBucket", "ListBuckets"]);
}

#[tokio::test]
async fn a_denied_bucket_that_is_ours_is_a_permission_problem() {
    let calls = Calls::default();
    let c = clients(Mocks {
        s3: vec![head_bucket(&calls, 403), list_buckets(&calls, &[BUCKET])],
        ..Mocks::default()
    });
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
    // On the wire: S3's XML error names the code.
    let calls = Calls::default();
    let c = clients(Mocks {
        s3: vec![
            head_bucket(&calls, 404),
            calls.wire(
                "CreateBucket",
                mock!(S3::create_bucket),
                Wire::new(
                    409,
                    &[("content-type", "application/xml")],
                    r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>BucketAlreadyExists</Code><Message>The requested bucket name is not available.</Message><RequestId>R</RequestId><HostId>H</HostId></Error>"#,
                ),
            ),
        ],
        ..Mocks::default()
    });
    let err = AssetBucket::ensure(&c, ACCOUNT).await.err().unwrap();
    assert_eq!(err.to_string(), foreign_bucket_message());
    assert_eq!(
        calls.list(),
        ["HeadBucket", "CreateBucket"],
        "nothing after CreateBucket"
    );
}

#[tokio::test]
async fn a_new_bucket_is_made_private_and_every_call_names_its_owner() {
    use aws_sdk_s3::types::{BucketLocationConstraint, ServerSideEncryption};
    let calls = Calls::default();
    let owner = |o: Option<&str>| o == Some(ACCOUNT);
    let c = clients(Mocks {
        s3: vec![
            head_bucket(&calls, 404),
            calls.output(
                "CreateBucket",
                // The one call S3 offers no owner condition for.
                mock!(S3::create_bucket).match_requests(|r| {
                    r.bucket() == Some(BUCKET)
                        && r.create_bucket_configuration()
                            .and_then(|c| c.location_constraint())
                            == Some(&BucketLocationConstraint::EuWest1)
                }),
                || aws_sdk_s3::operation::create_bucket::CreateBucketOutput::builder().build(),
            ),
            calls.output(
                "PutPublicAccessBlock",
                mock!(S3::put_public_access_block).match_requests(move |r| {
                    let b = r.public_access_block_configuration();
                    owner(r.expected_bucket_owner())
                        && b.and_then(|b| b.block_public_acls()) == Some(true)
                        && b.and_then(|b| b.ignore_public_acls()) == Some(true)
                        && b.and_then(|b| b.block_public_policy()) == Some(true)
                        && b.and_then(|b| b.restrict_public_buckets()) == Some(true)
                }),
                || {
                    aws_sdk_s3::operation::put_public_access_block::PutPublicAccessBlockOutput::builder().build()
                },
            ),
            calls.output(
                "PutBucketEncryption",
                mock!(S3::put_bucket_encryption).match_requests(move |r| {
                    let algorithm = r
                        .server_side_encryption_configuration()
                        .and_then(|c| c.rules().first())
                        .and_then(|rule| rule.apply_server_side_encryption_by_default())
                        .map(|d| d.sse_algorithm().clone());
                    owner(r.expected_bucket_owner())
                        && algorithm == Some(ServerSideEncryption::Aes256)
                }),
                || {
                    aws_sdk_s3::operation::put_bucket_encryption::PutBucketEncryptionOutput::builder().build()
                },
            ),
        ],
        ..Mocks::default()
    });
    AssetBucket::ensure(&c, ACCOUNT).await.unwrap();
    assert_eq!(
        calls.list(),
        [
            "HeadBucket",
            "CreateBucket",
            "PutPublicAccessBlock",
            "PutBucketEncryption"
        ]
    );
}

fn sha256_b64(bytes: &[u8]) -> String {
    use sha2::Digest;
    aws_smithy_types::base64::encode(sha2::Sha256::digest(bytes))
}

/// Uploads `bytes` into an existing asset bucket whose object answers `head`; the lines
/// reported and the calls made.
async fn upload_over(head: Rule, calls: &Calls, bytes: &[u8]) -> Vec<String> {
    let ours = sha256_b64(bytes);
    let c = clients(Mocks {
        s3: vec![
            calls.output("HeadBucket", mock!(S3::head_bucket), || {
                aws_sdk_s3::operation::head_bucket::HeadBucketOutput::builder().build()
            }),
            head,
            calls.output(
                "PutObject",
                // S3 verifies the bytes it receives against our checksum.
                mock!(S3::put_object).match_requests(move |r| {
                    r.key() == Some("asset.x.zip")
                        && r.expected_bucket_owner() == Some(ACCOUNT)
                        && r.checksum_sha256() == Some(ours.as_str())
                }),
                || {
                    aws_sdk_s3::operation::put_object::PutObjectOutput::builder()
                        .e_tag("\"e\"")
                        .build()
                },
            ),
        ],
        ..Mocks::default()
    });
    let rec = Recorder::default();
    let bucket = AssetBucket::ensure(&c, ACCOUNT).await.unwrap();
    bucket
        .upload("asset.x.zip", bytes.to_vec(), &rec)
        .await
        .unwrap();
    let lines = rec.0.lock().unwrap().clone();
    lines
}

fn head_object(calls: &Calls, checksum: Option<String>) -> Rule {
    calls.output(
        "HeadObject",
        mock!(S3::head_object).match_requests(|r| {
            r.expected_bucket_owner() == Some(ACCOUNT)
                && r.checksum_mode() == Some(&aws_sdk_s3::types::ChecksumMode::Enabled)
        }),
        move || {
            aws_sdk_s3::operation::head_object::HeadObjectOutput::builder()
                .set_checksum_sha256(checksum.clone())
                .content_length(15)
                .build()
        },
    )
}

#[tokio::test]
async fn an_existing_object_is_trusted_only_with_our_checksum() {
    let bytes = b"PK\x03\x04 the zip";
    let ours = sha256_b64(bytes);

    // Our checksum: trusted, nothing uploaded.
    let calls = Calls::default();
    let c = clients(Mocks {
        s3: vec![
            calls.output("HeadBucket", mock!(S3::head_bucket), || {
                aws_sdk_s3::operation::head_bucket::HeadBucketOutput::builder().build()
            }),
            head_object(&calls, Some(ours.clone())),
        ],
        ..Mocks::default()
    });
    let rec = Recorder::default();
    let bucket = AssetBucket::ensure(&c, ACCOUNT).await.unwrap();
    bucket
        .upload("asset.x.zip", bytes.to_vec(), &rec)
        .await
        .unwrap();
    assert!(rec.0.lock().unwrap().is_empty());
    assert_eq!(calls.list(), ["HeadBucket", "HeadObject"]);

    // Other bytes under our key, or no checksum to tell: ours replaces them.
    let theirs = sha256_b64(b"something else");
    let calls = Calls::default();
    let lines = upload_over(head_object(&calls, Some(theirs.clone())), &calls, bytes).await;
    assert_eq!(
        lines[0],
        format!(
            "s3://{BUCKET}/asset.x.zip holds other bytes (SHA-256 {theirs}, ours {ours}): \
             replacing them"
        )
    );
    assert_eq!(calls.list(), ["HeadBucket", "HeadObject", "PutObject"]);

    let calls = Calls::default();
    let lines = upload_over(head_object(&calls, None), &calls, bytes).await;
    assert_eq!(
        lines[0],
        format!(
            "s3://{BUCKET}/asset.x.zip has no SHA-256 checksum to verify: uploading ours over it"
        )
    );
    assert_eq!(calls.list(), ["HeadBucket", "HeadObject", "PutObject"]);

    // Missing (on the wire: a HEAD's 404 has no body).
    let calls = Calls::default();
    let missing = calls.wire(
        "HeadObject",
        mock!(S3::head_object),
        Wire::new(404, &[], ""),
    );
    let lines = upload_over(missing, &calls, bytes).await;
    assert_eq!(lines[0], "uploading asset.x.zip");
    assert_eq!(calls.list(), ["HeadBucket", "HeadObject", "PutObject"]);
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
    let ca = &stage.cas()[0];
    let pem = ca.pem.clone();
    assert!(
        deploy::creates_registration(None, &stage, ca),
        "no stack yet"
    );
    assert!(!deploy::creates_registration(
        Some(&deployed(&pem, "DEFAULT")),
        &stage,
        ca
    ));
    // The same certificate written differently (CRLF line ends) is the same registration.
    assert!(!deploy::creates_registration(
        Some(&deployed(&pem.replace('\n', "\r\n"), "DEFAULT")),
        &stage,
        ca
    ));
    let other = TestCa::new("Other CA").pem;
    assert!(deploy::creates_registration(
        Some(&deployed(&other, "DEFAULT")),
        &stage,
        ca
    ));
    assert!(deploy::creates_registration(
        Some(&deployed(&pem, "SNI_ONLY")),
        &stage,
        ca
    ));
    // A stack deployed in SNI_ONLY mode has no parameter to keep.
    let mut sni = deployed(&pem, "DEFAULT");
    sni["Parameters"] = serde_json::json!({});
    assert!(deploy::creates_registration(Some(&sni), &stage, ca));
}

// ---------------------------------------------------------------------------------------------
// The activator's reserved concurrency against GetAccountSettings.
// ---------------------------------------------------------------------------------------------

type Lambda = aws_sdk_lambda::Client;

fn account_settings(calls: &Calls, limit: i32, unreserved: i32) -> Rule {
    calls.output(
        "GetAccountSettings",
        mock!(Lambda::get_account_settings),
        move || {
            aws_sdk_lambda::operation::get_account_settings::GetAccountSettingsOutput::builder()
                .account_limit(
                    aws_sdk_lambda::types::AccountLimit::builder()
                        .total_code_size(80_530_636_800)
                        .code_size_unzipped(262_144_000)
                        .code_size_zipped(52_428_800)
                        .concurrent_executions(limit)
                        .unreserved_concurrent_executions(unreserved)
                        .build(),
                )
                .build()
        },
    )
}

fn no_function(calls: &Calls) -> Rule {
    calls.error(
        "GetFunctionConcurrency",
        mock!(Lambda::get_function_concurrency)
            .match_requests(|r| r.function_name() == Some("jitr-dev-activator")),
        || {
            aws_sdk_lambda::operation::get_function_concurrency::GetFunctionConcurrencyError::ResourceNotFoundException(
                aws_sdk_lambda::types::error::ResourceNotFoundException::builder()
                    .message("Function not found: arn:aws:lambda:eu-west-1:123456789012:function:jitr-dev-activator")
                    .build(),
            )
        },
    )
}

fn reserved_now(calls: &Calls, n: i32) -> Rule {
    calls.output("GetFunctionConcurrency", mock!(Lambda::get_function_concurrency), move || {
        aws_sdk_lambda::operation::get_function_concurrency::GetFunctionConcurrencyOutput::builder()
            .reserved_concurrent_executions(n)
            .build()
    })
}

#[tokio::test]
async fn a_new_account_refuses_an_explicit_reservation_with_the_numbers_and_ways_out() {
    let calls = Calls::default();
    let c = clients(Mocks {
        lambda: vec![account_settings(&calls, 50, 50), no_function(&calls)],
        ..Mocks::default()
    });
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
    let calls = Calls::default();
    let c = clients(Mocks {
        lambda: vec![
            account_settings(&calls, 1000, 130),
            reserved_now(&calls, 20),
        ],
        ..Mocks::default()
    });
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
    // On the wire: an endpoint that lacks the operation answers 404 with a page, not an AWS
    // error.
    let calls = Calls::default();
    let c = clients(Mocks {
        lambda: vec![calls.wire(
            "GetAccountSettings",
            mock!(Lambda::get_account_settings),
            Wire::new(
                404,
                &[("content-type", "text/html")],
                "<html><h1>Not Found</h1></html>",
            ),
        )],
        ..Mocks::default()
    });
    let (dir, stage) = StageDir::new("  mode: SNI_ONLY\n", "  memory_mb: 128\n");
    let err = concurrency::reserve(&c, &dir.0, &stage, ACCOUNT, &Recorder::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "lambda:GetAccountSettings: unhandled error (HTTP 404)"
    );
    assert!(matches!(err, Error::Aws(_)), "{err:?}");
}

#[tokio::test]
async fn an_unset_reservation_in_a_new_account_is_none() {
    let calls = Calls::default();
    let c = clients(Mocks {
        lambda: vec![account_settings(&calls, 10, 10), no_function(&calls)],
        ..Mocks::default()
    });
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

// ---------------------------------------------------------------------------------------------
// Destroy: a deletion still running when destroy stops waiting.
// ---------------------------------------------------------------------------------------------

type Iot = aws_sdk_iot::Client;

#[tokio::test]
async fn a_deletion_still_running_when_destroy_stops_waiting_keeps_onboarding_stopped() {
    use ResourceStatus as R;
    let calls = Calls::default();
    let function = |r: Option<&str>| r == Some("jitr-dev-activator");
    let c = clients(Mocks {
        iot: vec![
            calls.output("GetTopicRule", mock!(Iot::get_topic_rule), || {
                aws_sdk_iot::operation::get_topic_rule::GetTopicRuleOutput::builder()
                    .rule_arn("arn:aws:iot:eu-west-1:123456789012:rule/jitr_dev_registered")
                    .rule(
                        aws_sdk_iot::types::TopicRule::builder()
                            .rule_name("jitr_dev_registered")
                            .sql("SELECT * FROM 'x'")
                            .rule_disabled(false)
                            .build(),
                    )
                    .build()
            }),
            calls.output(
                "DisableTopicRule",
                mock!(Iot::disable_topic_rule)
                    .match_requests(|r| r.rule_name() == Some("jitr_dev_registered")),
                || aws_sdk_iot::operation::disable_topic_rule::DisableTopicRuleOutput::builder().build(),
            ),
            calls.output(
                "ListTargetsForPolicy",
                mock!(Iot::list_targets_for_policy)
                    .match_requests(|r| r.policy_name() == Some("jitr-dev-device")),
                || {
                    aws_sdk_iot::operation::list_targets_for_policy::ListTargetsForPolicyOutput::builder()
                        .set_targets(Some(Vec::new()))
                        .build()
                },
            ),
        ],
        lambda: vec![
            reserved_now(&calls, 5),
            calls.output(
                "GetFunctionConfiguration",
                mock!(Lambda::get_function_configuration).match_requests(move |r| function(r.function_name())),
                || {
                    aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput::builder()
                        .function_name("jitr-dev-activator")
                        .timeout(1)
                        .build()
                },
            ),
            calls.output(
                "PutFunctionConcurrency",
                mock!(Lambda::put_function_concurrency).match_requests(move |r| {
                    function(r.function_name()) && r.reserved_concurrent_executions() == Some(0)
                }),
                || {
                    aws_sdk_lambda::operation::put_function_concurrency::PutFunctionConcurrencyOutput::builder()
                        .reserved_concurrent_executions(0)
                        .build()
                },
            ),
        ],
        cfn: vec![
            events_page(&calls, None, vec![event("e1", STACK, STACK_TYPE, R::CreateComplete, "", 1)], None),
            calls.output(
                "DeleteStack",
                mock!(Cfn::delete_stack).match_requests(|r| r.stack_name() == Some(STACK_ID)),
                || aws_sdk_cloudformation::operation::delete_stack::DeleteStackOutput::builder().build(),
            ),
            events_page(
                &calls,
                None,
                vec![
                    event("e22", STACK, STACK_TYPE, R::DeleteInProgress, "User Initiated", 22),
                    event("e1", STACK, STACK_TYPE, R::CreateComplete, "", 1),
                ],
                None,
            ),
        ],
        ..Mocks::default()
    });
    let plan = DestroyPlan {
        stack_name: STACK.into(),
        stack_id: STACK_ID.into(),
        stack_status: "CREATE_COMPLETE".into(),
        resources: Vec::new(),
        ca_retained: false,
        device_policy: Some("jitr-dev-device".into()),
        attached_certificates: Vec::new(),
        termination_protection: false,
        registration_rules: vec!["jitr_dev_registered".into()],
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
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    // Nothing was put back: the stack is going away.
    assert_eq!(
        calls.list(),
        [
            "GetTopicRule",
            "DisableTopicRule",
            "GetFunctionConcurrency",
            "GetFunctionConfiguration",
            "PutFunctionConcurrency",
            "ListTargetsForPolicy",
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
