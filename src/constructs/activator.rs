//! The activator: the Lambda the topic rule invokes, its least-privilege role, its log group,
//! its failure queue and how failed events reach it, and its reserved concurrency.

use super::iam::{arn, role, Statement};
use super::{
    function, log_group, logs_statement, scanner, AssetRef, CaIds, Names, ACTIVATOR_FAILURE_QUEUE,
    ACTIVATOR_FUNCTION, ACTIVATOR_INVOKE_CONFIG, ACTIVATOR_LOG_GROUP, ACTIVATOR_ROLE,
    DEVICE_POLICY, DEVICE_THING_GROUP, NO_RESERVATION_CONDITION, RESERVED_CONCURRENCY_PARAMETER,
    SWEEP_MARKER_PARAMETER,
};
use crate::cfn::{Condition, Parameter, Pseudo, Resource, Template, Value};
use crate::stage::Stage;
use jitr_contract::activator::ActivatorConfig;
use jitr_contract::ca_registration::ATTR_CA_CERTIFICATE_ID;
use jitr_contract::rates::{ENV_API_RATES, ENV_API_SHARE, ENV_CONCURRENCY};
use jitr_contract::sweep::{SweepConfig, ENV_MARKER_PARAMETER};

pub(super) fn activator(t: &mut Template, stage: &Stage, names: &Names, asset: &AssetRef) {
    t.add(log_group(
        stage,
        ACTIVATOR_LOG_GROUP,
        format!("/aws/lambda/{}", names.activator_function),
    ));
    t.add(failure_queue(stage, names));
    t.add(role(
        ACTIVATOR_ROLE,
        "Activates JITR device certificates signed by the stage's CA",
        "lambda.amazonaws.com",
        None,
        &statements(stage, names),
    ));
    let reserved = reserved_concurrency(t);
    t.add(lambda(stage, names, asset, reserved));
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

/// Where events go that failed after Lambda's retries (kept 14 days, the most SQS allows).
fn failure_queue(stage: &Stage, names: &Names) -> Resource {
    let queue = Resource::new(ACTIVATOR_FAILURE_QUEUE, "AWS::SQS::Queue")
        .prop("QueueName", names.failure_queue.as_str());
    let queue = match &stage.kms_key_arn {
        Some(key) => queue.prop("KmsMasterKeyId", key.as_str()),
        None => queue
            .prop("SqsManagedSseEnabled", true)
            .scanner_skip("CKV_AWS_27", scanner::SSE_SQS),
    };
    queue.prop("MessageRetentionPeriod", 1_209_600u32)
}

/// The activator role's statements: what activating one certificate needs, nothing more.
fn statements(stage: &Stage, names: &Names) -> Vec<Statement> {
    let mut statements = vec![
        Statement::new(
            "ReadAndActivateCertificates",
            &["iot:DescribeCertificate", "iot:UpdateCertificate"],
            vec![arn("iot", "cert/*")],
        ),
        Statement::new(
            "ReadOurCa",
            &["iot:DescribeCACertificate"],
            CaIds::all(stage, names)
                .iter()
                .map(|(_, ids)| {
                    arn(
                        "iot",
                        &format!(
                            "cacert/${{{}.{}}}",
                            ids.registration, ATTR_CA_CERTIFICATE_ID
                        ),
                    )
                })
                .collect(),
        ),
        Statement::new(
            "AttachDevicePolicy",
            &["iot:AttachPolicy"],
            vec![arn("iot", "cert/*")],
        ),
    ];
    if stage.activator.create_thing {
        statements.extend(thing_statements(stage.activator.thing_group.as_deref()));
    }
    statements.extend(sweep_statements(stage, names));
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
    statements
}

/// The sweep lists our CA's certificates (the IAM reference gives ListCertificatesByCA no
/// resource type, so `*`) and keeps its marker in the stack's parameter, when scheduled.
fn sweep_statements(stage: &Stage, names: &Names) -> Vec<Statement> {
    let mut statements = vec![Statement::unscoped(
        "ListCaCertificates",
        &["iot:ListCertificatesByCA"],
    )];
    if stage.reconciler.enabled {
        statements.push(Statement::new(
            "KeepSweepMarker",
            &["ssm:GetParameter", "ssm:PutParameter"],
            vec![arn(
                "ssm",
                // A hierarchical name's ARN drops its leading slash.
                &format!("parameter{}", names.sweep_marker),
            )],
        ));
    }
    statements
}

fn thing_statements(thing_group: Option<&str>) -> Vec<Statement> {
    let mut statements = vec![
        Statement::new(
            "CreateThings",
            &["iot:CreateThing"],
            vec![arn("iot", "thing/*")],
        ),
        // The IAM reference lists the `cert` resource type for AttachThingPrincipal.
        Statement::new(
            "AttachThingsToCertificates",
            &["iot:AttachThingPrincipal"],
            vec![arn("iot", "cert/*")],
        ),
    ];
    if let Some(group) = thing_group {
        statements.push(Statement::new(
            "JoinThingGroup",
            &["iot:AddThingToThingGroup"],
            vec![
                arn("iot", &format!("thinggroup/{group}")),
                arn("iot", "thing/*"),
            ],
        ));
    }
    statements
}

/// `JITR_CA_CERTIFICATE_ID`: the one CA's id, or every CA's id joined by commas (in name
/// order, like the rest of the template).
fn ca_ids_value(stage: &Stage, names: &Names) -> Value {
    let mut ids: Vec<Value> = CaIds::all(stage, names)
        .iter()
        .map(|(_, ids)| ids.registration.get_att(ATTR_CA_CERTIFICATE_ID))
        .collect();
    match ids.len() {
        1 => ids.remove(0),
        _ => Value::Join(",".into(), ids),
    }
}

/// The activator function, configured through its environment (the contract crate's names).
fn lambda(stage: &Stage, names: &Names, asset: &AssetRef, reserved: Value) -> Resource {
    let a = &stage.activator;
    let config = ActivatorConfig {
        // Replaced below by the CA ids from the custom resources.
        ca_certificate_ids: Vec::new(),
        device_policy_name: names.device_policy.clone(),
        create_thing: a.create_thing,
        thing_name_source: a.thing_name,
        thing_group: a.thing_group.clone(),
        subject_pattern: a.subject_pattern.clone(),
        reject_action: a.on_reject,
    };
    let env = config.to_env().into_iter().map(|(k, v)| {
        let value = if k == jitr_contract::activator::ENV_CA_CERTIFICATE_ID {
            ca_ids_value(stage, names)
        } else if k == jitr_contract::activator::ENV_DEVICE_POLICY_NAME {
            DEVICE_POLICY.r#ref()
        } else {
            Value::Str(v)
        };
        (k, value)
    });
    let env: Vec<(&str, Value)> = env
        .chain(pacing_env(stage))
        .chain(super::revocation::function_env(stage))
        .collect();
    let f = function(
        ACTIVATOR_FUNCTION,
        &names.activator_function,
        "JITR activator: activates auto-registered device certificates of the stage's CA",
        ACTIVATOR_ROLE,
        asset,
        a.memory_mb,
        a.timeout_seconds,
    )
    .prop("Environment", Value::map([("Variables", Value::map(env))]))
    .prop_opt("Layers", super::revocation::function_layers(stage))
    .scanner_skip("CKV_AWS_116", scanner::ACTIVATOR_DESTINATION);
    let f = match &stage.kms_key_arn {
        Some(key) => f.prop("KmsKeyArn", key.as_str()),
        None => f.scanner_skip("CKV_AWS_173", scanner::AWS_MANAGED_ENVIRONMENT),
    };
    let f = f
        .prop("ReservedConcurrentExecutions", reserved)
        .depends_on(ACTIVATOR_LOG_GROUP);
    if a.thing_group.is_some() {
        // The group must exist before the first device joins it.
        f.depends_on(DEVICE_THING_GROUP)
    } else {
        f
    }
}
/// How the activator paces its AWS IoT calls (jitr-contract's `RateConfig`) and bounds its
/// sweep (`SweepConfig`). The reservation comes from the deploy-time parameter, so the
/// template stays the same for every account (0: none).
fn pacing_env(stage: &Stage) -> Vec<(&'static str, Value)> {
    let a = &stage.activator;
    let r = &stage.reconciler;
    let sweep = SweepConfig {
        grace_seconds: u64::from(r.grace_minutes) * 60,
        horizon_seconds: u64::from(r.horizon_days) * 86_400,
        max_pages: r.max_pages,
        // Named by a `Ref` of the marker parameter below.
        marker_parameter: r.enabled.then(String::new),
        ..SweepConfig::default()
    };
    let mut env = vec![
        (ENV_API_RATES, Value::Str(a.api_rates.rates().to_env())),
        (ENV_API_SHARE, Value::Str(a.api_share.to_string())),
        (
            ENV_CONCURRENCY,
            Value::Ref(RESERVED_CONCURRENCY_PARAMETER.into()),
        ),
    ];
    env.extend(sweep.to_env().into_iter().map(|(k, v)| {
        let value = if k == ENV_MARKER_PARAMETER {
            SWEEP_MARKER_PARAMETER.r#ref()
        } else {
            Value::Str(v)
        };
        (k, value)
    }));
    env
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
