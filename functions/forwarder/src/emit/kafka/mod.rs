//! `kafka`: each record as one Kafka message on a topic (Amazon MSK, Confluent, Redpanda,
//! self-managed Kafka). The key is the record's [document id](crate::record::Prepared::doc_id)
//! (the event id), so a topic compacted by key folds re-deliveries, and it picks the partition
//! as the Java client's default partitioner does (murmur2 of the key), so the same id always
//! lands in the same partition, with any producer. The value is the record's JSON, the header
//! [`EVENT_TYPE_HEADER`] its event type, the timestamp its event time.
//!
//! A chunk goes out as one `Produce` request per partition leader (one request for a chunk on
//! a single broker), `acks=all` by default: a record counts as delivered only when the broker
//! acknowledged it. The client is this folder's own small producer ([`protocol`],
//! [`batch`], [`connection`], [`cluster`]) on tokio and the workspace's rustls, with SASL `PLAIN`, `SCRAM`
//! and MSK IAM ([`sasl`], [`msk_iam`]); it keeps its connections and the topic's metadata
//! across warm invocations.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::{BoxFuture, Emitter, Failure, Outcome};
use crate::ForwarderError;
use crate::config::err;
use crate::config::secret::SecretRef;
use crate::record::Prepared;

pub mod batch;
pub mod cluster;
mod config;
pub mod connection;
pub mod msk_iam;
pub mod outcome;
pub mod protocol;
pub mod sasl;
mod tls;
mod tuning;

use batch::{BatchCompression, Record};
use cluster::{Cluster, Meta};
pub use config::{
    Acks, CaBundle, Compression, HostPort, KafkaConfig, Mechanism, RawKafka, RawSasl, RawSsl, Sasl,
    SecurityProtocol, Ssl, TUNING_KEYS, Tuning,
};
use connection::{Auth, Fault, Security};
use outcome::Class;

/// The header that carries the record's event type (`LOGIN_ERROR`, `USER:CREATE`, ...).
pub const EVENT_TYPE_HEADER: &str = "authtrail-event-type";

/// A Kafka emitter.
pub struct KafkaEmitter {
    name: String,
    inner: Arc<Inner>,
}

struct Inner {
    cluster: Cluster,
    topic: String,
    acks: i16,
    timeout_ms: i32,
    compression: BatchCompression,
    max_request_size: usize,
}

/// One produce request's worth: partitions and the chunk positions of their records.
type Parts = Vec<(i32, Vec<usize>)>;

impl KafkaEmitter {
    /// The emitter `name` for `config`: secrets read, TLS set up. No broker is contacted until
    /// the first chunk (a broker down at cold start does not fail it).
    pub async fn start(
        name: &str,
        config: &KafkaConfig,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Self, ForwarderError> {
        let label = format!("emitter {name:?}");
        let tls = if config.security_protocol.tls() {
            let identity = match &config.ssl.client_certificate {
                Some(r) => {
                    let path = format!("{label}.ssl.clientCertificateSecretArn");
                    let pem = read_secret(r, sdk).await?;
                    Some(tls::client_identity(&path, &pem)?)
                }
                None => None,
            };
            Some(tls::client_config(name, &config.ssl, identity)?)
        } else {
            None
        };
        let auth = match &config.sasl {
            Some(s) => Some(auth(&label, s, sdk).await?),
            None => None,
        };
        let t = &config.tuning;
        let security = Security {
            tls,
            auth,
            client_id: t.client_id.clone(),
            setup_timeout: t.connection_setup_timeout,
        };
        let cluster = Cluster::new(
            config.bootstrap_servers.clone(),
            config.topic.clone(),
            security,
            t.request_timeout,
            t.metadata_max_age,
        );
        Ok(Self {
            name: name.to_string(),
            inner: Arc::new(Inner {
                cluster,
                topic: config.topic.clone(),
                acks: t.acks.wire(),
                timeout_ms: i32::try_from(t.request_timeout.as_millis()).unwrap_or(i32::MAX),
                compression: match t.compression {
                    Compression::None => BatchCompression::None,
                    Compression::Gzip => BatchCompression::Gzip,
                },
                max_request_size: t.max_request_size,
            }),
        })
    }
}

/// A secret's whole value (plain, or read from Secrets Manager).
async fn read_secret(
    r: &SecretRef,
    sdk: Option<&aws_config::SdkConfig>,
) -> Result<authtrail_core::secret::Secret, ForwarderError> {
    match r {
        SecretRef::Plain(s) => Ok(s.clone()),
        SecretRef::Arn(arn) => {
            let Some(sdk) = sdk else {
                return Err(err(arn.clone(), "Secrets Manager is not available here"));
            };
            Ok(authtrail_core::secret::fetch_secret_string(sdk, arn).await?)
        }
    }
}

/// SASL credentials: the password (a secret's JSON `password` field, or its whole value) and
/// the user (`username`, else the secret's `username` field).
async fn auth(
    label: &str,
    s: &Sasl,
    sdk: Option<&aws_config::SdkConfig>,
) -> Result<Auth, ForwarderError> {
    if s.mechanism == Mechanism::AwsMskIam {
        let signer = msk_iam::Signer::from_sdk(&format!("{label}.sasl.mechanism"), sdk)?;
        return Ok(Auth::MskIam(signer));
    }
    let Some(r) = &s.password else {
        return Err(err(
            format!("{label}.sasl.passwordSecretArn"),
            "is required",
        ));
    };
    let value = read_secret(r, sdk).await?;
    let (password, from_secret) = match (
        r,
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(value.expose()),
    ) {
        (SecretRef::Arn(arn), Ok(object)) => {
            let text = |k: &str| {
                object
                    .get(k)
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_string)
            };
            let Some(password) = text("password") else {
                return Err(ForwarderError::SecretFieldMissing {
                    arn: arn.clone(),
                    field: "password".into(),
                    has: object.keys().cloned().collect(),
                });
            };
            (
                authtrail_core::secret::Secret::new(password),
                text("username"),
            )
        }
        _ => (value, None),
    };
    let username = s.username.clone().or(from_secret).ok_or_else(|| {
        err(
            format!("{label}.sasl.username"),
            "is required (neither given nor in the passwordSecretArn secret)",
        )
    })?;
    Ok(Auth::Password {
        mechanism: s.mechanism,
        username,
        password,
    })
}

