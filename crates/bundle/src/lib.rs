//! Building jitr-infra's two Lambdas and packing them as byte-reproducible zips.
//!
//! jitr-infra's build script runs [`build_all`], so every `jitr-infra` binary carries the zips
//! it deploys (see `src/assets.rs` there). Each Lambda is a workspace crate built with cargo's
//! `lambda` profile (size-tuned release) for `provided.al2023` on x86_64, in a target
//! directory of its own (`target/lambda` beside the CLI's) so it never waits on, or
//! invalidates, the CLI's build. Both Lambdas are built by one cargo invocation and ask for
//! the same dependency features, so the AWS SDK compiles once for both
//! (`scripts/count-builds` counts it). The zip holds one entry, `bootstrap`, mode 0755, with a
//! fixed timestamp, so the same sources give the same bytes and the same sha256 on every
//! machine and in every checkout: the asset hash changes exactly when the code does.

mod binary;
mod sources;

pub use binary::{check_lambda_binary, max_glibc};
use sha2::{Digest, Sha256};
pub use sources::{digest as source_digest, DIGEST_ENV, INPUTS};
use std::fmt;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// AL2023, which `provided.al2023` runs on, ships glibc 2.34: a binary must not need a newer
/// symbol version.
pub const MAX_GLIBC: (u32, u32) = (2, 34);

/// The cargo profile the Lambdas are built with (defined in the root `Cargo.toml`).
pub const PROFILE: &str = "lambda";

/// The one architecture the bundled Lambdas are built for: what the template declares in
/// `Architectures` and what the zip's binary must be.
pub const ARCHITECTURE: Architecture = Architecture::X86_64;

/// A Lambda instruction set architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    X86_64,
    Arm64,
}

impl Architecture {
    /// The name `AWS::Lambda::Function`'s `Architectures` takes.
    pub fn lambda_name(self) -> &'static str {
        match self {
            Architecture::X86_64 => "x86_64",
            Architecture::Arm64 => "arm64",
        }
    }

    /// The Rust target the Lambda is compiled for: always Linux with glibc, whatever the host.
    pub fn rust_target(self) -> &'static str {
        match self {
            Architecture::X86_64 => "x86_64-unknown-linux-gnu",
            Architecture::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    fn object(self) -> object::Architecture {
        match self {
            Architecture::X86_64 => object::Architecture::X86_64,
            Architecture::Arm64 => object::Architecture::Aarch64,
        }
    }
}

/// cargo's output directory for the Lambda builds under `target_dir`.
pub fn profile_dir(target_dir: &Path) -> PathBuf {
    target_dir.join(ARCHITECTURE.rust_target()).join(PROFILE)
}

/// Where the Lambdas are built for a build script whose `OUT_DIR` is `out_dir`: `lambda`
/// beside the profile directories of the target directory the build runs in
/// (`<target>/debug/build/<pkg>-<hash>/out` gives `<target>/lambda`), so `cargo build`,
/// `cargo test` and `cargo install` each reuse their own target directory's Lambda build.
pub fn target_dir_for(out_dir: &Path) -> PathBuf {
    match out_dir.ancestors().nth(4) {
        Some(target)
            if out_dir
                .ancestors()
                .nth(2)
                .is_some_and(|b| b.ends_with("build")) =>
        {
            target.join("lambda")
        }
        _ => out_dir.join("lambda-target"),
    }
}

/// Zip entries get this timestamp (the zip format's earliest: 1980-01-01 00:00:00).
fn zip_epoch() -> zip::DateTime {
    zip::DateTime::default()
}

/// A bundled Lambda crate: its cargo package, whose binary has the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LambdaCrate {
    pub package: &'static str,
}

/// The JITR activator (topic rule target).
pub const ACTIVATOR: LambdaCrate = LambdaCrate {
    package: "jitr-activator",
};

/// The CA registration custom resource provider.
pub const CA_PROVIDER: LambdaCrate = LambdaCrate {
    package: "jitr-ca-provider",
};

pub const ALL: [LambdaCrate; 2] = [ACTIVATOR, CA_PROVIDER];

