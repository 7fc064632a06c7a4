//! How fast a stage onboards devices, from its rates (`activator.api_rates` × `api_share`) and
//! its activator settings: the quota-bound rate and the operation that bounds it, the default
//! reserved concurrency, and the capacity line `diff` and `deploy` print.
//!
//! The formula (README, "Onboarding at scale"): a device costs `c_op` calls of each operation
//! (one DescribeCertificate per event that reaches AWS IoT, one each of the rest), so the
//! account onboards at most `X = min_op(rate_op × share / c_op)` devices per second; the
//! reservation is `clamp(ceil(2 · X₁ · T) + 1, 2, 50)` with `X₁` at one event per device and
//! `T` the activation's critical path (jitr-contract's `reservation_for`).

use super::Stage;
use jitr_contract::rates::{reservation_for, Capacity, IotApi, Workload};
use serde::Serialize;

/// Events per device the line also shows: a pending device re-publishes its registered event
/// on every reconnect, and each repeat that reaches AWS IoT costs a DescribeCertificate.
pub const DUPLICATE_EVENTS: f64 = 3.0;
/// The batch the line times.
pub const EXAMPLE_BATCH: u64 = 10_000;

impl Stage {
    /// What one device costs when its event arrives `events_per_device` times.
    pub fn workload(&self, events_per_device: f64) -> Workload {
        Workload {
            create_thing: self.activator.create_thing,
            thing_group: self.activator.create_thing && self.activator.thing_group.is_some(),
            events_per_device,
        }
    }

    /// Requests per second the activator may send of `op`: the stage's rate times its share.
    pub fn usable_rate(&self, op: IotApi) -> f64 {
        self.activator.api_rates.rates().get(op) * self.activator.api_share
    }

    /// The quota-bound onboarding rate at `events_per_device` events per device.
    pub fn capacity(&self, events_per_device: f64) -> Capacity {
        Capacity::of(&self.workload(events_per_device), |op| self.usable_rate(op))
    }

    /// The reservation the formula gives this stage (used when the stage sets none).
    pub fn default_reservation(&self) -> u32 {
        reservation_for(&self.capacity(1.0))
    }
}

/// Where the reserved concurrency in a [`CapacityReport`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ReservationSource {
    /// `activator.reserved_concurrency`.
    Stage,
    /// The formula (the stage sets none); deploy reserves it when the account can spare it.
    Formula,
    /// What deploy decided for this account (0: none).
    Deployed,
}

/// The capacity one stage has: the `capacity` object of `diff --json` and `deploy --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityReport {
    /// Devices per second at one event per device.
    pub devices_per_second: f64,
    /// The operation whose quota bounds it.
    pub bound: &'static str,
    /// That operation's usable rate (rate × share), requests per second.
    pub bound_rate: f64,
    /// The same when each device's event arrives [`DUPLICATE_EVENTS`] times.
    pub repeated: Repeated,
    /// Devices in the timed batch ([`EXAMPLE_BATCH`]) and the seconds they take.
    pub batch_devices: u64,
    pub batch_seconds: f64,
    /// The activator's reserved concurrency (0: none: rates are not split over containers).
    pub reserved_concurrency: u32,
    pub reservation: ReservationSource,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Repeated {
    pub events_per_device: f64,
    pub devices_per_second: f64,
    pub bound: &'static str,
}

impl CapacityReport {
    /// The stage's capacity; `deployed` is the reservation deploy decided (0 for none), when
    /// known; otherwise the stage's or the formula's.
    pub fn of(stage: &Stage, deployed: Option<u32>) -> CapacityReport {
        let one = stage.capacity(1.0);
        let repeated = stage.capacity(DUPLICATE_EVENTS);
        let (reserved_concurrency, reservation) =
            match (deployed, stage.activator.reserved_concurrency) {
                (Some(n), _) => (n, ReservationSource::Deployed),
                (None, Some(n)) => (n, ReservationSource::Stage),
                (None, None) => (stage.default_reservation(), ReservationSource::Formula),
            };
        CapacityReport {
            devices_per_second: one.devices_per_second,
            bound: one.bound.name(),
            bound_rate: one.bound_rate,
            repeated: Repeated {
                events_per_device: DUPLICATE_EVENTS,
                devices_per_second: repeated.devices_per_second,
                bound: repeated.bound.name(),
            },
            batch_devices: EXAMPLE_BATCH,
            batch_seconds: one.seconds_for(EXAMPLE_BATCH),
            reserved_concurrency,
            reservation,
        }
    }

    /// `capacity: onboards about 10 devices/s (bound: UpdateCertificate 10/s; 3.3/s if each
    /// device's event arrives 3 times: DescribeCertificate); 10,000 devices take about 17 min;
    /// reserved concurrency 7`.
    pub fn line(&self) -> String {
        let reservation = match (self.reserved_concurrency, self.reservation) {
            (0, _) => "no reservation: rates are not split, containers back off when throttled"
                .to_string(),
            (n, ReservationSource::Formula) => {
                format!("reserved concurrency {n} (where the account can spare it)")
            }
            (n, _) => format!("reserved concurrency {n}"),
        };
        format!(
            "capacity: onboards about {} devices/s (bound: {} {}/s; {}/s if each device's event \
             arrives {} times: {}); {} devices take about {}; {reservation}",
            number(self.devices_per_second),
            self.bound,
            number(self.bound_rate),
            number(self.repeated.devices_per_second),
            number(self.repeated.events_per_device),
            self.repeated.bound,
            thousands(self.batch_devices),
            duration(self.batch_seconds),
        )
    }
}

