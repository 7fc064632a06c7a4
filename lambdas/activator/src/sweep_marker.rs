//! The sweep's marker with several CAs: where the previous run stopped, in one SSM value.
//!
//! A run visits the CAs in turn within one page budget, starting with the CA the previous run
//! stopped in, so at most one CA has a place to resume at. The value is
//! - `-`: start with the first CA, at its newest certificate (a complete run leaves this);
//! - `{"<CA id>": "<marker>"}`: start with that CA, at that `ListCertificatesByCA` marker
//!   (`-`: at its newest certificate), then go on with the CAs after it;
//! - anything else: a marker written by a one-CA activator (before CA rotation), used as it
//!   is when there is one CA and dropped when there are several (it cannot say whose it is;
//!   the run starts at the newest, and listing certificates again is harmless).

use jitr_contract::sweep::MARKER_START;
use std::collections::BTreeMap;

/// Where a run starts: the CA's index in the configuration, and the marker in its list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub ca: usize,
    pub marker: Option<String>,
}

/// Reads the stored value against the CA ids this activator serves.
pub fn parse(value: &str, ca_ids: &[String]) -> Resume {
    let start = Resume {
        ca: 0,
        marker: None,
    };
    let value = value.trim();
    if value.is_empty() || value == MARKER_START {
        return start;
    }
    if value.starts_with('{') {
        let Ok(map) = serde_json::from_str::<BTreeMap<String, String>>(value) else {
            return start;
        };
        // A CA that left the stack has nothing left to sweep.
        return ca_ids
            .iter()
            .position(|id| map.contains_key(id))
            .map_or(start, |ca| Resume {
                ca,
                marker: map
                    .get(&ca_ids[ca])
                    .filter(|m| m.as_str() != MARKER_START)
                    .cloned(),
            });
    }
    match ca_ids.len() {
        1 => Resume {
            ca: 0,
            marker: Some(value.to_string()),
        },
        _ => start,
    }
}

/// The value to store: `-` for a complete run (`None`), else the CA and its marker.
pub fn render(stopped: Option<(&str, Option<&str>)>) -> String {
    match stopped {
        None => MARKER_START.to_string(),
        Some((ca, marker)) => serde_json::json!({ ca: marker.unwrap_or(MARKER_START) }).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_old_ones_are_understood() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let both = vec![a.clone(), b.clone()];
        let start = Resume {
            ca: 0,
            marker: None,
        };
        assert_eq!(parse("-", &both), start);
        assert_eq!(parse("", &both), start);
        assert_eq!(render(None), "-");
        let v = render(Some((&b, Some("m1"))));
        assert_eq!(
            parse(&v, &both),
            Resume {
                ca: 1,
                marker: Some("m1".into())
            }
        );
        let v = render(Some((&b, None)));
        assert_eq!(
            parse(&v, &both),
            Resume {
                ca: 1,
                marker: None
            }
        );
        // A one-CA activator's marker: kept with one CA, dropped with several.
        assert_eq!(
            parse("AAEC/opaque==", std::slice::from_ref(&a)),
            Resume {
                ca: 0,
                marker: Some("AAEC/opaque==".into())
            }
        );
        assert_eq!(parse("AAEC/opaque==", &both), start);
        // The CA it names left the stack: start over.
        let gone = render(Some((&"c".repeat(64), Some("m"))));
        assert_eq!(parse(&gone, &both), start);
        assert_eq!(parse("{not json", &both), start);
    }
}
