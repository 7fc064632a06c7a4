//! jitr-infra: synthesizes, diffs and deploys the AWS IoT Just-In-Time Registration stack.
//!
//! Data flows stage file -> [`stage::Stage`] -> [`constructs::jitr_stack`] ->
//! [`cfn::Template`] -> [`synth`] output directory (template, manifest, Lambda zips from
//! [`assets`]). See ARCHITECTURE.md.

pub mod assets;
pub mod aws;
pub mod cfn;
pub mod cli;
pub mod concurrency;
pub mod constructs;
pub mod deploy;
pub mod destroy;
pub mod diff;
pub mod error;
pub mod partition;
pub mod protection;
pub mod publish;
pub mod stage;
pub mod synth;