/// Two significant digits below 10 (3.3, 0.15), whole numbers above; no trailing `.0`.
fn number(x: f64) -> String {
    let text = if x >= 10.0 {
        format!("{}", x.round())
    } else if x >= 1.0 {
        format!("{:.1}", x)
    } else {
        format!("{:.2}", x)
    };
    match text.split_once('.') {
        Some((whole, frac)) if frac.trim_end_matches('0').is_empty() => whole.to_string(),
        Some((whole, frac)) => format!("{whole}.{}", frac.trim_end_matches('0')),
        None => text,
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn duration(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("{} s", seconds.round())
    } else if seconds < 2.0 * 3600.0 {
        format!("{} min", (seconds / 60.0).round())
    } else {
        format!("{} h", number(seconds / 3600.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::{ActivatorSection, AlarmsSection, ApiRatesSection, ReconcilerSection};

    fn stage(activator: ActivatorSection) -> Stage {
        let pem = include_str!("../../certs/dev-ca.pem");
        Stage {
            name: "t".into(),
            file: "stacks/t.yaml".into(),
            stack_name: "jitr-t".into(),
            region: "eu-west-1".into(),
            partition: "aws",
            account: None,
            targets: vec![crate::stage::Target {
                region: "eu-west-1".into(),
                partition: "aws",
                account: None,
                role_arn: None,
                field: "region".into(),
            }],
            tags: Default::default(),
            cas: vec![super::super::Ca {
                name: super::super::DEFAULT_CA_NAME.to_string(),
                field: "ca".into(),
                certificate_file: "certs/dev-ca.pem".into(),
                pem: pem.into(),
                certificate: jitr_lambda_common::pki::Certificate::from_pem(pem).unwrap(),
                mode: jitr_contract::ca_registration::CertificateMode::SniOnly,
                verification: None,
                auto_registration: true,
                status: Default::default(),
                retain_on_delete: false,
                adopt: false,
            }],
            warnings: Vec::new(),
            activator,
            device_policy: super::super::DevicePolicy {
                template_file: "p".into(),
                line: None,
                template: String::new(),
                vars: Default::default(),
            },
            kms_key_arn: None,
            protection: Default::default(),
            reconciler: ReconcilerSection::default(),
            alarms: AlarmsSection::default(),
            revocation: None,
        }
    }

    #[test]
    fn the_default_stage_gives_the_memo_s_worked_example() {
        let s = stage(ActivatorSection::default());
        assert_eq!(s.default_reservation(), 7);
        let report = CapacityReport::of(&s, Some(7));
        assert_eq!(
            report.line(),
            "capacity: onboards about 10 devices/s (bound: UpdateCertificate 10/s; 3.3/s if each \
             device's event arrives 3 times: DescribeCertificate); 10,000 devices take about 17 \
             min; reserved concurrency 7"
        );
        let planned = CapacityReport::of(&s, None);
        assert_eq!(planned.reservation, ReservationSource::Formula);
        assert!(planned
            .line()
            .ends_with("reserved concurrency 7 (where the account can spare it)"));
        let none = CapacityReport::of(&s, Some(0)).line();
        assert!(
            none.ends_with(
                "no reservation: rates are not split, containers back off when throttled"
            ),
            "{none}"
        );
    }

    #[test]
    fn the_share_and_raised_quotas_move_the_bound_and_the_reservation() {
        let half = stage(ActivatorSection {
            api_share: 0.5,
            ..ActivatorSection::default()
        });
        let c = half.capacity(1.0);
        assert_eq!(c.devices_per_second, 5.0);
        assert_eq!(c.bound_rate, 5.0);
        // ceil(2 · 5 · 0.3) + 1 = 4.
        assert_eq!(half.default_reservation(), 4);
        let raised = stage(ActivatorSection {
            api_rates: ApiRatesSection {
                describe_certificate: Some(100.0),
                update_certificate: Some(50.0),
                attach_policy: Some(100.0),
                ..ApiRatesSection::default()
            },
            ..ActivatorSection::default()
        });
        let report = CapacityReport::of(&raised, None);
        assert_eq!(report.bound, "UpdateCertificate");
        assert_eq!(report.devices_per_second, 50.0);
        assert_eq!(report.repeated.bound, "DescribeCertificate");
        assert_eq!(report.batch_seconds, 200.0);
        // ceil(2 · 50 · 0.3) + 1 = 31.
        assert_eq!(raised.default_reservation(), 31);
        assert!(report.line().contains("10,000 devices take about 3 min"));
    }

    #[test]
    fn a_stage_without_things_is_bound_by_the_certificate_calls_only() {
        let s = stage(ActivatorSection {
            create_thing: false,
            thing_group: Some("g".into()),
            api_rates: ApiRatesSection {
                create_thing: Some(0.1),
                add_thing_to_thing_group: Some(0.1),
                ..ApiRatesSection::default()
            },
            ..ActivatorSection::default()
        });
        assert_eq!(s.capacity(1.0).bound, IotApi::UpdateCertificate);
        let grouped = stage(ActivatorSection {
            thing_group: Some("g".into()),
            api_rates: ApiRatesSection {
                add_thing_to_thing_group: Some(2.0),
                ..ApiRatesSection::default()
            },
            ..ActivatorSection::default()
        });
        assert_eq!(grouped.capacity(1.0).bound, IotApi::AddThingToThingGroup);
        assert_eq!(grouped.default_reservation(), 3);
    }

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(number(10.0), "10");
        assert_eq!(number(10.0 / 3.0), "3.3");
        assert_eq!(number(0.15), "0.15");
        assert_eq!(number(2.0), "2");
        assert_eq!(number(1234.4), "1234");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(duration(30.0), "30 s");
        assert_eq!(duration(1000.0), "17 min");
        assert_eq!(duration(3000.0), "50 min");
        assert_eq!(duration(36_000.0), "10 h");
    }
}