#[derive(Debug)]
pub enum BundleError {
    /// Reading or writing a file failed.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// cargo could not be started.
    CargoNotFound {
        cargo: PathBuf,
        source: std::io::Error,
    },
    /// cargo ran and failed; `output` is the end of what it printed. `package` names every
    /// Lambda of the invocation.
    BuildFailed { package: String, output: String },
    /// The built binary needs a glibc newer than the Lambda runtime has.
    GlibcTooNew { package: String, found: (u32, u32) },
    /// The built binary is not a Linux executable for the template's architecture.
    NotForLambda { package: String, found: String },
    /// This host cannot link for the Lambda target, and nothing that can is installed.
    NoCrossLinker { host: String, target: &'static str },
    /// Writing the zip failed.
    Zip(String),
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            BundleError::CargoNotFound { cargo, source } => {
                write!(
                    f,
                    "cannot run {} to build the Lambdas: {source}",
                    cargo.display()
                )
            }
            BundleError::BuildFailed { package, output } => {
                write!(f, "building Lambda `{package}` failed:\n{output}")
            }
            BundleError::GlibcTooNew { package, found } => write!(
                f,
                "Lambda `{package}` needs GLIBC_{}.{}, but provided.al2023 has glibc {}.{}",
                found.0, found.1, MAX_GLIBC.0, MAX_GLIBC.1
            ),
            BundleError::NotForLambda { package, found } => write!(
                f,
                "Lambda `{package}` was built as {found}, but Lambda runs {} Linux (glibc) \
                 executables ({}); refusing to bundle it",
                ARCHITECTURE.lambda_name(),
                ARCHITECTURE.rust_target()
            ),
            BundleError::NoCrossLinker { host, target } => write!(
                f,
                "this machine ({host}) cannot link Linux binaries for {target} by itself. \
                 Install the target and a cross linker, then build again:\n  \
                 rustup target add {target}\n  \
                 pip install cargo-zigbuild   # brings zig; the jitr-infra build uses it when it is on PATH"
            ),
            BundleError::Zip(m) => write!(f, "writing the Lambda zip: {m}"),
        }
    }
}

impl std::error::Error for BundleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BundleError::Io { source, .. } | BundleError::CargoNotFound { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where and how to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The workspace root (holds `Cargo.toml` and `lambdas/`).
    pub workspace_root: PathBuf,
    /// cargo's target directory for the Lambda builds.
    pub target_dir: PathBuf,
    /// The cargo to run (`$CARGO` when set, else `cargo` on PATH).
    pub cargo: PathBuf,
    /// Show cargo's progress on stderr (a cold build takes minutes); else keep its output
    /// for the error.
    pub show_progress: bool,
}

impl BuildOptions {
    pub fn new(workspace_root: impl Into<PathBuf>, target_dir: impl Into<PathBuf>) -> Self {
        BuildOptions {
            workspace_root: workspace_root.into(),
            target_dir: target_dir.into(),
            cargo: std::env::var_os("CARGO")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("cargo")),
            show_progress: false,
        }
    }
}

/// A built, checked and zipped Lambda.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub package: &'static str,
    /// The zip: one executable `bootstrap`.
    pub zip: Vec<u8>,
    /// Hex SHA-256 of the zip.
    pub sha256: String,
    /// The binary cargo built (what the zip holds).
    pub binary: PathBuf,
}

/// Builds `lambdas` in one cargo invocation (their dependencies, the AWS SDK above all,
/// compile once for all of them), checks each binary and zips it.
pub fn bundle_all(
    opts: &BuildOptions,
    lambdas: &[LambdaCrate],
) -> Result<Vec<Bundle>, BundleError> {
    build_all(opts, lambdas)?;
    lambdas.iter().map(|lambda| pack(opts, *lambda)).collect()
}

/// Checks and zips the built binary of `lambda`.
fn pack(opts: &BuildOptions, lambda: LambdaCrate) -> Result<Bundle, BundleError> {
    let binary = profile_dir(&opts.target_dir).join(lambda.package);
    let bytes = std::fs::read(&binary).map_err(io(&binary))?;
    check_lambda_binary(lambda.package, &bytes)?;
    let zip = zip_bootstrap(&bytes)?;
    Ok(Bundle {
        package: lambda.package,
        sha256: sha256_hex(&zip),
        zip,
        binary,
    })
}

/// How the Lambda target gets linked on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linker {
    /// The host is the Lambda's platform: plain `cargo build --target`.
    Native,
    /// `cargo zigbuild`: zig links for Linux from any host.
    Zig,
}

