//! Everything `smoke` decides before the first connection, each input checked with its flag
//! named: the CA and its key, the deployed activator's configuration (device policy, Thing
//! naming, subject pattern), the CN, the device certificate, the endpoint and TLS.

use super::tls::{self, Endpoint};
use super::Device;
use crate::aws::{self, Clients};
use crate::error::Error;
use crate::ops::Deployed;
use crate::pki::{self, CaSigner, DeviceSpec, KeyAlgorithm};
use crate::stage::Stage;
use jitr_contract::activator::{
    anchored_subject_pattern, is_thing_name, ActivatorConfig, ThingNameSource,
};
use rustls::ClientConfig;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where the CA's private key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `--ca-key FILE`
    File(PathBuf),
    /// `--ca-key-env VAR`: the PEM in an environment variable (CI secrets).
    Env(String),
}

/// `smoke`'s options.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--ca NAME` (the stage's only CA when `None`).
    pub ca: Option<String>,
    pub ca_key: KeySource,
    /// `--cn NAME`: the device's CN instead of `jitr-smoke-<random>`.
    pub cn: Option<String>,
    /// `--endpoint HOST[:PORT]`; else DescribeEndpoint `iot:Data-ATS`, port 8883.
    pub endpoint: Option<String>,
    /// `--trust-root FILE`; else the system's trust store.
    pub trust_root: Option<PathBuf>,
    /// `--timeout`: from the first connection to an accepted CONNECT.
    pub timeout: Duration,
    /// `--keep`: leave the device registered.
    pub keep: bool,
}

/// The device's validity: it lives for minutes.
const DEVICE_DAYS: u32 = 1;

pub(super) struct Prepared {
    pub ca_name: String,
    pub device: Device,
    pub policy_name: String,
    pub endpoint: Endpoint,
    pub trust_roots: String,
    pub config: Arc<ClientConfig>,
    /// A sentence when the CN does not match the activator's subject pattern ("" otherwise).
    pub pattern_note: String,
}

pub(super) async fn prepare(
    clients: &Clients,
    stage: &Stage,
    deployed: &Deployed,
    opts: &Options,
) -> Result<Prepared, Error> {
    let ca = stage.ca_named(opts.ca.as_deref()).map_err(Error::Smoke)?;
    let key_pem = read_key(&opts.ca_key)?;
    let signer = CaSigner::from_pem(&ca.pem, &key_pem)
        .map_err(|e| Error::Smoke(format!("{}: {e}", key_flag(&opts.ca_key))))?;
    let env = &deployed.function;
    let config = ActivatorConfig::from_lookup(|k| env.env(k)).map_err(|e| Error::Deployed {
        stack: deployed.stack_name.clone(),
        problem: format!("the activator's configuration: {e}"),
    })?;
    let (cn, pattern_note) = common_name(opts.cn.as_deref(), config.subject_pattern.as_deref())?;
    let spec = DeviceSpec {
        common_name: cn.clone(),
        key: KeyAlgorithm::EcP256,
        days: DEVICE_DAYS,
    };
    let material = pki::issue_device(&signer, &spec)
        .map_err(|e| Error::Smoke(format!("issuing the device certificate: {e}")))?;
    let certificate_id = material.certificate_id();
    let thing_name = match config.thing_name_source {
        ThingNameSource::SubjectCn if is_thing_name(&cn) => cn.clone(),
        _ => certificate_id.clone(),
    };
    let exists = super::cleanup::thing_exists(&clients.iot, &thing_name)
        .await
        .map_err(Error::Smoke)?;
    if exists {
        return Err(Error::Smoke(format!(
            "--cn {cn}: a Thing named {thing_name} already exists; smoke deletes the Thing it \
             onboards, so it refuses to use an existing one: choose another --cn"
        )));
    }
    let endpoint = endpoint(clients, opts.endpoint.as_deref()).await?;
    let (roots, trust_roots) =
        tls::trust_roots(opts.trust_root.as_deref()).map_err(Error::Smoke)?;
    let config_tls =
        tls::client_config(roots, &material.chain_pem, &material.key_pem, endpoint.port)
            .map_err(Error::Smoke)?;
    Ok(Prepared {
        ca_name: ca.name.clone(),
        device: Device {
            common_name: cn,
            certificate_id,
            thing_name,
        },
        policy_name: config.device_policy_name,
        endpoint,
        trust_roots,
        config: config_tls,
        pattern_note,
    })
}

