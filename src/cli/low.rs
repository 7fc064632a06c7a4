//! The low arguments: clap's view of the command line, as the user typed it. [`super::Args`]
//! resolves them once into what the commands use.

use crate::deploy::RequireApproval;
use crate::stage::DEFAULT_STAGE;
use clap::{ArgGroup, Parser, Subcommand};
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  jitr-infra init my-iot-infra          a new project: dev stage, development CA, CI workflow
  jitr-infra synth                      synthesize the default stage (dev) into jitr.out/dev
  jitr-infra synth --stage prod --out cdk.out/prod
  jitr-infra validate --all             check every stage file, write nothing
  jitr-infra list                       the stages and their stacks
  jitr-infra schema > stage.schema.json JSON Schema for editors

  jitr-infra diff --stage prod           what a deploy would change; exit 3 if anything
  jitr-infra deploy --stage prod --require-approval never   (CI, after a reviewed diff)
  jitr-infra destroy --stage dev --yes

  jitr-infra status --stage prod         the deployed front door; exit 5 if it needs attention
  jitr-infra redrive --stage prod        the failure queue through the activator, then a sweep
  jitr-infra smoke --stage dev --ca-key certs/dev-ca.key   one throwaway device end to end

  jitr-infra ca create --name acme-prod --out certs --key-type ec-p384
  jitr-infra ca inspect certs/acme-prod.pem
  jitr-infra device issue --stage dev --cn sensor-0001 --ca-key certs/dev-ca.key --out devices
  jitr-infra revoke --stage prod --cn sensor-17   REVOKED, device policy and Thing detached

Exit codes: 0 success, 1 error, 2 usage error, 3 changes found (diff),
4 approval required but not given (deploy, destroy), 5 needs attention (status, redrive);
smoke: 0 only when the device was activated, published and cleaned up, else 1.";