/// How this host builds for [`ARCHITECTURE`]: natively on an x86_64 Linux machine, else
/// through cargo-zigbuild when it is installed, else an error that says what to install.
pub fn linker() -> Result<Linker, BundleError> {
    let host = (std::env::consts::ARCH, std::env::consts::OS);
    let native = match ARCHITECTURE {
        Architecture::X86_64 => ("x86_64", "linux"),
        Architecture::Arm64 => ("aarch64", "linux"),
    };
    if host == native {
        return Ok(Linker::Native);
    }
    if on_path("cargo-zigbuild") {
        return Ok(Linker::Zig);
    }
    Err(BundleError::NoCrossLinker {
        host: format!("{}-{}", host.0, host.1),
        target: ARCHITECTURE.rust_target(),
    })
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Runs `cargo build --locked --profile lambda -p <package>... --target <Lambda target>` (or
/// `cargo zigbuild` on a host that cannot link for Linux) once for all of `lambdas`.
///
/// The binaries hold no path of this machine: cargo names workspace sources by relative
/// paths, and cargo's home (registry sources) is remapped to `/cargo`. The flags do not
/// depend on where the workspace is, so two checkouts (or `cargo install --git`) sharing a
/// target directory share the compiled dependencies, and build the same bytes.
pub fn build_all(opts: &BuildOptions, lambdas: &[LambdaCrate]) -> Result<(), BundleError> {
    let packages = lambdas
        .iter()
        .map(|l| l.package)
        .collect::<Vec<_>>()
        .join("`, `");
    let subcommand = match linker()? {
        Linker::Native => "build",
        Linker::Zig => "zigbuild",
    };
    let flags: Vec<String> = cargo_home()
        .map(|home| format!("--remap-path-prefix={}=/cargo", home.display()))
        .into_iter()
        .collect();
    let digest = source_digest(&opts.workspace_root)?;
    let mut cmd = Command::new(&opts.cargo);
    cmd.current_dir(&opts.workspace_root)
        .args([subcommand, "--locked", "--profile", PROFILE])
        .args(lambdas.iter().flat_map(|l| ["-p", l.package]))
        .args(["--target", ARCHITECTURE.rust_target()])
        .arg("--manifest-path")
        .arg(opts.workspace_root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&opts.target_dir)
        // Takes precedence over RUSTFLAGS from the caller's environment.
        .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\u{1f}"))
        .env_remove("RUSTFLAGS")
        // Set by `cargo clippy` for the outer build: the Lambdas are compiled, not linted.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        // The Lambda crates are rebuilt whenever their sources' contents change, whatever
        // the files' times say (see sources.rs).
        .env(DIGEST_ENV, digest)
        .stdin(Stdio::null());
    run(cmd, opts, packages)
}

fn run(mut cmd: Command, opts: &BuildOptions, packages: String) -> Result<(), BundleError> {
    let not_found = |source| BundleError::CargoNotFound {
        cargo: opts.cargo.clone(),
        source,
    };
    if opts.show_progress {
        cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
        let status = cmd.status().map_err(not_found)?;
        if !status.success() {
            return Err(BundleError::BuildFailed {
                package: packages,
                output: format!("cargo exited with {status} (its output is above)"),
            });
        }
        return Ok(());
    }
    let out = cmd.output().map_err(not_found)?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        return Err(BundleError::BuildFailed {
            package: packages,
            output: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(())
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .and_then(|p| p.canonicalize().ok())
}

/// Packs `binary` as the zip Lambda expects: a single `bootstrap`, mode 0755, deflated, with
/// a fixed timestamp. The same bytes in give the same bytes out.
pub fn zip_bootstrap(binary: &[u8]) -> Result<Vec<u8>, BundleError> {
    zip_files(&[ZipFile {
        name: "bootstrap",
        bytes: binary,
        mode: 0o755,
    }])
}

/// One file of a zip made by [`zip_files`].
#[derive(Debug, Clone, Copy)]
pub struct ZipFile<'a> {
    /// The path inside the zip (`/`-separated, relative).
    pub name: &'a str,
    pub bytes: &'a [u8],
    /// Unix permission bits.
    pub mode: u32,
}

/// Packs `files`, in the order given, deflated, with a fixed timestamp and the given modes:
/// the same files in give the same bytes out (the Lambda zips, and the layer synth makes of
/// the stage's revocation list).
pub fn zip_files(files: &[ZipFile<'_>]) -> Result<Vec<u8>, BundleError> {
    let fail = |e: &dyn fmt::Display| BundleError::Zip(e.to_string());
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for f in files {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(9))
            .last_modified_time(zip_epoch())
            .unix_permissions(f.mode);
        writer.start_file(f.name, options).map_err(|e| fail(&e))?;
        writer.write_all(f.bytes).map_err(|e| fail(&e))?;
    }
    let cursor = writer.finish().map_err(|e| fail(&e))?;
    Ok(cursor.into_inner())
}

/// The `bootstrap` a Lambda zip holds, and its unix mode: what Lambda runs.
pub fn unzip_bootstrap(zip: &[u8]) -> Result<(Vec<u8>, u32), BundleError> {
    unzip_file(zip, "bootstrap")
}

/// The file `name` of `zip`, and its unix mode (0 when the zip records none).
pub fn unzip_file(zip: &[u8], name: &str) -> Result<(Vec<u8>, u32), BundleError> {
    let fail = |e: &dyn fmt::Display| BundleError::Zip(format!("reading the zip: {e}"));
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).map_err(|e| fail(&e))?;
    let mut entry = archive.by_name(name).map_err(|e| fail(&e))?;
    let mode = entry.unix_mode().unwrap_or(0);
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut bytes).map_err(|e| fail(&e))?;
    Ok((bytes, mode))
}

/// One file of a zip, as [`unzip_all`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unzipped {
    /// A relative path that stays inside the directory it is extracted into.
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    /// Unix mode (0 when the zip records none).
    pub mode: u32,
}