/// The message of `p`: key, value, the event type header, the event time.
fn message<'a>(p: &'a Prepared, headers: &'a [(&'a str, &'a [u8]); 1]) -> Record<'a> {
    Record {
        key: p.doc_id.as_bytes(),
        value: p.json.as_bytes(),
        headers,
        timestamp_ms: p.class.time_ms,
    }
}

/// Bytes `p` adds to a produce request.
fn encoded_size(p: &Prepared) -> usize {
    let headers = [(EVENT_TYPE_HEADER, p.class.event_type().as_bytes())];
    batch::record_size(&message(p, &headers))
}

impl Inner {
    /// One record batch of `records` (positions in `batch`).
    fn batch_bytes(&self, batch: &[Arc<Prepared>], records: &[usize]) -> Result<Vec<u8>, Fault> {
        let headers: Vec<[(&str, &[u8]); 1]> = records
            .iter()
            .filter_map(|&i| batch.get(i))
            .map(|p| [(EVENT_TYPE_HEADER, p.class.event_type().as_bytes())])
            .collect();
        let messages: Vec<Record<'_>> = records
            .iter()
            .filter_map(|&i| batch.get(i))
            .zip(&headers)
            .map(|(p, h)| message(p, h))
            .collect();
        Ok(batch::record_batch(&messages, self.compression)?)
    }

    /// Sends one produce request for `parts` to the broker `node` and returns the outcome of
    /// each partition: its error code and message, or the request's fault for all.
    async fn produce(
        self: Arc<Self>,
        meta: Arc<Meta>,
        node: i32,
        batch: Arc<[Arc<Prepared>]>,
        parts: Parts,
    ) -> (Parts, Result<Vec<protocol::PartitionResult>, Fault>) {
        let result = self.produce_now(&meta, node, &batch, &parts).await;
        (parts, result)
    }

    async fn produce_now(
        &self,
        meta: &Meta,
        node: i32,
        batch: &[Arc<Prepared>],
        parts: &Parts,
    ) -> Result<Vec<protocol::PartitionResult>, Fault> {
        let addr = meta.brokers.get(&node).ok_or(Fault::Kafka(
            5,
            Some(format!("broker {node} is not in the metadata")),
        ))?;
        let mut body = protocol::Writer::plain(64);
        protocol::write_produce_head(
            &mut body,
            self.acks,
            self.timeout_ms,
            &self.topic,
            parts.len(),
        );
        for (partition, records) in parts {
            body.i32(*partition);
            body.bytes(&self.batch_bytes(batch, records)?);
        }
        let body = body.into_inner();
        let (version, answer) = self
            .cluster
            .request(addr, protocol::PRODUCE, body.len(), |w, _| w.raw(&body))
            .await?;
        Ok(protocol::read_produce(version, &answer)?.0)
    }

    /// One attempt for `batch`: one outcome per record.
    async fn attempt(self: Arc<Self>, batch: Arc<[Arc<Prepared>]>) -> Vec<Outcome> {
        let mut outcomes = vec![Outcome::Delivered; batch.len()];
        let mut todo = Vec::with_capacity(batch.len());
        for (i, p) in batch.iter().enumerate() {
            let size = encoded_size(p);
            if size > self.max_request_size {
                outcomes[i] = Outcome::Permanent(Failure::new(
                    "too-large",
                    format!(
                        "the message is {size} bytes, over max.request.size ({})",
                        self.max_request_size
                    ),
                ));
            } else {
                todo.push(i);
            }
        }
        if todo.is_empty() {
            return outcomes;
        }
        let meta = match self.cluster.metadata().await {
            Ok(m) => m,
            Err(f) => {
                let o = f.outcome();
                todo.iter().for_each(|&i| outcomes[i] = o.clone());
                return outcomes;
            }
        };
        let mut queue = self.requests(&meta, &batch, &todo, &mut outcomes);
        while !queue.is_empty() {
            let mut running = JoinSet::new();
            for (node, parts) in queue.drain(..) {
                running.spawn(
                    self.clone()
                        .produce(meta.clone(), node, batch.clone(), parts),
                );
            }
            while let Some(joined) = running.join_next().await {
                let Ok((parts, result)) = joined else {
                    continue; // a panicked task leaves its records Retryable (set below)
                };
                self.settle(&meta, parts, result, &mut outcomes, &mut queue);
            }
        }
        outcomes
    }

