//! `smoke`'s report as text.

use super::Report;
use crate::ops::revoke::Step;

/// The report, one line per step.
pub fn text(r: &Report) -> String {
    let d = &r.device;
    let mut t = format!(
        "smoke {} (stack {}, CA {}): device {} (certificate {}, Thing {})\n",
        r.stage, r.stack, r.ca, d.common_name, d.certificate_id, d.thing_name
    );
    let sni = r.sni.as_deref().unwrap_or("none: an IP address");
    t.push_str(&format!(
        "endpoint {} (SNI {sni}), trust roots {}\n",
        r.endpoint, r.trust_roots
    ));
    for (i, a) in r.attempts.iter().enumerate() {
        t.push_str(&format!(
            "  connect {} at {} ms: {}\n",
            i + 1,
            a.at_ms,
            a.outcome
        ));
    }
    let ms = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{v} ms"));
    if r.activated {
        let tm = &r.timings;
        t.push_str(&format!(
            "activated in {}: registered after {}, ACTIVE after {} (DescribeCertificate every \
             {} ms), CONNACK after {}\n",
            ms(tm.activated_ms),
            ms(tm.registered_ms),
            ms(tm.active_ms),
            super::watch::POLL_EVERY.as_millis(),
            ms(tm.connack_ms)
        ));
    }
    if r.published {
        t.push_str(&format!("published on {} (QoS 1, PUBACK)\n", r.topic));
    }
    if let Some(c) = &r.cleanup {
        t.push_str(&format!("cleanup: {}\n", cleanup_line(c)));
    } else if r.kept {
        t.push_str(&format!(
            "kept (--keep): certificate {} and Thing {} stay registered\n",
            d.certificate_id, d.thing_name
        ));
    }
    for f in &r.failures {
        t.push_str(&format!("FAILED: {f}\n"));
    }
    t.push_str(if r.ok { "ok\n" } else { "smoke test failed\n" });
    t
}

fn cleanup_line(c: &super::cleanup::Cleanup) -> String {
    if !c.registered {
        let thing = c
            .thing_deleted
            .as_deref()
            .map(|t| format!("; Thing {t} deleted"));
        return format!(
            "AWS IoT never registered the certificate: nothing to remove{}",
            thing.unwrap_or_default()
        );
    }
    let mut parts = Vec::new();
    if let Some(r) = &c.revoke {
        parts.push(match r.status {
            Step::Already => "certificate already REVOKED".to_string(),
            _ => "certificate REVOKED".to_string(),
        });
        if r.policy == Step::Done {
            parts.push(format!("policy {} detached", r.policy_name));
        }
        for th in &r.things {
            parts.push(format!("detached from Thing {}", th.thing_name));
        }
    }
    for p in &c.other_policies_detached {
        parts.push(format!("policy {p} detached"));
    }
    if c.certificate_deleted {
        parts.push("certificate deleted".into());
    }
    if let Some(t) = &c.thing_deleted {
        parts.push(format!("Thing {t} deleted"));
    }
    parts.join(", ")
}
