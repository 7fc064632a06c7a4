//! The asset bucket and what deploy puts in it: the Lambda zips and, when it is too big to be
//! passed inline, the template.
//!
//! S3 bucket names are global and ours (`jitr-assets-<account>-<region>`) is predictable, so
//! another account can hold it first. Every call on it therefore carries `ExpectedBucketOwner`
//! (the caller's account), and S3 answers 403 instead of serving anyone else's bucket: such a
//! bucket is refused, never read from or written to. Objects are content-addressed (the key
//! holds the SHA-256 of the bytes) and uploaded with a SHA-256 checksum that S3 verifies on
//! receipt; an object already there is trusted only when the checksum S3 stored with it is
//! ours. Otherwise (other bytes under our key, or an object without a checksum) ours replaces
//! it: the bucket is verified to be ours, and the key promises exactly these bytes.

use super::Reporter;
use crate::aws::{self, Clients};
use crate::constructs;
use crate::error::{BucketError, Error};
use crate::synth::Synthesized;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode};
use sha2::{Digest, Sha256};

/// The caller's asset bucket, checked to belong to the caller's account.
pub struct AssetBucket<'a> {
    clients: &'a Clients,
    name: String,
    owner: String,
}

/// Makes sure the asset bucket exists and is `account`'s, uploads every asset (the Lambda zips
/// and the revocation list's layer; the template too when it must go by URL), and returns the
/// template's URL in that case.
pub async fn publish(
    clients: &Clients,
    account: &str,
    s: &Synthesized,
    reporter: &dyn Reporter,
) -> Result<Option<String>, Error> {
    let bucket = AssetBucket::ensure(clients, account).await?;
    for (key, bytes) in s.asset_files() {
        bucket.upload(&key, bytes.to_vec(), reporter).await?;
    }
    if !s.needs_template_upload() {
        return Ok(None);
    }
    let key = format!("templates/{}.json", s.template_sha256);
    bucket
        .upload(&key, s.template_json.as_bytes().to_vec(), reporter)
        .await?;
    Ok(Some(bucket.object_url(&key)?))
}

/// `jitr-assets-<account>-<region>`: the template's `Code.S3Bucket`, resolved.
pub fn asset_bucket(account: &str, region: &str) -> String {
    constructs::ASSET_BUCKET
        .replace("${AWS::AccountId}", account)
        .replace("${AWS::Region}", region)
}

