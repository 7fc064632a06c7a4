//! The certificate's status while the device connects: DescribeCertificate every 250 ms,
//! recording when AWS IoT first knew it (registered by the first connection) and when it
//! became ACTIVE, and stopping the connection loop once it can no longer become ACTIVE.

use super::device::Stop;
use aws_sdk_iot::types::CertificateStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// DescribeCertificate's rate quota is shared with the account's other callers: 4 a second.
pub const POLL_EVERY: Duration = Duration::from_millis(250);

/// What the poll saw, in milliseconds from the first connection attempt.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub registered_ms: Option<u64>,
    pub active_ms: Option<u64>,
    pub status: Option<String>,
    /// The last DescribeCertificate error other than "not found".
    pub error: Option<String>,
}

pub struct Watcher {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    /// Starts polling `certificate_id`.
    pub fn start(iot: aws_sdk_iot::Client, certificate_id: &str, t0: Instant) -> Watcher {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (shared, id) = (seen.clone(), certificate_id.to_string());
        let task = tokio::spawn(async move {
            loop {
                let answer = iot.describe_certificate().certificate_id(&id).send().await;
                let ms = t0.elapsed().as_millis() as u64;
                let status = match answer {
                    Ok(out) => Ok(out
                        .certificate_description()
                        .and_then(|d| d.status())
                        .map(|s| s.as_str().to_string())),
                    Err(e)
                        if crate::aws::code(&e).as_deref() == Some("ResourceNotFoundException") =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(crate::aws::explain("iot:DescribeCertificate", &e)),
                };
                record(&shared, status, ms);
                tokio::time::sleep(POLL_EVERY).await;
            }
        });
        Watcher { seen, task }
    }

    /// Waits up to `max` for the poll to see ACTIVE (the broker's CONNACK can come first).
    pub async fn wait_active(&self, max: Duration) {
        let until = Instant::now() + max;
        while self.seen.lock().unwrap().active_ms.is_none() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops polling; what it saw.
    pub fn stop(self) -> Seen {
        self.task.abort();
        self.seen.lock().unwrap().clone()
    }
}

/// One poll's answer: the status (`None`: not registered yet) or the call's error.
fn record(seen: &Mutex<Seen>, status: Result<Option<String>, String>, ms: u64) {
    let mut s = seen.lock().unwrap();
    match status {
        Ok(Some(st)) => {
            s.registered_ms.get_or_insert(ms);
            if st == CertificateStatus::Active.as_str() {
                s.active_ms.get_or_insert(ms);
            }
            s.status = Some(st);
        }
        Ok(None) => {}
        Err(e) => s.error = Some(e),
    }
}

impl Stop for Watcher {
    fn reason(&self) -> Option<String> {
        let s = self.seen.lock().unwrap();
        match s.status.as_deref() {
            Some(st @ ("REVOKED" | "INACTIVE")) => Some(format!(
                "the certificate became {st} instead of ACTIVE: the activator rejected it"
            )),
            _ => None,
        }
    }
}

/// The sentence for a device that was not activated: what the poll saw says which step did not
/// happen (registration by AWS IoT, activation by the activator), with the connection's error.
pub fn activation_failure(
    seen: &Seen,
    not_connected: &super::device::NotConnected,
    pattern_note: &str,
) -> String {
    let connect_error = &not_connected.message;
    if seen.status.is_none() && !not_connected.handshake_completed {
        return format!(
            "connecting failed: no TLS handshake with the endpoint completed, so AWS IoT never \
             saw the certificate: {connect_error}"
        );
    }
    let pattern = if pattern_note.is_empty() {
        String::new()
    } else {
        format!(" ({pattern_note})")
    };
    let poll_error = seen
        .error
        .as_ref()
        .map(|e| format!("; polling the certificate failed: {e}"))
        .unwrap_or_default();
    match seen.status.as_deref() {
        None => format!(
            "activation failed: AWS IoT never registered the certificate (is the CA registered \
             and ACTIVE with auto-registration on? see jitr-infra status); connecting: \
             {connect_error}{poll_error}"
        ),
        Some("PENDING_ACTIVATION") => format!(
            "activation failed: the certificate stayed PENDING_ACTIVATION: the activator did \
             not activate it{pattern} (a rejection with on_reject leave-pending looks like this; \
             see the activator's log); connecting: {connect_error}"
        ),
        Some("ACTIVE") => format!(
            "activation succeeded but the broker did not accept the device: {connect_error}"
        ),
        Some(st) => format!(
            "activation failed: the certificate is {st}: the activator rejected it{pattern}; \
             connecting: {connect_error}"
        ),
    }
}
