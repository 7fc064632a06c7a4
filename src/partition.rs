//! Regions and partitions, in one place, from AWS's own data.
//!
//! `partitions.json` is the partition data the AWS SDK for Rust embeds in its endpoint
//! resolvers, vendored by `scripts/update-partitions` from the `aws-sdk-s3` crate the
//! workspace locks (the SDK does not expose it); a test fails when the two disagree. A region
//! belongs to the partition whose `regionRegex` matches it, as in the SDK's resolvers: the
//! regions the data lists, and a new region of a known partition the SDK would resolve too.
//! The one URL we build ourselves, the template's `TemplateURL`, comes from the S3 SDK's own
//! endpoint resolver, so every partition's host (`amazonaws.com.cn`, `c2s.ic.gov`,
//! `amazonaws.eu`, ...) is the SDK's.

use aws_sdk_s3::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
use regex_lite::Regex;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// One AWS partition (`aws`, `aws-cn`, `aws-us-gov`, `aws-eusc`, `aws-iso`, ...).
#[derive(Debug)]
pub struct Partition {
    /// The partition's id, as in ARNs (`arn:aws-cn:...`).
    pub id: String,
    /// The DNS suffix of its service endpoints (`amazonaws.com.cn`).
    pub dns_suffix: String,
    /// The regions the data lists, without the `*-global` pseudo regions.
    pub regions: Vec<String>,
    region_regex: Regex,
}

impl Partition {
    /// Whether `region` has this partition's shape (listed or not yet listed).
    pub fn matches(&self, region: &str) -> bool {
        self.region_regex.is_match(region)
    }
}

#[derive(Deserialize)]
struct File {
    partitions: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    id: String,
    outputs: Outputs,
    region_regex: String,
    regions: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Outputs {
    dns_suffix: String,
}

/// The vendored data, as the SDK ships it.
pub const PARTITIONS_JSON: &str = include_str!("partitions.json");

static PARTITIONS: LazyLock<Vec<Partition>> =
    LazyLock::new(|| parse(PARTITIONS_JSON).expect("src/partitions.json is valid"));

fn parse(json: &str) -> Result<Vec<Partition>, String> {
    let file: File = serde_json::from_str(json).map_err(|e| e.to_string())?;
    file.partitions
        .into_iter()
        .map(|e| {
            let region_regex = Regex::new(&e.region_regex).map_err(|err| err.to_string())?;
            let regions = e
                .regions
                .into_keys()
                .filter(|r| region_regex.is_match(r))
                .collect();
            Ok(Partition {
                id: e.id,
                dns_suffix: e.outputs.dns_suffix,
                regions,
                region_regex,
            })
        })
        .collect()
}

/// Every partition AWS's data knows.
pub fn partitions() -> &'static [Partition] {
    &PARTITIONS
}

/// The partition `region` belongs to, or `None` when no partition has a region of its shape
/// (`moon-base-1`, `EU-WEST-1`, the `aws-global` pseudo region).
pub fn partition(region: &str) -> Option<&'static Partition> {
    partitions().iter().find(|p| p.matches(region))
}

/// The id of `region`'s partition (`aws`, `aws-cn`, `aws-eusc`, ...).
pub fn partition_of(region: &str) -> Option<&'static str> {
    partition(region).map(|p| p.id.as_str())
}

/// Whether the data lists `region` (a region that exists today, not just one of the shape).
pub fn is_known_region(region: &str) -> bool {
    partition(region).is_some_and(|p| p.regions.iter().any(|r| r == region))
}

/// The DNS suffix of `region`'s endpoints (`amazonaws.com`, `amazonaws.com.cn`, `c2s.ic.gov`).
pub fn dns_suffix(region: &str) -> Option<&'static str> {
    partition(region).map(|p| p.dns_suffix.as_str())
}

