//! `synth`: stage file -> validated stage -> template (with the embedded Lambdas' digests) ->
//! output directory.
//!
//! Phases run in order and stop at the first failing phase; each phase reports every
//! problem it finds. Nothing is written until everything succeeded, and then the output
//! directory is replaced in one rename: a failed synth leaves the previous output (or
//! nothing) in place, never half of a new one.

use crate::assets::{self, Embedded};
use crate::cfn::{Template, MAX_INLINE_TEMPLATE_BYTES};
use crate::constructs::{
    self, AssetRef, Assets, ComposeError, ASSET_BUCKET, RESERVED_CONCURRENCY_PARAMETER,
};
use crate::error::{io, Error};
use crate::revocation_layer::{layer_zip, LayerZip};
use crate::stage::{self, Problem, Stage, StageError};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The default output directory, relative to the project root; each stage gets a
/// subdirectory.
pub const DEFAULT_OUT_DIR: &str = "jitr.out";

/// What a synth produced.
#[derive(Debug, Clone)]
pub struct Synthesized {
    pub stage: Stage,
    pub template: Template,
    /// The template as written (pretty JSON).
    pub template_json: String,
    pub template_sha256: String,
    pub manifest_json: String,
    /// The Lambda zips this binary carries, in the order of [`assets::EMBEDDED`].
    pub bundles: Vec<&'static Embedded>,
    /// The revocation list's layer, when the stage has `revocation:`.
    pub layer: Option<LayerZip>,
}

impl Synthesized {
    pub fn template_file(&self) -> String {
        format!("{}.template.json", self.stage.stack_name)
    }

    /// Every asset file (the Lambda zips, then the layer): its key in the output directory
    /// and the asset bucket, and its bytes.
    pub fn asset_files(&self) -> Vec<(String, &[u8])> {
        let bundles = self.bundles.iter().map(|b| (b.sha256, b.zip));
        let layer = self
            .layer
            .iter()
            .map(|l| (l.sha256.as_str(), l.zip.as_slice()));
        bundles
            .chain(layer)
            .map(|(sha256, bytes)| {
                let key = AssetRef {
                    sha256: sha256.to_string(),
                }
                .key();
                (key, bytes)
            })
            .collect()
    }

    /// Over CloudFormation's inline limit: deploy uploads it to S3.
    pub fn needs_template_upload(&self) -> bool {
        self.template_json.len() > MAX_INLINE_TEMPLATE_BYTES
    }
}

/// Loads stage `name` and composes the template with the embedded Lambdas. Writes nothing.
pub fn synthesize(root: &Path, name: &str) -> Result<Synthesized, Error> {
    let stage = stage::load(root, name)?;
    finish(stage, &embedded_assets(), assets::EMBEDDED.iter().collect())
}

/// Everything `synth` checks, for `validate`: the stage checks and the composed template's
/// checks. Writes nothing.
pub fn validate(root: &Path, name: &str) -> Result<(Template, Vec<String>), Error> {
    let stage = stage::load(root, name)?;
    let warnings = warning_lines(&stage);
    Ok((compose(&stage, &embedded_assets())?, warnings))
}

/// The stage's warnings as `warning: FILE:LINE: FIELD: MESSAGE` lines.
pub fn warning_lines(stage: &Stage) -> Vec<String> {
    stage
        .warnings
        .iter()
        .map(|w| {
            let file = stage.file.display();
            match w.line {
                Some(l) => format!("warning: {file}:{l}: {}: {}", w.field, w.message),
                None => format!("warning: {file}: {}: {}", w.field, w.message),
            }
        })
        .collect()
}

/// The embedded Lambdas, named by their digests.
fn embedded_assets() -> Assets {
    Assets {
        activator: AssetRef {
            sha256: assets::activator().sha256.to_string(),
        },
        ca_provider: AssetRef {
            sha256: assets::ca_provider().sha256.to_string(),
        },
    }
}

fn compose(stage: &Stage, assets: &Assets) -> Result<Template, Error> {
    constructs::jitr_stack(stage, assets).map_err(|e| match e {
        // The user's template: report it against the stage field that names it.
        ComposeError::DevicePolicy(problems) => Error::Stage(StageError {
            file: stage.file.clone(),
            problems: problems
                .into_iter()
                .map(|message| Problem {
                    field: "device_policy.template".into(),
                    line: stage.device_policy.line,
                    message,
                })
                .collect(),
        }),
        ComposeError::Template(problems) => Error::Template {
            stage_file: stage.file.clone(),
            problems,
        },
    })
}

/// Composes with real assets and renders the template and manifest (pure: no I/O).
pub fn finish(
    stage: Stage,
    assets: &Assets,
    bundles: Vec<&'static Embedded>,
) -> Result<Synthesized, Error> {
    let template = compose(&stage, assets)?;
    let template_json = template.render();
    let template_sha256 = assets::sha256_hex(template_json.as_bytes());
    let layer = stage.revocation.as_ref().map(|r| layer_zip(&r.list));
    let mut s = Synthesized {
        stage,
        template,
        template_json,
        template_sha256,
        manifest_json: String::new(),
        bundles,
        layer,
    };
    s.manifest_json = manifest(&s);
    Ok(s)
}

