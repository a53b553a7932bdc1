//! The object store capability the writer needs (conditional writes, metadata, plain reads and
//! writes), for S3 and in memory (unit tests). Every call names its bucket: data objects go to
//! the Security Lake bucket, state and error objects to the function's own bucket.

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
    /// The object was written.
    Created,
    /// An object already existed under the key; nothing was written.
    AlreadyExists,
}

/// A failed store operation. The message never holds object data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("S3 {operation} s3://{bucket}/{key} failed: {message}")]
pub struct StoreError {
    /// `PutObject`, `GetObject` or `HeadObject`.
    pub operation: &'static str,
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// What S3 (or the connection) said.
    pub message: String,
}

/// What the writer asks of S3.
pub trait ObjectStore: Send + Sync {
    /// Writes the object only if no object exists under `key` (`If-None-Match: *`).
    fn put_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
        metadata: &Metadata,
    ) -> impl Future<Output = Result<PutOutcome, StoreError>> + Send;

    /// The user metadata of the object, `None` when there is no object under `key`.
    fn head_metadata(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Metadata>, StoreError>> + Send;

    /// The object's bytes, `None` when there is no object under `key`.
    fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Bytes>, StoreError>> + Send;

    /// Writes (or overwrites) the object.
    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// [`ObjectStore`] on S3.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
}

impl S3Store {
    /// A store using `client` (build it once per cold start).
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self { client }
    }
}

fn store_error<E, R>(
    operation: &'static str,
    bucket: &str,
    key: &str,
    e: &SdkError<E, R>,
) -> StoreError
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
        bucket: bucket.to_string(),
        key: key.to_string(),
        message,
    }
}

fn status_of<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

impl ObjectStore for S3Store {
    async fn put_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
        metadata: &Metadata,
    ) -> Result<PutOutcome, StoreError> {
        let mut req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .if_none_match("*")
            .content_type(content_type)
            .body(ByteStream::from(body));
        for (k, v) in metadata {
            req = req.metadata(k, v);
        }
        match req.send().await {
            Ok(_) => Ok(PutOutcome::Created),
            Err(e) if e.code() == Some("PreconditionFailed") || status_of(&e) == Some(412) => {
                Ok(PutOutcome::AlreadyExists)
            }
            Err(e) => Err(store_error("PutObject", bucket, key, &e)),
        }
    }

    async fn head_metadata(&self, bucket: &str, key: &str) -> Result<Option<Metadata>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(bucket)
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
            Err(e) => Err(store_error("HeadObject", bucket, key, &e)),
        }
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Bytes>, StoreError> {
        match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => match out.body.collect().await {
                Ok(data) => Ok(Some(data.into_bytes())),
                Err(e) => Err(StoreError {
                    operation: "GetObject",
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                    message: authtrail_core::error_chain(&e),
                }),
            },
            Err(e) if e.code() == Some("NoSuchKey") || status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(store_error("GetObject", bucket, key, &e)),
        }
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| store_error("PutObject", bucket, key, &e))
    }
}

/// A stored object of [`MemoryStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryObject {
    /// The body.
    pub body: Bytes,
    /// `Content-Type`.
    pub content_type: String,
    /// User metadata.
    pub metadata: Metadata,
}

/// In-memory [`ObjectStore`] for unit tests, with injectable write failures. Objects are keyed
/// by `bucket/key`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    objects: HashMap<String, MemoryObject>,
    /// Number of upcoming writes that succeed before writes start failing.
    writes_before_failure: Option<usize>,
    /// When set, a failing write still stores its object (the response is lost).
    failed_writes_land: bool,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// After `n` more successful writes, every write fails until [`MemoryStore::heal`]. With
    /// `land`, a failing write still stores its object (a lost response).
    pub fn fail_writes_after(&self, n: usize, land: bool) {
        let mut g = self.lock();
        g.writes_before_failure = Some(n);
        g.failed_writes_land = land;
    }

    /// Writes succeed again.
    pub fn heal(&self) {
        self.lock().writes_before_failure = None;
    }

    /// A copy of all objects, keyed by `bucket/key`.
    pub fn objects(&self) -> HashMap<String, MemoryObject> {
        self.lock().objects.clone()
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

    fn injected(bucket: &str, key: &str) -> StoreError {
        StoreError {
            operation: "PutObject",
            bucket: bucket.to_string(),
            key: key.to_string(),
            message: "injected failure".into(),
        }
    }

    fn write(
        &self,
        bucket: &str,
        key: &str,
        object: MemoryObject,
        only_if_absent: bool,
    ) -> Result<PutOutcome, StoreError> {
        let mut g = self.lock();
        let path = format!("{bucket}/{key}");
        let exists = g.objects.contains_key(&path);
        let fails = Self::write_fails(&mut g);
        if fails && !g.failed_writes_land {
            return Err(Self::injected(bucket, key));
        }
        let outcome = if exists && only_if_absent {
            PutOutcome::AlreadyExists
        } else {
            g.objects.insert(path, object);
            PutOutcome::Created
        };
        if fails {
            Err(Self::injected(bucket, key))
        } else {
            Ok(outcome)
        }
    }
}

impl ObjectStore for MemoryStore {
    async fn put_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
        metadata: &Metadata,
    ) -> Result<PutOutcome, StoreError> {
        let object = MemoryObject {
            body,
            content_type: content_type.to_string(),
            metadata: metadata.clone(),
        };
        self.write(bucket, key, object, true)
    }

    async fn head_metadata(&self, bucket: &str, key: &str) -> Result<Option<Metadata>, StoreError> {
        let g = self.lock();
        Ok(g.objects
            .get(&format!("{bucket}/{key}"))
            .map(|o| o.metadata.clone()))
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Bytes>, StoreError> {
        let g = self.lock();
        Ok(g.objects
            .get(&format!("{bucket}/{key}"))
            .map(|o| o.body.clone()))
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), StoreError> {
        let object = MemoryObject {
            body,
            content_type: content_type.to_string(),
            metadata: Metadata::new(),
        };
        self.write(bucket, key, object, false).map(|_| ())
    }
}