/// The path-style URL of `key` in `bucket`, as the S3 SDK resolves it for `region`, or on
/// `endpoint` when one is configured (moto, a VPC endpoint). CloudFormation reads a
/// `TemplateURL` from it.
pub fn s3_object_url(
    region: &str,
    endpoint: Option<&str>,
    bucket: &str,
    key: &str,
) -> Result<String, String> {
    let params = Params::builder()
        .region(region)
        .bucket(bucket)
        .force_path_style(true)
        .use_fips(false)
        .use_dual_stack(false)
        .accelerate(false)
        .set_endpoint(endpoint.map(str::to_string))
        .build()
        .map_err(|e| e.to_string())?;
    let resolver = DefaultResolver::new();
    // The default resolver answers at once (`EndpointFuture::ready`): one poll resolves it.
    let mut future = std::pin::pin!(resolver.resolve_endpoint(&params));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let endpoint = match std::future::Future::poll(future.as_mut(), &mut cx) {
        std::task::Poll::Ready(resolved) => resolved.map_err(|e| e.to_string())?,
        std::task::Poll::Pending => return Err("the S3 endpoint resolver did not answer".into()),
    };
    Ok(format!("{}/{key}", endpoint.url().trim_end_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_and_partitions() {
        assert_eq!(partition_of("eu-west-1"), Some("aws"));
        assert_eq!(partition_of("ap-southeast-5"), Some("aws"));
        assert_eq!(partition_of("us-gov-west-1"), Some("aws-us-gov"));
        assert_eq!(partition_of("cn-northwest-1"), Some("aws-cn"));
        assert_eq!(partition_of("cn-north-1"), Some("aws-cn"));
        // The hand rule this replaces rejected the first and put the ISO regions in `aws`.
        assert_eq!(partition_of("eusc-de-east-1"), Some("aws-eusc"));
        assert_eq!(partition_of("us-iso-east-1"), Some("aws-iso"));
        assert_eq!(partition_of("us-isob-east-1"), Some("aws-iso-b"));
        assert_eq!(partition_of("eu-isoe-west-1"), Some("aws-iso-e"));
        assert_eq!(partition_of("us-isof-south-1"), Some("aws-iso-f"));
        for bad in [
            "",
            "eu-west",
            "EU-WEST-1",
            "europe-1",
            "eu-west-1a",
            "eu_west_1",
            "mars",
            "moon-base-1x",
            // Shaped like a region, but no partition has it (the hand rule took it).
            "xx-yyyy-9",
            "aws-global",
        ] {
            assert_eq!(partition_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn known_regions_and_dns_suffixes() {
        assert!(is_known_region("eu-west-1"));
        assert!(is_known_region("eusc-de-east-1"));
        // A new region of a known partition resolves, but the data does not list it yet.
        assert!(!is_known_region("eu-west-99"));
        assert_eq!(partition_of("eu-west-99"), Some("aws"));
        assert_eq!(dns_suffix("eu-west-1"), Some("amazonaws.com"));
        assert_eq!(dns_suffix("us-gov-east-1"), Some("amazonaws.com"));
        assert_eq!(dns_suffix("cn-north-1"), Some("amazonaws.com.cn"));
        assert_eq!(dns_suffix("eusc-de-east-1"), Some("amazonaws.eu"));
        assert_eq!(dns_suffix("us-iso-east-1"), Some("c2s.ic.gov"));
        assert_eq!(dns_suffix("us-isob-east-1"), Some("sc2s.sgov.gov"));
        assert_eq!(dns_suffix("mars"), None);
    }

    #[test]
    fn every_listed_region_belongs_to_its_own_partition() {
        for p in partitions() {
            assert!(!p.regions.is_empty(), "{} lists no region", p.id);
            for r in &p.regions {
                assert_eq!(partition_of(r), Some(p.id.as_str()), "{r}");
            }
        }
    }

    #[test]
    fn template_urls_per_partition() {
        let url = |region| s3_object_url(region, None, "b", "templates/t.json").unwrap();
        for (region, want) in [
            (
                "eu-west-1",
                "https://s3.eu-west-1.amazonaws.com/b/templates/t.json",
            ),
            (
                "us-east-1",
                "https://s3.us-east-1.amazonaws.com/b/templates/t.json",
            ),
            (
                "us-gov-west-1",
                "https://s3.us-gov-west-1.amazonaws.com/b/templates/t.json",
            ),
            (
                "cn-north-1",
                "https://s3.cn-north-1.amazonaws.com.cn/b/templates/t.json",
            ),
            (
                "eusc-de-east-1",
                "https://s3.eusc-de-east-1.amazonaws.eu/b/templates/t.json",
            ),
            (
                "us-iso-east-1",
                "https://s3.us-iso-east-1.c2s.ic.gov/b/templates/t.json",
            ),
            (
                "us-isob-east-1",
                "https://s3.us-isob-east-1.sc2s.sgov.gov/b/templates/t.json",
            ),
        ] {
            assert_eq!(url(region), want, "{region}");
        }
    }

    #[test]
    fn template_url_on_a_configured_endpoint() {
        for endpoint in ["http://127.0.0.1:5000", "http://127.0.0.1:5000/"] {
            assert_eq!(
                s3_object_url("eu-west-1", Some(endpoint), "b", "templates/t.json").unwrap(),
                "http://127.0.0.1:5000/b/templates/t.json"
            );
        }
    }

    #[test]
    fn every_region_resolves_to_its_partitions_dns_suffix() {
        // The SDK's resolver and the vendored data agree on every listed region.
        for p in partitions() {
            for r in &p.regions {
                let url = s3_object_url(r, None, "b", "k").unwrap();
                assert!(
                    url.starts_with(&format!("https://s3.{r}.{}/", p.dns_suffix)),
                    "{r}: {url}"
                );
            }
        }
    }

    /// The byte-string literal the SDK's `endpoint_lib.rs` builds its partition resolver
    /// from, decoded.
    fn sdk_partitions_json() -> serde_json::Value {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
        let version = lock
            .split("name = \"aws-sdk-s3\"\nversion = \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("aws-sdk-s3 in Cargo.lock");
        let cargo_home = std::env::var("CARGO_HOME")
            .unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap_or_default()));
        let registry = std::path::Path::new(&cargo_home).join("registry/src");
        let source = std::fs::read_dir(&registry)
            .unwrap()
            .flatten()
            .map(|d| {
                d.path()
                    .join(format!("aws-sdk-s3-{version}/src/endpoint_lib.rs"))
            })
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("aws-sdk-s3 {version} source under {registry:?}"));
        let source = std::fs::read_to_string(source).unwrap();
        let literal = source
            .rsplit("new_from_json(b\"")
            .next()
            .and_then(|rest| rest.split("\")").next())
            .expect("the SDK's partition literal");
        let mut json = String::new();
        let mut chars = literal.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e @ ('\\' | '"')) => json.push(e),
                    other => panic!("unexpected escape \\{other:?} in the SDK's literal"),
                },
                c => json.push(c),
            }
        }
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn vendored_partitions_match_the_sdk() {
        let vendored: serde_json::Value = serde_json::from_str(PARTITIONS_JSON).unwrap();
        assert!(
            vendored == sdk_partitions_json(),
            "src/partitions.json differs from the partition data of the aws-sdk-s3 in \
             Cargo.lock: run scripts/update-partitions"
        );
    }
}
