//! The JITR stack, composed from one construct per resource family.
//!
//! [`jitr_stack`] is the one place that decides what the template holds. Logical ids are
//! constants here and pinned by `tests/synth.rs`: renaming one makes CloudFormation replace
//! the resource, and replacing the CA registration breaks the fleet's onboarding.

mod ca;
pub mod device_policy;
pub mod iam;

use crate::cfn::{Condition, LogicalId, Output, Parameter, Pseudo, Resource, Template, Value};
use crate::stage::Stage;
use iam::{arn, role, Statement};
use jitr_contract::activator::ActivatorConfig;
use jitr_contract::ca_registration::{ATTR_CA_CERTIFICATE_ARN, ATTR_CA_CERTIFICATE_ID};

pub const CA_PROVIDER_ROLE: LogicalId = LogicalId("CaProviderRole");
pub const CA_PROVIDER_LOG_GROUP: LogicalId = LogicalId("CaProviderLogGroup");
pub const CA_PROVIDER_FUNCTION: LogicalId = LogicalId("CaProviderFunction");
pub const CA_REGISTRATION: LogicalId = LogicalId("CaRegistration");
pub const DEVICE_POLICY: LogicalId = LogicalId("DevicePolicy");
pub const DEVICE_THING_GROUP: LogicalId = LogicalId("DeviceThingGroup");
pub const ACTIVATOR_ROLE: LogicalId = LogicalId("ActivatorRole");
pub const ACTIVATOR_LOG_GROUP: LogicalId = LogicalId("ActivatorLogGroup");
pub const ACTIVATOR_FUNCTION: LogicalId = LogicalId("ActivatorFunction");
pub const ACTIVATOR_FAILURE_QUEUE: LogicalId = LogicalId("ActivatorFailureQueue");
pub const ACTIVATOR_INVOKE_CONFIG: LogicalId = LogicalId("ActivatorInvokeConfig");
pub const REGISTRATION_RULE: LogicalId = LogicalId("RegistrationRule");
pub const RULE_ERROR_LOG_GROUP: LogicalId = LogicalId("RegistrationRuleErrorLogGroup");
pub const RULE_ERROR_ROLE: LogicalId = LogicalId("RegistrationRuleErrorRole");
pub const ACTIVATOR_INVOKE_PERMISSION: LogicalId = LogicalId("ActivatorInvokePermission");

/// The template parameter carrying the `DEFAULT`-mode verification certificate, which
/// deploy makes (it needs the account's registration code and the operator's CA key).
pub const VERIFICATION_PARAMETER: &str = "VerificationCertificatePem";

/// The template parameter carrying the activator's reserved concurrency, `0` for none. Deploy
/// sets it from the stage and the account's Lambda concurrency (`GetAccountSettings`), which
/// synth, being offline, cannot know.
pub const RESERVED_CONCURRENCY_PARAMETER: &str = "ActivatorReservedConcurrency";
/// True when [`RESERVED_CONCURRENCY_PARAMETER`] is 0: the activator gets no reservation.
pub const NO_RESERVATION_CONDITION: &str = "ActivatorUnreserved";

/// The asset bucket, per account and region; deploy creates it.
pub const ASSET_BUCKET: &str = "jitr-assets-${AWS::AccountId}-${AWS::Region}";

/// How long CloudFormation waits for the CA provider before failing the resource
/// (instead of the default hour).
pub const CA_SERVICE_TIMEOUT_SECONDS: u32 = 300;
/// The CA provider's own timeout; below the service timeout so it always answers first.
pub const CA_PROVIDER_TIMEOUT_SECONDS: u32 = 120;