    /// Groups the records of `todo` into produce requests: per leader, its partitions, cut at
    /// `max.request.size`. Records whose partition has no leader fail (retryable).
    fn requests(
        &self,
        meta: &Meta,
        batch: &[Arc<Prepared>],
        todo: &[usize],
        outcomes: &mut [Outcome],
    ) -> Vec<(i32, Parts)> {
        let mut by_leader: BTreeMap<i32, BTreeMap<i32, Vec<usize>>> = BTreeMap::new();
        for &i in todo {
            // Until its request answers, a record is not delivered.
            outcomes[i] =
                Outcome::Retryable(Failure::new("internal", "produce request did not report"));
            let Some(p) = batch.get(i) else { continue };
            let partition = batch::partition_for(p.doc_id.as_bytes(), meta.partitions());
            match meta.leader(partition) {
                Some((node, _)) => by_leader
                    .entry(node)
                    .or_default()
                    .entry(partition as i32)
                    .or_default()
                    .push(i),
                None => {
                    self.cluster.invalidate();
                    outcomes[i] =
                        outcome::for_code(5, Some(&format!("partition {partition} has no leader")));
                }
            }
        }
        let mut requests = Vec::new();
        for (node, partitions) in by_leader {
            let mut parts: Parts = Vec::new();
            let mut size = 0;
            for (partition, records) in partitions {
                for i in records {
                    let s = batch.get(i).map_or(0, |p| encoded_size(p));
                    if size + s > self.max_request_size && !parts.is_empty() {
                        requests.push((node, std::mem::take(&mut parts)));
                        size = 0;
                    }
                    size += s;
                    match parts.last_mut() {
                        Some((p, list)) if *p == partition => list.push(i),
                        _ => parts.push((partition, vec![i])),
                    }
                }
            }
            if !parts.is_empty() {
                requests.push((node, parts));
            }
        }
        requests
    }

    /// Records the answer to one request: per partition, delivered or failed; a partition
    /// refused for its content with more than one record is split and queued again.
    fn settle(
        &self,
        meta: &Meta,
        parts: Parts,
        result: Result<Vec<protocol::PartitionResult>, Fault>,
        outcomes: &mut [Outcome],
        queue: &mut Vec<(i32, Parts)>,
    ) {
        let results = match result {
            Ok(r) => r,
            Err(f) => {
                if matches!(f, Fault::Network(_) | Fault::Timeout(_) | Fault::Wire(_)) {
                    self.cluster.invalidate();
                }
                let o = f.outcome();
                parts
                    .iter()
                    .flat_map(|(_, r)| r)
                    .for_each(|&i| outcomes[i] = o.clone());
                return;
            }
        };
        for (partition, records) in parts {
            let Some(r) = results.iter().find(|r| r.partition == partition) else {
                let f = Failure::new(
                    "protocol",
                    format!("the broker did not answer for partition {partition}"),
                );
                records
                    .iter()
                    .for_each(|&i| outcomes[i] = Outcome::Retryable(f.clone()));
                continue;
            };
            if outcome::stale_metadata(r.error) {
                self.cluster.invalidate();
            }
            if r.error != 0 && outcome::class(r.error) == Class::Content && records.len() > 1 {
                let mut left = records;
                let right = left.split_off(left.len() / 2);
                if let Some((node, _)) = meta.leader(partition as usize) {
                    queue.push((node, vec![(partition, left)]));
                    queue.push((node, vec![(partition, right)]));
                }
                continue;
            }
            let o = outcome::for_code(r.error, r.message.as_deref());
            records.iter().for_each(|&i| outcomes[i] = o.clone());
        }
    }
}

impl Emitter for KafkaEmitter {
    fn name(&self) -> &str {
        &self.name
    }

    fn emit<'a>(&'a self, batch: &'a [Arc<Prepared>]) -> BoxFuture<'a, Vec<Outcome>> {
        let batch: Arc<[Arc<Prepared>]> = batch.iter().cloned().collect();
        Box::pin(self.inner.clone().attempt(batch))
    }

    fn size_hint(&self, record: &Prepared) -> usize {
        encoded_size(record)
    }
}

#[cfg(test)]
mod scripted;
#[cfg(test)]
mod tests;
