//! The stage file's raw shape, as serde reads it (unknown fields refused) and as the JSON
//! Schema (`jitr-infra schema`) describes it. Validation into a [`super::Stage`] is in
//! `validate.rs`.

use super::DEFAULT_POLICY_TEMPLATE;
use jitr_contract::activator::{RejectAction, ThingNameSource};
use jitr_contract::ca_registration::{CaStatus, CertificateMode};
use jitr_contract::rates::{ApiRates, IotApi};
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;

fn yes() -> bool {
    true
}

/// A stage file, as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "jitr-infra stage file",
    description = "One deployment stage: stacks/<stage>.yaml"
)]
pub struct StageFile {
    /// CloudFormation stack name: a letter, then letters, digits and hyphens; at most 48
    /// characters (it prefixes the Lambda function names).
    pub stack_name: String,
    /// AWS region to deploy to, e.g. `eu-west-1` (one target; for several, `targets`).
    #[serde(default)]
    pub region: Option<String>,
    /// The 12-digit AWS account this stage belongs to. When set, deploy refuses to run with
    /// credentials of any other account.
    #[serde(default)]
    pub account: Option<String>,
    /// Several places to deploy the same stack to, instead of `region`/`account`: each a
    /// region in an account, optionally through a role deploy assumes there.
    #[serde(default)]
    pub targets: Option<Vec<TargetSection>>,
    /// Tags applied to the stack (CloudFormation propagates them to the resources).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The device-signing CA, or a list of named CAs (to rotate: add the new one, migrate the
    /// devices, remove the old one).
    pub ca: CaField,
    /// The activator Lambda.
    #[serde(default)]
    pub activator: ActivatorSection,
    /// The shared IoT policy every device certificate gets.
    #[serde(default)]
    pub device_policy: DevicePolicySection,
    /// Guards against deleting the stack or replacing the CA registration by mistake
    /// (recommended for production). Deploy applies it to the stack.
    #[serde(default)]
    pub protection: ProtectionSection,
    /// Encryption at rest with a customer-managed KMS key (default: AWS-managed keys).
    #[serde(default)]
    pub encryption: EncryptionSection,
    /// The scheduled sweep that activates certificates whose events were lost (on by default).
    #[serde(default)]
    pub reconciler: ReconcilerSection,
    /// Where the stack's alarms notify (they exist either way).
    #[serde(default)]
    pub alarms: AlarmsSection,
    /// Device certificates never to let in: the activator sets them REVOKED instead of
    /// activating them. Shipped with the stack; takes effect at the next deploy.
    #[serde(default)]
    pub revocation: Option<RevocationSection>,
}

