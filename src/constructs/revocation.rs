//! The revocation list layer: only for a stage with `revocation:`. The list ([`layer_zip`])
//! ships as an `AWS::Lambda::LayerVersion` whose content is the zip in the asset bucket; the
//! activator carries it in `Layers` and reads it at `JITR_REVOCATION_FILE`
//! (`/opt/jitr/revocation.json`: Lambda extracts layers into `/opt`).
//!
//! Every property of a LayerVersion requires replacement (CloudFormation template reference,
//! AWS::Lambda::LayerVersion and its Content): a changed list is a new layer version, and
//! the activator's `Layers` (a `Ref`, the version's ARN) changes with it; CloudFormation then
//! deletes the old version. Nothing is lost by that deletion: a function keeps using a layer
//! version it already has even after the version is deleted (AWS Lambda Developer Guide,
//! "Adding layers to functions"), and no other function uses ours. Lambda needs no permission
//! on the function's role to extract a layer; the deploying principal needs
//! lambda:PublishLayerVersion, lambda:GetLayerVersion and lambda:DeleteLayerVersion.

use super::{AssetRef, Names, ASSET_BUCKET, REVOCATION_LIST_LAYER};
use crate::cfn::{Resource, Template, Value};
use crate::revocation_layer::{layer_zip, FUNCTION_PATH};
use crate::stage::Stage;
use jitr_contract::revocation::ENV_REVOCATION_FILE;

/// Adds the layer when the stage has a revocation list; the activator then takes
/// [`function_layers`] and [`function_env`].
pub(super) fn revocation_layer(t: &mut Template, stage: &Stage, names: &Names) {
    let Some(revocation) = &stage.revocation else {
        return;
    };
    let asset = AssetRef {
        sha256: layer_zip(&revocation.list).sha256,
    };
    t.add(
        Resource::new(REVOCATION_LIST_LAYER, "AWS::Lambda::LayerVersion")
            .prop("LayerName", names.revocation_layer.as_str())
            .prop(
                "Description",
                format!(
                    "Revoked device certificate serials of stage {} ({}), read by the activator \
                     (jitr-infra)",
                    stage.name,
                    match revocation.list.len() {
                        1 => "1 serial".to_string(),
                        n => format!("{n} serials"),
                    }
                ),
            )
            .prop(
                "CompatibleRuntimes",
                Value::list([Value::str("provided.al2023")]),
            )
            .prop(
                "CompatibleArchitectures",
                Value::list([Value::str(crate::assets::ARCHITECTURE.lambda_name())]),
            )
            .prop(
                "Content",
                Value::map([
                    ("S3Bucket", Value::sub(ASSET_BUCKET)),
                    ("S3Key", Value::str(asset.key())),
                ]),
            ),
    );
}

/// The activator's `Layers`: the list's layer version, when the stage has one.
pub(super) fn function_layers(stage: &Stage) -> Option<Value> {
    stage
        .revocation
        .as_ref()
        .map(|_| Value::list([REVOCATION_LIST_LAYER.r#ref()]))
}

/// The activator's environment entry naming the list's path, when the stage has one.
pub(super) fn function_env(stage: &Stage) -> Option<(&'static str, Value)> {
    stage
        .revocation
        .as_ref()
        .map(|_| (ENV_REVOCATION_FILE, Value::str(FUNCTION_PATH)))
}
