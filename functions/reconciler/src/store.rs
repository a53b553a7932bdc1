//! The S3 side: listing, reading and writing objects ([`ObjectStore`]), as deployed
//! ([`S3Store`]) and in memory for tests ([`MemoryStore`]). Every call is counted
//! ([`Requests`]) so that a run can report what it cost.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::ReconcileError;

/// An object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its key.
    pub key: String,
    /// When it was written, epoch milliseconds.
    pub last_modified_ms: i64,
    /// Its ETag (tells a rewritten object from the one read before).
    pub etag: String,
}

/// Where objects are read and written.
pub trait ObjectStore: Send + Sync {
    /// Every object under `prefix` whose key sorts after `start_after` (when given).
    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
    ) -> impl Future<Output = Result<Vec<ObjectInfo>, ReconcileError>> + Send;
    /// The object's bytes, `None` when there is no such object.
    fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, ReconcileError>> + Send;
    /// Writes (or replaces) an object.
    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), ReconcileError>> + Send;
}

/// Requests made, by kind.
#[derive(Debug, Default)]
pub struct Requests {
    /// S3 `ListObjectsV2` pages.
    pub s3_list: AtomicU64,
    /// S3 `GetObject`.
    pub s3_get: AtomicU64,
    /// S3 `PutObject`.
    pub s3_put: AtomicU64,
    /// CloudWatch Logs `FilterLogEvents` pages.
    pub logs_filter: AtomicU64,
}

/// A snapshot of [`Requests`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestCounts {
    /// S3 `ListObjectsV2` pages.
    pub s3_list: u64,
    /// S3 `GetObject`.
    pub s3_get: u64,
    /// S3 `PutObject`.
    pub s3_put: u64,
    /// CloudWatch Logs `FilterLogEvents` pages.
    pub logs_filter: u64,
}

impl Requests {
    /// The counts so far.
    pub fn snapshot(&self) -> RequestCounts {
        RequestCounts {
            s3_list: self.s3_list.load(Ordering::Relaxed),
            s3_get: self.s3_get.load(Ordering::Relaxed),
            s3_put: self.s3_put.load(Ordering::Relaxed),
            logs_filter: self.logs_filter.load(Ordering::Relaxed),
        }
    }

    /// Counts one request.
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl RequestCounts {
    /// The requests made between `before` and `self`.
    pub fn since(&self, before: &RequestCounts) -> RequestCounts {
        RequestCounts {
            s3_list: self.s3_list.saturating_sub(before.s3_list),
            s3_get: self.s3_get.saturating_sub(before.s3_get),
            s3_put: self.s3_put.saturating_sub(before.s3_put),
            logs_filter: self.logs_filter.saturating_sub(before.logs_filter),
        }
    }

    /// S3 requests of every kind.
    pub fn s3(&self) -> u64 {
        self.s3_list + self.s3_get + self.s3_put
    }
}

/// S3 through the SDK; counts its requests.
pub struct S3Store {
    client: aws_sdk_s3::Client,
    /// The requests made.
    pub requests: std::sync::Arc<Requests>,
}

impl S3Store {
    /// A store over `client`, counting into `requests`.
    pub fn new(client: aws_sdk_s3::Client, requests: std::sync::Arc<Requests>) -> Self {
        Self { client, requests }
    }
}

fn read_err(bucket: &str, key: &str, detail: impl std::fmt::Display) -> ReconcileError {
    ReconcileError::Read {
        bucket: bucket.to_string(),
        key: key.to_string(),
        detail: detail.to_string(),
    }
}

impl ObjectStore for S3Store {
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<ObjectInfo>, ReconcileError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_start_after(start_after.map(str::to_string))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            Requests::count(&self.requests.s3_list);
            let page = page
                .map_err(|e| read_err(bucket, prefix, aws_sdk_s3::error::DisplayErrorContext(e)))?;
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                out.push(ObjectInfo {
                    key: key.to_string(),
                    last_modified_ms: o
                        .last_modified()
                        .and_then(|t| t.to_millis().ok())
                        .unwrap_or(0),
                    etag: o.e_tag().unwrap_or_default().to_string(),
                });
            }
        }
        Ok(out)
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, ReconcileError> {
        Requests::count(&self.requests.s3_get);
        match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let body = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| read_err(bucket, key, e))?;
                Ok(Some(body.into_bytes().to_vec()))
            }
            Err(e)
                if e.as_service_error().is_some_and(
                    aws_sdk_s3::operation::get_object::GetObjectError::is_no_such_key,
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(read_err(
                bucket,
                key,
                aws_sdk_s3::error::DisplayErrorContext(e),
            )),
        }
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), ReconcileError> {
        Requests::count(&self.requests.s3_put);
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/json")
            .body(body.into())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| ReconcileError::Write {
                bucket: bucket.to_string(),
                key: key.to_string(),
                detail: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
            })
    }
}

/// Objects in memory by `(bucket, key)`: body and write time.
type Objects = BTreeMap<(String, String), (Vec<u8>, i64)>;

/// Objects in memory, for tests: `(bucket, key)` to body and write time.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<Objects>,
    /// The requests made.
    pub requests: std::sync::Arc<Requests>,
}

impl MemoryStore {
    /// An empty store counting its requests into `requests`.
    pub fn with_requests(requests: std::sync::Arc<Requests>) -> Self {
        Self {
            objects: Mutex::default(),
            requests,
        }
    }

    /// Stores an object written at `last_modified_ms`.
    pub fn insert(&self, bucket: &str, key: &str, body: Vec<u8>, last_modified_ms: i64) {
        if let Ok(mut o) = self.objects.lock() {
            o.insert(
                (bucket.to_string(), key.to_string()),
                (body, last_modified_ms),
            );
        }
    }

    /// An object's bytes.
    pub fn body(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let o = self.objects.lock().ok()?;
        o.get(&(bucket.to_string(), key.to_string()))
            .map(|(b, _)| b.clone())
    }

    /// Every key in `bucket` under `prefix`.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        self.objects
            .lock()
            .map(|o| {
                o.keys()
                    .filter(|(b, k)| b == bucket && k.starts_with(prefix))
                    .map(|(_, k)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl ObjectStore for MemoryStore {
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<ObjectInfo>, ReconcileError> {
        Requests::count(&self.requests.s3_list);
        let o = self
            .objects
            .lock()
            .map_err(|_| read_err(bucket, prefix, "poisoned"))?;
        Ok(o.iter()
            .filter(|((b, k), _)| {
                b == bucket && k.starts_with(prefix) && start_after.is_none_or(|s| k.as_str() > s)
            })
            .map(|((_, k), (body, t))| ObjectInfo {
                key: k.clone(),
                last_modified_ms: *t,
                etag: format!("{}-{}", body.len(), t),
            })
            .collect())
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, ReconcileError> {
        Requests::count(&self.requests.s3_get);
        Ok(self.body(bucket, key))
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), ReconcileError> {
        Requests::count(&self.requests.s3_put);
        let now = chrono::Utc::now().timestamp_millis();
        self.insert(bucket, key, body, now);
        Ok(())
    }
}
