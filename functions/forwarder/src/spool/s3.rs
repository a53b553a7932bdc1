//! The spool in S3: creates with `If-None-Match: *`, lists with `ListObjectsV2` (every page),
//! reads and deletes objects.

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use super::{PutOutcome, SpoolStore};
use crate::ForwarderError;
use crate::emit::BoxFuture;

/// The spool in an S3 bucket (`SPOOL_BUCKET`, default the dead-letter bucket).
pub struct S3Spool {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Spool {
    /// The spool in `bucket`.
    pub fn new(client: aws_sdk_s3::Client, bucket: &str) -> Self {
        Self {
            client,
            bucket: bucket.to_string(),
        }
    }

    fn error<E: std::error::Error + Send + Sync + 'static, R: std::fmt::Debug>(
        &self,
        operation: &'static str,
        key: &str,
        e: SdkError<E, R>,
    ) -> ForwarderError {
        ForwarderError::Spool {
            operation,
            bucket: self.bucket.clone(),
            key: key.to_string(),
            detail: DisplayErrorContext(e).to_string(),
        }
    }
}

impl SpoolStore for S3Spool {
    fn put_new<'a>(
        &'a self,
        key: &'a str,
        body: Vec<u8>,
    ) -> BoxFuture<'a, Result<PutOutcome, ForwarderError>> {
        Box::pin(async move {
            let sent = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .if_none_match("*")
                .content_type("application/x-ndjson")
                .body(body.into())
                .send()
                .await;
            match sent {
                Ok(_) => Ok(PutOutcome::Created),
                Err(e) => {
                    let status = e.raw_response().map(|r| r.status().as_u16());
                    if e.code() == Some("PreconditionFailed") || status == Some(412) {
                        Ok(PutOutcome::AlreadyExists)
                    } else {
                        Err(self.error("PutObject", key, e))
                    }
                }
            }
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, ForwarderError>> {
        Box::pin(async move {
            let mut keys = Vec::new();
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.error("ListObjectsV2", prefix, e))?;
                keys.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key().map(String::from)),
                );
            }
            keys.sort();
            Ok(keys)
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, ForwarderError>> {
        Box::pin(async move {
            let got = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await;
            let out = match got {
                Ok(out) => out,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                    return Ok(None);
                }
                Err(e) => return Err(self.error("GetObject", key, e)),
            };
            let body = out
                .body
                .collect()
                .await
                .map_err(|e| ForwarderError::Spool {
                    operation: "GetObject",
                    bucket: self.bucket.clone(),
                    key: key.to_string(),
                    detail: e.to_string(),
                })?;
            Ok(Some(body.into_bytes().to_vec()))
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), ForwarderError>> {
        Box::pin(async move {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.error("DeleteObject", key, e))
        })
    }
}
