//! The stage's CAs: one (`ca:` a mapping, the CA named `default`) or a list of named CAs, for
//! rotation. Names become logical-id suffixes, so they are checked here once.

use super::validate::Validator;
use super::*;

/// A CA's name: `[a-z][a-z0-9-]{0,30}`.
pub fn is_ca_name(name: &str) -> bool {
    (1..=31).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The logical-id suffix of CA `name`: empty for `default`, else PascalCase (`ca-2026`:
/// `Ca2026`).
pub fn ca_id_suffix(name: &str) -> String {
    if name == DEFAULT_CA_NAME {
        return String::new();
    }
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or(String::new(), |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// A CA this close to its end (or closer) is warned about at every load of the stage.
pub const CA_EXPIRY_WARNING_DAYS: i64 = 90;

impl Validator<'_> {
    pub(super) fn cas(&mut self, raw: CaField) -> Option<Vec<Ca>> {
        let entries = match raw {
            CaField::One(section) => {
                if section
                    .name
                    .as_deref()
                    .is_some_and(|n| n != DEFAULT_CA_NAME)
                {
                    self.problem(
                        "ca.name",
                        format!(
                            "one CA is always named `{DEFAULT_CA_NAME}`; to name CAs, write `ca:` \
                             as a list (and name the CA you had `{DEFAULT_CA_NAME}`)"
                        ),
                    );
                }
                vec![("ca".to_string(), DEFAULT_CA_NAME.to_string(), section)]
            }
            CaField::List(list) => self.named(list)?,
        };
        let mut cas = Vec::new();
        let mut complete = true;
        for (at, name, section) in entries {
            match self.ca(&at, name, section) {
                Some(ca) => cas.push((at, ca)),
                None => complete = false,
            }
        }
        self.same_certificate_twice(&cas);
        complete.then(|| cas.into_iter().map(|(_, ca)| ca).collect())
    }

    /// A list's entries with their field paths and names; every name present, well formed
    /// and unique.
    fn named(&mut self, list: Vec<CaSection>) -> Option<Vec<(String, String, CaSection)>> {
        if list.is_empty() {
            self.problem("ca", "the list is empty: a stage needs at least one CA");
            return None;
        }
        if list.len() > MAX_CAS {
            self.problem(
                "ca",
                format!(
                    "{} CAs: a stage can have at most {MAX_CAS} (the activator's environment \
                     holds every CA's id)",
                    list.len()
                ),
            );
        }
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut suffixes: BTreeMap<String, usize> = BTreeMap::new();
        let mut entries = Vec::new();
        for (i, mut section) in list.into_iter().enumerate() {
            let at = format!("ca[{i}]");
            let Some(name) = section.name.take() else {
                self.problem(
                    &at,
                    "needs a `name` (in a list every CA is named; name the CA you had \
                     `default` so its registration stays as it is)",
                );
                continue;
            };
            if !is_ca_name(&name) {
                self.problem(
                    &format!("{at}.name"),
                    format!(
                        "{name:?} is not a CA name: a lowercase letter, then up to 30 lowercase \
                         letters, digits or hyphens"
                    ),
                );
            } else if let Some(first) = seen.insert(name.clone(), i) {
                self.problem(
                    &format!("{at}.name"),
                    format!("`{name}` is already the name of ca[{first}]; CA names are unique"),
                );
            } else if let Some(first) = suffixes.insert(ca_id_suffix(&name), i) {
                self.problem(
                    &format!("{at}.name"),
                    format!(
                        "`{name}` gives the same resource names as ca[{first}] (hyphens are \
                         dropped in logical ids: {}); choose a name that differs in letters or \
                         digits",
                        ca_id_suffix(&name)
                    ),
                );
            }
            entries.push((at, name, section));
        }
        Some(entries)
    }

    /// AWS IoT knows a CA by its certificate (the id is the DER's SHA-256): two entries with
    /// one certificate would be one registration claimed twice.
    fn same_certificate_twice(&mut self, cas: &[(String, Ca)]) {
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for (at, ca) in cas {
            let id = ca.certificate.aws_iot_id();
            if let Some(first) = seen.insert(id.clone(), &ca.name) {
                self.problem(
                    &format!("{at}.certificate"),
                    format!(
                        "{}: the same certificate as CA `{first}` (AWS IoT id {}…); each CA \
                         needs its own certificate",
                        ca.certificate_file,
                        &id[..12]
                    ),
                );
            }
        }
    }

    /// A warning (not a problem) for a CA within [`CA_EXPIRY_WARNING_DAYS`] of its end.
    pub(super) fn expiry(&mut self, field: &str, file: &str, c: &Certificate) {
        let (_, not_after) = c.validity();
        let days = (not_after - unix_now()) / 86_400;
        if days < CA_EXPIRY_WARNING_DAYS {
            self.warnings.push(Problem {
                field: field.to_string(),
                line: locate(self.text, field),
                message: format!(
                    "{file}: CA `{}` expires in {days} day(s): devices it signed stop connecting \
                     then; add its successor to `ca:` and migrate the devices (README: rotating \
                     the CA)",
                    c.subject()
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_ca_name;

    #[test]
    fn ca_names() {
        for good in ["default", "ca-2026", "a", &format!("a{}", "0".repeat(30))] {
            assert!(is_ca_name(good), "{good}");
        }
        for bad in [
            "",
            "2026",
            "Ca",
            "ca_2026",
            "-a",
            &format!("a{}", "0".repeat(31)),
        ] {
            assert!(!is_ca_name(bad), "{bad}");
        }
    }
}
