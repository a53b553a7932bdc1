//! An in-memory spool store that counts its requests and can be told to fail: the fake of the
//! forwarder's tests and benchmarks.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::{PutOutcome, SpoolStore};
use crate::ForwarderError;
use crate::emit::BoxFuture;

/// Objects in memory, in key order.
#[derive(Default)]
pub struct MemorySpool {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
    requests: AtomicUsize,
    failing: AtomicBool,
}

impl MemorySpool {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests made so far (every operation counts one; a listing counts one per call).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Makes every following request fail (`true`) or succeed again (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// A copy of every object, by key.
    pub fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        self.map().clone()
    }

    /// Stores `body` at `key` (overwriting; not counted as a request).
    pub fn insert(&self, key: &str, body: Vec<u8>) {
        self.map().insert(key.to_string(), body);
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start(&self, operation: &'static str, key: &str) -> Result<(), ForwarderError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(ForwarderError::Spool {
                operation,
                bucket: "memory".into(),
                key: key.to_string(),
                detail: "the store is failing".into(),
            });
        }
        Ok(())
    }
}

impl SpoolStore for MemorySpool {
    fn put_new<'a>(
        &'a self,
        key: &'a str,
        body: Vec<u8>,
    ) -> BoxFuture<'a, Result<PutOutcome, ForwarderError>> {
        Box::pin(async move {
            self.start("PutObject", key)?;
            let mut map = self.map();
            if map.contains_key(key) {
                return Ok(PutOutcome::AlreadyExists);
            }
            map.insert(key.to_string(), body);
            Ok(PutOutcome::Created)
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, ForwarderError>> {
        Box::pin(async move {
            self.start("ListObjectsV2", prefix)?;
            Ok(self
                .map()
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, ForwarderError>> {
        Box::pin(async move {
            self.start("GetObject", key)?;
            Ok(self.map().get(key).cloned())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), ForwarderError>> {
        Box::pin(async move {
            self.start("DeleteObject", key)?;
            self.map().remove(key);
            Ok(())
        })
    }
}
