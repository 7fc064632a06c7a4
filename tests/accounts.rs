//! Other AWS accounts on the one moto server, as issue 12's multi-account stages need them:
//! STS AssumeRole honours the role's trust policy as AWS does (the harness refuses what AWS
//! refuses), the session acts in the role's account, and a stage deployed with another
//! account's credentials registers its CA there: the CA provider custom resource runs with its
//! execution role's credentials in the stack's account.

use testkit::accounts::{self, Creds};
use testkit::{moto, unique};

/// The second account of these tests (moto's default, 123456789012, is the first).
const OTHER: &str = "111122223333";

#[test]
fn assume_role_of_a_role_trusting_the_caller_acts_in_the_role_account() {
    let endpoint = moto().endpoint();
    let admin = accounts::admin(endpoint, OTHER);
    assert_eq!(accounts::caller_identity(endpoint, &admin).0, OTHER);
    let name = unique("deployer");
    let role = accounts::create_role(endpoint, &admin, &name, testkit::ACCOUNT);
    assert_eq!(role, format!("arn:aws:iam::{OTHER}:role/{name}"));

    let session = accounts::assume(endpoint, &role);
    assert!(session.session_token.is_some(), "{session:?}");
    let (account, arn) = accounts::caller_identity(endpoint, &session);
    assert_eq!(account, OTHER);
    assert_eq!(
        arn,
        format!("arn:aws:sts::{OTHER}:assumed-role/{name}/testkit")
    );
    // The caller's own account is unchanged.
    let (account, _) = accounts::caller_identity(endpoint, &Creds::default_account());
    assert_eq!(account, testkit::ACCOUNT);
}

#[test]
fn assume_role_is_refused_as_aws_refuses_it() {
    let endpoint = moto().endpoint();
    let caller = Creds::default_account();
    let (_, caller_arn) = accounts::caller_identity(endpoint, &caller);
    let admin = accounts::admin(endpoint, OTHER);
    let missing = format!("arn:aws:iam::{OTHER}:role/{}", unique("missing"));
    // Trusts another account only.
    let stranger_name = unique("stranger");
    let stranger = accounts::create_role(endpoint, &admin, &stranger_name, "444455556666");
    for role in [&missing, &stranger] {
        let refused = accounts::try_assume(endpoint, &caller, role).expect_err(role);
        assert_eq!(
            refused,
            accounts::AwsError {
                status: 403,
                code: "AccessDenied".into(),
                message: format!(
                    "User: {caller_arn} is not authorized to perform: sts:AssumeRole on resource: {role}"
                ),
            }
        );
    }
    // The role's own account is trusted by it no more than any other caller.
    let inside = accounts::try_assume(endpoint, &admin, &stranger);
    assert_eq!(inside.map_err(|e| e.code), Err("AccessDenied".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stage_deployed_with_another_accounts_session_registers_its_ca_there() {
    let endpoint = moto().endpoint();
    let admin = accounts::admin(endpoint, OTHER);
    let role_name = unique("deployer");
    let role = accounts::create_role(endpoint, &admin, &role_name, testkit::ACCOUNT);
    let session = accounts::assume(endpoint, &role);

    let project = testkit::project::Project::new("jitr-accounts");
    project.new_ca("Accounts CA");
    let stack = testkit::project::stack_name("jitr-accounts");
    let yaml = format!(
        "stack_name: {stack}\nregion: {}\naccount: \"{OTHER}\"\nca:\n  certificate: certs/ca.pem\n  mode: SNI_ONLY\nactivator:\n  reserved_concurrency: 2\n  log_retention_days: 1\n",
        testkit::REGION
    );
    project.stage("b", &yaml);
    let args = [
        "deploy",
        "--stage",
        "b",
        "--require-approval",
        "never",
        "--json",
    ];
    let bin = env!("CARGO_BIN_EXE_jitr-infra");
    let o = project
        .aws_cli(bin, &args, endpoint)
        .envs(session.env())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", testkit::jitr::output_text(&o));
    let outcome: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ca_id = outcome["outputs"]["CaCertificateId"]
        .as_str()
        .unwrap_or_else(|| panic!("no CaCertificateId in {outcome}"))
        .to_string();

    // moto has no ListCACertificates: DescribeCACertificate in each account.
    let in_b = aws_sdk_iot::Client::new(&session.sdk_config(endpoint, testkit::REGION).await);
    let described = in_b
        .describe_ca_certificate()
        .certificate_id(&ca_id)
        .send()
        .await;
    let status = described
        .unwrap_or_else(|e| panic!("the CA is not registered in {OTHER}: {e:?}"))
        .certificate_description()
        .and_then(|d| d.status().cloned());
    assert_eq!(
        status.map(|s| s.as_str().to_string()).as_deref(),
        Some("ACTIVE")
    );
    let in_a = moto().iot().await;
    let in_default = in_a
        .describe_ca_certificate()
        .certificate_id(&ca_id)
        .send()
        .await;
    let not_found = in_default.as_ref().err().and_then(|e| e.as_service_error());
    assert!(
        not_found.is_some_and(|e| e.is_resource_not_found_exception()),
        "the CA must not be registered in {}: {in_default:?}",
        testkit::ACCOUNT
    );
    // The stack is account B's, too.
    let cfn =
        aws_sdk_cloudformation::Client::new(&session.sdk_config(endpoint, testkit::REGION).await);
    let stacks = cfn
        .describe_stacks()
        .stack_name(&stack)
        .send()
        .await
        .unwrap();
    let stack_id = stacks.stacks()[0]
        .stack_id()
        .unwrap_or_default()
        .to_string();
    assert!(stack_id.contains(&format!(":{OTHER}:stack/")), "{stack_id}");
}
