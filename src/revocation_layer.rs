//! The stage's revocation list as the activator's Lambda layer: `jitr/revocation.json` (the
//! [`RevocationList`] JSON, keys sorted) in a byte-reproducible zip, named by its SHA-256 like
//! the Lambda zips (`asset.<sha256>.zip` in the output directory and the asset bucket).
//!
//! Lambda extracts a function's layers into `/opt` of its execution environment (AWS Lambda
//! Developer Guide, "Packaging your layer content":
//! <https://docs.aws.amazon.com/lambda/latest/dg/packaging-layers.html>), so the activator
//! reads the list at [`FUNCTION_PATH`]. The list never goes into the environment, which
//! Lambda caps at 4 KB.

use jitr_contract::revocation::RevocationList;

/// The file's path inside the layer zip.
pub const LAYER_PATH: &str = "jitr/revocation.json";
/// Where the activator finds it: `/opt` + [`LAYER_PATH`] (`JITR_REVOCATION_FILE`).
pub const FUNCTION_PATH: &str = "/opt/jitr/revocation.json";

/// The layer's zip and its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerZip {
    /// Hex SHA-256 of [`LayerZip::zip`].
    pub sha256: String,
    pub zip: Vec<u8>,
}

/// The layer holding `list`: the same list always gives the same bytes.
pub fn layer_zip(list: &RevocationList) -> LayerZip {
    let json = list.to_json();
    let zip = jitr_bundle::zip_files(&[jitr_bundle::ZipFile {
        name: LAYER_PATH,
        bytes: json.as_bytes(),
        mode: 0o644,
    }])
    // Deflating a few kilobytes into memory has no way to fail but a bug.
    .expect("the revocation list zips in memory");
    LayerZip {
        sha256: jitr_bundle::sha256_hex(&zip),
        zip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitr_contract::revocation::ANY_CA;

    fn list(serials: &[&str]) -> RevocationList {
        let mut l = RevocationList::default();
        for s in serials {
            l.add(s.to_string(), ANY_CA);
        }
        l
    }

    #[test]
    fn the_layer_holds_the_list_at_its_path_and_is_reproducible() {
        let a = layer_zip(&list(&["2b", "1a"]));
        // Insertion order does not matter: the list's keys are sorted.
        assert_eq!(a, layer_zip(&list(&["1a", "2b"])));
        assert_ne!(a.sha256, layer_zip(&list(&["1a"])).sha256);
        assert_eq!(a.sha256, jitr_bundle::sha256_hex(&a.zip));
        let (text, mode) = jitr_bundle::unzip_file(&a.zip, LAYER_PATH).unwrap();
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(
            RevocationList::from_json(std::str::from_utf8(&text).unwrap()).unwrap(),
            list(&["1a", "2b"])
        );
        assert!(FUNCTION_PATH.ends_with(LAYER_PATH) && FUNCTION_PATH.starts_with("/opt/"));
    }

    /// A large list stays far under Lambda's layer limits (50 MB zipped, 250 MB unzipped with
    /// the function): 10,000 serials of 16 random bytes, each revoked for one CA.
    #[test]
    fn ten_thousand_serials_make_a_small_layer() {
        let mut l = RevocationList::default();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..10_000 {
            let serial: String = (0..2)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    format!("{x:016x}")
                })
                .collect();
            l.add(serial.trim_start_matches('0').to_string(), &"c".repeat(64));
        }
        let z = layer_zip(&l);
        let json = l.to_json().len();
        println!(
            "10,000 serials: revocation.json {json} bytes, layer zip {} bytes",
            z.zip.len()
        );
        assert!(z.zip.len() < 1_000_000 && json < 2_000_000);
    }
}
