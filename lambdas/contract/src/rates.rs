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
    DescribeCACertificate,
}

impl IotApi {
    pub const ALL: [IotApi; 8] = [
        IotApi::DescribeCertificate,
        IotApi::UpdateCertificate,
        IotApi::AttachPolicy,
        IotApi::CreateThing,
        IotApi::AttachThingPrincipal,
        IotApi::AddThingToThingGroup,
        IotApi::ListCertificatesByCA,
        IotApi::DescribeCACertificate,
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
            IotApi::DescribeCACertificate => "DescribeCACertificate",
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
            // Not found in AWS's published table; read once per container.
            IotApi::DescribeCACertificate => 10.0,
        }
    }

    /// The operation named `name` (AWS's spelling).
    pub fn from_name(name: &str) -> Option<IotApi> {
        IotApi::ALL.into_iter().find(|op| op.name() == name)
    }
}

/// The activator's rate of every operation, in requests per second for the whole account and
/// Region: AWS's defaults unless the stage says otherwise (`activator.api_rates`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ApiRates([f64; IotApi::ALL.len()]);

impl Default for ApiRates {
    fn default() -> Self {
        ApiRates(IotApi::ALL.map(IotApi::default_rate))
    }
}

/// The lowest and highest rate a stage may set, requests per second.
pub const RATE_RANGE: std::ops::RangeInclusive<f64> = 0.1..=10_000.0;

impl ApiRates {
    fn index(op: IotApi) -> usize {
        IotApi::ALL.iter().position(|o| *o == op).expect("in ALL")
    }

    pub fn get(&self, op: IotApi) -> f64 {
        self.0[Self::index(op)]
    }

    pub fn with(mut self, op: IotApi, rate: f64) -> Self {
        self.0[Self::index(op)] = rate;
        self
    }

    /// `DescribeCertificate=10,UpdateCertificate=10,...`: every operation, in [`IotApi::ALL`]'s
    /// order, so the template's bytes do not depend on how the stage file orders them.
    pub fn to_env(&self) -> String {
        IotApi::ALL
            .iter()
            .map(|op| format!("{}={}", op.name(), self.get(*op)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The inverse of [`ApiRates::to_env`]; missing operations keep their defaults.
    pub fn from_env(text: &str) -> Result<ApiRates, String> {
        let mut rates = ApiRates::default();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, value) = item
                .split_once('=')
                .ok_or_else(|| format!("expected NAME=RATE, got {item:?}"))?;
            let op = IotApi::from_name(name.trim())
                .ok_or_else(|| format!("unknown AWS IoT operation {name:?}"))?;
            let rate: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("{name}: not a number: {value:?}"))?;
            if !RATE_RANGE.contains(&rate) {
                return Err(format!(
                    "{name}: {rate} is outside {}..={} requests/s",
                    RATE_RANGE.start(),
                    RATE_RANGE.end()
                ));
            }
            rates = rates.with(op, rate);
        }
        Ok(rates)
    }
}

/// The operations' rates for the whole account (`JITR_API_RATES`, see [`ApiRates::to_env`]).
pub const ENV_API_RATES: &str = "JITR_API_RATES";
/// The share of each rate the activator may use, 0.05..=1 (`activator.api_share`).
pub const ENV_API_SHARE: &str = "JITR_API_SHARE";
/// The function's reserved concurrency, 0 for none: each container takes `rate × share / R`.
pub const ENV_CONCURRENCY: &str = "JITR_CONCURRENCY";

/// The lowest and highest `api_share`.
pub const SHARE_RANGE: std::ops::RangeInclusive<f64> = 0.05..=1.0;

/// How the activator paces its AWS IoT calls: read from the environment at cold start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateConfig {
    pub rates: ApiRates,
    pub share: f64,
    /// Reserved concurrency, 0 for none (then one container may use the whole share, and
    /// backs off when throttled).
    pub concurrency: u32,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            rates: ApiRates::default(),
            share: 1.0,
            concurrency: 0,
        }
    }
}

