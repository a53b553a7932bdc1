//! The emitter's picture of the cluster and its connections, kept across warm invocations:
//! the topic's partitions and their leaders (from `Metadata`, fetched again when older than
//! `metadata.max.age.ms` or when a broker says it is stale), and a small pool of connections
//! per broker, opened lazily and reopened after any failure.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::config::{HostPort, is_loopback};
use super::connection::{Conn, Fault, Security};
use super::protocol::{self as wire, Writer};

/// Connections kept per broker (opened only as requests need them).
pub const POOL_SIZE: usize = 8;

/// The topic's partitions and the brokers leading them.
#[derive(Debug)]
pub struct Meta {
    /// Brokers by node id.
    pub brokers: HashMap<i32, HostPort>,
    /// Per partition (the index), its leader's node id, `None` while it has none.
    pub leaders: Vec<Option<i32>>,
    fetched: Instant,
}

impl Meta {
    /// The number of partitions.
    pub fn partitions(&self) -> usize {
        self.leaders.len()
    }

    /// The broker leading `partition`.
    pub fn leader(&self, partition: usize) -> Option<(i32, &HostPort)> {
        let node = self.leaders.get(partition).copied().flatten()?;
        Some((node, self.brokers.get(&node)?))
    }
}

/// A broker's connections.
struct Pool {
    slots: Vec<Mutex<Option<Conn>>>,
    next: AtomicUsize,
}

/// The cluster as the emitter knows it.
pub struct Cluster {
    bootstrap: Vec<HostPort>,
    topic: String,
    security: Security,
    /// Plain TCP: every broker must be on loopback, also those the metadata names.
    plaintext: bool,
    request_timeout: Duration,
    metadata_max_age: Duration,
    meta: StdMutex<Option<Arc<Meta>>>,
    refreshing: Mutex<()>,
    pools: StdMutex<HashMap<String, Arc<Pool>>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("bootstrap", &self.bootstrap)
            .field("topic", &self.topic)
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// A cluster reached through `bootstrap`, for `topic`.
    pub fn new(
        bootstrap: Vec<HostPort>,
        topic: String,
        security: Security,
        request_timeout: Duration,
        metadata_max_age: Duration,
    ) -> Self {
        Self {
            bootstrap,
            topic,
            plaintext: security.tls.is_none(),
            security,
            request_timeout,
            metadata_max_age,
            meta: StdMutex::new(None),
            refreshing: Mutex::new(()),
            pools: StdMutex::new(HashMap::new()),
        }
    }

    fn cached(&self) -> Option<Arc<Meta>> {
        let meta = self.meta.lock().ok()?.clone()?;
        (meta.fetched.elapsed() < self.metadata_max_age).then_some(meta)
    }

    /// Forgets the metadata: the next chunk fetches it again.
    pub fn invalidate(&self) {
        if let Ok(mut m) = self.meta.lock() {
            *m = None;
        }
    }

    /// The topic's metadata: cached, or fetched from a known broker, else a bootstrap one.
    pub async fn metadata(&self) -> Result<Arc<Meta>, Fault> {
        if let Some(m) = self.cached() {
            return Ok(m);
        }
        let _one_at_a_time = self.refreshing.lock().await;
        if let Some(m) = self.cached() {
            return Ok(m);
        }
        let known: Vec<HostPort> = self
            .meta
            .lock()
            .ok()
            .and_then(|m| m.as_ref().map(|m| m.brokers.values().cloned().collect()))
            .unwrap_or_default();
        let mut last = Fault::Network("no broker to ask for metadata".into());
        for addr in known.iter().chain(&self.bootstrap) {
            match self.fetch(addr).await {
                Ok(meta) => {
                    let meta = Arc::new(meta);
                    if let Ok(mut m) = self.meta.lock() {
                        *m = Some(meta.clone());
                    }
                    return Ok(meta);
                }
                // The same credentials and trust serve every broker: no use asking the others.
                Err(f @ (Fault::Auth(_) | Fault::Tls(_) | Fault::Refused(_))) => return Err(f),
                Err(f) => last = f,
            }
        }
        Err(last)
    }

