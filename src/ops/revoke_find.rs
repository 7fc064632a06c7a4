//! `jitr-infra revoke`: which certificates a `--certificate-id`, `--cn` or `--serial` names,
//! among those the stage's CAs issued, then [`super::revoke::revoke`] on each.
//!
//! AWS IoT has no index by serial number or subject: a CN is found through the Thing named
//! after it (when the activator names Things by CN), otherwise, like a serial, by listing each
//! CA's certificates (ListCertificatesByCA, 250 a page) and describing each one
//! (DescribeCertificate), paced under the account's DescribeCertificate quota (the rate the
//! deployed activator is configured with, AWS's default 10/s otherwise). The cost is said
//! before the scan starts.

use super::revoke::{self, DeviceCertificate, RevokeReport};
use super::Deployed;
use crate::aws;
use crate::error::Error;
use crate::stage::Stage;
use jitr_contract::activator::{ENV_DEVICE_POLICY_NAME, ENV_THING_NAME_SOURCE};
use jitr_contract::rates::{ApiRates, IotApi, ENV_API_RATES};
use jitr_contract::revocation::normalize_serial;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// ListCertificatesByCA's largest page.
const PAGE_SIZE: i32 = 250;

/// What names the certificates to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    CertificateId(String),
    /// As typed; normalized before use.
    Serial(String),
    Cn(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub target: Target,
    pub dry_run: bool,
}

/// What `revoke` did (`--json` prints it as it is).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Revocation {
    pub stage: String,
    pub stack: String,
    pub dry_run: bool,
    /// `certificate-id`, `thing` (the Thing named by the CN) or `scan`.
    pub method: &'static str,
    /// Certificates described by a scan (0 without one).
    pub scanned: u64,
    pub revoked: Vec<RevokeReport>,
    /// CA id -> the stage's name for it, for the text.
    #[serde(skip)]
    pub ca_names: BTreeMap<String, String>,
}

/// Finds the certificates `opts` names and revokes them (or, with `dry_run`, says what it
/// would do). Nothing matched is an error (exit 1) naming what was searched.
pub async fn revoke_matching(
    iot: &aws_sdk_iot::Client,
    stage: &Stage,
    deployed: &Deployed,
    opts: &Options,
    progress: &dyn Fn(&str),
) -> Result<Revocation, Error> {
    let cas = stage_cas(stage, deployed);
    let policy = deployed
        .function
        .env(ENV_DEVICE_POLICY_NAME)
        .ok_or_else(|| Error::Deployed {
            stack: deployed.stack_name.clone(),
            problem: format!(
                "the activator has no {ENV_DEVICE_POLICY_NAME}: which policy to detach is unknown"
            ),
        })?;
    let (method, scanned, found) = find(iot, deployed, &cas, &opts.target, progress).await?;
    if found.is_empty() {
        return Err(Error::Revoke(nothing_matched(
            stage,
            &opts.target,
            method,
            scanned,
        )));
    }
    let mut revoked = Vec::new();
    for cert in found {
        revoked.push(revoke::revoke(iot, cert, &policy, opts.dry_run).await?);
    }
    Ok(Revocation {
        stage: stage.name.clone(),
        stack: deployed.stack_name.clone(),
        dry_run: opts.dry_run,
        method,
        scanned,
        revoked,
        ca_names: cas,
    })
}

/// The stage's CAs by AWS IoT id: the deployed stack's (`CaCertificateId`, one id or a
/// comma-separated list) and the stage file's certificates, with the stage's name for each.
fn stage_cas(stage: &Stage, deployed: &Deployed) -> BTreeMap<String, String> {
    let mut cas: BTreeMap<String, String> = stage
        .cas()
        .iter()
        .map(|c| (c.certificate.aws_iot_id(), c.name.clone()))
        .collect();
    for id in deployed.ca_certificate_id.iter().flat_map(|v| v.split(',')) {
        let id = id.trim();
        if !id.is_empty() {
            cas.entry(id.to_string())
                .or_insert_with(|| "(deployed)".into());
        }
    }
    cas
}

