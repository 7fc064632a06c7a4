//! The AWS IoT Core API operations the activator calls, and their default rate quotas.
//!
//! AWS IoT limits each control-plane operation per account and per Region, in requests per
//! second; every activator (and every other caller) in the account shares them. An operation
//! over its rate is refused with `ThrottlingException` (HTTP 400), not queued. The defaults
//! below are AWS's documented defaults ("AWS IoT Core endpoints and quotas", Service Quotas);
//! all of them can be raised per account. Where they come from, and which are only confirmed by
//! secondary sources, is in `docs/research/onboarding-at-scale.md` (A1).

/// An AWS IoT operation the activator (and its sweep) calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IotApi {
    DescribeCertificate,
    UpdateCertificate,
    AttachPolicy,
    CreateThing,
    AttachThingPrincipal,
    AddThingToThingGroup,
    ListCertificatesByCA,
}

impl IotApi {
    pub const ALL: [IotApi; 7] = [
        IotApi::DescribeCertificate,
        IotApi::UpdateCertificate,
        IotApi::AttachPolicy,
        IotApi::CreateThing,
        IotApi::AttachThingPrincipal,
        IotApi::AddThingToThingGroup,
        IotApi::ListCertificatesByCA,
    ];

    /// The operation's name, as AWS spells it (API reference, Service Quotas, CloudTrail).
    pub fn name(self) -> &'static str {
        match self {
            IotApi::DescribeCertificate => "DescribeCertificate",
            IotApi::UpdateCertificate => "UpdateCertificate",
            IotApi::AttachPolicy => "AttachPolicy",
            IotApi::CreateThing => "CreateThing",
            IotApi::AttachThingPrincipal => "AttachThingPrincipal",
            IotApi::AddThingToThingGroup => "AddThingToThingGroup",
            IotApi::ListCertificatesByCA => "ListCertificatesByCA",
        }
    }

    /// AWS's default rate quota, in requests per second per account and Region.
    pub fn default_rate(self) -> f64 {
        match self {
            IotApi::DescribeCertificate => 10.0,
            IotApi::UpdateCertificate => 10.0,
            IotApi::AttachPolicy => 15.0,
            IotApi::CreateThing => 100.0,
            IotApi::AttachThingPrincipal => 100.0,
            IotApi::AddThingToThingGroup => 100.0,
            IotApi::ListCertificatesByCA => 10.0,
        }
    }
}

/// What onboarding one device costs, in calls: the stage's activator settings and how many
/// times each device's registered event arrives (a device re-publishes it on every reconnect
/// while it is pending).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workload {
    pub create_thing: bool,
    pub thing_group: bool,
    /// Registered events per device (1 when nothing is repeated).
    pub events_per_device: f64,
}

impl Workload {
    /// Calls of `op` one device costs. Every event costs a DescribeCertificate; the rest of
    /// the activation happens once. ListCertificatesByCA is the sweep's, not a device's.
    pub fn calls_per_device(&self, op: IotApi) -> f64 {
        let once = |on: bool| if on { 1.0 } else { 0.0 };
        match op {
            IotApi::DescribeCertificate => self.events_per_device.max(1.0),
            IotApi::UpdateCertificate | IotApi::AttachPolicy => 1.0,
            IotApi::CreateThing | IotApi::AttachThingPrincipal => once(self.create_thing),
            IotApi::AddThingToThingGroup => once(self.thing_group),
            IotApi::ListCertificatesByCA => 0.0,
        }
    }
}

/// How fast the account's quotas let devices onboard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    /// Devices activated per second at most.
    pub devices_per_second: f64,
    /// The operation whose quota sets that bound (on a tie, the one later in the
    /// activation: UpdateCertificate before DescribeCertificate).
    pub bound: IotApi,
    /// That operation's rate.
    pub bound_rate: f64,
}

impl Capacity {
    /// The quota-bound onboarding rate of `workload` under `rate` (requests per second per
    /// operation): the lowest `rate(op) / calls_per_device(op)` over the operations a device
    /// needs.
    pub fn of(workload: &Workload, rate: impl Fn(IotApi) -> f64) -> Capacity {
        let mut best: Option<Capacity> = None;
        for op in IotApi::ALL {
            let calls = workload.calls_per_device(op);
            if calls <= 0.0 {
                continue;
            }
            let devices_per_second = rate(op) / calls;
            if best.is_none_or(|b| devices_per_second <= b.devices_per_second) {
                best = Some(Capacity {
                    devices_per_second,
                    bound: op,
                    bound_rate: rate(op),
                });
            }
        }
        best.expect("UpdateCertificate is always needed")
    }

    /// Seconds `devices` devices take to onboard at this rate.
    pub fn seconds_for(&self, devices: u64) -> f64 {
        devices as f64 / self.devices_per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults(events_per_device: f64) -> Capacity {
        let workload = Workload {
            create_thing: true,
            thing_group: false,
            events_per_device,
        };
        Capacity::of(&workload, IotApi::default_rate)
    }

    #[test]
    fn at_the_default_quotas_update_certificate_bounds_onboarding() {
        let c = defaults(1.0);
        assert_eq!(c.devices_per_second, 10.0);
        assert_eq!(
            c.bound,
            IotApi::UpdateCertificate,
            "tied with Describe: the later call"
        );
        // 10,000 devices: 1,000 s, about 17 minutes.
        assert_eq!((c.seconds_for(10_000) / 60.0).round(), 17.0);
    }

    #[test]
    fn repeated_events_make_describe_certificate_the_bound() {
        let c = defaults(3.0);
        assert_eq!(c.bound, IotApi::DescribeCertificate);
        assert!((c.devices_per_second - 10.0 / 3.0).abs() < 1e-9);
        // Raising DescribeCertificate's quota moves the bound back to UpdateCertificate.
        let workload = Workload {
            create_thing: true,
            thing_group: true,
            events_per_device: 3.0,
        };
        let raised = Capacity::of(&workload, |op| match op {
            IotApi::DescribeCertificate => 100.0,
            op => op.default_rate(),
        });
        assert_eq!(raised.bound, IotApi::UpdateCertificate);
        assert_eq!(raised.devices_per_second, 10.0);
    }

    #[test]
    fn every_operation_has_a_name_and_a_positive_default_rate() {
        let mut names: Vec<&str> = IotApi::ALL.iter().map(|a| a.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), IotApi::ALL.len());
        assert!(IotApi::ALL.iter().all(|a| a.default_rate() > 0.0));
        assert_eq!(IotApi::UpdateCertificate.default_rate(), 10.0);
    }
}
