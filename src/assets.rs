//! Building the bundled Lambdas and packing them as byte-reproducible zips.
//!
//! Each Lambda is a workspace crate built with cargo's `lambda` profile (size-tuned release)
//! for `provided.al2023` on x86_64, in its own target directory (`target/lambda`) so it never
//! waits on, or invalidates, the CLI's build. The Lambdas that need building are built by one
//! cargo invocation, and they ask for the same dependency features, so the AWS SDK compiles
//! once for both (`scripts/count-builds` counts it). The zip holds one entry, `bootstrap`, mode 0755,
//! with a fixed timestamp, so the same sources give the same bytes and the same sha256 on
//! every machine: the asset hash changes exactly when the code does.
//!
//! Results are cached by a fingerprint of the Lambda sources, so a synth whose Lambdas have
//! not changed does not even start cargo.

mod binary;

pub use binary::{check_lambda_binary, max_glibc};
use sha2::{Digest, Sha256};
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

/// Zip entries get this timestamp (the zip format's earliest: 1980-01-01 00:00:00).
fn zip_epoch() -> zip::DateTime {
    zip::DateTime::default()
}

/// A bundled Lambda crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LambdaCrate {
    /// Cargo package and binary name.
    pub package: &'static str,
    /// Workspace-relative directories whose contents the build depends on.
    pub sources: &'static [&'static str],
}

/// The JITR activator (topic rule target).
pub const ACTIVATOR: LambdaCrate = LambdaCrate {
    package: "jitr-activator",
    sources: &["lambdas/activator", "lambdas/common", "lambdas/contract"],
};

/// The CA registration custom resource provider.
pub const CA_PROVIDER: LambdaCrate = LambdaCrate {
    package: "jitr-ca-provider",
    sources: &["lambdas/ca-provider", "lambdas/common", "lambdas/contract"],
};

pub const ALL: [LambdaCrate; 2] = [ACTIVATOR, CA_PROVIDER];

/// Files outside the crates that change what gets built.
const SHARED_INPUTS: &[&str] = &["Cargo.toml", "Cargo.lock", "rust-toolchain.toml"];

#[derive(Debug)]
pub enum AssetError {
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

impl fmt::Display for AssetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AssetError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            AssetError::CargoNotFound { cargo, source } => {
                write!(
                    f,
                    "cannot run {} to build the Lambdas: {source}",
                    cargo.display()
                )
            }
            AssetError::BuildFailed { package, output } => {
                write!(f, "building Lambda `{package}` failed:\n{output}")
            }
            AssetError::GlibcTooNew { package, found } => write!(
                f,
                "Lambda `{package}` needs GLIBC_{}.{}, but provided.al2023 has glibc {}.{}",
                found.0, found.1, MAX_GLIBC.0, MAX_GLIBC.1
            ),
            AssetError::NotForLambda { package, found } => write!(
                f,
                "Lambda `{package}` was built as {found}, but Lambda runs {} Linux (glibc) \
                 executables ({}); refusing to bundle it",
                ARCHITECTURE.lambda_name(),
                ARCHITECTURE.rust_target()
            ),
            AssetError::NoCrossLinker { host, target } => write!(
                f,
                "this machine ({host}) cannot link Linux binaries for {target} by itself. \
                 Install the target and a cross linker, then run again:\n  \
                 rustup target add {target}\n  \
                 pip install cargo-zigbuild   # brings zig; jitr-infra uses it when it is on PATH"
            ),
            AssetError::Zip(m) => write!(f, "writing the Lambda zip: {m}"),
        }
    }
}

impl std::error::Error for AssetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AssetError::Io { source, .. } | AssetError::CargoNotFound { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AssetError + '_ {
    move |source| AssetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where and how to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The workspace root (holds `Cargo.toml` and `lambdas/`).
    pub workspace_root: PathBuf,
    /// cargo's target directory for the Lambda builds; the zip cache lives inside it.
    pub target_dir: PathBuf,
    /// The cargo to run (`$CARGO` when set, else `cargo` on PATH).
    pub cargo: PathBuf,
    /// Show cargo's progress on stderr (a cold build takes minutes).
    pub show_progress: bool,
}

impl BuildOptions {
    pub fn new(workspace_root: impl Into<PathBuf>) -> Self {
        let workspace_root = workspace_root.into();
        BuildOptions {
            target_dir: workspace_root.join("target").join("lambda"),
            workspace_root,
            cargo: std::env::var_os("CARGO")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("cargo")),
            show_progress: false,
        }
    }
}

/// A bundled Lambda.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub package: String,
    /// The zip (one executable `bootstrap`), in the bundle cache.
    pub zip_path: PathBuf,
    /// Hex SHA-256 of the zip.
    pub sha256: String,
    /// Size of the zip in bytes.
    pub size: u64,
    /// The binary inside, on disk, for running it locally.
    pub binary: PathBuf,
    /// Whether cargo had to run (false: the source fingerprint matched the cache).
    pub built: bool,
}

