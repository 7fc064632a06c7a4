//! Removing the throwaway device: the certificate revoked (`ops::revoke`: REVOKED, the device
//! policy and its Things detached), any other policy detached, the certificate deleted, and
//! the Thing the activator made for it deleted.
//!
//! AWS IoT API Reference: DeleteCertificate refuses a certificate that is ACTIVE or still has a
//! policy or Thing attached (DeleteConflictException, CertificateStateException);
//! DetachThingPrincipal is asynchronous, so the Thing may list the certificate, and
//! DeleteCertificate or DeleteThing may refuse, for a few seconds after it. Both are retried
//! for a while here.

use crate::aws;
use crate::ops::revoke::{self, RevokeReport};
use serde::Serialize;
use std::time::{Duration, Instant};

/// How long DeleteCertificate and DeleteThing are retried while a detach settles.
const SETTLE: Duration = Duration::from_secs(20);
const SETTLE_PAUSE: Duration = Duration::from_millis(500);

/// What the cleanup did.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Cleanup {
    /// AWS IoT knew the certificate (it was registered by the first connection).
    pub registered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoke: Option<RevokeReport>,
    /// Policies other than the device policy, detached before the deletion.
    pub other_policies_detached: Vec<String>,
    pub certificate_deleted: bool,
    /// The Thing deleted (`None`: there was none to delete).
    pub thing_deleted: Option<String>,
}

/// Cleans up after the device `certificate_id`; `thing` is the Thing the activator was to
/// create for it (smoke checked that it did not exist before). Stops at the first failed step.
pub async fn clean_up(
    iot: &aws_sdk_iot::Client,
    certificate_id: &str,
    policy_name: &str,
    thing: &str,
) -> Result<Cleanup, (Cleanup, String)> {
    let mut done = Cleanup::default();
    let exists = match certificate_exists(iot, certificate_id).await {
        Ok(e) => e,
        Err(e) => return Err((done, e)),
    };
    if exists {
        done.registered = true;
        let r = revoke::revoke_certificate(iot, certificate_id, policy_name)
            .await
            .map_err(|e| (done.clone(), format!("revoking: {e}")))?;
        let arn = r.certificate.certificate_arn.clone();
        let others = r.other_policies.clone();
        done.revoke = Some(r);
        for p in others {
            iot.detach_policy()
                .policy_name(&p)
                .target(&arn)
                .send()
                .await
                .map_err(|e| (done.clone(), aws::explain("iot:DetachPolicy", &e)))?;
            done.other_policies_detached.push(p);
        }
        delete_certificate(iot, certificate_id)
            .await
            .map_err(|e| (done.clone(), e))?;
        done.certificate_deleted = true;
    }
    match delete_thing(iot, thing).await {
        Ok(deleted) => done.thing_deleted = deleted.then(|| thing.to_string()),
        Err(e) => return Err((done, e)),
    }
    Ok(done)
}

/// DescribeCertificate: does AWS IoT know it?
pub async fn certificate_exists(
    iot: &aws_sdk_iot::Client,
    certificate_id: &str,
) -> Result<bool, String> {
    match iot
        .describe_certificate()
        .certificate_id(certificate_id)
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if aws::code(&e).as_deref() == Some("ResourceNotFoundException") => Ok(false),
        Err(e) => Err(aws::explain("iot:DescribeCertificate", &e)),
    }
}

/// Does the Thing exist (DescribeThing)?
pub async fn thing_exists(iot: &aws_sdk_iot::Client, thing: &str) -> Result<bool, String> {
    match iot.describe_thing().thing_name(thing).send().await {
        Ok(_) => Ok(true),
        Err(e) if aws::code(&e).as_deref() == Some("ResourceNotFoundException") => Ok(false),
        Err(e) => Err(aws::explain("iot:DescribeThing", &e)),
    }
}

async fn delete_certificate(iot: &aws_sdk_iot::Client, certificate_id: &str) -> Result<(), String> {
    let until = Instant::now() + SETTLE;
    loop {
        let e = match iot
            .delete_certificate()
            .certificate_id(certificate_id)
            .send()
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let settling = matches!(
            aws::code(&e).as_deref(),
            Some("DeleteConflictException" | "CertificateStateException")
        );
        if !settling || Instant::now() >= until {
            return Err(aws::explain("iot:DeleteCertificate", &e));
        }
        tokio::time::sleep(SETTLE_PAUSE).await;
    }
}

/// Deletes the Thing if it exists: `Ok(true)` deleted, `Ok(false)` there was none.
async fn delete_thing(iot: &aws_sdk_iot::Client, thing: &str) -> Result<bool, String> {
    if !thing_exists(iot, thing).await? {
        return Ok(false);
    }
    let until = Instant::now() + SETTLE;
    loop {
        let e = match iot.delete_thing().thing_name(thing).send().await {
            Ok(_) => return Ok(true),
            Err(e) => e,
        };
        // A Thing with principals still attached: InvalidRequestException until the detach
        // has settled.
        let settling = aws::code(&e).as_deref() == Some("InvalidRequestException");
        if !settling || Instant::now() >= until {
            return Err(aws::explain("iot:DeleteThing", &e));
        }
        tokio::time::sleep(SETTLE_PAUSE).await;
    }
}
