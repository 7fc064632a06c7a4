//! Revoked device certificates: how a serial number is written, and the revocation list the
//! stack ships to the activator (`revocation:` in the stage file, rendered by synth).
//!
//! A serial is compared in one normal form: lowercase hex, no separators, no leading zeros
//! (`"0"` for zero). Operators write serials as tools print them (`1A:2B:...` from openssl,
//! `0x1a2b` from code), so [`normalize_serial`] accepts colons, spaces, a `0x` prefix, any
//! case and leading zeros.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Where the activator reads the revocation list (a path; the list itself never goes into the
/// environment, which Lambda caps at 4 KB). Set only when the stage has a `revocation` section.
pub const ENV_REVOCATION_FILE: &str = "JITR_REVOCATION_FILE";

/// RFC 5280 4.1.2.2: conforming CAs use serial numbers of at most 20 octets.
pub const MAX_SERIAL_BYTES: usize = 20;

/// Any CA of the stack (a serial listed by the stage, not by one CA's CRL).
pub const ANY_CA: &str = "*";

/// `text` as a serial in normal form (lowercase hex, no leading zeros), or why it is not one.
pub fn normalize_serial(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    let body = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed);
    let digits: String = body.chars().filter(|c| *c != ':' && *c != ' ').collect();
    if digits.is_empty() {
        return Err(format!("{text:?} is not a serial number: no hex digits"));
    }
    if let Some(bad) = digits.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!(
            "{text:?} is not a serial number: {bad:?} is not a hex digit (write it as hex, \
             with or without colons)"
        ));
    }
    let stripped = digits.trim_start_matches('0').to_ascii_lowercase();
    let normal = if stripped.is_empty() {
        "0".to_string()
    } else {
        stripped
    };
    if normal.len().div_ceil(2) > MAX_SERIAL_BYTES {
        return Err(format!(
            "{text:?} is not a serial number: {} bytes, more than the {MAX_SERIAL_BYTES} RFC 5280 \
             allows",
            normal.len().div_ceil(2)
        ));
    }
    Ok(normal)
}

/// Big-endian serial bytes (as DER holds them, maybe with a leading zero) in normal form.
pub fn serial_from_bytes(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let stripped = hex.trim_start_matches('0');
    if stripped.is_empty() {
        "0".to_string()
    } else {
        stripped.to_string()
    }
}

/// The revocation list file (`revocation.json`): each revoked serial (normal form) and the
/// AWS IoT ids of the CAs it is revoked for ([`ANY_CA`]: whichever CA issued it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationList {
    pub revoked: BTreeMap<String, BTreeSet<String>>,
}

impl RevocationList {
    /// Adds `serial` (normal form) as revoked for `ca` (a CA id or [`ANY_CA`]).
    pub fn add(&mut self, serial: String, ca: &str) {
        self.revoked
            .entry(serial)
            .or_default()
            .insert(ca.to_string());
    }

    /// The certificate with `serial` (normal form), issued by the CA `ca_id`, is revoked.
    pub fn is_revoked(&self, serial: &str, ca_id: &str) -> bool {
        self.revoked
            .get(serial)
            .is_some_and(|cas| cas.contains(ANY_CA) || cas.contains(ca_id))
    }

    /// The file's bytes: sorted keys, one line a serial, so the same list is the same bytes.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("strings serialize");
        text.push('\n');
        text
    }

    /// Parses the file; the error says what is wrong (every serial must be in normal form).
    pub fn from_json(text: &str) -> Result<RevocationList, String> {
        let list: RevocationList =
            serde_json::from_str(text).map_err(|e| format!("not a revocation list: {e}"))?;
        for serial in list.revoked.keys() {
            match normalize_serial(serial) {
                Ok(n) if &n == serial => {}
                _ => return Err(format!("serial {serial:?} is not in normal form")),
            }
        }
        Ok(list)
    }

    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_in_any_spelling_are_one_normal_form() {
        for text in ["1A:2B:03", "0x1a2b03", "001a2b03", " 1a 2b 03 ", "0X1A2B03"] {
            assert_eq!(normalize_serial(text).unwrap(), "1a2b03", "{text}");
        }
        assert_eq!(normalize_serial("00:00").unwrap(), "0");
        assert_eq!(serial_from_bytes(&[0x00, 0x9f, 0x01]), "9f01");
        assert_eq!(serial_from_bytes(&[0]), "0");
    }

    #[test]
    fn bad_serials_say_why() {
        assert!(normalize_serial("").unwrap_err().contains("no hex digits"));
        assert!(normalize_serial("12:zz").unwrap_err().contains("'z'"));
        let long = "ab".repeat(21);
        assert!(normalize_serial(&long).unwrap_err().contains("21 bytes"));
        assert_eq!(
            normalize_serial(&format!("00{}", "ab".repeat(20)))
                .unwrap()
                .len(),
            40
        );
    }

    #[test]
    fn the_list_matches_by_serial_and_ca() {
        let mut list = RevocationList::default();
        list.add("1a".into(), ANY_CA);
        list.add("2b".into(), "ca1");
        assert!(list.is_revoked("1a", "anything"));
        assert!(list.is_revoked("2b", "ca1"));
        assert!(!list.is_revoked("2b", "ca2"));
        assert!(!list.is_revoked("3c", "ca1"));
        let back = RevocationList::from_json(&list.to_json()).unwrap();
        assert_eq!(back, list);
        assert!(RevocationList::from_json(r#"{"revoked":{"0A":["*"]}}"#)
            .unwrap_err()
            .contains("normal form"));
        assert!(RevocationList::from_json(r#"{"other":1}"#).is_err());
    }
}
