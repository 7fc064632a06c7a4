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

#[cfg(test)]
mod tests {
    use super::*;

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
