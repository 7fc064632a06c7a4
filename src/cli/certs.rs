//! `ca create`, `ca inspect` and `device issue`: one function per command, with the checks
//! each makes before it writes anything.

use super::console::Console;
use super::Args;
use crate::error::{exit, Error};
use crate::pki::{self, CaSigner, CaSpec, DeviceMaterial, DeviceSpec, KeyAlgorithm};
use crate::stage::{self, Stage, Verification};
use jitr_contract::activator::{anchored_subject_pattern, is_thing_name, ThingNameSource};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// How long `ca create`'s CA is valid unless told otherwise.
pub const DEFAULT_CA_DAYS: u32 = 3650;

pub use super::low::{CaCreate, DeviceIssue};

/// `ca create`: `{"name", "certificate", "key", "certificateId", "subject", "keyAlgorithm",
/// "notAfter"}`.
pub fn ca_create(c: &CaCreate, console: &Console) -> Result<i32, Error> {
    check_file_name(&c.name).map_err(|e| Error::Certs(format!("--name {:?}: {e}", c.name)))?;
    let algorithm = KeyAlgorithm::from(c.key_type);
    let subject = c
        .subject
        .clone()
        .unwrap_or_else(|| format!("CN={} CA", c.name.replace(',', "\\,")));
    let subject = pki::parse_subject(&subject)
        .map_err(|e| Error::Certs(format!("--subject {subject:?}: {e}")))?;
    let m = pki::make_ca(&CaSpec::with_subject(algorithm, &subject, c.days))
        .map_err(|e| Error::Certs(e.to_string()))?;
    let [cert, key] = in_new_dir(&c.out, |dir| pki::write_ca(dir, &c.name, &m))?;
    let facts = pki::inspect::inspect(&m.cert_pem, jitr_lambda_common::pki::unix_now())
        .map_err(Error::Certs)?;
    let value = json!({
        "name": c.name, "certificate": cert.display().to_string(),
        "key": key.display().to_string(), "certificateId": facts.certificate_id,
        "subject": facts.subject, "keyAlgorithm": algorithm.describe(), "notAfter": facts.not_after,
    });
    console.result(&value, || {
        format!(
            "created CA {} ({}, valid until {})\n  {:<40} certificate, id {}\n  {:<40} \
             private key, mode 0600: keep it secret, never commit it\n",
            facts.subject,
            algorithm.describe(),
            facts.not_after,
            cert.display(),
            facts.certificate_id,
            key.display()
        )
    });
    Ok(exit::OK)
}

/// `ca inspect`: the [`pki::inspect::Inspection`] with `"file"`; exit 0 even with warnings.
pub fn ca_inspect(file: &Path, console: &Console) -> Result<i32, Error> {
    let pem = std::fs::read_to_string(file).map_err(crate::error::io(file))?;
    let i = pki::inspect::inspect(&pem, jitr_lambda_common::pki::unix_now())
        .map_err(|e| Error::Certs(format!("{}: not a certificate: {e}", file.display())))?;
    let mut value = serde_json::to_value(&i).expect("serializes");
    value["file"] = json!(file.display().to_string());
    console.result(&value, || inspect_text(file, &i));
    Ok(exit::OK)
}

fn inspect_text(file: &Path, i: &pki::inspect::Inspection) -> String {
    let path_len = i.path_len.map_or("none".to_string(), |n| n.to_string());
    let rows = [
        ("certificateId", i.certificate_id.clone()),
        ("subject", i.subject.clone()),
        ("issuer", i.issuer.clone()),
        ("serial", i.serial.clone()),
        ("keyAlgorithm", i.key_algorithm.clone()),
        ("signatureAlgorithm", i.signature_algorithm.clone()),
        ("notBefore", i.not_before.clone()),
        ("notAfter", i.not_after.clone()),
        ("isCa", i.is_ca.to_string()),
        ("pathLen", path_len),
        ("keyUsage", i.key_usage.join(", ")),
        ("selfSigned", i.self_signed.to_string()),
        ("activatorCanVerify", i.activator_can_verify.to_string()),
    ];
    let mut text = format!("{}\n", file.display());
    for (k, v) in rows {
        text.push_str(&format!("  {k:<20} {v}\n"));
    }
    if i.warnings.is_empty() {
        text.push_str("no warnings\n");
    }
    for w in &i.warnings {
        text.push_str(&format!("warning: {w}\n"));
    }
    text
}

