//! The reconciler: a run of the activator, on the stack's schedule or `jitr-infra redrive`,
//! that activates our CA's certificates still `PENDING_ACTIVATION` whose events were lost
//! (design memo B5).
//!
//! A run reads where the previous one stopped (the marker parameter, `-` for the newest
//! certificate of the first CA; see [`crate::sweep_marker`] for several CAs), then pages each
//! CA's `ListCertificatesByCA` newest first through the limiter, at most `max_pages` pages in
//! all, starting with the CA the previous run stopped in. Each `PENDING_ACTIVATION` certificate older than the grace period
//! (younger ones are left to their event) goes through [`Activator::activate`], the event's
//! own path, with its CA's id. A CA is done at its first certificate older than the horizon or
//! at its list's end; the run ends when every CA is done (the next run starts at the newest
//! again: marker `-`), or on its page budget or its time (the next run goes on from there). A marker AWS no longer accepts
//! (`InvalidRequestException`) restarts the run at the newest certificate.
//!
//! A call that fails counts in `failed` and `errors` and the run goes on: the report is the
//! answer, not a function error. Only a marker parameter that cannot be read or our own CA
//! certificate that cannot be read fails the run (a misconfigured or broken stack).

use crate::limiter::CallError;
use crate::{aws, count_outcome, Activator, ActivatorError, Invocation};
use aws_sdk_iot::types::CertificateStatus;
use jitr_contract::activator::Outcome;
use jitr_contract::event::RegisteredEvent;
use jitr_contract::metrics as m;
use jitr_contract::rates::IotApi;
use jitr_contract::sweep::{SweepConfig, SweepReport, MARKER_START};
use jitr_lambda_common::pki::unix_now;

/// The counts every sweep reports, zero or not.
pub const SWEEP_COUNTS: [&str; 3] = [m::SWEEP_LISTED, m::SWEEP_ACTIVATED, m::SWEEP_FAILED];
/// The most errors a report carries.
const MAX_ERRORS: usize = 10;

/// The sweep's configuration and its marker store.
pub struct Sweeper {
    ssm: aws_sdk_ssm::Client,
    config: SweepConfig,
}

/// Why a page was not read to its end.
enum PageError {
    /// ListCertificatesByCA failed.
    List(Box<CallError<aws_sdk_iot::error::SdkError<ListError, HttpResponse>>>),
    /// An error no other certificate can escape (our CA cannot be read): the run fails.
    Fatal(ActivatorError),
}

/// Where a page read left the run.
enum Page {
    /// Read; go on at this marker (`None`: the list's end).
    Next(Option<String>),
    /// Stopped inside this page (time ran out): the next run reads it again.
    Stopped,
    /// The horizon was reached: the run is complete.
    Horizon,
}

impl Sweeper {
    pub fn new(ssm: aws_sdk_ssm::Client, config: SweepConfig) -> Sweeper {
        Sweeper { ssm, config }
    }

    pub fn config(&self) -> &SweepConfig {
        &self.config
    }

    /// One run; see the module's documentation.
    pub async fn run(
        &self,
        activator: &Activator,
        inv: &Invocation<'_>,
    ) -> Result<SweepReport, ActivatorError> {
        let marker_in = self.read_marker().await?;
        let ids = &activator.config.ca_certificate_ids;
        let resume = crate::sweep_marker::parse(&marker_in, ids);
        let mut report = SweepReport {
            marker_in: marker_in.clone(),
            ..SweepReport::default()
        };
        let mut marker = resume.marker;
        let mut stopped = None;
        // From the CA the last run stopped in, round the list once.
        for i in (0..ids.len()).map(|k| (resume.ca + k) % ids.len()) {
            if let Some(at) = self
                .sweep_ca(activator, inv, &ids[i], marker.take(), &mut report)
                .await?
            {
                stopped = Some((ids[i].as_str(), at));
                break;
            }
        }
        report.complete = stopped.is_none();
        report.marker_out =
            crate::sweep_marker::render(stopped.as_ref().map(|(ca, at)| (*ca, at.as_deref())));
        if report.marker_out != marker_in {
            if let Err(e) = self.store_marker(&report.marker_out).await {
                note(&mut report, e);
            }
        }
        tally(inv, &report);
        log(&report);
        Ok(report)
    }

