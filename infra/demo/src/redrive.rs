//! The forwarder's spool in the demo: how many spool objects wait, and the redrive schedule's
//! last runs after the traffic, until the spool is empty.

use std::time::{Duration, Instant};

use authtrail_runner::{LambdaFunction, invoke_scheduled};

use crate::DemoError;

/// The EventBridge rule name the demo's redrive invocations carry (the template's schedule).
pub const REDRIVE_RULE: &str = "authtrail-demo-forwarder-redrive";

/// Spool objects (records waiting for their emitter) under `prefix` in `bucket`; the lease
/// objects are not counted. Errors count as none (the progress line is only informative).
pub async fn spooled_objects(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> usize {
    let mut n = 0;
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(Ok(page)) = pages.next().await {
        n += page
            .contents()
            .iter()
            .filter(|o| o.key().is_some_and(|k| k.ends_with(".jsonl")))
            .count();
    }
    n
}

/// Invokes the forwarder with scheduled events, as the template's `rate(1 minute)` rule does
/// (sped up), until no spool object is left or `limit` passes; returns the invocations made.
pub async fn drain_spool(
    forwarder: &LambdaFunction,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    limit: Duration,
) -> Result<u32, DemoError> {
    let start = Instant::now();
    let mut runs = 0;
    while spooled_objects(s3, bucket, prefix).await > 0 {
        if start.elapsed() > limit {
            return Err(DemoError::Step {
                step: "draining the forwarder's spool",
                detail: format!("records still spooled after {} s", limit.as_secs()),
            });
        }
        // A failed run is retried by the next one, as the schedule does on AWS.
        invoke_scheduled(forwarder, REDRIVE_RULE)
            .await
            .map_err(crate::step("a scheduled redrive"))?;
        runs += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(runs)
}
