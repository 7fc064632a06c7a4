//! The JITR stack, composed from one construct per resource family.
//!
//! [`jitr_stack`] is the one place that decides what the template holds. Logical ids are
//! constants here and pinned by `tests/synth.rs`: renaming one makes CloudFormation replace
//! the resource, and replacing the CA registration breaks the fleet's onboarding.

mod activator;
mod alarms;
mod ca;
pub mod ca_ids;
pub mod device_policy;
pub mod iam;
pub mod reconciler;
mod revocation;
mod rule;

use crate::cfn::{LogicalId, Output, Resource, Template, Value};
use crate::stage::Stage;
use activator::activator;
use alarms::alarms;
use ca::ca_registration;
pub use ca_ids::{sorted_cas, CaIds};
use iam::Statement;
use jitr_contract::ca_registration::{ATTR_CA_CERTIFICATE_ARN, ATTR_CA_CERTIFICATE_ID};
use reconciler::reconciler;
use revocation::revocation_layer;
use rule::registration_rule;

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
// The reconciler (issue 10): a schedule that invokes the activator's sweep.
pub const SWEEP_SCHEDULE: LogicalId = LogicalId("SweepSchedule");
pub const SWEEP_INVOKE_PERMISSION: LogicalId = LogicalId("SweepInvokePermission");
pub const SWEEP_MARKER_PARAMETER: LogicalId = LogicalId("SweepMarkerParameter");
// Alarms (issue 10), and the optional topic they notify.
pub const ALARM_TOPIC: LogicalId = LogicalId("AlarmTopic");
pub const ALARM_FAILURE_QUEUE: LogicalId = LogicalId("AlarmFailureQueueNotEmpty");
pub const ALARM_ACTIVATOR_ERRORS: LogicalId = LogicalId("AlarmActivatorErrors");
pub const ALARM_IOT_THROTTLING: LogicalId = LogicalId("AlarmIotThrottlingSustained");
pub const ALARM_RULE_FAILURES: LogicalId = LogicalId("AlarmRuleFailures");
pub const ALARM_PENDING_OVER_GRACE: LogicalId = LogicalId("AlarmPendingOverGrace");
pub const ALARM_MALFORMED_EVENTS: LogicalId = LogicalId("AlarmMalformedEvents");
// The revocation list (issue 11), only for a stage with `revocation:`.
pub const REVOCATION_LIST_LAYER: LogicalId = LogicalId("RevocationListLayer");

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

mod scanner;

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
    /// The EventBridge rule that schedules the sweep.
    pub sweep_schedule: String,
    /// The SSM parameter that keeps where an unfinished sweep stopped.
    pub sweep_marker: String,
    /// Every alarm's name starts with this (`<stack>-alarm-`), then a kebab-case name.
    pub alarm_prefix: String,
    /// The revocation list's layer (each deploy that changes the list adds a version).
    pub revocation_layer: String,
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
            sweep_schedule: format!("{stack_name}-sweep"),
            sweep_marker: format!("/{stack_name}/sweep-marker"),
            alarm_prefix: format!("{stack_name}-alarm-"),
            revocation_layer: format!("{stack_name}-revocation-list"),
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
    ca_registration(&mut t, stage, &names, &assets.ca_provider);
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
    // Before the activator, whose `Layers` names it.
    revocation_layer(&mut t, stage, &names);
    activator(&mut t, stage, &names, &assets.activator);
    registration_rule(&mut t, stage, &names);
    reconciler(&mut t, stage, &names);
    alarms(&mut t, stage, &names);
    t.outputs = outputs(stage, &names);
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

/// The stack's outputs (deploy prints them; `status` and `redrive` read some).
fn outputs(stage: &Stage, names: &Names) -> Vec<Output> {
    let mut outputs = Vec::new();
    for ca in sorted_cas(stage) {
        let ids = CaIds::new(&ca.name, names);
        let of = |what: &str| match ids.suffix.is_empty() {
            true => jitr_cfn::template::intern(what),
            false => jitr_cfn::template::intern(&format!("{what} (CA {})", ca.name)),
        };
        outputs.extend([
            Output {
                name: ids.id_output,
                description: of("AWS IoT id of the registered device CA"),
                value: ids.registration.get_att(ATTR_CA_CERTIFICATE_ID),
            },
            Output {
                name: ids.arn_output,
                description: of("ARN of the registered device CA"),
                value: ids.registration.get_att(ATTR_CA_CERTIFICATE_ARN),
            },
            Output {
                name: ids.rule_output,
                description: of("Topic rule on the CA's registered-certificate events"),
                value: Value::str(ids.rule_name.as_str()),
            },
        ]);
    }
    outputs.extend([
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
    ]);
    if stage.reconciler.enabled {
        outputs.push(Output {
            name: "SweepMarkerParameterName",
            description: "Where an unfinished sweep resumes (- = the newest certificate)",
            value: SWEEP_MARKER_PARAMETER.r#ref(),
        });
    }
    if stage.alarms.email.is_some() {
        outputs.push(Output {
            name: "AlarmTopicArn",
            description: "The SNS topic the stack's alarms notify",
            value: ALARM_TOPIC.r#ref(),
        });
    }
    outputs
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