    /// Sweeps CA `ca` from `marker` (`None`: its newest certificate). `Ok(None)`: the CA is
    /// done; `Ok(Some(at))`: the run stopped in it (budget, time or a failed list), to resume
    /// at `at`.
    async fn sweep_ca(
        &self,
        activator: &Activator,
        inv: &Invocation<'_>,
        ca: &str,
        mut marker: Option<String>,
        report: &mut SweepReport,
    ) -> Result<Option<Option<String>>, ActivatorError> {
        let mut restarted = false;
        loop {
            if report.pages >= self.config.max_pages
                || !inv.deadline.open_at(activator.clock().now())
            {
                return Ok(Some(marker));
            }
            match self
                .page(activator, inv, ca, marker.as_deref(), report)
                .await
            {
                Ok(Page::Next(Some(next))) => marker = Some(next),
                Ok(Page::Next(None)) | Ok(Page::Horizon) => return Ok(None),
                Ok(Page::Stopped) => return Ok(Some(marker)),
                Err(PageError::Fatal(e)) => return Err(e),
                Err(PageError::List(e)) if marker.is_some() && !restarted && refused(&e) => {
                    let why = aws("ListCertificatesByCA", *e);
                    note(
                        report,
                        format!("marker refused, restarting at the newest certificate: {why}"),
                    );
                    marker = None;
                    restarted = true;
                }
                Err(PageError::List(e)) => {
                    report.failed += 1;
                    note(report, aws("ListCertificatesByCA", *e).to_string());
                    return Ok(Some(marker));
                }
            }
        }
    }

    /// Reads one page at `marker` and handles its pending certificates.
    async fn page(
        &self,
        activator: &Activator,
        inv: &Invocation<'_>,
        ca: &str,
        marker: Option<&str>,
        report: &mut SweepReport,
    ) -> Result<Page, PageError> {
        let page_size = i32::try_from(self.config.page_size).unwrap_or(250);
        let out = activator
            .iot_call(inv, IotApi::ListCertificatesByCA, || {
                activator
                    .iot
                    .list_certificates_by_ca()
                    .ca_certificate_id(ca)
                    .ascending_order(false)
                    .page_size(page_size)
                    .set_marker(marker.map(str::to_string))
                    .send()
            })
            .await
            .map_err(|e| PageError::List(Box::new(e)))?;
        report.pages += 1;
        let now = unix_now();
        for cert in out.certificates() {
            let created = cert.creation_date().map_or(now, |d| d.secs());
            let age = u64::try_from(now.saturating_sub(created)).unwrap_or(0);
            if age > self.config.horizon_seconds {
                return Ok(Page::Horizon);
            }
            report.listed += 1;
            if cert.status() != Some(&CertificateStatus::PendingActivation) {
                continue;
            }
            report.pending += 1;
            report.oldest_pending_age_seconds =
                Some(report.oldest_pending_age_seconds.unwrap_or(0).max(age));
            if age < self.config.grace_seconds {
                continue;
            }
            report.over_grace += 1;
            let Some(id) = cert.certificate_id() else {
                continue;
            };
            if !inv.deadline.open_at(activator.clock().now()) {
                return Ok(Page::Stopped);
            }
            self.settle(activator, inv, ca, id, report)
                .await
                .map_err(PageError::Fatal)?;
        }
        Ok(Page::Next(out.next_marker().map(str::to_string)))
    }

