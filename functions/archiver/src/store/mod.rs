//! The object store capability the archiver needs, for S3 and in memory (unit tests,
//! [`memory`]).

mod memory;

pub use memory::{MemoryObject, MemoryStore};

use std::collections::BTreeMap;
use std::future::Future;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode};
use bytes::Bytes;

/// User metadata of an object (`x-amz-meta-*`, names lower-case).
pub type Metadata = BTreeMap<String, String>;

/// Result of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    AlreadyExists,
}

/// A failed store operation. The message never holds object data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("S3 {operation} s3://{bucket}/{key} failed: {message}")]
pub struct StoreError {
    pub operation: &'static str,
    pub bucket: String,
    pub key: String,
    pub message: String,
}

/// What a HEAD says about an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectHead {
    /// User metadata.
    pub metadata: Metadata,
    /// The SHA-256 checksum S3 keeps for the object (base64, as in `x-amz-checksum-sha256`),
    /// when it was written with one.
    pub sha256: Option<String>,
    /// Size in bytes.
    pub size: u64,
}

/// What the archiver asks of S3.
pub trait ObjectStore: Send + Sync {
    /// Writes the object only if no object exists under `key` (`If-None-Match: *`), with its
    /// SHA-256 (base64) as the S3 checksum, which S3 checks and keeps.
    fn put_if_absent(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        metadata: &Metadata,
        sha256: &str,
    ) -> impl Future<Output = Result<PutOutcome, StoreError>> + Send;

    /// Metadata, SHA-256 checksum and size of the object, `None` when there is no object
    /// under `key`.
    fn head(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<ObjectHead>, StoreError>> + Send;

    /// The object's bytes, `None` when there is no object under `key`.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Bytes>, StoreError>> + Send;

    /// Writes (or overwrites) the object.
    fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The object's bytes and user metadata, `None` when there is no object under `key`.
    fn get_with_metadata(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<(Bytes, Metadata)>, StoreError>> + Send;

    /// The object's bytes and ETag, `None` when there is no object under `key`.
    fn get_versioned(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<(Bytes, String)>, StoreError>> + Send;

    /// Writes the object if it is still the version read: `If-Match: etag`, or
    /// `If-None-Match: *` when `etag` is `None` (there was none). Returns the new ETag, or
    /// `None` when the condition failed (someone else wrote in between).
    fn put_versioned(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        etag: Option<&str>,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Up to one page (S3 gives at most 1,000) of the keys under `prefix` that sort after
    /// `start_after`, in key order; an empty page means there are no more.
    fn list_after(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
}

/// A shared store is a store (the archiver and a verifier on the same bucket in tests).
impl<T: ObjectStore> ObjectStore for std::sync::Arc<T> {
    async fn put_if_absent(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        metadata: &Metadata,
        sha256: &str,
    ) -> Result<PutOutcome, StoreError> {
        (**self)
            .put_if_absent(key, body, content_type, metadata, sha256)
            .await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectHead>, StoreError> {
        (**self).head(key).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        (**self).get(key).await
    }

    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError> {
        (**self).put(key, body, content_type).await
    }

    async fn get_with_metadata(&self, key: &str) -> Result<Option<(Bytes, Metadata)>, StoreError> {
        (**self).get_with_metadata(key).await
    }

    async fn get_versioned(&self, key: &str) -> Result<Option<(Bytes, String)>, StoreError> {
        (**self).get_versioned(key).await
    }

    async fn put_versioned(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        etag: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        (**self).put_versioned(key, body, content_type, etag).await
    }

    async fn list_after(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        (**self).list_after(prefix, start_after).await
    }
}

/// [`ObjectStore`] on an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    fn error<E, R>(&self, operation: &'static str, key: &str, e: &SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let message = match e {
            SdkError::ServiceError(s) => {
                let err = s.err();
                format!(
                    "{}: {}",
                    err.code().unwrap_or("unknown error"),
                    err.message().unwrap_or("no message")
                )
            }
            other => authtrail_core::error_chain(other),
        };
        StoreError {
            operation,
            bucket: self.bucket.clone(),
            key: key.to_string(),
            message,
        }
    }
}

impl S3Store {
    /// GET: body, ETag and user metadata (names lower-case), `None` on 404.
    async fn fetch(&self, key: &str) -> Result<Option<(Bytes, String, Metadata)>, StoreError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let etag = out.e_tag().unwrap_or_default().to_string();
                let metadata = lower_case(out.metadata());
                match out.body.collect().await {
                    Ok(data) => Ok(Some((data.into_bytes(), etag, metadata))),
                    Err(e) => Err(StoreError {
                        operation: "GetObject",
                        bucket: self.bucket.clone(),
                        key: key.to_string(),
                        message: authtrail_core::error_chain(&e),
                    }),
                }
            }
            Err(e) if e.code() == Some("NoSuchKey") || status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.error("GetObject", key, &e)),
        }
    }
}