impl RateConfig {
    /// Reads the three variables through `get`; unset ones take their defaults. The error
    /// names the variable.
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<RateConfig, crate::activator::ConfigError> {
        let err = |variable: &'static str, message: String| crate::activator::ConfigError {
            variable,
            message,
        };
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let rates = match get(ENV_API_RATES) {
            Some(text) => ApiRates::from_env(&text).map_err(|m| err(ENV_API_RATES, m))?,
            None => ApiRates::default(),
        };
        let share = match get(ENV_API_SHARE) {
            Some(text) => match text.parse::<f64>() {
                Ok(s) if SHARE_RANGE.contains(&s) => s,
                _ => {
                    return Err(err(
                        ENV_API_SHARE,
                        format!("must be a number in 0.05..=1, got {text:?}"),
                    ))
                }
            },
            None => 1.0,
        };
        let concurrency = match get(ENV_CONCURRENCY) {
            Some(text) => text.parse::<u32>().map_err(|_| {
                err(
                    ENV_CONCURRENCY,
                    format!("must be a whole number, got {text:?}"),
                )
            })?,
            None => 0,
        };
        Ok(RateConfig {
            rates,
            share,
            concurrency,
        })
    }

    /// What one container may send of `op`, requests per second: the account's rate times the
    /// share, split over the reserved concurrency (when there is one).
    pub fn per_container(&self, op: IotApi) -> f64 {
        self.rates.get(op) * self.share / f64::from(self.concurrency.max(1))
    }
}

/// Seconds one activation takes when no call waits: DescribeCertificate, then CreateThing and
/// AttachThingPrincipal beside AttachPolicy, then UpdateCertificate (four calls in a row).
pub const CRITICAL_PATH_SECONDS: f64 = 0.3;
/// The fewest and the most units [`reservation_for`] reserves.
pub const RESERVATION_RANGE: std::ops::RangeInclusive<u32> = 2..=50;

/// The reserved concurrency that lets the activator reach `capacity` (taken with one event per
/// device, the peak need): twice the activations in flight at that rate (Little's law, doubled
/// for latency variance), plus one unit for the sweep or a redrive, within
/// [`RESERVATION_RANGE`]. More would add no throughput: the quota is split over the units.
pub fn reservation_for(capacity: &Capacity) -> u32 {
    let in_flight = (2.0 * capacity.devices_per_second * CRITICAL_PATH_SECONDS).ceil() as u32;
    (in_flight + 1).clamp(*RESERVATION_RANGE.start(), *RESERVATION_RANGE.end())
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
            IotApi::ListCertificatesByCA | IotApi::DescribeCACertificate => 0.0,
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
    fn the_default_reservation_is_seven() {
        assert_eq!(reservation_for(&defaults(1.0)), 7);
        let slow = Capacity {
            devices_per_second: 0.5,
            bound: IotApi::UpdateCertificate,
            bound_rate: 0.5,
        };
        assert_eq!(reservation_for(&slow), 2);
        let fast = Capacity {
            devices_per_second: 1000.0,
            ..slow
        };
        assert_eq!(reservation_for(&fast), 50);
    }

    #[test]
    fn rates_round_trip_through_the_environment_in_a_fixed_order() {
        let rates = ApiRates::default().with(IotApi::AttachPolicy, 2.5);
        let env = rates.to_env();
        assert!(env.starts_with("DescribeCertificate=10,UpdateCertificate=10,AttachPolicy=2.5,"));
        assert_eq!(ApiRates::from_env(&env).unwrap(), rates);
        assert_eq!(
            ApiRates::from_env("UpdateCertificate=20").unwrap(),
            ApiRates::default().with(IotApi::UpdateCertificate, 20.0)
        );
        for bad in [
            "Nope=1",
            "UpdateCertificate",
            "UpdateCertificate=x",
            "AttachPolicy=0",
        ] {
            assert!(ApiRates::from_env(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_container_takes_its_part_of_the_share() {
        let env = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            move |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        };
        let config = RateConfig::from_lookup(env(&[(ENV_CONCURRENCY, "7")])).unwrap();
        assert!((config.per_container(IotApi::UpdateCertificate) - 10.0 / 7.0).abs() < 1e-9);
        let unreserved = RateConfig::from_lookup(env(&[(ENV_API_SHARE, "0.5")])).unwrap();
        assert_eq!(unreserved.per_container(IotApi::AttachPolicy), 7.5);
        for (var, bad) in [
            (ENV_API_SHARE, "2"),
            (ENV_CONCURRENCY, "-1"),
            (ENV_API_RATES, "x"),
        ] {
            let e = RateConfig::from_lookup(env(&[(var, bad)])).unwrap_err();
            assert_eq!(e.variable, var);
        }
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