/// Why checkov's checks that do not apply to this stack do not, written into the flagged
/// resources' `Metadata.checkov.skip`. Each applies only where the stage leaves the choice open
/// (a customer-managed key replaces the first three), so nothing is skipped that the stage fixed.
mod scanner {
    pub const AWS_MANAGED_LOGS: &str = "Encrypted at rest by CloudWatch Logs with AWS-managed \
        keys; set encryption.kms_key_arn in the stage file for a customer-managed key";
    pub const SSE_SQS: &str = "Encrypted at rest with SSE-SQS (SqsManagedSseEnabled), which this \
        check does not recognise; set encryption.kms_key_arn for a customer-managed key";
    pub const AWS_MANAGED_ENVIRONMENT: &str = "The environment holds ids and names, no secrets; \
        Lambda encrypts it at rest with an AWS-managed key; set encryption.kms_key_arn for a \
        customer-managed key";
    pub const NO_VPC: &str = "Calls only the public AWS IoT and CloudWatch APIs and reaches no \
        VPC resource; a VPC would add NAT or interface endpoints and nothing to protect";
    pub const PROVIDER_NO_DLQ: &str = "CloudFormation invokes it once per resource operation and \
        reports a provider that never answers after ServiceTimeout; a queued request would have \
        no consumer";
    pub const PROVIDER_NO_RESERVATION: &str =
        "Runs once per CA registration change; a reservation \
        would take from the account's unreserved concurrency (100 must stay unreserved), which \
        fails deploys in new accounts";
    pub const ACTIVATOR_DESTINATION: &str = "Failed events go to the on-failure destination \
        (ActivatorInvokeConfig -> ActivatorFailureQueue), which supersedes a dead-letter queue \
        and keeps the request and the error";
}

/// A bundled Lambda, as the template references it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetRef {
    pub sha256: String,
}

impl AssetRef {
    /// The S3 object key (and the file name in the output directory).
    pub fn key(&self) -> String {
        format!("asset.{}.zip", self.sha256)
    }
}

/// The two bundled Lambdas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assets {
    pub activator: AssetRef,
    pub ca_provider: AssetRef,
}

/// Names derived from the stack name (all within AWS's limits for a valid stage).
pub struct Names {
    pub activator_function: String,
    pub ca_provider_function: String,
    pub device_policy: String,
    pub rule: String,
    pub failure_queue: String,
}

impl Names {
    pub fn new(stack_name: &str) -> Names {
        Names {
            activator_function: format!("{stack_name}-activator"),
            ca_provider_function: format!("{stack_name}-ca-provider"),
            device_policy: format!("{stack_name}-device"),
            // Rule names allow only letters, digits and underscores.
            rule: format!("{}_registered", stack_name.replace('-', "_")),
            failure_queue: format!("{stack_name}-activator-failures"),
        }
    }
}

/// Why the stack could not be composed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComposeError {
    /// The device policy template does not render or fails its checks.
    DevicePolicy(Vec<String>),
    /// The composed template is structurally wrong (a bug here, never the user's input).
    Template(Vec<String>),
}

/// Composes the whole stack. Fails only when the device policy template does not render or
/// does not pass its checks (every other input was validated with the stage).
pub fn jitr_stack(stage: &Stage, assets: &Assets) -> Result<Template, ComposeError> {
    let names = Names::new(&stage.stack_name);
    let policy = device_policy::render(
        &stage.device_policy.template_file,
        &stage.device_policy.template,
        &stage.stack_name,
        &stage.name,
        &stage.device_policy.vars,
    )
    .map_err(ComposeError::DevicePolicy)?;
    if !stage.activator.create_thing {
        needs_no_thing(&stage.device_policy.template_file, &policy.rendered)
            .map_err(|p| ComposeError::DevicePolicy(vec![p]))?;
    }
    let mut t = Template {
        description: format!(
            "AWS IoT Just-In-Time Registration for stage {} (jitr-infra)",
            stage.name
        ),
        ..Template::default()
    };
    ca::ca_registration(&mut t, stage, &names, &assets.ca_provider);
    t.add(
        Resource::new(DEVICE_POLICY, "AWS::IoT::Policy")
            .prop("PolicyName", names.device_policy.as_str())
            .prop("PolicyDocument", policy.value),
    );
    if let Some(group) = &stage.activator.thing_group {
        t.add(
            Resource::new(DEVICE_THING_GROUP, "AWS::IoT::ThingGroup")
                .prop("ThingGroupName", group.as_str()),
        );
    }
    activator(&mut t, stage, &names, &assets.activator);
    registration_rule(&mut t, stage, &names);
    t.outputs = vec![
        Output {
            name: "CaCertificateId",
            description: "AWS IoT id of the registered device CA",
            value: CA_REGISTRATION.get_att(ATTR_CA_CERTIFICATE_ID),
        },
        Output {
            name: "CaCertificateArn",
            description: "ARN of the registered device CA",
            value: CA_REGISTRATION.get_att(ATTR_CA_CERTIFICATE_ARN),
        },
        Output {
            name: "RegistrationRuleName",
            description: "Topic rule on the CA's registered-certificate events",
            value: Value::str(names.rule.as_str()),
        },
        Output {
            name: "ActivatorFunctionArn",
            description: "The activator Lambda",
            value: ACTIVATOR_FUNCTION.get_att("Arn"),
        },
        Output {
            name: "DevicePolicyName",
            description: "The shared IoT policy attached to every device certificate",
            value: DEVICE_POLICY.r#ref(),
        },
        Output {
            name: "ActivatorFailureQueueUrl",
            description: "Events the activator failed on after Lambda's retries",
            value: ACTIVATOR_FAILURE_QUEUE.r#ref(),
        },
    ];
    let problems = t.validate();
    if !problems.is_empty() {
        return Err(ComposeError::Template(
            problems
                .into_iter()
                .map(|p| format!("template: {p}"))
                .collect(),
        ));
    }
    Ok(t)
}

