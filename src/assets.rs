//! The two Lambdas this binary carries: built, checked and zipped by `build.rs` (through
//! `crates/bundle`) when the binary was built, so `synth` and `deploy` need no checkout, no
//! Rust toolchain and no network. An installed binary always uses what it embeds; in a
//! checkout, `cargo build` rebuilds the embedded Lambdas when their sources change.

pub use jitr_bundle::{
    sha256_hex, unzip_bootstrap, Architecture, ARCHITECTURE, MAX_GLIBC, PROFILE,
};

/// A Lambda zip embedded in this binary.
#[derive(Debug, PartialEq, Eq)]
pub struct Embedded {
    /// Cargo package (and binary) name.
    pub package: &'static str,
    /// Hex SHA-256 of the zip, computed when it was built (and checked by the tests).
    pub sha256: &'static str,
    /// The zip: one executable `bootstrap`, byte-reproducible.
    pub zip: &'static [u8],
}

// `EMBEDDED: [Embedded; 2]` (activator, CA provider) and `LONG_VERSION` (what `--version`
// prints: the version and each zip's SHA-256).
include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// The activator (the topic rule's target).
pub fn activator() -> &'static Embedded {
    &EMBEDDED[0]
}

/// The CA registration custom resource provider.
pub fn ca_provider() -> &'static Embedded {
    &EMBEDDED[1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_zips_are_what_their_digests_say() {
        assert_eq!(activator().package, "jitr-activator");
        assert_eq!(ca_provider().package, "jitr-ca-provider");
        for e in &EMBEDDED {
            assert_eq!(sha256_hex(e.zip), e.sha256, "{}", e.package);
            let (binary, mode) = unzip_bootstrap(e.zip).unwrap();
            assert_eq!(mode & 0o777, 0o755);
            jitr_bundle::check_lambda_binary(e.package, &binary).unwrap();
            assert!(LONG_VERSION.contains(&format!("{} {}", e.package, e.sha256)));
        }
    }
}