/// One target of a `targets:` list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetSection {
    /// AWS region, e.g. `us-east-1`.
    pub region: String,
    /// The 12-digit AWS account (quoted in YAML); deploy refuses credentials of any other.
    pub account: String,
    /// An IAM role in that account (`arn:aws:iam::ACCOUNT:role/NAME`) that deploy, diff,
    /// destroy and status assume from the caller's credentials; unset: the caller's
    /// credentials must already be for the account.
    #[serde(default)]
    pub role_arn: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevocationSection {
    /// Device certificate serial numbers in hex (`1A:2B:...`, `0x1a2b`, any case), of any of
    /// the stage's CAs; at most 20 bytes each.
    #[serde(default)]
    pub serials: Vec<String>,
    /// A CRL (PEM or DER) per CA name (`default` for a one-CA stage): it must be signed by that
    /// CA; its revoked serials are added for that CA. A CRL past its nextUpdate is a warning.
    #[serde(default)]
    pub crl_files: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EncryptionSection {
    /// ARN of a customer-managed KMS key in the stage's region (`arn:aws:kms:REGION:ACCOUNT:key/ID`)
    /// for the log groups, the failure queue and the activator's environment. Its key policy must
    /// let CloudWatch Logs use it (see the README). Unset: AWS-managed encryption.
    #[serde(default)]
    pub kms_key_arn: Option<String>,
}

/// `ca:` as written: one CA (the CA named `default`) or a list of CAs, each with a `name`.
#[derive(Debug, Clone)]
pub enum CaField {
    One(CaSection),
    List(Vec<CaSection>),
}

impl<'de> Deserialize<'de> for CaField {
    /// A mapping is one CA, a sequence a list; read through serde_yaml's own deserializer (not
    /// an untagged enum) so an error keeps its field and line.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CaField;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("one CA (a mapping) or a list of CAs")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<CaField, A::Error> {
                let d = serde::de::value::MapAccessDeserializer::new(map);
                CaSection::deserialize(d).map(CaField::One)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<CaField, A::Error> {
                let d = serde::de::value::SeqAccessDeserializer::new(seq);
                Vec::<CaSection>::deserialize(d).map(CaField::List)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for CaField {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CaField".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let one = generator.subschema_for::<CaSection>();
        schemars::json_schema!({
            "oneOf": [
                one,
                {
                    "type": "array",
                    "description": "Several CAs (rotation); each needs a unique `name`. Name \
                        the CA you had before `default`: its registration then stays as it is.",
                    "items": one,
                    "minItems": 1,
                    "maxItems": super::MAX_CAS,
                }
            ]
        })
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaSection {
    /// The CA's name, `[a-z][a-z0-9-]{0,30}`, unique in the stage: required in a list, where it
    /// names the CA's resources (`default` keeps the one-CA names). One CA is `default`.
    #[serde(default)]
    pub name: Option<String>,
    /// Path of the CA certificate (PEM), relative to the project root. Never the key.
    pub certificate: String,
    /// `SNI_ONLY` (no verification certificate; devices must send SNI) or `DEFAULT`
    /// (needs `verification`; the CA can be registered in only one account per region).
    pub mode: CertificateMode,
    /// `DEFAULT` mode only: where deploy gets the verification certificate.
    #[serde(default)]
    pub verification: Option<VerificationSection>,
    /// Auto-registration of device certificates; JITR needs it on.
    #[serde(default = "yes")]
    pub auto_registration: bool,
    /// `ACTIVE` (default) or `INACTIVE` (devices of this CA cannot register or connect).
    #[serde(default)]
    pub status: CaStatus,
    /// Keep the CA registered when the stack is deleted (recommended for production).
    #[serde(default)]
    pub retain_on_delete: bool,
    /// Take over the CA if it is already registered in the account and region (by hand, or
    /// by another stack or stage); without it, such a deploy is refused. The stack then sets
    /// the CA's status and auto-registration, and never deregisters it.
    #[serde(default)]
    pub adopt: bool,
}

/// Exactly one source. The CA's private key never goes into a template, an output or a log:
/// deploy reads it on the operator's machine to sign the verification certificate.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerificationSection {
    /// Path of the CA private key (PEM), read only at deploy time.
    #[serde(default)]
    pub private_key_file: Option<String>,
    /// Name of an environment variable holding the CA private key (PEM), e.g. a CI secret.
    #[serde(default)]
    pub private_key_env: Option<String>,
    /// Path of a verification certificate made beforehand (e.g. with an HSM-held key).
    #[serde(default)]
    pub certificate_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivatorSection {
    /// Create a Thing per device and attach the certificate to it.
    #[serde(default = "yes")]
    pub create_thing: bool,
    /// `subject-cn` (falls back to the certificate id) or `certificate-id`.
    #[serde(default)]
    pub thing_name: ThingNameSource,
    /// A thing group every new Thing joins; the stack creates it.
    #[serde(default)]
    pub thing_group: Option<String>,
    /// A regular expression the certificate subject's CN must match in full.
    #[serde(default)]
    pub subject_pattern: Option<String>,
    /// `leave-pending` or `revoke`: what happens to a certificate that fails the checks.
    #[serde(default)]
    pub on_reject: RejectAction,
    /// Lambda memory, MB (128 to 10240).
    #[serde(default = "default_memory")]
    pub memory_mb: u32,
    /// Lambda timeout, seconds (1 to 900).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
    /// Reserved concurrency (1 to 1000): caps how hard a registration storm can hit the IoT
    /// API; each unit takes `rate × api_share / reserved_concurrency` of every operation. Set,
    /// deploy refuses an account whose Lambda concurrency cannot give it (Lambda keeps 100
    /// units, or the whole limit when it is lower, unreserved). Unset, deploy reserves what
    /// the stage's rates need (twice the activations in flight at the quota-bound rate, plus
    /// one for the sweep, within 2..=50: 7 at AWS's default quotas) when the account can spare
    /// it, and otherwise deploys without a reservation, saying so.
    #[serde(default)]
    pub reserved_concurrency: Option<u32>,
    /// The account's AWS IoT rate quotas the activator paces itself by, requests per second
    /// per operation (0.1 to 10000). Operations left out keep AWS's default quota.
    #[serde(default)]
    pub api_rates: ApiRatesSection,
    /// The share of each quota the activator may use (0.05 to 1): lower it to leave room for
    /// other callers in the account and Region.
    #[serde(default = "default_share")]
    pub api_share: f64,
    /// Days CloudWatch Logs keeps the Lambdas' logs (one of CloudWatch's allowed values).
    #[serde(default = "default_retention")]
    pub log_retention_days: u32,
}

fn default_share() -> f64 {
    1.0
}
fn default_memory() -> u32 {
    128
}
fn default_timeout() -> u32 {
    30
}
fn default_retention() -> u32 {
    30
}

impl Default for ActivatorSection {
    fn default() -> Self {
        ActivatorSection {
            create_thing: true,
            thing_name: ThingNameSource::default(),
            thing_group: None,
            subject_pattern: None,
            on_reject: RejectAction::default(),
            memory_mb: default_memory(),
            timeout_seconds: default_timeout(),
            reserved_concurrency: None,
            api_rates: ApiRatesSection::default(),
            api_share: default_share(),
            log_retention_days: default_retention(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DevicePolicySection {
    /// Handlebars template of the device policy, relative to the project root.
    #[serde(default = "default_policy_template")]
    pub template: String,
    /// Extra values for the template (`{{vars.NAME}}`).
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
}

fn default_policy_template() -> String {
    DEFAULT_POLICY_TEMPLATE.to_string()
}

impl Default for DevicePolicySection {
    fn default() -> Self {
        DevicePolicySection {
            template: default_policy_template(),
            vars: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProtectionSection {
    /// CloudFormation termination protection: the stack cannot be deleted (by `destroy`, the
    /// console or the API) until a deploy with this set to false turns it off.
    #[serde(default)]
    pub termination: bool,
    /// A stack policy denying Update:Replace and Update:Delete of the CA registration; deploy
    /// also refuses, before executing anything, a change that would replace or remove it.
    #[serde(default)]
    pub ca_registration: bool,
}

/// AWS IoT's rate quotas as the account has them, keyed by the operation's AWS name. Unset:
/// AWS's default (in parentheses).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiRatesSection {
    /// DescribeCertificate, requests/s (10).
    #[serde(rename = "DescribeCertificate", default)]
    pub describe_certificate: Option<f64>,
    /// UpdateCertificate, requests/s (10).
    #[serde(rename = "UpdateCertificate", default)]
    pub update_certificate: Option<f64>,
    /// AttachPolicy, requests/s (15).
    #[serde(rename = "AttachPolicy", default)]
    pub attach_policy: Option<f64>,
    /// CreateThing, requests/s (100).
    #[serde(rename = "CreateThing", default)]
    pub create_thing: Option<f64>,
    /// AttachThingPrincipal, requests/s (100).
    #[serde(rename = "AttachThingPrincipal", default)]
    pub attach_thing_principal: Option<f64>,
    /// AddThingToThingGroup, requests/s (100).
    #[serde(rename = "AddThingToThingGroup", default)]
    pub add_thing_to_thing_group: Option<f64>,
    /// ListCertificatesByCA (the sweep), requests/s (10).
    #[serde(rename = "ListCertificatesByCA", default)]
    pub list_certificates_by_ca: Option<f64>,
    /// DescribeCACertificate (once per container), requests/s (10).
    #[serde(rename = "DescribeCACertificate", default)]
    pub describe_ca_certificate: Option<f64>,
}

impl ApiRatesSection {
    /// What the stage sets, by operation (`None`: AWS's default).
    pub fn get(&self, op: IotApi) -> Option<f64> {
        match op {
            IotApi::DescribeCertificate => self.describe_certificate,
            IotApi::UpdateCertificate => self.update_certificate,
            IotApi::AttachPolicy => self.attach_policy,
            IotApi::CreateThing => self.create_thing,
            IotApi::AttachThingPrincipal => self.attach_thing_principal,
            IotApi::AddThingToThingGroup => self.add_thing_to_thing_group,
            IotApi::ListCertificatesByCA => self.list_certificates_by_ca,
            IotApi::DescribeCACertificate => self.describe_ca_certificate,
        }
    }

    /// Every operation's rate: the stage's where set, AWS's default elsewhere.
    pub fn rates(&self) -> ApiRates {
        IotApi::ALL
            .into_iter()
            .fold(ApiRates::default(), |r, op| match self.get(op) {
                Some(rate) => r.with(op, rate),
                None => r,
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcilerSection {
    /// Run the sweep on a schedule (an EventBridge rule invoking the activator).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Minutes between runs (1 to 1440).
    #[serde(default = "default_every")]
    pub every_minutes: u32,
    /// Pending certificates younger than this are left to their event (0 to 1440 minutes).
    #[serde(default = "default_grace")]
    pub grace_minutes: u32,
    /// Certificates older than this are not listed (1 to 400 days).
    #[serde(default = "default_horizon")]
    pub horizon_days: u32,
    /// At most this many ListCertificatesByCA pages (250 certificates each) per run (1 to
    /// 10000); a run that stops early leaves a marker where the next one resumes.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
}

fn default_every() -> u32 {
    5
}
fn default_grace() -> u32 {
    15
}
fn default_horizon() -> u32 {
    7
}
fn default_max_pages() -> u32 {
    20
}

impl Default for ReconcilerSection {
    fn default() -> Self {
        ReconcilerSection {
            enabled: true,
            every_minutes: default_every(),
            grace_minutes: default_grace(),
            horizon_days: default_horizon(),
            max_pages: default_max_pages(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlarmsSection {
    /// An address the alarms mail (an SNS topic with an email subscription, which AWS asks the
    /// recipient to confirm). Unset: the alarms exist but notify no one.
    #[serde(default)]
    pub email: Option<String>,
}