/// With `create_thing: false` no certificate is ever attached to a Thing, so a policy that
/// needs `iot:Connection.Thing.*` (a Thing name in a resource, `IsAttached` in a condition)
/// can never let a device connect: the fleet would onboard and then be refused forever.
fn needs_no_thing(file: &str, policy: &serde_json::Value) -> Result<(), String> {
    const THING_VARIABLE: &str = "iot:Connection.Thing.";
    let text = policy.to_string();
    let Some(at) = text.find(THING_VARIABLE) else {
        return Ok(());
    };
    let name: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_'))
        .collect();
    Err(format!(
        "{file}: uses {name}, but activator.create_thing is false: no certificate gets a Thing, \
         so no device could ever connect. Set activator.create_thing: true, or write the policy \
         without iot:Connection.Thing.* (e.g. client/${{iot:Certificate.Subject.CommonName}})"
    ))
}

fn log_group(stage: &Stage, id: LogicalId, name: String) -> Resource {
    let r = Resource::new(id, "AWS::Logs::LogGroup")
        .prop("LogGroupName", name)
        .prop("RetentionInDays", stage.activator.log_retention_days);
    match &stage.kms_key_arn {
        Some(key) => r.prop("KmsKeyId", key.as_str()),
        None => r.scanner_skip("CKV_AWS_158", scanner::AWS_MANAGED_LOGS),
    }
}

fn logs_statement(log_group: LogicalId) -> Statement {
    // The log group's Arn attribute ends in `:*`, which covers its streams.
    Statement::new(
        "WriteOwnLogs",
        &["logs:CreateLogStream", "logs:PutLogEvents"],
        vec![log_group.get_att("Arn")],
    )
}

fn function(
    id: LogicalId,
    name: &str,
    description: &str,
    role: LogicalId,
    asset: &AssetRef,
    memory_mb: u32,
    timeout_seconds: u32,
) -> Resource {
    Resource::new(id, "AWS::Lambda::Function")
        .prop("FunctionName", name)
        .prop("Description", description)
        .prop("Runtime", "provided.al2023")
        .prop("Handler", "bootstrap")
        .prop(
            "Architectures",
            Value::list([Value::str(crate::assets::ARCHITECTURE.lambda_name())]),
        )
        .prop("MemorySize", memory_mb)
        .prop("Timeout", timeout_seconds)
        .prop("Role", role.get_att("Arn"))
        .prop(
            "Code",
            Value::map([
                ("S3Bucket", Value::sub(ASSET_BUCKET)),
                ("S3Key", Value::str(asset.key())),
            ]),
        )
        .scanner_skip("CKV_AWS_117", scanner::NO_VPC)
}

