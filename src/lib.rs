//! jitr-infra: synthesizes, diffs and deploys the AWS IoT Just-In-Time Registration stack.
//!
//! Data flows stage file -> [`stage::Stage`] -> [`constructs::jitr_stack`] ->
//! [`cfn::Template`] -> [`synth`] output directory (template, manifest, Lambda zips from
//! [`assets`]). See ARCHITECTURE.md.

pub mod assets;
pub mod aws;
pub mod ca_summary;
/// The typed CloudFormation model, from the pure core crate.
pub use jitr_cfn::template as cfn;
pub mod cli;
pub mod constructs;
pub mod deploy;
pub mod diff;
pub mod error;
pub mod fanout;
pub mod init;
pub mod ops;
pub mod partition;
pub mod pki;
pub mod revocation_layer;
pub mod smoke;
pub mod stage;
pub mod synth;
