//! What a preflight checks: read from a deployed stack (its outputs and the environment of its
//! functions, validated as the functions validate it) and from the arguments, which add to it
//! or replace parts of it (a new External ID, new MPAS credentials or a new forwarder
//! configuration can be tried before they are deployed).

use std::collections::BTreeMap;

use authtrail_core::secret::Secret;
use authtrail_producer::config::{Credentials, Settings};

use crate::PreflightError;

/// The writer role of other producers.
#[derive(Debug, Clone)]
pub struct WriterTarget {
    /// The role's ARN.
    pub role_arn: String,
    /// The External ID to assume it with (`None`: the check is skipped).
    pub external_id: Option<Secret>,
}

/// MPAS as the producer reaches it.
#[derive(Debug, Clone)]
pub struct MpasSpec {
    /// `MPAS_BASE_URL`.
    pub base_url: String,
    /// `MPAS_REALM`.
    pub realm: String,
    /// The credentials, or the ARN of the secret holding them.
    pub credentials: Credentials,
    /// A PEM file of CAs to trust, on this machine.
    pub ca_bundle: Option<String>,
    /// Trust only `ca_bundle`.
    pub ca_bundle_only: bool,
}

/// An S3 prefix to write with the conditions a function relies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketTarget {
    /// The check's name (`bucket.archive`).
    pub name: String,
    /// The bucket.
    pub bucket: String,
    /// The probe object's key.
    pub key: String,
    /// Check `If-Match` too (the producer's cursor).
    pub if_match: bool,
    /// Delete the probe afterwards.
    pub delete: bool,
}

/// Everything to check.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// The writer role.
    pub writer: Option<WriterTarget>,
    /// The stream (name or ARN).
    pub stream: Option<String>,
    /// MPAS.
    pub mpas: Option<MpasSpec>,
    /// The forwarder's JSON configuration.
    pub forwarder_config: Option<String>,
    /// The S3 prefixes.
    pub buckets: Vec<BucketTarget>,
    /// The deployed functions (label, function name), for `--invoke`.
    pub functions: Vec<(String, String)>,
}

/// The probe object under a prefix (the functions' own preflight writes the same key).
pub const PROBE_OBJECT: &str = ".preflight";

/// A deployed stack as the preflight reads it: its outputs and its functions' environment.
#[derive(Debug, Clone, Default)]
pub struct StackView {
    /// Output key -> value.
    pub outputs: BTreeMap<String, String>,
    /// Function label (`producer`, `archiver`, `forwarder`) -> (name, environment).
    pub functions: BTreeMap<String, (String, BTreeMap<String, String>)>,
}