/// `device issue`: `{"stage", "ca", "caCertificateId", "devices": [{"cn", "certificateId",
/// "notAfter", "clampedToCa", "files": {"certificate", "key", "chain"}}]}`.
pub fn device_issue(args: &Args, d: &DeviceIssue, console: &Console) -> Result<i32, Error> {
    let stage = stage::load(&args.root, &args.stage)?;
    let ca = stage.ca_named(d.ca.as_deref()).map_err(Error::Certs)?;
    let cns = device_names(d)?;
    check_names(&stage, &cns)?;
    let (key_pem, source) = ca_key(&args.root, &stage, ca, d)?;
    let signer = CaSigner::from_pem(&ca.pem, &key_pem).map_err(|e| {
        Error::Certs(format!(
            "{source} with {} ({}): {e}",
            ca.certificate_file,
            stage.file.display()
        ))
    })?;
    drop(key_pem);
    let mut issued = Vec::with_capacity(cns.len());
    for cn in &cns {
        let spec = DeviceSpec {
            common_name: cn.clone(),
            key: d.key_type.into(),
            days: d.days,
        };
        let m = pki::issue_device(&signer, &spec).map_err(|e| Error::Certs(e.to_string()))?;
        issued.push((cn.clone(), m));
    }
    let files = in_new_dir(&d.out, |dir| {
        let all: Vec<pki::NewFile<'_>> = issued
            .iter()
            .flat_map(|(cn, m)| pki::device_files(dir, cn, m))
            .collect();
        pki::write_new_files(&all)
    })?;
    report_devices(&stage, ca, &issued, &files, d.days, console);
    Ok(exit::OK)
}

fn report_devices(
    stage: &Stage,
    ca: &stage::Ca,
    issued: &[(String, DeviceMaterial)],
    files: &[PathBuf],
    days: u32,
    console: &Console,
) {
    let ca_id = ca.certificate.aws_iot_id();
    let shown = |i: usize| files[i].display().to_string();
    let devices: Vec<_> = issued
        .iter()
        .enumerate()
        .map(|(n, (cn, m))| {
            json!({"cn": cn, "certificateId": m.certificate_id(),
                "notAfter": pki::inspect::rfc3339(m.validity.not_after),
                "clampedToCa": m.validity.clamped_to_ca,
                "files": {"certificate": shown(3 * n), "key": shown(3 * n + 1),
                    "chain": shown(3 * n + 2)}})
        })
        .collect();
    if !console.json() && issued.iter().any(|(_, m)| m.validity.clamped_to_ca) {
        console.note(&format!(
            "note: {days} days would outlast the CA: the certificates end with the CA, at {}\n",
            pki::inspect::rfc3339(ca.certificate.validity().1)
        ));
    }
    let value = json!({"stage": stage.name, "ca": ca.name, "caCertificateId": ca_id,
        "devices": devices});
    console.result(&value, || {
        let mut text = format!(
            "issued {} device certificate(s) with CA {} ({}) of stage {}\n",
            issued.len(),
            ca.name,
            ca.certificate.subject(),
            stage.name
        );
        for (n, (cn, m)) in issued.iter().enumerate() {
            text.push_str(&format!(
                "  {cn}  id {}\n    {}\n    {}  (mode 0600)\n    {}\n",
                m.certificate_id(),
                shown(3 * n),
                shown(3 * n + 1),
                shown(3 * n + 2)
            ));
        }
        text
    });
}

/// The CNs to issue: `--cn`, or the template expanded for `--start`.. (`--count` devices).
fn device_names(d: &DeviceIssue) -> Result<Vec<String>, Error> {
    match (&d.cn, &d.cn_template) {
        (Some(cn), _) => Ok(vec![cn.clone()]),
        (None, Some(t)) => expand_template(t, d.start, d.count)
            .map_err(|e| Error::Certs(format!("--cn-template {t:?}: {e}"))),
        (None, None) => Err(Error::Certs(
            "give --cn NAME or --cn-template TEMPLATE".into(),
        )),
    }
}

/// `{}` becomes the number, `{:0N}` the number zero-padded to N digits; exactly one.
pub fn expand_template(template: &str, start: u32, count: u32) -> Result<Vec<String>, String> {
    let open = template
        .find('{')
        .ok_or("it needs a placeholder for the number: {} or {:04}")?;
    let close = template[open..]
        .find('}')
        .map(|c| open + c)
        .ok_or("a '{' without its '}'")?;
    let (head, spec, tail) = (
        &template[..open],
        &template[open + 1..close],
        &template[close + 1..],
    );
    if tail.contains(['{', '}']) || head.contains('}') {
        return Err("only one placeholder is allowed".into());
    }
    let width = match spec {
        "" => 0,
        s => s
            .strip_prefix(":0")
            .and_then(|w| w.parse::<usize>().ok())
            .filter(|w| (1..=10).contains(w))
            .ok_or_else(|| format!("{{{s}}} is not {{}} or {{:0N}} (N from 1 to 10)"))?,
    };
    let end = start
        .checked_add(count - 1)
        .ok_or("--start + --count passes the largest number")?;
    Ok((start..=end)
        .map(|n| format!("{head}{n:0width$}{tail}"))
        .collect())
}

