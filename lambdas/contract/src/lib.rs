//! The contract between the synthesized CloudFormation template and the two bundled Lambdas.
//!
//! Everything that both sides must spell the same way lives here, once: the CA registration
//! custom resource's properties and returned attributes, the `registered` event AWS IoT
//! publishes, and the activator's environment variables. The synthesizer writes these names
//! into the template; the Lambdas read them back. A rename here is a compile error on both
//! sides instead of a silent mismatch at deploy time.
//!
//! This crate depends on serde only, so the Lambda crates stay small.

pub mod activator;
pub mod ca_registration;
pub mod event;
pub mod metrics;
pub mod rates;
pub mod revocation;
pub mod sweep;

// The digest of the Lambda sources jitr-infra's build hands the Lambda build
// (`jitr_bundle::DIGEST_ENV`). Reading it makes it an input of this crate, and so of every
// Lambda crate above it: cargo rebuilds them when the sources change even where it does not
// look at file times (a workspace under cargo's home, as `cargo install --git` makes). The
// value itself is not used and never reaches a binary.
const _SOURCE_DIGEST: Option<&str> = option_env!("JITR_LAMBDA_SOURCE_DIGEST");

/// A boolean as CloudFormation delivers it to a custom resource.
///
/// CloudFormation turns every scalar property of a custom resource into a string, so a
/// template's `true` arrives as `"true"`. Accept both forms, and nothing else.
pub mod cfn_bool {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &bool, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if *value { "true" } else { "false" })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(b) => Ok(b),
            Raw::Str(s) => match s.to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(de::Error::invalid_value(
                    de::Unexpected::Str(&s),
                    &"\"true\" or \"false\"",
                )),
            },
        }
    }
}

/// An optional whole number as CloudFormation delivers it to a custom resource: the template
/// writes a number, the provider receives its decimal string. Accept both forms.
pub mod cfn_number {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(n) => s.serialize_u32(*n),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u32),
            Str(String),
        }
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(Raw::Number(n)) => Ok(Some(n)),
            Some(Raw::Str(s)) => s.trim().parse().map(Some).map_err(|_| {
                de::Error::invalid_value(de::Unexpected::Str(&s), &"a whole number of seconds")
            }),
        }
    }
}

/// Whether `id` has the shape of an AWS IoT certificate id: 64 lowercase hex digits
/// (the SHA-256 of the certificate's DER encoding on real AWS).
pub fn is_certificate_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Flag {
        #[serde(with = "cfn_bool")]
        v: bool,
    }

    #[test]
    fn cfn_bool_accepts_strings_and_bools() {
        for (raw, want) in [
            (r#"{"v":"true"}"#, true),
            (r#"{"v":"False"}"#, false),
            (r#"{"v":true}"#, true),
        ] {
            let f: Flag = serde_json::from_str(raw).unwrap();
            assert_eq!(f.v, want, "{raw}");
        }
        let err = serde_json::from_str::<Flag>(r#"{"v":"yes"}"#)
            .err()
            .unwrap();
        assert!(err.to_string().contains("\"true\" or \"false\""), "{err}");
    }

    #[test]
    fn certificate_id_shape() {
        assert!(is_certificate_id(&"a".repeat(64)));
        assert!(!is_certificate_id(&"A".repeat(64)));
        assert!(!is_certificate_id(&"a".repeat(63)));
        assert!(!is_certificate_id("failed-create"));
    }
}