#[derive(Debug, Parser)]
#[command(
    name = "jitr-infra",
    version,
    long_version = crate::assets::LONG_VERSION,
    about = "Synthesizes, diffs and deploys the AWS IoT Just-In-Time Registration stack",
    after_help = EXAMPLES
)]
pub struct Cli {
    /// Project root holding stacks/ and templates/ [default: current directory]
    #[arg(long, global = true, value_name = "DIR")]
    pub project: Option<PathBuf>,
    /// AWS profile (else AWS_PROFILE or the default chain: env, SSO, role profiles)
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// AWS region [default: the stage's region; for init: AWS_REGION, AWS_DEFAULT_REGION, else
    /// us-east-1]. Overrides the region of a one-target stage; a stage with `targets:` refuses
    /// it (pick its targets with --target)
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,
    /// Work on these of the stage's `targets:` only: REGION (every account there) or
    /// REGION/ACCOUNT; repeat the flag or separate with commas [default: every target]
    #[arg(
        long = "target",
        global = true,
        value_name = "REGION[/ACCOUNT]",
        value_delimiter = ','
    )]
    pub targets: Vec<String>,
    /// How many targets diff, deploy, destroy and status work on at once
    #[arg(long, global = true, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Machine-readable JSON on stdout; no progress on stderr
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Synthesize a stage: CloudFormation template, manifest and Lambda zips, offline.
    #[command(after_help = "Example: jitr-infra synth --stage prod")]
    Synth {
        /// Stage name: stacks/<STAGE>.yaml
        #[arg(long, short, default_value = DEFAULT_STAGE)]
        stage: String,
        /// Output directory [default: jitr.out/<STAGE>]
        #[arg(long, short, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Start a project in an empty directory: the dev stage (SNI_ONLY), a fresh development
    /// CA (its key with mode 0600), the device policy template, a .gitignore and a CI
    /// workflow. Refuses a directory holding anything but .git, and changes nothing then.
    #[command(after_help = "Examples:
  jitr-infra init                       in the current directory (named after it)
  jitr-infra init factory --name acme-factory --region eu-central-1")]
    Init {
        /// The directory to make the project in (created when missing) [default: --project,
        /// else the current directory]
        dir: Option<PathBuf>,
        /// Project name for the stack (<NAME>-dev), tags and CA [default: the directory's
        /// name, made a valid stack name]
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// List the stages and their stacks.
    List,
    /// Run every check of a stage (stage file, certificates, device policy, template)
    /// without writing anything.
    #[command(after_help = "Example: jitr-infra validate --all")]
    Validate {
        /// Stage name: stacks/<STAGE>.yaml
        #[arg(long, short, default_value = DEFAULT_STAGE, conflicts_with = "all")]
        stage: String,
        /// Validate every stage in stacks/
        #[arg(long)]
        all: bool,
    },
    /// Print the JSON Schema of the stage file format.
    Schema,
    /// Show what a deploy would change: resources, properties, replacements, and the
    /// security view. Exit 0 when nothing would change, 3 when something would.
    #[command(after_help = "Example: jitr-infra diff --stage prod")]
    Diff {
        /// Stage name: stacks/<STAGE>.yaml
        #[arg(long, short, default_value = DEFAULT_STAGE)]
        stage: String,
    },
    /// Deploy a stage through a CloudFormation change set.
    #[command(after_help = "Examples:
  jitr-infra deploy --stage dev
  jitr-infra deploy --stage prod --require-approval never --outputs-file outputs.json
  jitr-infra deploy --stage prod --no-execute     create the change set for review only")]
    Deploy {
        /// Stage name: stacks/<STAGE>.yaml
        #[arg(long, short, default_value = DEFAULT_STAGE)]
        stage: String,
        /// When to ask before executing. Without a terminal nothing is asked: a deploy that
        /// needs approval is refused (exit 4).
        #[arg(long, value_enum, default_value_t = RequireApproval::Broadening)]
        require_approval: RequireApproval,
        /// Create the change set and stop (review it in the console or with `diff`)
        #[arg(long)]
        no_execute: bool,
        /// Write the stack outputs as JSON to this file
        #[arg(long, value_name = "FILE")]
        outputs_file: Option<PathBuf>,
    },
    /// Delete a stage's stack (the CA stays registered if the stage retains it).
    #[command(after_help = "Example: jitr-infra destroy --stage dev --yes")]
    Destroy {
        /// Stage name: stacks/<STAGE>.yaml
        #[arg(long, short, default_value = DEFAULT_STAGE)]
        stage: String,
        /// Do not ask (required without a terminal)
        #[arg(long)]
        yes: bool,
        /// Detach the device policy from the device certificates still using it (those
        /// devices lose access). Without it, destroy refuses while devices are attached:
        /// AWS will not delete an attached policy and the deletion would fail halfway.
        #[arg(long)]
        detach_devices: bool,
    },
    /// The deployed stage at a glance: the CA (status, auto-registration, expiry), the topic
    /// rule, our CA's pending certificates, the failure queue, the last hour's activations,
    /// rejections, errors and throttles, the alarms, and the capacity. Exit 0 when healthy,
    /// 5 when something needs attention (each item is listed).
    #[command(after_help = "Example: jitr-infra status --stage prod --json")]
    Status {
        /// Stage name: stacks/<STAGE>.yaml
        #[arg(long, short, default_value = DEFAULT_STAGE)]
        stage: String,
        /// ListCertificatesByCA pages (250 certificates each, newest first) to read at most
        #[arg(long, value_name = "N", default_value_t = crate::ops::status::DEFAULT_MAX_PAGES,
              value_parser = clap::value_parser!(u32).range(1..=1000))]
        max_pages: u32,
    },
    /// Certificate authorities: make one (`ca create`) or inspect one (`ca inspect`).
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Device certificates: issue them with a stage's CA (`device issue`).
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Re-deliver the failure queue's events to the activator (synchronously; a message is
    /// deleted only when its event was handled without error), then run a sweep. Exit 0
    /// when every message was redriven and the sweep completed, 5 when messages remain or the
    /// sweep did not complete.
    #[command(after_help = "Examples:
  jitr-infra redrive --stage prod --dry-run     what would be redriven; changes nothing
  jitr-infra redrive --stage prod --max 100 --no-sweep")]
    Redrive {
        /// Stage name: stacks/<STAGE>.yaml
        #[arg(long, short, default_value = DEFAULT_STAGE)]
        stage: String,
        /// List the messages and what would be done; invoke nothing, delete nothing
        #[arg(long)]
        dry_run: bool,
        /// Handle at most N messages
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max: Option<u32>,
        /// Do not run a sweep after the messages
        #[arg(long)]
        no_sweep: bool,
    },
    /// One throwaway device through the deployed stage: a certificate issued with the CA's
    /// key connects to AWS IoT (the first connection registers it and is dropped), is
    /// activated, reconnects, publishes once on devices/<thing>/smoke, and is revoked and
    /// deleted with its Thing. Exit 0 only when all of it worked.
    #[command(after_help = "Examples:
  jitr-infra smoke --stage dev --ca-key certs/dev-ca.key
  jitr-infra smoke --stage prod --ca-key-env JITR_CA_KEY --cn acme-smoke-0001 --timeout 120
  jitr-infra smoke --stage dev --ca-key k.pem --endpoint abc-ats.iot.eu-west-1.amazonaws.com:443")]
    /// Revoke device certificates of the stage's CAs: AWS IoT status REVOKED (the device is
    /// disconnected and cannot reconnect), the stage's device policy detached, the certificate
    /// detached from its Things (the Things stay). A second revoke reports "already revoked".
    /// Exit 0 when something matched, 1 when nothing did.
    #[command(
        group(ArgGroup::new("which").required(true).args(["certificate_id", "serial", "cn"])),
        after_help = "Examples:
  jitr-infra revoke --stage prod --cn sensor-17
  jitr-infra revoke --stage prod --certificate-id 3f9a...e1 --dry-run
  jitr-infra revoke --stage prod --serial 1A:2B:3C:4D   (scans the CAs' certificates: one
                                                        DescribeCertificate each, ~10/s)"
    )]
    Revoke {
        /// Stage name: stacks/<STAGE>.yaml
        #[arg(long, short, default_value = DEFAULT_STAGE)]
        stage: String,
        /// The AWS IoT certificate id (64 hex digits)
        #[arg(long, value_name = "ID")]
        certificate_id: Option<String>,
        /// The certificate's serial number in hex (colons, 0x, case and leading zeros do not
        /// matter). AWS IoT cannot search by serial: every certificate of the stage's CAs is
        /// described, paced under the DescribeCertificate quota; the cost is shown first
        #[arg(long, value_name = "HEX")]
        serial: Option<String>,
        /// The subject common name: through the Thing named after it when the activator names
        /// Things by CN, otherwise (or when there is no such Thing) by a scan like --serial
        #[arg(long, value_name = "NAME")]
        cn: Option<String>,
        /// Show what would be revoked and detached; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    Smoke(SmokeArgs),
}

