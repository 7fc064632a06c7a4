//! The project's name (stack name, tags, the CA's subject) and region, as `init` decides them.

use super::InitError;
use crate::stage::MAX_STACK_NAME;

/// The stage `init` makes; the stack is `<name>-dev`.
pub const STAGE: &str = "dev";
/// The region when neither `--region` nor the environment names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The longest project name: `<name>-dev` must stay a valid stack name.
const MAX_NAME: usize = MAX_STACK_NAME - STAGE.len() - 1;

/// Makes `raw` a CloudFormation stack name's stem (`[A-Za-z][A-Za-z0-9-]*`): every run of
/// other characters becomes one hyphen, leading non-letters and trailing hyphens go, and it is
/// cut to fit `<name>-dev` in 48 characters. `origin` says where the name came from (for the
/// refusal of one that has no letter to start with).
pub fn sanitize(raw: &str, origin: &str) -> Result<String, InitError> {
    let mut name = String::new();
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    let start = name.find(|c: char| c.is_ascii_alphabetic());
    let Some(start) = start else {
        return Err(InitError::BadName {
            name: raw.to_string(),
            origin: origin.to_string(),
        });
    };
    let mut name = name[start..].to_string();
    name.truncate(MAX_NAME);
    Ok(name.trim_end_matches('-').to_string())
}

/// Where the region came from (said in the output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionSource {
    Flag,
    AwsRegion,
    AwsDefaultRegion,
    Default,
}

impl RegionSource {
    pub fn describe(self) -> &'static str {
        match self {
            RegionSource::Flag => "from --region",
            RegionSource::AwsRegion => "from AWS_REGION",
            RegionSource::AwsDefaultRegion => "from AWS_DEFAULT_REGION",
            RegionSource::Default => "the default; pass --region or set AWS_REGION to choose",
        }
    }
}

/// `--region`, else `AWS_REGION`, else `AWS_DEFAULT_REGION`, else us-east-1; `env` reads a
/// variable (the process environment, or a test's). Refused when not an AWS region.
pub fn region(
    flag: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(String, RegionSource), InitError> {
    let non_empty = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    let (region, source) = if let Some(r) = flag {
        (r.to_string(), RegionSource::Flag)
    } else if let Some(r) = non_empty(env("AWS_REGION")) {
        (r, RegionSource::AwsRegion)
    } else if let Some(r) = non_empty(env("AWS_DEFAULT_REGION")) {
        (r, RegionSource::AwsDefaultRegion)
    } else {
        (DEFAULT_REGION.to_string(), RegionSource::Default)
    };
    if crate::partition::partition_of(&region).is_none() {
        return Err(InitError::BadRegion {
            region,
            origin: source.describe(),
        });
    }
    Ok((region, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::is_stack_name;

    #[test]
    fn names_are_made_stack_names_or_refused() {
        let ok = |raw: &str| sanitize(raw, "--name").unwrap();
        assert_eq!(ok("My Factory_1"), "My-Factory-1");
        assert_eq!(ok("acme"), "acme");
        assert_eq!(ok("42 fleet--east  "), "fleet-east");
        assert_eq!(ok("über-fleet"), "ber-fleet");
        let long = ok(&"a".repeat(100));
        assert_eq!(long.len(), MAX_NAME);
        assert!(is_stack_name(&format!("{long}-{STAGE}")));
        let cut = ok(&format!("{}-b", "a".repeat(MAX_NAME - 1)));
        assert!(!cut.ends_with('-'), "{cut}");
        for bad in ["", "123", "-_-", "日本"] {
            let e = sanitize(bad, "--name").unwrap_err().to_string();
            assert!(e.contains("--name"), "{e}");
        }
    }

    #[test]
    fn the_region_comes_from_the_flag_then_the_environment() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let both = env(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "eu-north-1"),
        ]);
        assert_eq!(
            region(Some("ap-south-1"), both).unwrap(),
            ("ap-south-1".into(), RegionSource::Flag)
        );
        assert_eq!(
            region(None, both).unwrap(),
            ("eu-west-1".into(), RegionSource::AwsRegion)
        );
        assert_eq!(
            region(None, env(&[("AWS_DEFAULT_REGION", "eu-north-1")])).unwrap(),
            ("eu-north-1".into(), RegionSource::AwsDefaultRegion)
        );
        assert_eq!(
            region(None, env(&[("AWS_REGION", "")])).unwrap(),
            (DEFAULT_REGION.into(), RegionSource::Default)
        );
        let e = region(None, env(&[("AWS_REGION", "moon-1")])).unwrap_err();
        assert!(e.to_string().contains("AWS_REGION"), "{e}");
    }
}