    /// Activates one listed certificate through the event's path. A failure is the
    /// certificate's (counted, the run goes on) unless it is our CA's or the configuration's.
    async fn settle(
        &self,
        activator: &Activator,
        inv: &Invocation<'_>,
        ca: &str,
        id: &str,
        report: &mut SweepReport,
    ) -> Result<(), ActivatorError> {
        let event = RegisteredEvent {
            certificate_id: id.to_string(),
            ca_certificate_id: ca.to_string(),
        };
        match activator.activate(inv, &event).await {
            Ok(done) => {
                count_outcome(inv.tally, &done);
                match done.outcome {
                    Outcome::Activated => report.activated += 1,
                    Outcome::AlreadyActive => report.already_active += 1,
                    Outcome::Rejected | Outcome::Revoked => report.rejected += 1,
                    Outcome::Ignored | Outcome::Malformed => report.ignored += 1,
                }
                activator.recent.remember(&done, activator.clock().now());
            }
            Err(e @ (ActivatorError::CaCertificate(_) | ActivatorError::Config(_))) => {
                return Err(e)
            }
            Err(e) => {
                report.failed += 1;
                note(report, format!("certificate {id}: {e}"));
            }
        }
        Ok(())
    }

    async fn read_marker(&self) -> Result<String, ActivatorError> {
        let Some(name) = &self.config.marker_parameter else {
            return Ok(MARKER_START.into());
        };
        let out = self
            .ssm
            .get_parameter()
            .name(name)
            .send()
            .await
            .map_err(|e| {
                ActivatorError::Marker(format!(
                    "SSM parameter {name}: {}",
                    jitr_lambda_common::describe_sdk_error(&e)
                ))
            })?;
        let value = out
            .parameter()
            .and_then(|p| p.value())
            .unwrap_or(MARKER_START)
            .trim();
        Ok(if value.is_empty() {
            MARKER_START.into()
        } else {
            value.into()
        })
    }

    async fn store_marker(&self, value: &str) -> Result<(), String> {
        let Some(name) = &self.config.marker_parameter else {
            return Ok(());
        };
        self.ssm
            .put_parameter()
            .name(name)
            .value(value)
            .overwrite(true)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "cannot store the marker in SSM parameter {name}: {}",
                    jitr_lambda_common::describe_sdk_error(&e)
                )
            })
    }
}

type ListError = aws_sdk_iot::operation::list_certificates_by_ca::ListCertificatesByCAError;
type HttpResponse = aws_sdk_iot::config::http::HttpResponse;

/// Whether AWS refused the marker (`InvalidRequestException`): expired or not ours.
fn refused(e: &CallError<aws_sdk_iot::error::SdkError<ListError, HttpResponse>>) -> bool {
    matches!(e, CallError::Final(e) if e
        .as_service_error()
        .is_some_and(|s| s.is_invalid_request_exception()))
}

fn note(report: &mut SweepReport, error: String) {
    if report.errors.len() < MAX_ERRORS {
        report.errors.push(error);
    }
}

/// The run's metrics.
fn tally(inv: &Invocation<'_>, report: &SweepReport) {
    let t = inv.tally;
    t.add(m::SWEEP_LISTED, report.listed);
    t.add(m::SWEEP_ACTIVATED, report.activated);
    t.add(m::SWEEP_FAILED, report.failed);
    t.gauge(m::PENDING_OVER_GRACE, report.unsettled() as f64, "Count");
    if let Some(age) = report.oldest_pending_age_seconds {
        t.gauge(m::OLDEST_PENDING_AGE, age as f64, "Seconds");
    }
    t.gauge(
        m::SWEEP_COMPLETE,
        if report.complete { 1.0 } else { 0.0 },
        "Count",
    );
}

/// One line per run: INFO when nothing failed, WARN otherwise.
fn log(report: &SweepReport) {
    let errors = report.errors.join("; ");
    if report.failed == 0 {
        tracing::info!(
            pages = report.pages,
            listed = report.listed,
            pending = report.pending,
            over_grace = report.over_grace,
            activated = report.activated,
            complete = report.complete,
            marker_in = %report.marker_in,
            marker_out = %report.marker_out,
            errors,
            "sweep done"
        );
    } else {
        tracing::warn!(
            pages = report.pages,
            listed = report.listed,
            pending = report.pending,
            over_grace = report.over_grace,
            activated = report.activated,
            failed = report.failed,
            complete = report.complete,
            marker_in = %report.marker_in,
            marker_out = %report.marker_out,
            errors,
            "sweep done with failures"
        );
    }
}