/// Every CN must match the stage's subject pattern in full (as the activator matches it),
/// be a Thing name when the Thing is named after it, and be a plain file name.
fn check_names(stage: &Stage, cns: &[String]) -> Result<(), Error> {
    let a = &stage.activator;
    let pattern = match &a.subject_pattern {
        Some(p) => Some((
            p,
            regex_lite::Regex::new(&anchored_subject_pattern(p))
                .map_err(|e| Error::Certs(format!("activator.subject_pattern: {e}")))?,
        )),
        None => None,
    };
    let thing_named = a.create_thing && a.thing_name == ThingNameSource::SubjectCn;
    let mut bad = Vec::new();
    for cn in cns {
        if let Some((p, re)) = &pattern {
            if !re.is_match(cn) {
                bad.push(format!(
                    "CN {cn:?} does not match activator.subject_pattern {p:?} (the activator \
                     would reject it)"
                ));
                continue;
            }
        }
        if thing_named && !is_thing_name(cn) {
            bad.push(format!(
                "CN {cn:?} is not a Thing name (1-128 of [a-zA-Z0-9:_-]) and the stage names \
                 Things after the CN (activator.thing_name: subject-cn)"
            ));
        } else if let Err(e) = check_file_name(cn) {
            bad.push(format!("CN {cn:?} cannot name the output files: {e}"));
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    let more = bad.len().saturating_sub(5);
    bad.truncate(5);
    let tail = if more > 0 {
        format!("\n  and {more} more")
    } else {
        String::new()
    };
    Err(Error::Certs(format!(
        "{}: nothing was issued:\n  {}{tail}",
        stage.file.display(),
        bad.join("\n  ")
    )))
}

fn check_file_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 200
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'@' | b'+')
        });
    if ok {
        Ok(())
    } else {
        Err("use letters, digits and . _ - : @ + (not starting with '.')".into())
    }
}

/// The CA private key PEM and where it came from (for messages; never the key itself).
fn ca_key(
    root: &Path,
    stage: &Stage,
    ca: &stage::Ca,
    d: &DeviceIssue,
) -> Result<(String, String), Error> {
    if let Some(file) = &d.ca_key {
        return Ok((read_key_file(file)?, format!("--ca-key {}", file.display())));
    }
    if let Some(var) = &d.ca_key_env {
        return Ok((
            read_key_env(var, "--ca-key-env")?,
            format!("--ca-key-env {var}"),
        ));
    }
    match &ca.verification {
        Some(Verification::PrivateKeyFile(path)) => Ok((
            read_key_file(&root.join(path))?,
            format!("ca.verification.private_key_file {path}"),
        )),
        Some(Verification::PrivateKeyEnv(var)) => Ok((
            read_key_env(var, "ca.verification.private_key_env")?,
            format!("ca.verification.private_key_env {var}"),
        )),
        _ => Err(Error::Certs(format!(
            "no CA private key: give --ca-key FILE or --ca-key-env VAR ({} names no \
             ca.verification.private_key_file or private_key_env for CA {})",
            stage.file.display(),
            ca.name
        ))),
    }
}

/// Reads a CA key file, refusing one that group or others may read (as ssh does).
fn read_key_file(file: &Path) -> Result<String, Error> {
    let meta = std::fs::metadata(file).map_err(crate::error::io(file))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::Certs(format!(
            "{}: the CA private key is readable by group or others (mode {mode:04o}); run \
             `chmod 600 {}` and try again",
            file.display(),
            file.display()
        )));
    }
    std::fs::read_to_string(file).map_err(crate::error::io(file))
}

fn read_key_env(var: &str, origin: &str) -> Result<String, Error> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(Error::Certs(format!(
            "{origin}: environment variable {var} is not set or empty (it must hold the CA \
             private key, PEM)"
        ))),
    }
}

/// Runs `write` in `dir`, making `dir` first when missing and removing it again when the
/// write fails (so a refused or failed write leaves nothing behind).
fn in_new_dir<T>(
    dir: &Path,
    write: impl FnOnce(&Path) -> Result<T, pki::WriteError>,
) -> Result<T, Error> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .collect();
    std::fs::create_dir_all(dir).map_err(crate::error::io(dir))?;
    write(dir).map_err(|e| {
        for d in &missing {
            let _ = std::fs::remove_dir(d);
        }
        Error::Files(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_and_bad_ones_say_why() {
        assert_eq!(
            expand_template("sensor-{:04}", 9, 3).unwrap(),
            ["sensor-0009", "sensor-0010", "sensor-0011"]
        );
        assert_eq!(expand_template("d{}x", 1, 2).unwrap(), ["d1x", "d2x"]);
        for (bad, why) in [
            ("sensor", "needs a placeholder"),
            ("s-{}-{}", "only one placeholder"),
            ("s-{:4}", "is not {} or {:0N}"),
            ("s-{", "without its '}'"),
        ] {
            let e = expand_template(bad, 1, 2).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(expand_template("s{}", u32::MAX, 2).is_err());
    }

    #[test]
    fn file_names_are_plain() {
        assert!(check_file_name("sensor-0001").is_ok());
        for bad in ["", ".hidden", "a/b", "..", "a b"] {
            assert!(check_file_name(bad).is_err(), "{bad}");
        }
    }
}
