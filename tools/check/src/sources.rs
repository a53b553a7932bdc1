//! Readers for the places records live: S3 prefixes (Contract 2 objects, gzip or plain, and
//! dead-letter objects), local files or directories of JSON lines, and HTTP(S) URLs.

use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::{CheckError, KeyPolicy, Tally};

/// Decompresses `body` when it starts with the gzip magic bytes.
pub fn maybe_gunzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    if body.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(body.len() * 4);
        MultiGzDecoder::new(body).read_to_end(&mut out)?;
        Ok(out)
    } else {
        Ok(body.to_vec())
    }
}

/// Adds every object under `s3://bucket/prefix` to `tally`: JSON lines (archive objects) or
/// one JSON document per object (dead-letter objects; a JSON array counts each element).
/// Returns the number of objects read.
pub async fn read_s3_prefix(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    policy: &KeyPolicy,
    tally: &mut Tally,
) -> Result<usize, CheckError> {
    let err = |detail: String| CheckError::Read {
        source_name: format!("s3://{bucket}/{prefix}"),
        detail,
    };
    let mut objects = 0;
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| err(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
        for obj in page.contents() {
            let Some(key) = obj.key() else { continue };
            let got = s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| {
                    err(format!(
                        "{key}: {}",
                        aws_sdk_s3::error::DisplayErrorContext(e)
                    ))
                })?;
            let body = got
                .body
                .collect()
                .await
                .map_err(|e| err(format!("{key}: {e}")))?
                .into_bytes();
            let text = maybe_gunzip(&body).map_err(|e| err(format!("{key}: {e}")))?;
            add_document_or_lines(policy, tally, &text);
            objects += 1;
        }
    }
    Ok(objects)
}

/// One JSON document (object or array) if the whole text parses as one, else JSON lines.
pub fn add_document_or_lines(policy: &KeyPolicy, tally: &mut Tally, text: &[u8]) {
    if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(text) {
        match doc {
            serde_json::Value::Array(items) => {
                items.iter().for_each(|v| tally.add_value(policy, v))
            }
            other => tally.add_value(policy, &other),
        }
        return;
    }
    for line in text.split(|b| *b == b'\n') {
        tally.add_line(policy, line);
    }
}

/// Adds a local file, or every file under a directory, to `tally`.
pub fn read_path(path: &Path, policy: &KeyPolicy, tally: &mut Tally) -> Result<usize, CheckError> {
    let err = |detail: String| CheckError::Read {
        source_name: path.display().to_string(),
        detail,
    };
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| err(e.to_string()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        let mut n = 0;
        for entry in entries {
            n += read_path(&entry, policy, tally)?;
        }
        return Ok(n);
    }
    let body = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let text = maybe_gunzip(&body).map_err(|e| err(e.to_string()))?;
    add_document_or_lines(policy, tally, &text);
    Ok(1)
}

/// Adds the JSON lines (or JSON array) served at `url` to `tally`.
pub async fn read_url(url: &str, policy: &KeyPolicy, tally: &mut Tally) -> Result<(), CheckError> {
    let err = |detail: String| CheckError::Read {
        source_name: url.to_string(),
        detail,
    };
    let resp = reqwest::get(url).await.map_err(|e| err(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(err(format!("HTTP {}", resp.status())));
    }
    let body = resp.bytes().await.map_err(|e| err(e.to_string()))?;
    add_document_or_lines(policy, tally, &body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_bodies_are_detected_by_magic_and_plain_ones_pass_through() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"{\"a\":1}\n").unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(maybe_gunzip(&gz).unwrap(), b"{\"a\":1}\n");
        assert_eq!(maybe_gunzip(b"plain").unwrap(), b"plain");
    }

    #[test]
    fn a_json_array_document_counts_each_element() {
        let p = KeyPolicy::default();
        let mut t = Tally::new("x");
        add_document_or_lines(
            &p,
            &mut t,
            br#"[{"eventType":"user-event","event":{"id":"1","time":1}},{"eventType":"user-event","event":{"id":"2","time":1}}]"#,
        );
        assert_eq!(t.distinct(), 2);
    }
}