impl Bundle {
    pub fn read_zip(&self) -> Result<Vec<u8>, AssetError> {
        std::fs::read(&self.zip_path).map_err(io(&self.zip_path))
    }
}

/// Builds `lambda` (unless its sources are unchanged since the last build) and zips it.
pub fn bundle(opts: &BuildOptions, lambda: LambdaCrate) -> Result<Bundle, AssetError> {
    let mut bundles = bundle_all(opts, &[lambda])?;
    Ok(bundles.remove(0))
}

/// Bundles `lambdas`, in order. Those whose sources changed since their last bundle are
/// built together, in one cargo invocation: their dependencies (the AWS SDK above all)
/// compile once for all of them.
pub fn bundle_all(opts: &BuildOptions, lambdas: &[LambdaCrate]) -> Result<Vec<Bundle>, AssetError> {
    let mut found = Vec::with_capacity(lambdas.len());
    for lambda in lambdas {
        found.push(cached(opts, *lambda)?);
    }
    let to_build: Vec<LambdaCrate> = lambdas
        .iter()
        .zip(&found)
        .filter(|(_, hit)| hit.is_none())
        .map(|(lambda, _)| *lambda)
        .collect();
    if !to_build.is_empty() {
        build_all(opts, &to_build)?;
    }
    lambdas
        .iter()
        .zip(found)
        .map(|(lambda, hit)| match hit {
            Some(bundle) => Ok(bundle),
            None => pack(opts, *lambda),
        })
        .collect()
}

/// Where `lambda`'s zip for its current sources is cached.
fn cache_paths(opts: &BuildOptions, lambda: LambdaCrate) -> Result<(PathBuf, PathBuf), AssetError> {
    let fingerprint = source_fingerprint(&opts.workspace_root, lambda)?;
    let zip_path = opts
        .target_dir
        .join("bundles")
        .join(format!("{}-{fingerprint}.zip", lambda.package));
    // The digest sits beside the zip, so a cache hit reads 64 bytes, not megabytes.
    let sha_path = zip_path.with_extension("zip.sha256");
    Ok((zip_path, sha_path))
}

/// The bundle of `lambda`'s current sources, if it is cached (and its binary still there).
fn cached(opts: &BuildOptions, lambda: LambdaCrate) -> Result<Option<Bundle>, AssetError> {
    let (zip_path, sha_path) = cache_paths(opts, lambda)?;
    let binary = profile_dir(&opts.target_dir).join(lambda.package);
    if let (Ok(sha256), Ok(meta), true) = (
        std::fs::read_to_string(&sha_path),
        std::fs::metadata(&zip_path),
        binary.exists(),
    ) {
        if sha256.len() == 64 {
            return Ok(Some(Bundle {
                package: lambda.package.to_string(),
                zip_path,
                sha256,
                size: meta.len(),
                binary,
                built: false,
            }));
        }
    }
    Ok(None)
}

/// Checks and zips the freshly built binary of `lambda` into the bundle cache.
fn pack(opts: &BuildOptions, lambda: LambdaCrate) -> Result<Bundle, AssetError> {
    let (zip_path, sha_path) = cache_paths(opts, lambda)?;
    let binary = profile_dir(&opts.target_dir).join(lambda.package);
    let bytes = std::fs::read(&binary).map_err(io(&binary))?;
    check_lambda_binary(lambda.package, &bytes)?;
    let zip = zip_bootstrap(&bytes)?;
    let sha256 = sha256_hex(&zip);
    let cache_dir = opts.target_dir.join("bundles");
    std::fs::create_dir_all(&cache_dir).map_err(io(&cache_dir))?;
    write_atomically(&zip_path, &zip)?;
    write_atomically(&sha_path, sha256.as_bytes())?;
    Ok(Bundle {
        package: lambda.package.to_string(),
        zip_path,
        sha256,
        size: zip.len() as u64,
        binary,
        built: true,
    })
}

