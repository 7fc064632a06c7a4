//! `jitr-infra smoke --stage S`: one throwaway device through the deployed stage, end to end.
//! A certificate issued with the stage's CA key connects to AWS IoT's data endpoint, is
//! registered by JITR on its first (dropped) connection, activated by the deployed activator,
//! reconnects, publishes once at QoS 1, and is removed again (revoked, detached, deleted, its
//! Thing deleted) unless `--keep`.
//!
//! Pieces: [`watch`] (DescribeCertificate polling: when the certificate was registered and
//! activated), [`device`] (connect with backoff, publish), [`tls`], [`mqtt`], [`cleanup`];
//! [`text`] renders the [`Report`].

pub mod cleanup;
pub mod device;
pub mod mqtt;
mod prepare;
pub mod text;
pub mod tls;
mod watch;

pub use prepare::{KeySource, Options};

use crate::aws::Clients;
use crate::error::Error;
use crate::ops::Deployed;
use crate::stage::Stage;
use serde::Serialize;
use std::time::{Duration, Instant};

/// How long CONNACK may run ahead of the status poll before the activation time is read.
const POLL_CATCH_UP: Duration = Duration::from_secs(3);

/// The throwaway device.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub common_name: String,
    pub certificate_id: String,
    /// The Thing the activator names it (and the MQTT client id, as the device policy wants).
    pub thing_name: String,
}

/// Milliseconds from the first connection attempt.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timings {
    /// DescribeCertificate first found the certificate (registered by the first connection).
    pub registered_ms: Option<u64>,
    /// DescribeCertificate first found it ACTIVE.
    pub active_ms: Option<u64>,
    /// The broker accepted a CONNECT.
    pub connack_ms: Option<u64>,
    /// The earlier of the two: the device was active by then.
    pub activated_ms: Option<u64>,
}

/// What `smoke` did, step by step (`--json` prints it).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub stage: String,
    pub stack: String,
    pub ca: String,
    pub endpoint: String,
    /// The SNI name sent (`None`: the endpoint is an IP address).
    pub sni: Option<String>,
    pub trust_roots: String,
    pub device: Device,
    pub topic: String,
    pub attempts: Vec<device::Attempt>,
    pub timings: Timings,
    pub activated: bool,
    pub published: bool,
    /// `None` with `--keep` (nothing removed).
    pub cleanup: Option<cleanup::Cleanup>,
    pub kept: bool,
    /// The device was activated, published, and cleanup succeeded (or `--keep`).
    pub ok: bool,
    /// The step that failed, in a sentence.
    pub failures: Vec<String>,
}

/// Runs the smoke test. Input problems (the key, the CN, an existing Thing) are errors before
/// anything is made; from the first connection on, every failure is in the [`Report`].
pub async fn run(
    clients: &Clients,
    stage: &Stage,
    deployed: &Deployed,
    opts: &Options,
    progress: &dyn Fn(&str),
) -> Result<Report, Error> {
    let p = prepare::prepare(clients, stage, deployed, opts).await?;
    progress(&format!(
        "device {} (certificate {}), endpoint {}",
        p.device.common_name, p.device.certificate_id, p.endpoint
    ));
    let mut report = Report {
        stage: stage.name.clone(),
        stack: deployed.stack_name.clone(),
        ca: p.ca_name.clone(),
        endpoint: p.endpoint.to_string(),
        sni: p.endpoint.sni_name(),
        trust_roots: p.trust_roots.clone(),
        device: p.device.clone(),
        topic: format!("devices/{}/smoke", p.device.thing_name),
        attempts: Vec::new(),
        timings: Timings::default(),
        activated: false,
        published: false,
        cleanup: None,
        kept: opts.keep,
        ok: false,
        failures: Vec::new(),
    };
    onboard_and_publish(clients, &p, opts, &mut report, progress).await;
    if !opts.keep {
        progress("cleaning up");
        let d = &report.device;
        match cleanup::clean_up(
            &clients.iot,
            &d.certificate_id,
            &p.policy_name,
            &d.thing_name,
        )
        .await
        {
            Ok(c) => report.cleanup = Some(c),
            Err((c, e)) => {
                report.cleanup = Some(c);
                report.failures.push(format!("cleanup failed: {e}"));
            }
        }
    }
    report.ok = report.activated && report.published && report.failures.is_empty();
    Ok(report)
}

/// Connects until activated (timing it), then publishes once; failures go to the report.
async fn onboard_and_publish(
    clients: &Clients,
    p: &prepare::Prepared,
    opts: &Options,
    report: &mut Report,
    progress: &dyn Fn(&str),
) {
    let t0 = Instant::now();
    let watcher = watch::Watcher::start(clients.iot.clone(), &p.device.certificate_id, t0);
    let connected = device::connect_until(
        p.config.clone(),
        &p.endpoint,
        &p.device.thing_name,
        t0,
        t0 + opts.timeout,
        &watcher,
        &mut report.attempts,
    )
    .await;
    if connected.is_ok() {
        report.timings.connack_ms = Some(t0.elapsed().as_millis() as u64);
        watcher.wait_active(POLL_CATCH_UP).await;
    }
    let seen = watcher.stop();
    report.timings.registered_ms = seen.registered_ms;
    report.timings.active_ms = seen.active_ms;
    let t = &report.timings;
    report.timings.activated_ms = [t.active_ms, t.connack_ms].into_iter().flatten().min();
    let session = match connected {
        Ok(s) => s,
        Err(e) => {
            report
                .failures
                .push(watch::activation_failure(&seen, &e, &p.pattern_note));
            return;
        }
    };
    report.activated = true;
    progress(&format!(
        "activated: CONNACK after {} ms",
        report.timings.connack_ms.unwrap_or_default()
    ));
    let payload = serde_json::json!({"smoke": p.device.common_name}).to_string();
    match session
        .publish_once(&report.topic, payload.as_bytes())
        .await
    {
        Ok(()) => report.published = true,
        Err(e) => report.failures.push(format!("publish failed: {e}")),
    }
}