/// `smoke`'s arguments.
#[derive(Debug, clap::Args)]
pub struct SmokeArgs {
    /// Stage name: stacks/<STAGE>.yaml
    #[arg(long, short, default_value = DEFAULT_STAGE)]
    pub stage: String,
    /// The stage's CA to issue with [default: the stage's only CA]
    #[arg(long, value_name = "NAME")]
    pub ca: Option<String>,
    /// The CA's private key (PEM file)
    #[arg(long, value_name = "FILE", required_unless_present = "ca_key_env")]
    pub ca_key: Option<PathBuf>,
    /// An environment variable holding the CA's private key (PEM)
    #[arg(long, value_name = "VAR", conflicts_with = "ca_key")]
    pub ca_key_env: Option<String>,
    /// The device's subject CN [default: jitr-smoke-<random>; required when the
    /// activator's subject_pattern does not accept that]
    #[arg(long, value_name = "NAME")]
    pub cn: Option<String>,
    /// MQTT endpoint [default: DescribeEndpoint iot:Data-ATS; port 8883, 443 uses ALPN
    /// x-amzn-mqtt-ca]
    #[arg(long, value_name = "HOST[:PORT]")]
    pub endpoint: Option<String>,
    /// Trust roots for the server certificate (PEM) [default: the system store, which
    /// holds Amazon Root CA 1]
    #[arg(long, value_name = "FILE")]
    pub trust_root: Option<PathBuf>,
    /// Seconds from the first connection until the device must be accepted
    #[arg(long, value_name = "SECS", default_value_t = 60,
      value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// Leave the device registered (certificate ACTIVE, Thing) instead of removing it
    #[arg(long)]
    pub keep: bool,
}

/// A key type for `ca create` and `device issue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyType {
    #[value(name = "ec-p256")]
    EcP256,
    #[value(name = "ec-p384")]
    EcP384,
    #[value(name = "rsa-2048")]
    Rsa2048,
    #[value(name = "rsa-3072")]
    Rsa3072,
}

