//! The embedded Lambdas as files: what the Runtime API host runs is the `bootstrap` of the
//! very zip `jitr-infra` deploys.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// Writes the `bootstrap` of `zip` (Lambda `package`'s) to a file of its own, named by the
/// zip's digest, mode 0755, and returns its path. Test processes running at once each write
/// through a temporary file and a rename, so none ever runs half a binary.
pub fn unpack(package: &str, zip: &[u8]) -> PathBuf {
    let digest = jitr_bundle::sha256_hex(zip);
    let dir = std::env::temp_dir()
        .join("jitr-lambdas")
        .join(format!("{package}-{}", &digest[..16]));
    let path = dir.join("bootstrap");
    let (binary, mode) = jitr_bundle::unzip_bootstrap(zip).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mode & 0o777, 0o755, "{package}: bootstrap must be 0755");
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == binary.len() as u64) {
        return path;
    }
    std::fs::create_dir_all(&dir).unwrap();
    // Unique per process and call: tests of one process unpack at once too.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!("bootstrap.tmp-{}-{n}", std::process::id()));
    std::fs::write(&tmp, &binary).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}
