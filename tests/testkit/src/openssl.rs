//! CAs and device certificates of any signature algorithm, made with the openssl CLI at test
//! time: rcgen cannot sign RSASSA-PSS with a chosen salt length, ECDSA with a hash other than
//! its curve's, or DSA, and AWS IoT accepts (or lists) all of those.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// A key algorithm, as `openssl genpkey` makes it.
#[derive(Debug, Clone, Copy)]
pub enum Key {
    Rsa(u32),
    /// An RSA key restricted to RSASSA-PSS (its SPKI says id-RSASSA-PSS).
    RsaPss(u32),
    /// A named curve: `P-256`, `P-384`, `P-521`, `secp256k1`, ...
    Ec(&'static str),
    Dsa(u32),
    Ed25519,
}

/// A CA whose key stays in its own temporary directory (removed on drop).
pub struct OpensslCa {
    dir: PathBuf,
    pub pem: String,
}

static N: AtomicU64 = AtomicU64::new(0);

fn temp_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir = std::env::temp_dir().join(format!(
        "jitr-openssl-{}-{}-{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run the openssl CLI");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn generate_key(dir: &Path, key: Key, file: &str) {
    let bits;
    let curve;
    let args: Vec<&str> = match key {
        Key::Rsa(b) | Key::RsaPss(b) => {
            bits = format!("rsa_keygen_bits:{b}");
            let alg = if matches!(key, Key::Rsa(_)) {
                "RSA"
            } else {
                "RSA-PSS"
            };
            vec!["genpkey", "-algorithm", alg, "-pkeyopt", &bits]
        }
        Key::Ec(name) => {
            curve = format!("ec_paramgen_curve:{name}");
            vec!["genpkey", "-algorithm", "EC", "-pkeyopt", &curve]
        }
        Key::Dsa(b) => {
            bits = format!("dsa_paramgen_bits:{b}");
            let params = format!("{file}.params");
            openssl(
                dir,
                &[
                    "genpkey",
                    "-genparam",
                    "-algorithm",
                    "DSA",
                    "-pkeyopt",
                    &bits,
                    "-out",
                    &params,
                ],
            );
            openssl(dir, &["genpkey", "-paramfile", &params, "-out", file]);
            return;
        }
        Key::Ed25519 => vec!["genpkey", "-algorithm", "ED25519"],
    };
    let mut args = args;
    args.extend(["-out", file]);
    openssl(dir, &args);
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

impl OpensslCa {
    /// A self-signed root CA named `cn`. `sign` are the signing options, for example
    /// `["-sha384"]` or `["-sha256", "-sigopt", "rsa_padding_mode:pss"]` (none for Ed25519).
    pub fn root(cn: &str, key: Key, sign: &[&str]) -> OpensslCa {
        let dir = temp_dir();
        generate_key(&dir, key, "ca.key");
        let subject = format!("/CN={cn}");
        let mut args = vec![
            "req", "-x509", "-new", "-key", "ca.key", "-subj", &subject, "-days", "30",
        ];
        args.extend(sign);
        args.extend([
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            "ca.pem",
        ]);
        openssl(&dir, &args);
        let pem = read(&dir, "ca.pem");
        OpensslCa { dir, pem }
    }

    /// An intermediate CA named `cn`, signed by this CA.
    pub fn intermediate(&self, cn: &str, key: Key, sign: &[&str]) -> OpensslCa {
        let dir = temp_dir();
        generate_key(&dir, key, "ca.key");
        let pem = self.sign(
            &dir.join("ca.key"),
            cn,
            sign,
            "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
        );
        std::fs::write(dir.join("ca.pem"), &pem).unwrap();
        OpensslCa { dir, pem }
    }

    /// A device certificate (its own key: EC P-256) with subject CN `cn`, signed by this CA
    /// with the signing options `sign`.
    pub fn issue(&self, cn: &str, sign: &[&str]) -> String {
        let dir = temp_dir();
        generate_key(&dir, Key::Ec("P-256"), "device.key");
        let pem = self.sign(
            &dir.join("device.key"),
            cn,
            sign,
            "basicConstraints=critical,CA:FALSE\n",
        );
        std::fs::remove_dir_all(dir).ok();
        pem
    }

    /// A certificate for `key_file`'s key, issued by this CA with the extensions `ext`.
    fn sign(&self, key_file: &Path, cn: &str, sign: &[&str], ext: &str) -> String {
        let work = temp_dir();
        std::fs::write(work.join("ext.cnf"), ext).unwrap();
        let subject = format!("/CN={cn}");
        let key = key_file.to_str().unwrap();
        openssl(
            &work,
            &[
                "req", "-new", "-key", key, "-subj", &subject, "-out", "req.csr",
            ],
        );
        let serial = format!(
            "0x{:x}{:x}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let ca_pem = self.dir.join("ca.pem");
        let ca_key = self.dir.join("ca.key");
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            "req.csr",
            "-CA",
            ca_pem.to_str().unwrap(),
            "-CAkey",
            ca_key.to_str().unwrap(),
            "-set_serial",
            &serial,
            "-days",
            "30",
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ];
        args.extend(sign);
        openssl(&work, &args);
        let pem = read(&work, "cert.pem");
        std::fs::remove_dir_all(work).ok();
        pem
    }
}

impl Drop for OpensslCa {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}
