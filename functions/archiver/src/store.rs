//! The object store capability the archiver needs, for S3 and in memory (unit tests).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
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

/// What the archiver asks of S3.
pub trait ObjectStore: Send + Sync {
    /// Writes the object only if no object exists under `key` (`If-None-Match: *`).
    fn put_if_absent(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        metadata: &Metadata,
    ) -> impl Future<Output = Result<PutOutcome, StoreError>> + Send;

    /// The user metadata of the object, `None` when there is no object under `key`.
    fn head_metadata(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Metadata>, StoreError>> + Send;

    /// The object's bytes, `None` when there is no object under `key`.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Bytes>, StoreError>> + Send;

    /// Writes (or overwrites) the object.
    fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
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

fn status_of<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

impl ObjectStore for S3Store {
    async fn put_if_absent(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        metadata: &Metadata,
    ) -> Result<PutOutcome, StoreError> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_none_match("*")
            .content_type(content_type)
            .body(ByteStream::from(body));
        for (k, v) in metadata {
            req = req.metadata(k, v);
        }
        match req.send().await {
            Ok(_) => Ok(PutOutcome::Created),
            Err(e) => {
                let precondition =
                    e.code() == Some("PreconditionFailed") || status_of(&e) == Some(412);
                if precondition {
                    Ok(PutOutcome::AlreadyExists)
                } else {
                    Err(self.error("PutObject", key, &e))
                }
            }
        }
    }

    async fn head_metadata(&self, key: &str) -> Result<Option<Metadata>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(
                out.metadata()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default(),
            )),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.error("HeadObject", key, &e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => match out.body.collect().await {
                Ok(data) => Ok(Some(data.into_bytes())),
                Err(e) => Err(StoreError {
                    operation: "GetObject",
                    bucket: self.bucket.clone(),
                    key: key.to_string(),
                    message: authtrail_core::error_chain(&e),
                }),
            },
            Err(e) if e.code() == Some("NoSuchKey") || status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.error("GetObject", key, &e)),
        }
    }

    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("PutObject", key, &e))
    }
}

/// A stored object of [`MemoryStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryObject {
    pub body: Bytes,
    pub content_type: String,
    pub metadata: Metadata,
}

/// In-memory [`ObjectStore`] for unit tests, with injectable failures.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    objects: HashMap<String, MemoryObject>,
    /// Number of upcoming write calls that succeed before writes start failing.
    writes_before_failure: Option<usize>,
    /// When set, a failing write still stores the object (the response is lost).
    failed_writes_land: bool,
    /// Writes to keys under this prefix fail.
    failing_prefix: Option<String>,
    calls: Vec<String>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// After `n` more successful writes, every write fails until [`MemoryStore::heal`].
    /// With `land`, a failing write still stores its object (a lost response).
    pub fn fail_writes_after(&self, n: usize, land: bool) {
        let mut g = self.lock();
        g.writes_before_failure = Some(n);
        g.failed_writes_land = land;
    }

    /// Every write to a key under `prefix` fails (without storing) until [`MemoryStore::heal`].
    pub fn fail_writes_under(&self, prefix: &str) {
        self.lock().failing_prefix = Some(prefix.to_string());
    }

    /// Writes succeed again.
    pub fn heal(&self) {
        let mut g = self.lock();
        g.writes_before_failure = None;
        g.failing_prefix = None;
    }

    /// A copy of all objects.
    pub fn objects(&self) -> HashMap<String, MemoryObject> {
        self.lock().objects.clone()
    }

    /// The calls made, as `OPERATION key` strings.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Whether this write fails (and counts it).
    fn write_fails(inner: &mut MemoryInner) -> bool {
        match inner.writes_before_failure.as_mut() {
            None => false,
            Some(0) => true,
            Some(n) => {
                *n -= 1;
                false
            }
        }
    }

    fn injected(operation: &'static str, key: &str) -> StoreError {
        StoreError {
            operation,
            bucket: "memory".into(),
            key: key.to_string(),
            message: "injected failure".into(),
        }
    }
}

impl ObjectStore for MemoryStore {
    async fn put_if_absent(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        metadata: &Metadata,
    ) -> Result<PutOutcome, StoreError> {
        let mut g = self.lock();
        g.calls.push(format!("PUT-IF-ABSENT {key}"));
        if g.failing_prefix
            .as_deref()
            .is_some_and(|p| key.starts_with(p))
        {
            return Err(Self::injected("PutObject", key));
        }
        let exists = g.objects.contains_key(key);
        let fails = Self::write_fails(&mut g);
        if fails && !g.failed_writes_land {
            return Err(Self::injected("PutObject", key));
        }
        if exists {
            return if fails {
                Err(Self::injected("PutObject", key))
            } else {
                Ok(PutOutcome::AlreadyExists)
            };
        }
        g.objects.insert(
            key.to_string(),
            MemoryObject {
                body,
                content_type: content_type.to_string(),
                metadata: metadata.clone(),
            },
        );
        if fails {
            Err(Self::injected("PutObject", key))
        } else {
            Ok(PutOutcome::Created)
        }
    }

    async fn head_metadata(&self, key: &str) -> Result<Option<Metadata>, StoreError> {
        let mut g = self.lock();
        g.calls.push(format!("HEAD {key}"));
        Ok(g.objects.get(key).map(|o| o.metadata.clone()))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let mut g = self.lock();
        g.calls.push(format!("GET {key}"));
        Ok(g.objects.get(key).map(|o| o.body.clone()))
    }

    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError> {
        let mut g = self.lock();
        g.calls.push(format!("PUT {key}"));
        if g.failing_prefix
            .as_deref()
            .is_some_and(|p| key.starts_with(p))
        {
            return Err(Self::injected("PutObject", key));
        }
        let fails = Self::write_fails(&mut g);
        if fails && !g.failed_writes_land {
            return Err(Self::injected("PutObject", key));
        }
        g.objects.insert(
            key.to_string(),
            MemoryObject {
                body,
                content_type: content_type.to_string(),
                metadata: Metadata::new(),
            },
        );
        if fails {
            Err(Self::injected("PutObject", key))
        } else {
            Ok(())
        }
    }
}
