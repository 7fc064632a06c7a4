//! `status`'s text output: one line per area, then what needs attention.

use super::status::{AlarmView, CaView, Status};
use std::collections::BTreeMap;

/// The text output: one line per area, then what needs attention.
pub fn text(s: &Status) -> String {
    let mut t = format!("stack {} ({}), stage {}\n", s.stack, s.region, s.stage);
    t.push_str(&ca_line(s.ca.as_ref()));
    for o in &s.other_cas {
        t.push_str(&ca_line(Some(&o.ca)));
        if let Some(p) = &o.pending {
            t.push_str(&format!(
                "  pending {}{}\n",
                p.count,
                if p.truncated {
                    "+ (listing truncated)"
                } else {
                    ""
                }
            ));
        }
    }
    t.push_str(&match &s.rule {
        Some(r) if !r.exists => format!("rule {}: missing\n", r.name),
        Some(r) => format!("rule {}: {}\n", r.name, on_off(r.enabled)),
        None => "rule: none in the stack\n".into(),
    });
    if let Some(p) = &s.pending {
        t.push_str(&format!(
            "pending {}{} (oldest {}, {} over the {}-min grace)\n",
            p.count,
            if p.truncated {
                "+ (listing truncated)"
            } else {
                ""
            },
            p.oldest_age_seconds.map_or("-".into(), age),
            p.over_grace,
            p.grace_seconds / 60
        ));
    }
    if let Some(q) = &s.failure_queue {
        t.push_str(&format!(
            "failure queue {} ({} in flight)\n",
            q.visible, q.in_flight
        ));
    }
    let h = &s.last_hour;
    t.push_str(&format!(
        "last hour: {} activated, {} already active, {} duplicates skipped, {} rejected, {} \
         revoked, {} ignored, {} malformed, {} failed, {} IoT throttled; Lambda {} errors, {} \
         throttles\n",
        h.activated,
        h.already_active,
        h.duplicate_skipped,
        h.rejected,
        h.revoked,
        h.ignored,
        h.malformed,
        h.failed,
        h.iot_throttled,
        h.errors,
        h.lambda_throttles
    ));
    t.push_str(&alarms_line(&s.alarms));
    let c = &s.capacity;
    t.push_str(&format!(
        "capacity ~{:.1} devices/s (bound {} {}/s), reserved {} (formula {})\n",
        c.devices_per_second,
        c.bound,
        c.bound_rate,
        c.reserved_concurrency
            .map_or("none".into(), |n| n.to_string()),
        c.recommended_reservation
    ));
    if s.attention.is_empty() {
        t.push_str("healthy\n");
    } else {
        t.push_str("needs attention:\n");
        for a in &s.attention {
            t.push_str(&format!("  - {a}\n"));
        }
    }
    t
}

fn ca_line(ca: Option<&CaView>) -> String {
    match ca {
        Some(CaView {
            id,
            status: Some(st),
            auto_registration,
            expires_in_days,
            ..
        }) => format!(
            "CA {}: {st}, auto-registration {}, expires in {} days\n",
            short(id),
            on_off(*auto_registration),
            expires_in_days.map_or("?".into(), |d| d.to_string())
        ),
        Some(ca) => format!("CA {}: not registered\n", short(&ca.id)),
        None => "CA: none in the stack\n".into(),
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

fn alarms_line(alarms: &[AlarmView]) -> String {
    if alarms.is_empty() {
        return "alarms: none\n".into();
    }
    let mut by_state: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for a in alarms {
        by_state
            .entry(a.state.as_str())
            .or_default()
            .push(a.name.as_str());
    }
    let parts: Vec<String> = by_state
        .iter()
        .map(|(state, names)| match *state {
            "OK" => format!("{} OK", names.len()),
            _ => format!("{} {state} ({})", names.len(), names.join(", ")),
        })
        .collect();
    format!("alarms: {}\n", parts.join(", "))
}

fn short(id: &str) -> String {
    if id.len() > 12 {
        format!("{}…", &id[..12])
    } else {
        id.to_string()
    }
}

fn age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}