fn lower_case(m: Option<&std::collections::HashMap<String, String>>) -> Metadata {
    m.map(|m| {
        m.iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect()
    })
    .unwrap_or_default()
}

fn status_of<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

fn is_precondition_failure<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    // 409 ConditionalRequestConflict: another conditional write to the key was in progress.
    matches!(
        e.code(),
        Some("PreconditionFailed" | "ConditionalRequestConflict")
    ) || matches!(status_of(e), Some(412 | 409))
}

impl ObjectStore for S3Store {
    async fn put_if_absent(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        metadata: &Metadata,
        sha256: &str,
    ) -> Result<PutOutcome, StoreError> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_none_match("*")
            .content_type(content_type)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(sha256)
            .body(ByteStream::from(body));
        for (k, v) in metadata {
            req = req.metadata(k, v);
        }
        match req.send().await {
            Ok(_) => Ok(PutOutcome::Created),
            Err(e) if is_precondition_failure(&e) => Ok(PutOutcome::AlreadyExists),
            Err(e) => Err(self.error("PutObject", key, &e)),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectHead>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectHead {
                metadata: lower_case(out.metadata()),
                sha256: out.checksum_sha256().map(str::to_string),
                size: out
                    .content_length()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
            })),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.error("HeadObject", key, &e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        Ok(self.get_versioned(key).await?.map(|(body, _)| body))
    }

    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(crate::digest::sha256_base64(&body))
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("PutObject", key, &e))
    }

    async fn get_with_metadata(&self, key: &str) -> Result<Option<(Bytes, Metadata)>, StoreError> {
        Ok(self.fetch(key).await?.map(|(body, _, meta)| (body, meta)))
    }

    async fn get_versioned(&self, key: &str) -> Result<Option<(Bytes, String)>, StoreError> {
        Ok(self.fetch(key).await?.map(|(body, etag, _)| (body, etag)))
    }

    async fn put_versioned(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        etag: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        // A checksum on every write: S3 requires one when the bucket has Object Lock.
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(crate::digest::sha256_base64(&body))
            .body(ByteStream::from(body));
        let req = match etag {
            Some(etag) => req.if_match(etag),
            None => req.if_none_match("*"),
        };
        match req.send().await {
            // Without an ETag in the answer, the next conditional write reads the state again.
            Ok(out) => Ok(Some(out.e_tag().unwrap_or_default().to_string())),
            Err(e) if is_precondition_failure(&e) => Ok(None),
            // If-Match on an object deleted since it was read: S3 answers 404.
            Err(e) if etag.is_some() && status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.error("PutObject", key, &e)),
        }
    }

    async fn list_after(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_start_after(start_after.map(str::to_string))
            .send()
            .await
            .map_err(|e| self.error("ListObjectsV2", prefix, &e))?;
        Ok(out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect())
    }
}