fn key_flag(source: &KeySource) -> String {
    match source {
        KeySource::File(f) => format!("--ca-key {}", f.display()),
        KeySource::Env(v) => format!("--ca-key-env {v}"),
    }
}

fn read_key(source: &KeySource) -> Result<String, Error> {
    let text = match source {
        KeySource::File(f) => std::fs::read_to_string(f)
            .map_err(|e| Error::Smoke(format!("{}: {e}", key_flag(source))))?,
        KeySource::Env(v) => std::env::var(v).map_err(|_| {
            Error::Smoke(format!(
                "{}: the variable is not set (it should hold the CA's private key, PEM)",
                key_flag(source)
            ))
        })?,
    };
    if text.trim().is_empty() {
        return Err(Error::Smoke(format!("{}: empty", key_flag(source))));
    }
    Ok(text)
}

/// The CN: `--cn`, else `jitr-smoke-<8 hex>`, which must satisfy the activator's pattern
/// (anchored, as the activator anchors it). An explicit `--cn` is used as given; when it does
/// not match, the returned note says the activator will reject it.
pub(super) fn common_name(
    cn: Option<&str>,
    pattern: Option<&str>,
) -> Result<(String, String), Error> {
    let regex = match pattern {
        Some(p) => Some(
            regex_lite::Regex::new(&anchored_subject_pattern(p)).map_err(|e| {
                Error::Smoke(format!(
                    "the activator's subject_pattern {p:?} is not a regex: {e}"
                ))
            })?,
        ),
        None => None,
    };
    let matches = |name: &str| regex.as_ref().is_none_or(|r| r.is_match(name));
    let Some(cn) = cn else {
        let mut bytes = [0u8; 4];
        aws_lc_rs::rand::fill(&mut bytes)
            .map_err(|_| Error::Smoke("no random bytes for the device's CN".into()))?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("jitr-smoke-{hex}");
        if !matches(&name) {
            return Err(Error::Smoke(format!(
                "the activator accepts only subject CNs matching subject_pattern {:?}, which a \
                 generated name like {name} does not: pass --cn NAME with a CN it accepts",
                pattern.unwrap_or_default()
            )));
        }
        return Ok((name, String::new()));
    };
    if cn.trim().is_empty() {
        return Err(Error::Smoke("--cn: empty".into()));
    }
    let note = if matches(cn) {
        String::new()
    } else {
        format!(
            "the CN {cn:?} does not match the activator's subject_pattern {:?}, so it rejects \
             the certificate",
            pattern.unwrap_or_default()
        )
    };
    Ok((cn.to_string(), note))
}

/// `--endpoint`, else the account's `iot:Data-ATS` endpoint (DescribeEndpoint), port 8883.
async fn endpoint(clients: &Clients, flag: Option<&str>) -> Result<Endpoint, Error> {
    if let Some(text) = flag {
        return Endpoint::parse(text, "--endpoint").map_err(Error::Smoke);
    }
    let out = clients
        .iot
        .describe_endpoint()
        .endpoint_type("iot:Data-ATS")
        .send()
        .await
        .map_err(|e| Error::Aws(aws::error("iot:DescribeEndpoint", &e)))?;
    let host = out.endpoint_address().unwrap_or_default();
    Endpoint::parse(host, "DescribeEndpoint's endpointAddress").map_err(Error::Smoke)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_cn_must_fit_the_pattern_else_cn_is_required() {
        let (cn, note) = common_name(None, None).unwrap();
        assert!(cn.starts_with("jitr-smoke-") && cn.len() == 19, "{cn}");
        assert!(note.is_empty());
        let (cn, _) = common_name(None, Some("jitr-smoke-[0-9a-f]+")).unwrap();
        assert!(cn.starts_with("jitr-smoke-"));
        let err = common_name(None, Some("acme-[0-9]{4}"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--cn NAME") && err.contains("acme-[0-9]{4}"),
            "{err}"
        );
        let (cn, note) = common_name(Some("acme-0042"), Some("acme-[0-9]{4}")).unwrap();
        assert_eq!((cn.as_str(), note.as_str()), ("acme-0042", ""));
        // Anchored like the activator: a prefix match is no match.
        let (_, note) = common_name(Some("acme-00421"), Some("acme-[0-9]{4}")).unwrap();
        assert!(note.contains("rejects"), "{note}");
        assert!(common_name(Some(" "), None).is_err());
        assert!(common_name(None, Some("(")).is_err());
    }
}