/// Every file of `zip` in its order (directories skipped). A path that would leave the
/// directory it is extracted into (absolute, or through `..`) is an error.
pub fn unzip_all(zip: &[u8]) -> Result<Vec<Unzipped>, BundleError> {
    let fail = |e: &dyn fmt::Display| BundleError::Zip(format!("reading the zip: {e}"));
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).map_err(|e| fail(&e))?;
    let mut files = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| fail(&e))?;
        if entry.is_dir() {
            continue;
        }
        let path = entry
            .enclosed_name()
            .ok_or_else(|| fail(&"an entry's path leaves the extraction directory"))?;
        let mode = entry.unix_mode().unwrap_or(0);
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).map_err(|e| fail(&e))?;
        files.push(Unzipped { path, bytes, mode });
    }
    Ok(files)
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cross_linker_message_says_what_to_install() {
        let e = BundleError::NoCrossLinker {
            host: "aarch64-macos".into(),
            target: ARCHITECTURE.rust_target(),
        };
        assert_eq!(
            e.to_string(),
            "this machine (aarch64-macos) cannot link Linux binaries for x86_64-unknown-linux-gnu \
             by itself. Install the target and a cross linker, then build again:\n  \
             rustup target add x86_64-unknown-linux-gnu\n  \
             pip install cargo-zigbuild   # brings zig; the jitr-infra build uses it when it is on PATH"
        );
    }

    #[test]
    fn zip_is_deterministic_and_executable() {
        let a = zip_bootstrap(b"#!/bin/sh\necho hi\n").unwrap();
        let b = zip_bootstrap(b"#!/bin/sh\necho hi\n").unwrap();
        assert_eq!(a, b);
        let mut archive = zip::ZipArchive::new(Cursor::new(a)).unwrap();
        assert_eq!(archive.len(), 1);
        let entry = archive.by_index(0).unwrap();
        assert_eq!(entry.name().unwrap(), "bootstrap");
        assert_eq!(entry.unix_mode().unwrap() & 0o777, 0o755);
        assert_eq!(entry.last_modified(), Some(zip_epoch()));
    }

    #[test]
    fn zip_files_keeps_paths_modes_and_order() {
        let files = [
            ZipFile {
                name: "jitr/revocation.json",
                bytes: b"{}\n",
                mode: 0o644,
            },
            ZipFile {
                name: "bin/tool",
                bytes: b"x",
                mode: 0o755,
            },
        ];
        let a = zip_files(&files).unwrap();
        assert_eq!(a, zip_files(&files).unwrap());
        let mut archive = zip::ZipArchive::new(Cursor::new(a)).unwrap();
        assert_eq!(
            archive.by_index(0).unwrap().name().unwrap(),
            "jitr/revocation.json"
        );
        assert_eq!(archive.by_index(1).unwrap().name().unwrap(), "bin/tool");
        let entry = archive.by_name("jitr/revocation.json").unwrap();
        assert_eq!(entry.unix_mode().unwrap() & 0o777, 0o644);
        drop(entry);
        let all = unzip_all(&zip_files(&files).unwrap()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].path, PathBuf::from("jitr/revocation.json"));
        assert_eq!(
            (all[1].bytes.as_slice(), all[1].mode & 0o777),
            (&b"x"[..], 0o755)
        );
        let escape = zip_files(&[ZipFile {
            name: "../evil",
            bytes: b"x",
            mode: 0o644,
        }])
        .unwrap();
        assert!(unzip_all(&escape)
            .unwrap_err()
            .to_string()
            .contains("leaves"));
    }
}
