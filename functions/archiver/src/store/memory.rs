//! [`MemoryStore`]: the object store in memory, for unit tests, with injectable failures and
//! the tampering a verifier must notice.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

use super::{Metadata, ObjectHead, ObjectStore, PutOutcome, StoreError};

/// A stored object of [`MemoryStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryObject {
    pub body: Bytes,
    pub content_type: String,
    pub metadata: Metadata,
    /// The SHA-256 checksum given on the write (base64), as S3 keeps it.
    pub sha256: Option<String>,
    /// A new value on every write.
    pub etag: String,
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
    /// Writes so far (numbers the ETags).
    writes: u64,
    calls: Vec<String>,
}

/// The condition of a write.
#[derive(Debug, Clone, Copy)]
enum Condition<'a> {
    None,
    IfAbsent,
    IfMatch(&'a str),
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

    /// Removes an object, as `DeleteObject` would (tests of tampering).
    pub fn remove(&self, key: &str) -> Option<MemoryObject> {
        self.lock().objects.remove(key)
    }

    /// Overwrites an object's bytes without a checksum, keeping its metadata, as a plain
    /// `PutObject` of another body would (tests of tampering).
    pub fn overwrite(&self, key: &str, body: Bytes) {
        let mut g = self.lock();
        g.writes += 1;
        let etag = format!("\"{}\"", g.writes);
        if let Some(o) = g.objects.get_mut(key) {
            o.body = body;
            o.sha256 = None;
            o.etag = etag;
        }
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

    /// One write: the injected failures, then the condition, then the object. Returns the new
    /// ETag, or `None` when the condition refused the write.
    fn write(
        &self,
        call: &str,
        key: &str,
        object: (Bytes, &str, &Metadata, Option<&str>),
        condition: Condition<'_>,
    ) -> Result<Option<String>, StoreError> {
        let mut g = self.lock();
        g.calls.push(format!("{call} {key}"));
        if g.failing_prefix
            .as_deref()
            .is_some_and(|p| key.starts_with(p))
        {
            return Err(Self::injected("PutObject", key));
        }
        let current = g.objects.get(key).map(|o| o.etag.clone());
        let refused = match condition {
            Condition::None => false,
            Condition::IfAbsent => current.is_some(),
            Condition::IfMatch(etag) => current.as_deref() != Some(etag),
        };
        let fails = Self::write_fails(&mut g);
        if fails && !g.failed_writes_land {
            return Err(Self::injected("PutObject", key));
        }
        if refused {
            return if fails {
                Err(Self::injected("PutObject", key))
            } else {
                Ok(None)
            };
        }
        g.writes += 1;
        let (body, content_type, metadata, sha256) = object;
        let etag = format!("\"{}\"", g.writes);
        g.objects.insert(
            key.to_string(),
            MemoryObject {
                body,
                content_type: content_type.to_string(),
                metadata: metadata.clone(),
                sha256: sha256.map(str::to_string),
                etag: etag.clone(),
            },
        );
        if fails {
            Err(Self::injected("PutObject", key))
        } else {
            Ok(Some(etag))
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
        sha256: &str,
    ) -> Result<PutOutcome, StoreError> {
        let written = self.write(
            "PUT-IF-ABSENT",
            key,
            (body, content_type, metadata, Some(sha256)),
            Condition::IfAbsent,
        )?;
        Ok(match written {
            Some(_) => PutOutcome::Created,
            None => PutOutcome::AlreadyExists,
        })
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectHead>, StoreError> {
        let mut g = self.lock();
        g.calls.push(format!("HEAD {key}"));
        Ok(g.objects.get(key).map(|o| ObjectHead {
            metadata: o.metadata.clone(),
            sha256: o.sha256.clone(),
            size: o.body.len() as u64,
        }))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let mut g = self.lock();
        g.calls.push(format!("GET {key}"));
        Ok(g.objects.get(key).map(|o| o.body.clone()))
    }

    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError> {
        self.write(
            "PUT",
            key,
            (body, content_type, &Metadata::new(), None),
            Condition::None,
        )
        .map(|_| ())
    }

    async fn get_with_metadata(&self, key: &str) -> Result<Option<(Bytes, Metadata)>, StoreError> {
        let mut g = self.lock();
        g.calls.push(format!("GET {key}"));
        Ok(g.objects
            .get(key)
            .map(|o| (o.body.clone(), o.metadata.clone())))
    }

    async fn get_versioned(&self, key: &str) -> Result<Option<(Bytes, String)>, StoreError> {
        let mut g = self.lock();
        g.calls.push(format!("GET {key}"));
        Ok(g.objects.get(key).map(|o| (o.body.clone(), o.etag.clone())))
    }

    async fn put_versioned(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        etag: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let condition = match etag {
            Some(e) => Condition::IfMatch(e),
            None => Condition::IfAbsent,
        };
        self.write(
            "PUT-IF-MATCH",
            key,
            (body, content_type, &Metadata::new(), None),
            condition,
        )
    }

    async fn list_after(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let mut g = self.lock();
        g.calls.push(format!("LIST {prefix}"));
        let mut keys: Vec<String> = g
            .objects
            .keys()
            .filter(|k| k.starts_with(prefix) && start_after.is_none_or(|s| k.as_str() > s))
            .cloned()
            .collect();
        keys.sort();
        keys.truncate(1000);
        Ok(keys)
    }
}