fn manifest(s: &Synthesized) -> String {
    let stage = &s.stage;
    let reservation = match stage.activator.reserved_concurrency {
        Some(n) => format!(
            "activator.reserved_concurrency ({n}); deploy refuses an account whose Lambda \
             concurrency cannot give it"
        ),
        None => format!(
            "set at deploy: {} (what the stage's API rates need) where the account's Lambda \
             concurrency can spare them, else 0 (no reservation)",
            stage.default_reservation()
        ),
    };
    let names = crate::constructs::Names::new(&stage.stack_name);
    let ca_ids: Vec<_> = crate::constructs::sorted_cas(stage)
        .into_iter()
        .map(|ca| (ca, crate::constructs::CaIds::new(&ca.name, &names)))
        .collect();
    let parameters: Vec<_> =
        std::iter::once(json!({ "name": RESERVED_CONCURRENCY_PARAMETER, "source": reservation }))
            .chain(ca_ids.iter().filter_map(|(ca, ids)| {
                ca.verification
                    .as_ref()
                    .map(|v| json!({ "name": ids.verification_parameter, "source": v.describe() }))
            }))
            .collect();
    // A Lambda zip says its package, the layer its logical id.
    let entry = |(what, name): (&str, &str), sha256: &str, bytes: usize| {
        let key = AssetRef {
            sha256: sha256.to_string(),
        }
        .key();
        json!({ (what): name, "file": key, "sha256": sha256, "bytes": bytes, "s3Key": key })
    };
    let cas: Vec<_> = ca_ids
        .iter()
        .map(|(ca, ids)| {
            json!({
                "name": ca.name,
                "certificateFile": ca.certificate_file,
                "awsIotId": ca.certificate.aws_iot_id(),
                "mode": ca.mode.as_str(),
                "registration": ids.registration.as_str(),
                "topicRule": ids.rule_name,
            })
        })
        .collect();
    let assets: Vec<_> = s
        .bundles
        .iter()
        .map(|b| entry(("package", b.package), b.sha256, b.zip.len()))
        .chain(s.layer.iter().map(|l| {
            let id = constructs::REVOCATION_LIST_LAYER.as_str();
            entry(("layer", id), &l.sha256, l.zip.len())
        }))
        .collect();
    let stacks = manifest_stacks(s, &json!(parameters), &json!(cas));
    let manifest = json!({
        "version": 1,
        "tool": format!("jitr-infra {}", env!("CARGO_PKG_VERSION")),
        "stage": stage.name,
        "stageFile": stage.file.to_string_lossy().replace('\\', "/"),
        "assetBucket": ASSET_BUCKET,
        "stacks": stacks,
        "assets": assets,
    });
    let mut text = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
    text.push('\n');
    text
}

/// The manifest's `stacks`: one per target, all from the one template (it names no region
/// or account).
fn manifest_stacks(s: &Synthesized, parameters: &Value, cas: &Value) -> Vec<Value> {
    let stage = &s.stage;
    stage
        .targets()
        .iter()
        .map(|t| {
            json!({
                "stackName": stage.stack_name,
                "region": t.region,
                "account": t.account,
                "roleArn": t.role_arn,
                "templateFile": s.template_file(),
                "templateSha256": s.template_sha256,
                "templateBytes": s.template_json.len(),
                "templateNeedsUpload": s.needs_template_upload(),
                "tags": stage.tags,
                "parameters": parameters,
                "cas": cas,
            })
        })
        .collect()
}

/// Writes the output directory `out` atomically: the files go to a sibling temporary
/// directory, which then replaces `out` by rename.
pub fn write(s: &Synthesized, out: &Path) -> Result<(), Error> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let name = out
        .file_name()
        .ok_or_else(|| Error::Project(format!("{}: not a directory name", out.display())))?
        .to_string_lossy()
        .into_owned();
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| {
        std::fs::create_dir(&tmp).map_err(io(&tmp))?;
        let put = |file: &str, bytes: &[u8]| {
            let p = tmp.join(file);
            std::fs::write(&p, bytes).map_err(io(p))
        };
        put(&s.template_file(), s.template_json.as_bytes())?;
        put("manifest.json", s.manifest_json.as_bytes())?;
        for (key, bytes) in s.asset_files() {
            put(&key, bytes)?;
        }
        let had_old = out.exists();
        if had_old {
            std::fs::rename(out, &old).map_err(io(out))?;
        }
        if let Err(e) = std::fs::rename(&tmp, out) {
            if had_old {
                let _ = std::fs::rename(&old, out);
            }
            return Err(io(out)(e));
        }
        if had_old {
            let _ = std::fs::remove_dir_all(&old);
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// The output directory for `stage` when `--out` is not given.
pub fn default_out(root: &Path, stage: &str) -> PathBuf {
    root.join(DEFAULT_OUT_DIR).join(stage)
}
