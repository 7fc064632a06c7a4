//! Writing certificates and keys: every output checked absent before any is written, each
//! written to a temporary file (with its final mode from creation) and then linked into place
//! (a link, unlike a rename, never replaces a file that appeared meanwhile). On any failure
//! nothing this call made is left behind.

use super::{CaMaterial, DeviceMaterial};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Mode of private key files.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificate files.
pub const CERT_MODE: u32 = 0o644;

/// One file to create.
#[derive(Debug, Clone)]
pub struct NewFile<'a> {
    pub path: PathBuf,
    pub contents: &'a [u8],
    pub mode: u32,
}

/// Why files were not written. Nothing was left written either way.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(
        "{} already exist{}; refusing to overwrite, nothing was written",
        list(.0), if .0.len() == 1 { "s" } else { "" }
    )]
    Exists(Vec<PathBuf>),
    #[error("{} is named twice in one write; nothing was written", .0.display())]
    Duplicate(PathBuf),
    #[error("{}: {source}; nothing was left written", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn list(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

/// Creates every file or none: refuses if any exists (naming all that do).
pub fn write_new_files(files: &[NewFile<'_>]) -> Result<Vec<PathBuf>, WriteError> {
    let mut seen = std::collections::HashSet::new();
    for f in files {
        if !seen.insert(&f.path) {
            return Err(WriteError::Duplicate(f.path.clone()));
        }
    }
    let existing: Vec<PathBuf> = files
        .iter()
        .filter(|f| f.path.symlink_metadata().is_ok())
        .map(|f| f.path.clone())
        .collect();
    if !existing.is_empty() {
        return Err(WriteError::Exists(existing));
    }
    let mut temps = Vec::new();
    let result = stage_and_link(files, &mut temps);
    for t in &temps {
        let _ = std::fs::remove_file(t);
    }
    result
}

fn stage_and_link(
    files: &[NewFile<'_>],
    temps: &mut Vec<PathBuf>,
) -> Result<Vec<PathBuf>, WriteError> {
    for f in files {
        let temp = temp_path(&f.path);
        write_temp(&temp, f).map_err(|source| WriteError::Io {
            path: f.path.clone(),
            source,
        })?;
        temps.push(temp);
    }
    let mut linked: Vec<PathBuf> = Vec::new();
    for (f, temp) in files.iter().zip(temps.iter()) {
        if let Err(source) = std::fs::hard_link(temp, &f.path) {
            for l in &linked {
                let _ = std::fs::remove_file(l);
            }
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                return Err(WriteError::Exists(vec![f.path.clone()]));
            }
            return Err(WriteError::Io {
                path: f.path.clone(),
                source,
            });
        }
        linked.push(f.path.clone());
    }
    Ok(linked)
}

fn temp_path(path: &Path) -> PathBuf {
    let mut tag = [0u8; 6];
    let _ = aws_lc_rs::rand::fill(&mut tag);
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.{tag}.tmp", std::process::id()))
}

fn write_temp(temp: &Path, f: &NewFile<'_>) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(f.mode)
        .open(temp)?;
    file.write_all(f.contents)?;
    file.sync_all()
}

/// Writes `DIR/NAME.crt`, `DIR/NAME.key` (0600) and `DIR/NAME.chain.pem`; refuses to
/// overwrite any of them.
pub fn write_device(
    dir: &Path,
    name: &str,
    m: &DeviceMaterial,
) -> Result<[PathBuf; 3], WriteError> {
    let files = device_files(dir, name, m);
    let written = write_new_files(&files)?;
    Ok([written[0].clone(), written[1].clone(), written[2].clone()])
}

/// The three files of a device, for [`write_new_files`] (a batch writes all devices at once).
pub fn device_files<'a>(dir: &Path, name: &str, m: &'a DeviceMaterial) -> [NewFile<'a>; 3] {
    [
        NewFile {
            path: dir.join(format!("{name}.crt")),
            contents: m.cert_pem.as_bytes(),
            mode: CERT_MODE,
        },
        NewFile {
            path: dir.join(format!("{name}.key")),
            contents: m.key_pem.as_bytes(),
            mode: KEY_MODE,
        },
        NewFile {
            path: dir.join(format!("{name}.chain.pem")),
            contents: m.chain_pem.as_bytes(),
            mode: CERT_MODE,
        },
    ]
}

/// Writes `DIR/NAME.pem` and `DIR/NAME.key` (0600); refuses to overwrite either.
pub fn write_ca(dir: &Path, name: &str, m: &CaMaterial) -> Result<[PathBuf; 2], WriteError> {
    let written = write_new_files(&ca_files(
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
        m,
    ))?;
    Ok([written[0].clone(), written[1].clone()])
}

/// A CA's certificate and key files at the given paths.
pub fn ca_files(cert: PathBuf, key: PathBuf, m: &CaMaterial) -> [NewFile<'_>; 2] {
    [
        NewFile {
            path: cert,
            contents: m.cert_pem.as_bytes(),
            mode: CERT_MODE,
        },
        NewFile {
            path: key,
            contents: m.key_pem.as_bytes(),
            mode: KEY_MODE,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{issue_device, make_ca, CaSigner, CaSpec, DeviceSpec, KeyAlgorithm};
    use std::os::unix::fs::PermissionsExt;

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("jitr-pki-unit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn device_files_are_written_once_with_the_key_0600() {
        let dir = temp("device");
        let ca = make_ca(&CaSpec::new(KeyAlgorithm::EcP256, "W", 30)).unwrap();
        let [cert, key] = write_ca(&dir, "ca", &ca).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key), 0o600);
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), ca.cert_pem);
        let signer = CaSigner::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
        let m = issue_device(&signer, &DeviceSpec::new("dev-1")).unwrap();
        let [crt, key, chain] = write_device(&dir, "dev-1", &m).unwrap();
        assert_eq!(mode(&key), 0o600);
        assert_eq!(std::fs::read_to_string(&crt).unwrap(), m.cert_pem);
        assert_eq!(std::fs::read_to_string(&chain).unwrap(), m.chain_pem);
        assert_eq!(
            names(&dir),
            [
                "ca.key",
                "ca.pem",
                "dev-1.chain.pem",
                "dev-1.crt",
                "dev-1.key"
            ]
        );

        // One existing output (the chain) refuses all three, and nothing else appears.
        std::fs::remove_file(&crt).unwrap();
        std::fs::remove_file(&key).unwrap();
        let e = write_device(&dir, "dev-1", &m).unwrap_err();
        assert!(
            matches!(&e, WriteError::Exists(p) if p == std::slice::from_ref(&chain)),
            "{e}"
        );
        assert!(
            e.to_string().contains("dev-1.chain.pem already exists"),
            "{e}"
        );
        assert_eq!(names(&dir), ["ca.key", "ca.pem", "dev-1.chain.pem"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let dir = temp("fail");
        let files = [
            NewFile {
                path: dir.join("a"),
                contents: b"a",
                mode: CERT_MODE,
            },
            NewFile {
                path: dir.join("missing/b"),
                contents: b"b",
                mode: CERT_MODE,
            },
        ];
        let e = write_new_files(&files).unwrap_err();
        assert!(e.to_string().contains("missing/b"), "{e}");
        assert!(names(&dir).is_empty(), "{:?}", names(&dir));
        let twice = [files[0].clone(), files[0].clone()];
        assert!(matches!(
            write_new_files(&twice),
            Err(WriteError::Duplicate(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
