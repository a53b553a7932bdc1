//! Reading the bucket: keys of a range of hours in key order, and many small reads at a time.

use std::future::Future;
use std::sync::Arc;

use authtrail_archiver::ObjectStore;
use authtrail_archiver::store::StoreError;
use tokio::task::JoinSet;

use crate::VerifyError;
use crate::layout::hour_start_after;
use crate::progress::Progress;

/// Requests in flight at once.
pub const CONCURRENCY: usize = 16;

/// The keys under `prefix` of the hours from `from` on (before `to`, when given), in key order.
pub async fn list_hours<S: ObjectStore>(
    store: &S,
    prefix: &str,
    from: i64,
    to: Option<i64>,
) -> Result<Vec<String>, VerifyError> {
    let end = to.map(|t| hour_start_after(prefix, t));
    let mut start = Some(hour_start_after(prefix, from));
    let mut out = Vec::new();
    loop {
        let page = store.list_after(prefix, start.as_deref()).await?;
        let Some(last) = page.last().cloned() else {
            return Ok(out);
        };
        for key in page {
            if end.as_ref().is_some_and(|e| key >= *e) {
                return Ok(out);
            }
            out.push(key);
        }
        start = Some(last);
    }
}

/// Runs `read` for every key, [`CONCURRENCY`] at a time, counting each in `progress`;
/// returns the results sorted by key, or the first error.
pub async fn read_all<S, T, F, Fut>(
    store: &Arc<S>,
    keys: Vec<String>,
    progress: &mut Progress,
    read: F,
) -> Result<Vec<(String, T)>, VerifyError>
where
    S: ObjectStore + 'static,
    T: Send + 'static,
    F: Fn(Arc<S>, String) -> Fut,
    Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
{
    let mut out = Vec::with_capacity(keys.len());
    let mut pending = keys.into_iter();
    let mut running = JoinSet::new();
    loop {
        while running.len() < CONCURRENCY {
            let Some(key) = pending.next() else { break };
            let fut = read(Arc::clone(store), key.clone());
            running.spawn(async move { (key, fut.await) });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        let (key, result) = done.map_err(|e| VerifyError::Internal(e.to_string()))?;
        out.push((key, result?));
        progress.step();
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use authtrail_archiver::MemoryStore;
    use bytes::Bytes;

    #[tokio::test]
    async fn hours_are_listed_from_the_first_up_to_the_end_across_pages() {
        let store = MemoryStore::new();
        let mut keys = Vec::new();
        for h in 17..22 {
            for i in 0..500 {
                keys.push(format!(
                    "raw/2025/02/12/{h}/s-shardId-000000000000-{i:05}.jsonl"
                ));
            }
        }
        keys.push("raw/README".into());
        for k in &keys {
            store
                .put(k, Bytes::from_static(b"x"), "text/plain")
                .await
                .unwrap();
        }
        // 19:00 up to (not including) 21:00.
        let got = list_hours(&store, "raw/", 1_739_386_800, Some(1_739_394_000))
            .await
            .unwrap();
        assert_eq!(got.len(), 1000);
        assert!(got[0].starts_with("raw/2025/02/12/19/"));
        assert!(got[999].starts_with("raw/2025/02/12/20/"));
        let all = list_hours(&store, "raw/", 1_739_386_800, None)
            .await
            .unwrap();
        assert_eq!(all.len(), 1501, "three hours and the README");
    }

    #[tokio::test]
    async fn reads_run_concurrently_and_come_back_in_key_order() {
        let store = Arc::new(MemoryStore::new());
        let keys: Vec<String> = (0..40).rev().map(|i| format!("k{i:02}")).collect();
        let mut progress = Progress::with_drawing(false);
        progress.phase("test", keys.len());
        let got = read_all(&store, keys, &mut progress, |s, k| async move {
            s.head(&k).await.map(|h| h.is_none())
        })
        .await
        .unwrap();
        assert_eq!(got.len(), 40);
        assert_eq!(got[0].0, "k00");
        assert!(got.iter().all(|(_, missing)| *missing));
        assert_eq!(progress.line(), "[########################] test: 40/40");
    }
}