type Found = (&'static str, u64, Vec<DeviceCertificate>);

async fn find(
    iot: &aws_sdk_iot::Client,
    deployed: &Deployed,
    cas: &BTreeMap<String, String>,
    target: &Target,
    progress: &dyn Fn(&str),
) -> Result<Found, Error> {
    match target {
        Target::CertificateId(id) => by_id(iot, cas, id).await,
        Target::Cn(cn) => {
            let by_thing =
                deployed.function.env(ENV_THING_NAME_SOURCE).as_deref() != Some("certificate-id");
            if by_thing {
                let found = by_thing_name(iot, cas, cn).await?;
                if !found.is_empty() {
                    return Ok(("thing", 0, found));
                }
                progress(&format!(
                    "no Thing named {cn:?} holds a certificate of the stage's CAs (a device that \
                     never activated has none); searching the CAs' certificates by CN\n"
                ));
            } else {
                progress(&format!(
                    "the activator names Things by certificate id (activator.thing_name: \
                     certificate-id), so CN {cn:?} is searched among the CAs' certificates\n"
                ));
            }
            let cn = cn.clone();
            scan(iot, deployed, cas, progress, move |c| {
                c.subject_cn.as_deref() == Some(&cn)
            })
            .await
        }
        Target::Serial(text) => {
            let serial =
                normalize_serial(text).map_err(|m| Error::Revoke(format!("--serial: {m}")))?;
            scan(iot, deployed, cas, progress, move |c| {
                c.serial.as_deref() == Some(&serial)
            })
            .await
        }
    }
}

async fn by_id(
    iot: &aws_sdk_iot::Client,
    cas: &BTreeMap<String, String>,
    id: &str,
) -> Result<Found, Error> {
    let id = id.trim().to_ascii_lowercase();
    if id.len() != 64 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::Revoke(format!(
            "--certificate-id {id:?}: an AWS IoT certificate id is 64 hex digits"
        )));
    }
    let cert = revoke::describe(iot, &id).await?;
    match cert.ca_certificate_id.as_deref() {
        Some(ca) if cas.contains_key(ca) => Ok(("certificate-id", 0, vec![cert])),
        other => Err(Error::Revoke(format!(
            "certificate {id} was not issued by one of this stage's CAs (its CA: {}; the \
             stage's: {}); refusing to revoke it",
            other.unwrap_or("none"),
            cas.keys().cloned().collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The certificates of the Thing named `cn` that the stage's CAs issued.
async fn by_thing_name(
    iot: &aws_sdk_iot::Client,
    cas: &BTreeMap<String, String>,
    cn: &str,
) -> Result<Vec<DeviceCertificate>, Error> {
    let mut found = Vec::new();
    let mut token = None;
    loop {
        let out = match iot
            .list_thing_principals()
            .thing_name(cn)
            .set_next_token(token)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if aws::code(&e).as_deref() == Some("ResourceNotFoundException") => {
                return Ok(found)
            }
            Err(e) => return Err(Error::Aws(aws::error("iot:ListThingPrincipals", &e))),
        };
        for principal in out.principals() {
            let Some((_, id)) = principal.rsplit_once(":cert/") else {
                continue;
            };
            let cert = revoke::describe(iot, id).await?;
            if cert
                .ca_certificate_id
                .as_deref()
                .is_some_and(|ca| cas.contains_key(ca))
            {
                found.push(cert);
            }
        }
        token = out
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            return Ok(found);
        }
    }
}

/// Every certificate of the stage's CAs, described one by one, kept when `matches`.
async fn scan(
    iot: &aws_sdk_iot::Client,
    deployed: &Deployed,
    cas: &BTreeMap<String, String>,
    progress: &dyn Fn(&str),
    matches: impl Fn(&DeviceCertificate) -> bool,
) -> Result<Found, Error> {
    let rates = deployed
        .function
        .env(ENV_API_RATES)
        .and_then(|t| ApiRates::from_env(&t).ok())
        .unwrap_or_default();
    let mut list_pace = Pace::new(rates.get(IotApi::ListCertificatesByCA));
    let mut describe_pace = Pace::new(rates.get(IotApi::DescribeCertificate));
    let mut found = Vec::new();
    let mut scanned = 0;
    for (ca_id, name) in cas {
        let ids = list_by_ca(iot, ca_id, &mut list_pace).await?;
        progress(&format!(
            "scanning {} certificates of CA {name} ({}): one DescribeCertificate each, ~{} s at \
             {}/s (AWS IoT has no search by serial or CN)\n",
            ids.len(),
            &ca_id[..ca_id.len().min(12)],
            (ids.len() as f64 / describe_pace.rate).ceil(),
            describe_pace.rate
        ));
        for id in ids {
            describe_pace.wait().await;
            scanned += 1;
            let cert = revoke::describe(iot, &id).await?;
            if matches(&cert) {
                found.push(cert);
            }
        }
    }
    Ok(("scan", scanned, found))
}

/// The ids of the certificates AWS IoT registered under `ca_id` (every page).
async fn list_by_ca(
    iot: &aws_sdk_iot::Client,
    ca_id: &str,
    pace: &mut Pace,
) -> Result<Vec<String>, Error> {
    let mut ids = Vec::new();
    let mut marker = None;
    loop {
        pace.wait().await;
        let out = iot
            .list_certificates_by_ca()
            .ca_certificate_id(ca_id)
            .page_size(PAGE_SIZE)
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| Error::Aws(aws::error("iot:ListCertificatesByCA", &e)))?;
        ids.extend(
            out.certificates()
                .iter()
                .filter_map(|c| c.certificate_id().map(str::to_string)),
        );
        marker = out
            .next_marker()
            .filter(|m| !m.is_empty())
            .map(str::to_string);
        if marker.is_none() {
            return Ok(ids);
        }
    }
}

/// Calls spaced evenly at `rate` per second.
struct Pace {
    rate: f64,
    next: Option<Instant>,
}

impl Pace {
    fn new(rate: f64) -> Pace {
        Pace {
            rate: rate.max(0.1),
            next: None,
        }
    }

    async fn wait(&mut self) {
        let now = Instant::now();
        let at = self.next.map_or(now, |n| n.max(now));
        tokio::time::sleep_until(at).await;
        self.next = Some(at + Duration::from_secs_f64(1.0 / self.rate));
    }
}

fn nothing_matched(stage: &Stage, target: &Target, method: &str, scanned: u64) -> String {
    let what = match target {
        Target::CertificateId(id) => format!("certificate {id}"),
        Target::Serial(s) => format!("serial {s}"),
        Target::Cn(cn) => format!("CN {cn:?}"),
    };
    format!(
        "no certificate of stage {}'s CAs matched {what} ({method}: {scanned} certificates \
         described); nothing was revoked",
        stage.name
    )
}

/// The command's text: each certificate's report.
pub fn text(r: &Revocation) -> String {
    let mut text = format!(
        "{} stage {} (stack {}): {} certificate(s) matched by {}{}\n",
        if r.dry_run {
            "revoke --dry-run:"
        } else {
            "revoke:"
        },
        r.stage,
        r.stack,
        r.revoked.len(),
        r.method,
        if r.scanned > 0 {
            format!(", {} described", r.scanned)
        } else {
            String::new()
        }
    );
    for report in &r.revoked {
        let ca = report
            .certificate
            .ca_certificate_id
            .as_deref()
            .unwrap_or("");
        let name = r.ca_names.get(ca).map(String::as_str).unwrap_or(ca);
        text.push_str(&revoke::report_text(report, name));
    }
    if !r.dry_run && r.revoked.iter().all(RevokeReport::already_revoked) {
        text.push_str("already revoked: nothing to do\n");
    }
    text
}
