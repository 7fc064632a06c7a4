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

/// A deployed function as Lambda runs it: the environment its configuration sets, and its
/// layers extracted.
#[derive(Debug, Clone)]
pub struct Deployed {
    /// The function's variables, sorted by name; values under `/opt/` rewritten into
    /// [`Deployed::opt`].
    pub env: Vec<(String, String)>,
    /// The directory standing in for Lambda's `/opt`: the layers extracted in their order
    /// (a later layer's file replaces an earlier one's); `None` without layers.
    pub opt: Option<PathBuf>,
}

/// Reads `function`'s configuration and fetches its layers as Lambda does (GetFunction ->
/// `Layers` -> GetLayerVersion -> `Content.Location`, checked against `CodeSha256`) and
/// extracts them, as Lambda extracts them into `/opt` (AWS Lambda Developer Guide,
/// "Packaging your layer content"). Tests run functions side by side on one machine, where
/// one `/opt` cannot serve them all: each function's layers go into a directory of their own
/// (named by the function and the layers' digests), and every variable whose value starts
/// with `/opt/` is rewritten to start with that directory instead.
pub async fn deployed(conf: &aws_config::SdkConfig, function: &str) -> Deployed {
    let lambda = aws_sdk_lambda::Client::new(conf);
    let out = lambda
        .get_function()
        .function_name(function)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetFunction {function}: {e:?}"));
    let c = out
        .configuration()
        .expect("GetFunction has a configuration");
    let mut env: Vec<(String, String)> = c
        .environment()
        .and_then(|e| e.variables())
        .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    env.sort();
    let mut zips = Vec::new();
    for layer in c.layers() {
        zips.push(layer_zip(&lambda, layer.arn().expect("a layer has an ARN")).await);
    }
    if zips.is_empty() {
        return Deployed { env, opt: None };
    }
    let opt = extract(function, &zips);
    for (_, value) in env.iter_mut() {
        if let Some(rest) = value.strip_prefix("/opt/") {
            *value = opt.join(rest).to_string_lossy().into_owned();
        }
    }
    Deployed {
        env,
        opt: Some(opt),
    }
}

/// One layer version's zip, downloaded from the link GetLayerVersion answers.
async fn layer_zip(lambda: &aws_sdk_lambda::Client, arn: &str) -> Vec<u8> {
    let (layer, version) = arn
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{arn}: not a layer version ARN"));
    let out = lambda
        .get_layer_version()
        .layer_name(layer)
        .version_number(version.parse().expect("a layer version number"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetLayerVersion {arn}: {e:?}"));
    let content = out.content().expect("GetLayerVersion has Content");
    let location = content.location().expect("Content.Location");
    let uri: hyper::Uri = location.parse().expect("Content.Location is a URL");
    assert_eq!(
        uri.scheme_str(),
        Some("http"),
        "{arn}: testkit fetches layers from moto (http) only: {location}"
    );
    let authority = uri.authority().expect("a host").to_string();
    let request = crate::http::HttpRequest {
        method: "GET".into(),
        target: uri.path_and_query().expect("a path").to_string(),
        headers: [("host".to_string(), authority.clone())].into(),
        body: Vec::new(),
    };
    let response = crate::http::forward(&authority, &request)
        .unwrap_or_else(|e| panic!("GET {location}: {e}"));
    assert_eq!(response.status, 200, "GET {location}");
    let expected = content.code_sha256().expect("Content.CodeSha256");
    let digest = aws_smithy_types::base64::decode(expected).expect("CodeSha256 is base64");
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        jitr_bundle::sha256_hex(&response.body),
        hex,
        "{arn}: the download is not the layer"
    );
    response.body
}

/// Extracts `zips` in order into `<tmp>/jitr-opt/<function>-<digest>`, once (a temporary
/// directory renamed into place, so a reader never sees half of it).
fn extract(function: &str, zips: &[Vec<u8>]) -> PathBuf {
    let digests: String = zips.iter().map(|z| jitr_bundle::sha256_hex(z)).collect();
    let name = format!(
        "{function}-{}",
        &jitr_bundle::sha256_hex(digests.as_bytes())[..16]
    );
    let root = std::env::temp_dir().join("jitr-opt");
    let target = root.join(&name);
    if target.is_dir() {
        return target;
    }
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = root.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    for zip in zips {
        for f in jitr_bundle::unzip_all(zip).unwrap_or_else(|e| panic!("{e}")) {
            let path = staging.join(&f.path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &f.bytes).unwrap();
            if f.mode & 0o777 != 0 {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode & 0o777))
                    .unwrap();
            }
        }
    }
    if std::fs::rename(&staging, &target).is_err() {
        // Another test extracted the same layers meanwhile.
        let _ = std::fs::remove_dir_all(&staging);
    }
    target
}
