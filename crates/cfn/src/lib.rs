//! The pure core of jitr-infra: the typed CloudFormation model ([`template`]) the
//! constructs build and synth renders, and the stack diff ([`diff`]): engine, replacement
//! knowledge (CloudFormation's own create-only property lists, vendored) and renderers.
//!
//! No AWS SDK, no async runtime, no file or network I/O: everything here is a function of
//! its inputs, and its tests build and run in seconds.

pub mod diff;
pub mod template;