/// Lambdas whose sources changed since their last bundle (they will be built).
pub fn stale(opts: &BuildOptions) -> Vec<LambdaCrate> {
    ALL.into_iter()
        .filter(|l| {
            source_fingerprint(&opts.workspace_root, *l)
                .map(|f| {
                    !opts
                        .target_dir
                        .join("bundles")
                        .join(format!("{}-{f}.zip.sha256", l.package))
                        .exists()
                })
                .unwrap_or(true)
        })
        .collect()
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
pub fn linker() -> Result<Linker, AssetError> {
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
    Err(AssetError::NoCrossLinker {
        host: format!("{}-{}", host.0, host.1),
        target: ARCHITECTURE.rust_target(),
    })
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Builds one Lambda; see [`build_all`].
pub fn build(opts: &BuildOptions, lambda: LambdaCrate) -> Result<(), AssetError> {
    build_all(opts, &[lambda])
}

/// Runs `cargo build --profile lambda -p <package>... --target <Lambda target>` (or
/// `cargo zigbuild` on a host that cannot link for Linux) once for all of `lambdas`, with
/// paths remapped, so the binaries hold no path of this machine (panic messages embed
/// source paths).
pub fn build_all(opts: &BuildOptions, lambdas: &[LambdaCrate]) -> Result<(), AssetError> {
    let packages = lambdas
        .iter()
        .map(|l| l.package)
        .collect::<Vec<_>>()
        .join("`, `");
    let subcommand = match linker()? {
        Linker::Native => "build",
        Linker::Zig => "zigbuild",
    };
    let mut flags = vec![format!(
        "--remap-path-prefix={}=/build",
        opts.workspace_root.display()
    )];
    if let Some(home) = cargo_home() {
        flags.push(format!("--remap-path-prefix={}=/cargo", home.display()));
    }
    let mut cmd = Command::new(&opts.cargo);
    cmd.current_dir(&opts.workspace_root)
        .args([subcommand, "--locked", "--profile", PROFILE])
        .args(lambdas.iter().flat_map(|l| ["-p", l.package]))
        .args(["--target", ARCHITECTURE.rust_target()])
        .arg("--target-dir")
        .arg(&opts.target_dir)
        // Takes precedence over RUSTFLAGS from the caller's environment.
        .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\u{1f}"))
        .env_remove("RUSTFLAGS")
        .stdin(Stdio::null());
    if opts.show_progress {
        cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
        let status = cmd.status().map_err(|source| AssetError::CargoNotFound {
            cargo: opts.cargo.clone(),
            source,
        })?;
        if !status.success() {
            return Err(AssetError::BuildFailed {
                package: packages,
                output: format!("cargo exited with {status} (its output is above)"),
            });
        }
    } else {
        let out = cmd.output().map_err(|source| AssetError::CargoNotFound {
            cargo: opts.cargo.clone(),
            source,
        })?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            return Err(AssetError::BuildFailed {
                package: packages,
                output: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            });
        }
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
pub fn zip_bootstrap(binary: &[u8]) -> Result<Vec<u8>, AssetError> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(9))
        .last_modified_time(zip_epoch())
        .unix_permissions(0o755);
    writer
        .start_file("bootstrap", options)
        .map_err(|e| AssetError::Zip(e.to_string()))?;
    writer
        .write_all(binary)
        .map_err(|e| AssetError::Zip(e.to_string()))?;
    let cursor = writer
        .finish()
        .map_err(|e| AssetError::Zip(e.to_string()))?;
    Ok(cursor.into_inner())
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A digest of everything the Lambda's build reads from the workspace: its crate directories
/// (sorted relative paths and contents, `target` excluded) and the workspace manifests.
pub fn source_fingerprint(root: &Path, lambda: LambdaCrate) -> Result<String, AssetError> {
    let mut files = Vec::new();
    for dir in lambda.sources {
        collect_files(root, &root.join(dir), &mut files)?;
    }
    for f in SHARED_INPUTS {
        let path = root.join(f);
        if path.exists() {
            files.push(path);
        }
    }
    files.sort();
    let mut hasher = Sha256::new();
    hasher.update(lambda.package.as_bytes());
    hasher.update(PROFILE.as_bytes());
    hasher.update(ARCHITECTURE.rust_target().as_bytes());
    for path in files {
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let contents = std::fs::read(&path).map_err(io(&path))?;
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update((contents.len() as u64).to_le_bytes());
        hasher.update(&contents);
    }
    Ok(hex(&hasher.finalize())[..16].to_string())
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), AssetError> {
    let entries = std::fs::read_dir(dir).map_err(io(dir))?;
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        let kind = entry.file_type().map_err(io(&path))?;
        if kind.is_dir() {
            // Tests do not change the binary.
            if path
                .strip_prefix(root)
                .is_ok_and(|rel| rel.ends_with("tests"))
            {
                continue;
            }
            collect_files(root, &path, out)?;
        } else if kind.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// Writes `path` through a temporary file and a rename: readers see the old file or the new
/// one, never half of one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), AssetError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    // Unique per process and call: two threads bundling at once must not share a temp file.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cross_linker_message_says_what_to_install() {
        let e = AssetError::NoCrossLinker {
            host: "aarch64-macos".into(),
            target: ARCHITECTURE.rust_target(),
        };
        assert_eq!(
            e.to_string(),
            "this machine (aarch64-macos) cannot link Linux binaries for x86_64-unknown-linux-gnu \
             by itself. Install the target and a cross linker, then run again:\n  \
             rustup target add x86_64-unknown-linux-gnu\n  \
             pip install cargo-zigbuild   # brings zig; jitr-infra uses it when it is on PATH"
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
}