fn activator(t: &mut Template, stage: &Stage, names: &Names, asset: &AssetRef) {
    let a = &stage.activator;
    t.add(log_group(
        stage,
        ACTIVATOR_LOG_GROUP,
        format!("/aws/lambda/{}", names.activator_function),
    ));
    let queue = Resource::new(ACTIVATOR_FAILURE_QUEUE, "AWS::SQS::Queue")
        .prop("QueueName", names.failure_queue.as_str());
    let queue = match &stage.kms_key_arn {
        Some(key) => queue.prop("KmsMasterKeyId", key.as_str()),
        None => queue
            .prop("SqsManagedSseEnabled", true)
            .scanner_skip("CKV_AWS_27", scanner::SSE_SQS),
    };
    t.add(queue.prop("MessageRetentionPeriod", 1_209_600u32));
    let mut statements = vec![
        Statement::new(
            "ReadAndActivateCertificates",
            &["iot:DescribeCertificate", "iot:UpdateCertificate"],
            vec![arn("iot", "cert/*")],
        ),
        Statement::new(
            "ReadOurCa",
            &["iot:DescribeCACertificate"],
            vec![arn(
                "iot",
                &format!("cacert/${{{}.{}}}", CA_REGISTRATION, ATTR_CA_CERTIFICATE_ID),
            )],
        ),
        Statement::new(
            "AttachDevicePolicy",
            &["iot:AttachPolicy"],
            vec![arn("iot", "cert/*")],
        ),
    ];
    if a.create_thing {
        statements.push(Statement::new(
            "CreateThings",
            &["iot:CreateThing"],
            vec![arn("iot", "thing/*")],
        ));
        // The IAM reference lists the `cert` resource type for AttachThingPrincipal.
        statements.push(Statement::new(
            "AttachThingsToCertificates",
            &["iot:AttachThingPrincipal"],
            vec![arn("iot", "cert/*")],
        ));
        if let Some(group) = &a.thing_group {
            statements.push(Statement::new(
                "JoinThingGroup",
                &["iot:AddThingToThingGroup"],
                vec![
                    arn("iot", &format!("thinggroup/{group}")),
                    arn("iot", "thing/*"),
                ],
            ));
        }
    }
    statements.push(Statement::new(
        "ReportFailedEvents",
        &["sqs:SendMessage"],
        vec![ACTIVATOR_FAILURE_QUEUE.get_att("Arn")],
    ));
    statements.push(logs_statement(ACTIVATOR_LOG_GROUP));
    if let Some(key) = &stage.kms_key_arn {
        // Decrypt: the environment; GenerateDataKey and Decrypt: sending to the queue.
        statements.push(Statement::new(
            "UseStageKey",
            &["kms:Decrypt", "kms:GenerateDataKey"],
            vec![Value::str(key.as_str())],
        ));
    }
    t.add(role(
        ACTIVATOR_ROLE,
        "Activates JITR device certificates signed by the stage's CA",
        "lambda.amazonaws.com",
        None,
        &statements,
    ));

    let config = ActivatorConfig {
        // Replaced below by the CA id from the custom resource.
        ca_certificate_id: String::new(),
        device_policy_name: names.device_policy.clone(),
        create_thing: a.create_thing,
        thing_name_source: a.thing_name,
        thing_group: a.thing_group.clone(),
        subject_pattern: a.subject_pattern.clone(),
        reject_action: a.on_reject,
    };
    let env = config.to_env().into_iter().map(|(k, v)| {
        let value = if k == jitr_contract::activator::ENV_CA_CERTIFICATE_ID {
            CA_REGISTRATION.get_att(ATTR_CA_CERTIFICATE_ID)
        } else if k == jitr_contract::activator::ENV_DEVICE_POLICY_NAME {
            DEVICE_POLICY.r#ref()
        } else {
            Value::Str(v)
        };
        (k, value)
    });
    let mut f = function(
        ACTIVATOR_FUNCTION,
        &names.activator_function,
        "JITR activator: activates auto-registered device certificates of the stage's CA",
        ACTIVATOR_ROLE,
        asset,
        a.memory_mb,
        a.timeout_seconds,
    )
    .prop("Environment", Value::map([("Variables", Value::map(env))]))
    .scanner_skip("CKV_AWS_116", scanner::ACTIVATOR_DESTINATION);
    f = match &stage.kms_key_arn {
        Some(key) => f.prop("KmsKeyArn", key.as_str()),
        None => f.scanner_skip("CKV_AWS_173", scanner::AWS_MANAGED_ENVIRONMENT),
    };
    f = f
        .prop("ReservedConcurrentExecutions", reserved_concurrency(t))
        .depends_on(ACTIVATOR_LOG_GROUP);
    if a.thing_group.is_some() {
        // The group must exist before the first device joins it.
        f = f.depends_on(DEVICE_THING_GROUP);
    }
    t.add(f);
    t.add(
        Resource::new(ACTIVATOR_INVOKE_CONFIG, "AWS::Lambda::EventInvokeConfig")
            .prop("FunctionName", ACTIVATOR_FUNCTION.r#ref())
            .prop("Qualifier", "$LATEST")
            .prop("MaximumRetryAttempts", 2u32)
            .prop("MaximumEventAgeInSeconds", 21_600u32)
            .prop(
                "DestinationConfig",
                Value::map([(
                    "OnFailure",
                    Value::map([("Destination", ACTIVATOR_FAILURE_QUEUE.get_att("Arn"))]),
                )]),
            ),
    );
}

/// The activator's `ReservedConcurrentExecutions`: the deploy-time parameter, or no property
/// at all when it is 0 (a reservation of 0 would stop the function). What the account can
/// give is only known at deploy; the template stays the same for every account.
fn reserved_concurrency(t: &mut Template) -> Value {
    t.parameters.push(Parameter {
        name: RESERVED_CONCURRENCY_PARAMETER,
        kind: "Number",
        description: "Reserved concurrency of the activator, 0 for none; set by jitr-infra \
                      deploy from the stage and the account's Lambda concurrency"
            .into(),
        default: None,
        no_echo: false,
    });
    t.conditions.push(Condition {
        name: NO_RESERVATION_CONDITION,
        value: Value::Equals(
            Box::new(Value::Ref(RESERVED_CONCURRENCY_PARAMETER.into())),
            Box::new(Value::Int(0)),
        ),
    });
    Value::If(
        NO_RESERVATION_CONDITION.into(),
        Box::new(Pseudo::NoValue.into()),
        Box::new(Value::Ref(RESERVED_CONCURRENCY_PARAMETER.into())),
    )
}

fn registration_rule(t: &mut Template, stage: &Stage, names: &Names) {
    t.add(log_group(
        stage,
        RULE_ERROR_LOG_GROUP,
        format!("/aws/iot/rules/{}/errors", names.rule),
    ));
    let rule_arn = format!(
        "arn:${{AWS::Partition}}:iot:${{AWS::Region}}:${{AWS::AccountId}}:rule/{}",
        names.rule
    );
    t.add(role(
        RULE_ERROR_ROLE,
        "Lets the JITR topic rule log the events it failed to deliver",
        "iot.amazonaws.com",
        // Only our account's rule may assume it (confused-deputy protection).
        Some(Value::map([
            (
                "StringEquals",
                Value::map([("aws:SourceAccount", Value::Pseudo(Pseudo::AccountId))]),
            ),
            (
                "ArnLike",
                Value::map([("aws:SourceArn", Value::sub(rule_arn.clone()))]),
            ),
        ])),
        &[Statement::new(
            "WriteRuleErrors",
            &[
                "logs:CreateLogStream",
                "logs:DescribeLogStreams",
                "logs:PutLogEvents",
            ],
            vec![RULE_ERROR_LOG_GROUP.get_att("Arn")],
        )],
    ));
    let sql = format!(
        "SELECT * FROM '{}${{{}.{}}}' WHERE certificateStatus = \"{}\"",
        jitr_contract::event::REGISTERED_TOPIC_PREFIX,
        CA_REGISTRATION,
        ATTR_CA_CERTIFICATE_ID,
        jitr_contract::event::PENDING_ACTIVATION
    );
    t.add(
        Resource::new(ACTIVATOR_INVOKE_PERMISSION, "AWS::Lambda::Permission")
            .prop("Action", "lambda:InvokeFunction")
            .prop("FunctionName", ACTIVATOR_FUNCTION.get_att("Arn"))
            .prop("Principal", "iot.amazonaws.com")
            // The rule's ARN from its (explicit) name rather than `Fn::GetAtt`: the rule then
            // depends on the permission, so it never fires before it may invoke.
            .prop("SourceArn", Value::sub(rule_arn.clone()))
            .prop("SourceAccount", Value::Pseudo(Pseudo::AccountId)),
    );
    t.add(
        Resource::new(REGISTRATION_RULE, "AWS::IoT::TopicRule")
            .prop("RuleName", names.rule.as_str())
            .prop(
                "TopicRulePayload",
                Value::map([
                    (
                        "Description",
                        Value::str(
                            "JITR: hands the CA's newly registered certificates to the activator",
                        ),
                    ),
                    ("Sql", Value::sub(sql)),
                    ("AwsIotSqlVersion", Value::str("2016-03-23")),
                    ("RuleDisabled", Value::Bool(false)),
                    (
                        "Actions",
                        Value::list([Value::map([(
                            "Lambda",
                            Value::map([("FunctionArn", ACTIVATOR_FUNCTION.get_att("Arn"))]),
                        )])]),
                    ),
                    (
                        "ErrorAction",
                        Value::map([(
                            "CloudwatchLogs",
                            Value::map([
                                ("LogGroupName", RULE_ERROR_LOG_GROUP.r#ref()),
                                ("RoleArn", RULE_ERROR_ROLE.get_att("Arn")),
                            ]),
                        )]),
                    ),
                ]),
            )
            .depends_on(ACTIVATOR_INVOKE_PERMISSION),
    );
}