    async fn fetch(&self, addr: &HostPort) -> Result<Meta, Fault> {
        let topic = self.topic.as_str();
        let (version, body) = self
            .request(addr, wire::METADATA, topic.len() + 16, |w, v| {
                wire::write_metadata(w, v, topic, true)
            })
            .await?;
        let (brokers, topics) = wire::read_metadata(version, &body)?;
        let info = topics
            .into_iter()
            .find(|t| t.name == self.topic)
            .ok_or(Fault::Kafka(
                3,
                Some(format!("no metadata for topic {}", self.topic)),
            ))?;
        if info.error != 0 || info.partitions.is_empty() {
            let code = if info.error == 0 { 5 } else { info.error };
            return Err(Fault::Kafka(code, Some(format!("topic {}", self.topic))));
        }
        let count = info
            .partitions
            .iter()
            .map(|(i, _, _)| usize::try_from(*i).map_or(0, |i| i + 1))
            .max()
            .unwrap_or(0);
        let mut leaders = vec![None; count];
        for (index, error, leader) in info.partitions {
            if let Some(slot) = usize::try_from(index).ok().and_then(|i| leaders.get_mut(i)) {
                *slot = (error == 0 && leader >= 0).then_some(leader);
            }
        }
        let brokers = brokers
            .into_iter()
            .map(|b| {
                (
                    b.node_id,
                    HostPort {
                        host: b.host,
                        port: b.port,
                    },
                )
            })
            .collect();
        Ok(Meta {
            brokers,
            leaders,
            fetched: Instant::now(),
        })
    }

    fn pool(&self, addr: &HostPort) -> Arc<Pool> {
        let key = addr.to_string();
        let Ok(mut pools) = self.pools.lock() else {
            return Arc::new(Pool::new());
        };
        pools
            .entry(key)
            .or_insert_with(|| Arc::new(Pool::new()))
            .clone()
    }

    /// Sends one request to the broker at `addr` on a pooled connection (opened when needed)
    /// and returns the version used and the answer. `body` writes the body for a version: the
    /// connection's `Produce` version for [`wire::PRODUCE`], its `Metadata` version otherwise.
    /// A connection that failed, timed out or was abandoned is dropped, never reused.
    pub async fn request(
        &self,
        addr: &HostPort,
        api: i16,
        capacity: usize,
        body: impl FnOnce(&mut Writer, i16),
    ) -> Result<(i16, Vec<u8>), Fault> {
        if self.plaintext && !is_loopback(&addr.host) {
            return Err(Fault::Refused(format!(
                "the cluster names broker {addr}, which is not on loopback: plain TCP is for loopback brokers only (use SSL or SASL_SSL)"
            )));
        }
        let pool = self.pool(addr);
        let mut slot = pool.acquire().await;
        let mut conn = match slot.take() {
            Some(c) if !c.expired() => c,
            _ => Conn::open(addr, &self.security).await?,
        };
        let version = if api == wire::PRODUCE {
            conn.produce_version
        } else {
            conn.metadata_version
        };
        // The broker waits up to request.timeout.ms for its replicas; give its answer time
        // to arrive after that.
        let wait = self.request_timeout + Duration::from_secs(2);
        match tokio::time::timeout(
            wait,
            conn.call(api, version, capacity, |w| body(w, version)),
        )
        .await
        {
            Ok(Ok(answer)) => {
                *slot = Some(conn);
                Ok((version, answer))
            }
            Ok(Err(f)) => Err(f),
            Err(_) => Err(Fault::Timeout("request")),
        }
    }
}

impl Pool {
    fn new() -> Self {
        Self {
            slots: (0..POOL_SIZE).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// A free slot, preferring one with an open connection; else waits for one in turn.
    async fn acquire(&self) -> tokio::sync::MutexGuard<'_, Option<Conn>> {
        let mut empty = None;
        for slot in &self.slots {
            if let Ok(guard) = slot.try_lock() {
                if guard.is_some() {
                    return guard;
                }
                if empty.is_none() {
                    empty = Some(guard);
                }
            }
        }
        if let Some(guard) = empty {
            return guard;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len().max(1);
        match self.slots.get(i) {
            Some(slot) => slot.lock().await,
            None => self.slots[0].lock().await,
        }
    }
}