impl<'a> AssetBucket<'a> {
    /// The asset bucket of `account` in the clients' region: created (private, encrypted)
    /// when missing; refused when it belongs to another account.
    pub async fn ensure(clients: &'a Clients, account: &str) -> Result<AssetBucket<'a>, Error> {
        let bucket = AssetBucket {
            clients,
            name: asset_bucket(account, &clients.region),
            owner: account.to_string(),
        };
        let head = clients
            .s3
            .head_bucket()
            .bucket(&bucket.name)
            .expected_bucket_owner(&bucket.owner)
            .send()
            .await;
        match head {
            Ok(_) => Ok(bucket),
            Err(e) if status(&e) == Some(404) => {
                bucket.create().await?;
                Ok(bucket)
            }
            Err(e) if status(&e) == Some(403) => Err(bucket.refusal().await),
            Err(e) => Err(Error::Aws(aws::error(
                &format!("s3:HeadBucket {}", bucket.name),
                &e,
            ))),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    async fn create(&self) -> Result<(), Error> {
        let (s3, name) = (&self.clients.s3, self.name.as_str());
        let mut create = s3.create_bucket().bucket(name);
        if self.clients.region != "us-east-1" {
            use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(
                        self.clients.region.as_str(),
                    ))
                    .build(),
            );
        }
        // CreateBucket is the one call that cannot carry ExpectedBucketOwner; S3 answers
        // BucketAlreadyExists when another account has the name.
        match create.send().await {
            Ok(_) => {}
            Err(e) if aws::code(&e).as_deref() == Some("BucketAlreadyOwnedByYou") => {}
            Err(e) if aws::code(&e).as_deref() == Some("BucketAlreadyExists") => {
                return Err(self.foreign());
            }
            Err(e) => return Err(self.error("s3:CreateBucket", &e)),
        }
        self.configure().await
    }

    /// Blocks public access and turns on default encryption, on a bucket we just created.
    async fn configure(&self) -> Result<(), Error> {
        use aws_sdk_s3::types::{
            PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
            ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
        };
        let s3 = &self.clients.s3;
        s3.put_public_access_block()
            .bucket(&self.name)
            .expected_bucket_owner(&self.owner)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.error("s3:PutPublicAccessBlock", &e))?;
        let sse = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::Aes256)
            .build()
            .expect("algorithm set");
        let rule = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(sse)
            .build();
        s3.put_bucket_encryption()
            .bucket(&self.name)
            .expected_bucket_owner(&self.owner)
            .server_side_encryption_configuration(
                ServerSideEncryptionConfiguration::builder()
                    .rules(rule)
                    .build()
                    .expect("rules set"),
            )
            .send()
            .await
            .map_err(|e| self.error("s3:PutBucketEncryption", &e))?;
        Ok(())
    }

    /// Why S3 refused HeadBucket with our account as the expected owner. A 403 has no body,
    /// so it cannot tell "not yours" from "not allowed"; ListBuckets (which lists only the
    /// caller's own buckets, and touches no other) can.
    async fn refusal(&self) -> Error {
        let listed = self
            .clients
            .s3
            .list_buckets()
            .prefix(&self.name)
            .send()
            .await
            .ok()
            .map(|out| out.buckets().iter().any(|b| b.name() == Some(&self.name)));
        match listed {
            Some(false) => self.foreign(),
            Some(true) => BucketError::DeniedOwn {
                bucket: self.name.clone(),
            }
            .into(),
            None => BucketError::Denied {
                bucket: self.name.clone(),
                owner: self.owner.clone(),
            }
            .into(),
        }
    }

    fn foreign(&self) -> Error {
        BucketError::Foreign {
            bucket: self.name.clone(),
            owner: self.owner.clone(),
        }
        .into()
    }

    fn error<E>(&self, operation: &str, e: &SdkError<E, HttpResponse>) -> Error
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        if status(e) == Some(403) && aws::code(e).is_none() {
            // A HEAD request's 403 has no body to name the cause.
            return BucketError::DeniedCall {
                operation: operation.to_string(),
                bucket: self.name.clone(),
                owner: self.owner.clone(),
            }
            .into();
        }
        Error::Aws(aws::error(&format!("{operation} s3://{}", self.name), e))
    }

    /// Puts `bytes` under `key` unless S3 already holds exactly these bytes there (by the
    /// SHA-256 checksum it stored), with a SHA-256 checksum S3 checks on receipt.
    pub async fn upload(
        &self,
        key: &str,
        bytes: Vec<u8>,
        reporter: &dyn Reporter,
    ) -> Result<(), Error> {
        let ours = aws_smithy_types::base64::encode(Sha256::digest(&bytes));
        match self.stored_checksum(key).await? {
            Stored::Missing => {}
            Stored::Checksum(theirs) if theirs == ours => return Ok(()),
            Stored::Checksum(theirs) => reporter.progress(&format!(
                "s3://{}/{key} holds other bytes (SHA-256 {theirs}, ours {ours}): replacing them",
                self.name
            )),
            Stored::NoChecksum => reporter.progress(&format!(
                "s3://{}/{key} has no SHA-256 checksum to verify: uploading ours over it",
                self.name
            )),
        }
        reporter.progress(&format!("uploading {key}"));
        self.clients
            .s3
            .put_object()
            .bucket(&self.name)
            .expected_bucket_owner(&self.owner)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(&ours)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| self.error(&format!("s3:PutObject {key} in"), &e))?;
        Ok(())
    }

    async fn stored_checksum(&self, key: &str) -> Result<Stored, Error> {
        let head = self
            .clients
            .s3
            .head_object()
            .bucket(&self.name)
            .expected_bucket_owner(&self.owner)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        match head {
            Ok(h) => Ok(match h.checksum_sha256() {
                Some(c) => Stored::Checksum(c.to_string()),
                None => Stored::NoChecksum,
            }),
            Err(e) if status(&e) == Some(404) => Ok(Stored::Missing),
            Err(e) => Err(self.error(&format!("s3:HeadObject {key} in"), &e)),
        }
    }

    /// The object's URL for CloudFormation's `TemplateURL`: path-style, as the S3 SDK's
    /// endpoint resolver builds it for the region's partition, or on the configured endpoint
    /// when there is one (moto, VPC endpoints).
    pub fn object_url(&self, key: &str) -> Result<String, BucketError> {
        let endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
            .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            .ok()
            .filter(|e| !e.is_empty());
        let region = &self.clients.region;
        crate::partition::s3_object_url(region, endpoint.as_deref(), &self.name, key).map_err(
            |detail| BucketError::NoEndpoint {
                bucket: self.name.clone(),
                region: region.clone(),
                detail,
            },
        )
    }
}

/// What S3 holds under a key.
enum Stored {
    Missing,
    /// The full-object SHA-256 S3 stored (base64).
    Checksum(String),
    /// An object uploaded without a SHA-256 checksum: nothing to verify it by.
    NoChecksum,
}

fn status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    aws::http_status(e)
}