impl From<KeyType> for crate::pki::KeyAlgorithm {
    fn from(k: KeyType) -> Self {
        use crate::pki::KeyAlgorithm as K;
        match k {
            KeyType::EcP256 => K::EcP256,
            KeyType::EcP384 => K::EcP384,
            KeyType::Rsa2048 => K::Rsa2048,
            KeyType::Rsa3072 => K::Rsa3072,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Make a self-signed CA: OUT/NAME.pem (certificate) and OUT/NAME.key (private key, mode
    /// 0600). Refuses to overwrite either. The key is never printed. For production, keep the
    /// CA key in an HSM or use AWS Private CA (see the README).
    #[command(after_help = "Examples:
  jitr-infra ca create --name acme-dev --out certs
  jitr-infra ca create --name acme-prod --out /secure/ca --key-type ec-p384 --days 3650 \\
      --subject 'CN=Acme production CA,O=Acme,C=DE'")]
    Create(CaCreate),
    /// Show a CA certificate as AWS IoT and the activator see it: certificate id, subject,
    /// issuer, serial, key and signature algorithms, validity, CA constraints, key usage,
    /// whether the activator can verify what it signs, and warnings. Warnings do not change
    /// the exit code (0); a file that is not a certificate exits 1.
    #[command(after_help = "Example: jitr-infra ca inspect certs/dev-ca.pem --json")]
    Inspect {
        /// The certificate (PEM)
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Issue device certificates signed by a stage's CA: OUT/CN.crt, OUT/CN.key (0600) and
    /// OUT/CN.chain.pem (device then CA) per device. Every CN is checked against the stage's
    /// activator.subject_pattern (and Thing naming) before anything is written; no output file
    /// may exist. The CA key comes from --ca-key, --ca-key-env, or else the stage's own
    /// ca.verification.private_key_file/_env.
    #[command(after_help = "Examples:
  jitr-infra device issue --stage dev --cn sensor-0001 --ca-key certs/dev-ca.key --out devices
  jitr-infra device issue --stage prod --ca-key-env CA_KEY --out devices \\
      --cn-template 'sensor-{:04}' --count 100 --start 1")]
    Issue {
        /// Stage name: stacks/<STAGE>.yaml
        #[arg(long, short, default_value = DEFAULT_STAGE)]
        stage: String,
        #[command(flatten)]
        issue: DeviceIssue,
    },
}

// `ca create`'s options, as `ca create` takes them.
#[derive(Debug, Clone, clap::Args)]
pub struct CaCreate {
    /// The CA's file name (NAME.pem, NAME.key): letters, digits, '.', '_', '-'
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// The directory to write into (created when missing)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The CA's key type
    #[arg(long, value_enum, default_value_t = KeyType::EcP256)]
    pub key_type: KeyType,
    /// Days of validity
    #[arg(long, value_name = "N", default_value_t = crate::cli::certs::DEFAULT_CA_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,
    /// The subject: CN (required), O, OU, C, ST, L, comma-separated [default: CN=<NAME> CA]
    #[arg(long, value_name = "DN")]
    pub subject: Option<String>,
}

// `device issue`'s options apart from the stage.
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceIssue {
    /// The device's subject CN (and file name)
    #[arg(
        long,
        value_name = "NAME",
        required_unless_present = "cn_template",
        conflicts_with = "cn_template"
    )]
    pub cn: Option<String>,
    /// A CN per device: '{}' or '{:0N}' is the device's number
    #[arg(long, value_name = "TEMPLATE")]
    pub cn_template: Option<String>,
    /// How many devices (with --cn-template)
    #[arg(long, value_name = "N", requires = "cn_template", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub count: u32,
    /// The first device's number (with --cn-template)
    #[arg(long, value_name = "N", requires = "cn_template", default_value_t = 1)]
    pub start: u32,
    /// The CA private key file (PEM; must not be readable by group or others)
    #[arg(long, value_name = "FILE", conflicts_with = "ca_key_env")]
    pub ca_key: Option<PathBuf>,
    /// An environment variable holding the CA private key (PEM)
    #[arg(long, value_name = "VAR")]
    pub ca_key_env: Option<String>,
    /// The stage's CA to sign with (needed when the stage has several)
    #[arg(long, value_name = "NAME")]
    pub ca: Option<String>,
    /// The directory to write into (created when missing)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The devices' key type
    #[arg(long, value_enum, default_value_t = KeyType::EcP256)]
    pub key_type: KeyType,
    /// Days of validity (cut at the CA's notAfter, with a note)
    #[arg(long, value_name = "N", default_value_t = crate::pki::DEFAULT_DEVICE_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,
}