impl Targets {
    /// What a stack deploys: the writer role and the stream from its outputs; MPAS, the
    /// forwarder's configuration and the buckets from its functions' environment.
    pub fn from_stack(view: &StackView) -> Result<Self, PreflightError> {
        let out = |k: &str| view.outputs.get(k).cloned();
        let mut t = Targets {
            writer: out("RoleArn").map(|role_arn| WriterTarget {
                role_arn,
                external_id: None,
            }),
            stream: out("StreamArn").or_else(|| out("KinesisStreamName")),
            ..Targets::default()
        };
        for (label, (name, env)) in &view.functions {
            t.functions.push((label.clone(), name.clone()));
            let var = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
            match label.as_str() {
                "producer" => {
                    let s = Settings::from_lookup(|k| env.get(k).cloned())
                        .map_err(|e| PreflightError::Config(format!("producer {name}: {e}")))?;
                    t.buckets.push(BucketTarget {
                        name: "bucket.checkpoint".into(),
                        bucket: s.checkpoint_bucket.clone(),
                        key: format!("{}{PROBE_OBJECT}", s.checkpoint_key),
                        if_match: true,
                        delete: false,
                    });
                    t.mpas = Some(MpasSpec {
                        base_url: s.base_url,
                        realm: s.realm,
                        credentials: s.credentials,
                        ca_bundle: None,
                        ca_bundle_only: s.ca_bundle_only,
                    });
                }
                "archiver" => {
                    if let Some(bucket) = var("ARCHIVE_BUCKET") {
                        let state = var("ARCHIVE_STATE_PREFIX").unwrap_or("archiver-state/".into());
                        t.buckets.push(BucketTarget {
                            name: "bucket.archive".into(),
                            bucket,
                            key: format!("{state}{PROBE_OBJECT}"),
                            if_match: false,
                            delete: false,
                        });
                    }
                }
                "forwarder" => {
                    t.forwarder_config = var("FORWARDER_CONFIG");
                    if let Some(bucket) = var("DLQ_BUCKET") {
                        let dlq = var("DLQ_PREFIX").unwrap_or("dlq/".into());
                        let spool = var("SPOOL_PREFIX").unwrap_or("spool/".into());
                        let spool_bucket = var("SPOOL_BUCKET").unwrap_or(bucket.clone());
                        t.buckets.push(BucketTarget {
                            name: "bucket.dead-letters".into(),
                            bucket,
                            key: format!("{dlq}{PROBE_OBJECT}"),
                            if_match: false,
                            delete: false,
                        });
                        t.buckets.push(BucketTarget {
                            name: "bucket.spool".into(),
                            bucket: spool_bucket,
                            key: format!("{spool}{PROBE_OBJECT}"),
                            if_match: false,
                            delete: true,
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(t)
    }

    /// Every secret value these targets hold (redacted from the report, whatever happens).
    pub fn known_secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(Some(id)) = self.writer.as_ref().map(|w| &w.external_id) {
            out.push(id.expose().to_string());
        }
        if let Some(m) = &self.mpas {
            out.extend(credential_secrets(&m.credentials));
        }
        if let Some(json) = &self.forwarder_config
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(json)
        {
            secret_strings(&v, false, &mut out);
        }
        out
    }
}

/// The secret values of MPAS credentials.
pub fn credential_secrets(c: &Credentials) -> Vec<String> {
    match c {
        Credentials::ClientCredentials { client_secret, .. } => {
            vec![client_secret.expose().to_string()]
        }
        Credentials::Password {
            client_secret,
            password,
            ..
        } => client_secret
            .iter()
            .chain(std::iter::once(password))
            .map(|s| s.expose().to_string())
            .collect(),
        Credentials::SecretArn(_) => Vec::new(),
    }
}

/// String values of a configuration that may be secrets: those under a key naming a token,
/// password, secret or key (not an ARN of one), and every header value.
fn secret_strings(v: &serde_json::Value, sensitive: bool, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) if sensitive => out.push(s.clone()),
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let k = k.to_ascii_lowercase();
                let named = !k.ends_with("arn")
                    && ["token", "password", "secret", "key", "headers"]
                        .iter()
                        .any(|w| k.contains(w));
                secret_strings(v, sensitive || named, out);
            }
        }
        serde_json::Value::Array(items) => {
            for i in items {
                secret_strings(i, sensitive, out);
            }
        }
        _ => {}
    }
}

/// `NAME[/PREFIX]` of `--bucket`: the probe of that prefix.
pub fn parse_bucket(spec: &str) -> Result<BucketTarget, PreflightError> {
    let (bucket, prefix) = spec.split_once('/').unwrap_or((spec, ""));
    if bucket.is_empty() {
        return Err(PreflightError::Arguments(format!(
            "--bucket {spec:?}: expected NAME or NAME/PREFIX/"
        )));
    }
    let prefix = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    Ok(BucketTarget {
        name: format!("bucket.{bucket}"),
        bucket: bucket.to_string(),
        key: format!("{prefix}{PROBE_OBJECT}"),
        if_match: false,
        delete: false,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_stack_gives_the_writer_role_stream_mpas_forwarder_and_every_prefix_its_functions_write() {
        let mut view = StackView::default();
        view.outputs
            .insert("RoleArn".into(), "arn:aws:iam::123456789012:role/w".into());
        view.outputs.insert(
            "StreamArn".into(),
            "arn:aws:kinesis:us-east-1:123456789012:stream/s".into(),
        );
        view.functions.insert(
            "producer".into(),
            (
                "p".into(),
                env(&[
                    ("MPAS_BASE_URL", "https://mpas.example.com"),
                    ("MPAS_REALM", "demo"),
                    (
                        "MPAS_CREDENTIALS_SECRET_ARN",
                        "arn:aws:secretsmanager:us-east-1:123456789012:secret:c",
                    ),
                    ("KINESIS_STREAM_NAME", "s"),
                    ("CHECKPOINT_BUCKET", "cp"),
                ]),
            ),
        );
        view.functions.insert(
            "archiver".into(),
            (
                "a".into(),
                env(&[("ARCHIVE_BUCKET", "arch"), ("ARCHIVE_STATE_PREFIX", "st/")]),
            ),
        );
        view.functions.insert(
            "forwarder".into(),
            (
                "f".into(),
                env(&[
                    ("FORWARDER_CONFIG", r#"{"emitters":[{"name":"s","type":"splunk-hec","url":"https://h.example/","token":"tok-123456"}]}"#),
                    ("DLQ_BUCKET", "dlq"),
                    ("DLQ_PREFIX", "dlq/"),
                    ("SPOOL_PREFIX", "spool/"),
                ]),
            ),
        );
        let t = Targets::from_stack(&view).unwrap();
        assert_eq!(
            t.writer.as_ref().unwrap().role_arn,
            "arn:aws:iam::123456789012:role/w"
        );
        assert!(t.stream.as_deref().unwrap().ends_with("stream/s"));
        let m = t.mpas.as_ref().unwrap();
        assert_eq!(
            (m.base_url.as_str(), m.realm.as_str()),
            ("https://mpas.example.com", "demo")
        );
        assert!(matches!(m.credentials, Credentials::SecretArn(_)));
        let buckets: Vec<_> = t
            .buckets
            .iter()
            .map(|b| (b.name.as_str(), b.bucket.as_str(), b.key.as_str()))
            .collect();
        assert_eq!(
            buckets,
            [
                ("bucket.archive", "arch", "st/.preflight"),
                ("bucket.dead-letters", "dlq", "dlq/.preflight"),
                ("bucket.spool", "dlq", "spool/.preflight"),
                (
                    "bucket.checkpoint",
                    "cp",
                    "authtrail/producer/demo/checkpoint.json.preflight"
                ),
            ]
        );
        assert_eq!(t.known_secrets(), ["tok-123456"]);
        assert_eq!(t.functions.len(), 3);
    }

    #[test]
    fn secret_values_are_found_under_secret_keys_and_in_headers_but_not_arns() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"emitters":[{"name":"n","token":"t1","tokenSecretArn":"arn:x","password":"p1",
                "headers":{"X-Api-Key":"h1"},"redaction":{"hmacKey":"k1"},"url":"https://u"}]}"#,
        )
        .unwrap();
        let mut out = Vec::new();
        secret_strings(&v, false, &mut out);
        out.sort();
        assert_eq!(out, ["h1", "k1", "p1", "t1"]);
    }

    #[test]
    fn bucket_arguments_name_a_bucket_and_an_optional_prefix() {
        assert_eq!(parse_bucket("b").unwrap().key, ".preflight");
        assert_eq!(parse_bucket("b/raw").unwrap().key, "raw/.preflight");
        assert_eq!(parse_bucket("b/x/y/").unwrap().key, "x/y/.preflight");
        assert!(parse_bucket("/x").is_err());
    }
}
