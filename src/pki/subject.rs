//! A certificate subject as `ca create --subject` takes it: `CN=...,O=...,OU=...,C=..,ST=...,L=...`.

/// The attributes a subject may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    CommonName,
    Organization,
    OrganizationalUnit,
    Country,
    State,
    Locality,
}

impl Attr {
    fn from_key(key: &str) -> Option<Attr> {
        Some(match key.to_ascii_uppercase().as_str() {
            "CN" => Attr::CommonName,
            "O" => Attr::Organization,
            "OU" => Attr::OrganizationalUnit,
            "C" => Attr::Country,
            "ST" => Attr::State,
            "L" => Attr::Locality,
            _ => return None,
        })
    }

    pub(super) fn dn_type(self) -> rcgen::DnType {
        match self {
            Attr::CommonName => rcgen::DnType::CommonName,
            Attr::Organization => rcgen::DnType::OrganizationName,
            Attr::OrganizationalUnit => rcgen::DnType::OrganizationalUnitName,
            Attr::Country => rcgen::DnType::CountryName,
            Attr::State => rcgen::DnType::StateOrProvinceName,
            Attr::Locality => rcgen::DnType::LocalityName,
        }
    }
}

/// A parsed subject, in the order written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subject {
    pub attrs: Vec<(Attr, String)>,
}

impl Subject {
    /// The common name, if given.
    pub fn common_name(&self) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(a, _)| *a == Attr::CommonName)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses `KEY=VALUE` pairs separated by commas (a value may hold `\,` for a comma). Keys:
/// CN (required, once), O, OU, C (two letters), ST, L. The error says what is wrong, for a
/// message naming the flag.
pub fn parse_subject(text: &str) -> Result<Subject, String> {
    let mut attrs = Vec::new();
    for part in split_unescaped(text) {
        let part = part.trim();
        let Some((key, value)) = part.split_once('=') else {
            return Err(format!("{part:?} is not KEY=VALUE (like CN=Acme CA)"));
        };
        let attr = Attr::from_key(key.trim()).ok_or_else(|| {
            format!(
                "unknown attribute {:?} (use CN, O, OU, C, ST, L)",
                key.trim()
            )
        })?;
        let value = value.trim().replace("\\,", ",");
        if value.is_empty() {
            return Err(format!("{} has an empty value", key.trim()));
        }
        if attr == Attr::Country
            && !(value.len() == 2 && value.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(format!(
                "C={value:?}: a country is two capital letters (ISO 3166, like DE)"
            ));
        }
        if value.chars().count() > 64 {
            return Err(format!(
                "{}: at most 64 characters (RFC 5280 upper bounds)",
                key.trim()
            ));
        }
        attrs.push((attr, value));
    }
    let cns = attrs.iter().filter(|(a, _)| *a == Attr::CommonName).count();
    match cns {
        1 => Ok(Subject { attrs }),
        0 => Err("CN is required (like CN=Acme CA,O=Acme)".into()),
        _ => Err("CN is given more than once".into()),
    }
}

fn split_unescaped(text: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in text.chars() {
        if c == ',' && !escaped {
            parts.push(String::new());
        } else {
            parts.last_mut().expect("never empty").push(c);
        }
        escaped = c == '\\' && !escaped;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_parse_and_bad_ones_say_why() {
        let s =
            parse_subject("CN=Acme CA, O=Acme\\, Inc.,OU=IoT,C=DE,ST=Bavaria,L=Munich").unwrap();
        assert_eq!(s.common_name(), Some("Acme CA"));
        assert_eq!(s.attrs[1], (Attr::Organization, "Acme, Inc.".to_string()));
        assert_eq!(s.attrs.len(), 6);
        for (bad, why) in [
            ("O=Acme", "CN is required"),
            ("CN=a,CN=b", "more than once"),
            ("CN=a,X=b", "unknown attribute \"X\""),
            ("CN=a,C=Germany", "two capital letters"),
            ("CN=", "empty value"),
            ("CN a", "not KEY=VALUE"),
        ] {
            let e = parse_subject(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
