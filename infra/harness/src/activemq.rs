//! A real Apache ActiveMQ 5.17 broker for tests (Debian's `activemq` package, on its Java 17
//! runtime), started with its own configuration in a scratch directory: two STOMP transport
//! connectors on free loopback ports (STOMP over TLS with a throwaway rcgen CA, for the emitter;
//! plain STOMP for the consumers), KahaDB persistence in the scratch directory (journal synced
//! once a second), no JMX, no web console, no advisories. Password authentication and an
//! authorization map:
//! - [`WRITER`] may write to (and create) the topics and queues `audit` and `audit.*`, nothing
//!   else: a destination such as `forbidden.x` is refused to it, as a broker refuses a
//!   misconfigured producer.
//! - [`READER`] may read, write and create every destination: the independent consumer.
//!
//! The broker is the child `java` process in its own process group, killed with that group on
//! drop (a [`shared`] broker, kept in a `static`, by a watchdog when the test binary ends).
//! Messages are read back by [`Subscriber`], a Python `stomp.py` client from the project's
//! virtualenv: a client other than the emitter's.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout};

use crate::{HarnessError, ScratchDir, free_port, venv_bin};

/// The producer user: may write to `audit` and `audit.*` topics and queues only.
pub const WRITER: &str = "authtrail";
/// The consumer user: may read, write and create every destination.
pub const READER: &str = "auditor";
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The subscriber script (stomp.py 8.2, pinned in the virtualenv): subscribes with a receipt,
/// prints `{"ready": ...}` once subscribed, then one JSON line per message (headers and body),
/// until its standard input closes.
const SUBSCRIBER_PY: &str = r#"
import json, sys
import stomp

host, port, user, password, destination = sys.argv[1:6]
out = sys.stdout

def emit(value):
    out.write(json.dumps(value) + "\n")
    out.flush()

class Listener(stomp.ConnectionListener):
    def on_message(self, frame):
        emit({"headers": frame.headers, "body": frame.body})
    def on_receipt(self, frame):
        emit({"ready": frame.headers.get("receipt-id")})
    def on_error(self, frame):
        emit({"error": frame.body, "headers": frame.headers})

conn = stomp.Connection12([(host, int(port))], heartbeats=(0, 0), auto_content_length=False)
conn.set_listener("authtrail", Listener())
conn.connect(user, password, wait=True)
conn.subscribe(destination, id="1", ack="auto", headers={"receipt": "subscribed"})
sys.stdin.read()
conn.disconnect()
"#;

/// A running ActiveMQ broker (see the module documentation).
pub struct ActiveMq {
    child: Option<Child>,
    pid: u32,
    stomp_port: u16,
    stomp_ssl_port: u16,
    writer_password: String,
    reader_password: String,
    ca_pem: PathBuf,
    log: PathBuf,
    started_in: Duration,
    scratch: ScratchDir,
}

impl std::fmt::Debug for ActiveMq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveMq")
            .field("pid", &self.pid)
            .field("stomp_port", &self.stomp_port)
            .field("stomp_ssl_port", &self.stomp_ssl_port)
            .finish_non_exhaustive()
    }
}

/// A message read back by a [`Subscriber`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The STOMP headers of the MESSAGE frame (the JMS headers and properties).
    pub headers: BTreeMap<String, String>,
    /// The body as text.
    pub body: String,
}

impl Message {
    /// The value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// The ActiveMQ installation: `ACTIVEMQ_HOME`, else Debian's `/usr/share/activemq`.
fn activemq_home() -> PathBuf {
    std::env::var_os("ACTIVEMQ_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/activemq"))
}

/// The Java runtime: `ACTIVEMQ_JAVA`, else Debian's Java 17 (what the package depends on,
/// whatever else `PATH` offers), else `java` on `PATH`.
fn java() -> PathBuf {
    if let Some(j) = std::env::var_os("ACTIVEMQ_JAVA") {
        return PathBuf::from(j);
    }
    let jvm = Path::new("/usr/lib/jvm");
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(jvm)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("java-17-openjdk") || n == "default-java")
        })
        .map(|p| p.join("bin/java"))
        .filter(|p| p.is_file())
        .collect();
    candidates.sort();
    candidates.pop().unwrap_or_else(|| PathBuf::from("java"))
}

fn cert_err(e: rcgen::Error) -> HarnessError {
    HarnessError::Setup(format!("test certificate: {e}"))
}

/// Hex of 16 random bytes from the OS.
fn random_hex() -> Result<String, HarnessError> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `ca.pem` and the broker's PKCS#12 key store `broker.p12` (its certificate for
/// `localhost` and `127.0.0.1`, signed by the CA) into `dir`; returns the CA's path.
fn write_certs(dir: &Path, store_password: &str) -> Result<PathBuf, HarnessError> {
    let ca_key = KeyPair::generate().map_err(cert_err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "authtrail ActiveMQ test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).map_err(cert_err)?;
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().map_err(cert_err)?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(cert_err)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(cert_err)?;
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca_cert.pem())?;
    let cert = dir.join("broker.pem");
    let key = dir.join("broker.key");
    std::fs::write(&cert, leaf_cert.pem())?;
    std::fs::write(&key, leaf_key.serialize_pem())?;
    // Java reads PKCS#12 key stores; openssl makes one from the PEM files.
    let out = Command::new("openssl")
        .args(["pkcs12", "-export", "-name", "broker", "-in"])
        .arg(&cert)
        .arg("-inkey")
        .arg(&key)
        .arg("-certfile")
        .arg(&ca_path)
        .arg("-out")
        .arg(dir.join("broker.p12"))
        .arg("-passout")
        .arg(format!("pass:{store_password}"))
        .stdin(Stdio::null())
        .output()
        .map_err(|source| HarnessError::Spawn {
            what: "openssl pkcs12".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(HarnessError::Command {
            what: "openssl pkcs12 -export".into(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(ca_path)
}

/// The broker's `activemq.xml`.
fn broker_xml(dir: &Path, ports: (u16, u16), passwords: (&str, &str), store: &str) -> String {
    let (plain, tls) = ports;
    let (writer, reader) = passwords;
    let data = dir.join("data");
    let p12 = dir.join("broker.p12");
    let entry = |dest: &str, name: &str, read: &str, write: &str| {
        format!(
            r#"<authorizationEntry {dest}="{name}" read="{read}" write="{write}" admin="{write}"/>"#
        )
    };
    let mut entries = String::new();
    for dest in ["queue", "topic"] {
        entries.push_str(&entry(dest, ">", "readers", "readers"));
        entries.push_str(&entry(dest, "audit", "readers", "readers,writers"));
        entries.push_str(&entry(dest, "audit.>", "readers", "readers,writers"));
    }
    format!(
        r#"<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="authtrail-test"
          useJmx="false" advisorySupport="false" schedulerSupport="false" persistent="true"
          dataDirectory="{data}">
    <plugins>
      <simpleAuthenticationPlugin anonymousAccessAllowed="false">
        <users>
          <authenticationUser username="{WRITER}" password="{writer}" groups="writers"/>
          <authenticationUser username="{READER}" password="{reader}" groups="readers"/>
        </users>
      </simpleAuthenticationPlugin>
      <authorizationPlugin><map><authorizationMap><authorizationEntries>
        {entries}
      </authorizationEntries></authorizationMap></map></authorizationPlugin>
    </plugins>
    <sslContext>
      <sslContext keyStore="file:{p12}" keyStorePassword="{store}" keyStoreType="PKCS12"/>
    </sslContext>
    <persistenceAdapter>
      <kahaDB directory="{data}/kahadb" journalDiskSyncStrategy="periodic"/>
    </persistenceAdapter>
    <systemUsage><systemUsage>
      <memoryUsage><memoryUsage limit="128 mb"/></memoryUsage>
      <storeUsage><storeUsage limit="2 gb"/></storeUsage>
      <tempUsage><tempUsage limit="1 gb"/></tempUsage>
    </systemUsage></systemUsage>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:{plain}"/>
      <transportConnector name="stomp-ssl" uri="stomp+ssl://127.0.0.1:{tls}"/>
    </transportConnectors>
  </broker>
</beans>
"#,
        data = data.display(),
        p12 = p12.display(),
    )
}

const LOG4J: &str = "log4j.rootLogger=WARN, out\n\
log4j.appender.out=org.apache.log4j.ConsoleAppender\n\
log4j.appender.out.layout=org.apache.log4j.PatternLayout\n\
log4j.appender.out.layout.ConversionPattern=%d %-5p [%c] %m%n\n";

/// Starts `java` running the broker with `conf` (its own process group, output to `log`).
fn spawn_java(home: &Path, base: &Path, conf: &Path, log: &Path) -> Result<Child, HarnessError> {
    use std::os::unix::process::CommandExt;
    let out = std::fs::File::create(log)?;
    let data = base.join("data");
    Command::new(java())
        // The heap of Debian's /etc/default/activemq.
        .args([
            "-Xms64m",
            "-Xmx512m",
            "-XX:+UseSerialGC",
            "-Djava.awt.headless=true",
        ])
        .arg(format!("-Dactivemq.classpath={}", base.display()))
        .arg(format!("-Dactivemq.home={}", home.display()))
        .arg(format!("-Dactivemq.base={}", base.display()))
        .arg(format!("-Dactivemq.conf={}", base.display()))
        .arg(format!("-Dactivemq.data={}", data.display()))
        .arg("-jar")
        .arg(home.join("bin/activemq.jar"))
        .arg("start")
        .arg(format!("xbean:file:{}", conf.display()))
        .current_dir(base)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .map_err(|source| HarnessError::Spawn {
            what: format!("java ({})", java().display()),
            source,
        })
}

/// Kills the process group `pid` leads.
fn kill_group(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// One STOMP `CONNECT` as `user` to `127.0.0.1:{port}`: whether the broker answered
/// `CONNECTED`.
fn stomp_connects(port: u16, user: &str, password: &str) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let frame = format!(
        "CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\nlogin:{user}\npasscode:{password}\n\n\0"
    );
    if s.write_all(frame.as_bytes()).is_err() {
        return false;
    }
    let mut answer = [0u8; 9];
    let ok = s.read_exact(&mut answer).is_ok() && &answer == b"CONNECTED";
    let _ = s.write_all(b"DISCONNECT\n\n\0");
    ok
}

/// Waits until the broker takes TCP connections on `tls` and a STOMP `CONNECT` on `plain`,
/// failing early when the process exits.
fn wait_ready(
    child: &mut Child,
    ports: (u16, u16),
    reader: &str,
    log: &Path,
) -> Result<(), HarnessError> {
    let started = Instant::now();
    while started.elapsed() < START_TIMEOUT {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(HarnessError::NotReady {
                what: format!("activemq (java exited with {status})"),
                secs: started.elapsed().as_secs(),
                log: log.display().to_string(),
            });
        }
        let tls_up = TcpStream::connect(("127.0.0.1", ports.1)).is_ok();
        if tls_up && stomp_connects(ports.0, READER, reader) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(HarnessError::NotReady {
        what: "activemq".into(),
        secs: START_TIMEOUT.as_secs(),
        log: log.display().to_string(),
    })
}

impl ActiveMq {
    /// Starts a fresh broker (see the module documentation) and waits until it answers a STOMP
    /// `CONNECT`. Blocking: call it from `spawn_blocking` or before the runtime is busy.
    pub fn start() -> Result<Self, HarnessError> {
        let home = activemq_home();
        let run_jar = home.join("bin/activemq.jar");
        if !run_jar.is_file() {
            return Err(HarnessError::Missing {
                what: "ActiveMQ".into(),
                path: run_jar.display().to_string(),
                hint: "install the Debian package activemq (make apt-deps) or set ACTIVEMQ_HOME",
            });
        }
        let scratch = ScratchDir::new("activemq")?;
        let store = random_hex()?;
        let ca_pem = write_certs(scratch.path(), &store)?;
        std::fs::write(scratch.path().join("log4j.properties"), LOG4J)?;
        let writer_password = random_hex()?;
        let reader_password = random_hex()?;
        let log = scratch.path().join("activemq.log");
        let conf = scratch.path().join("activemq.xml");
        let mut last = None;
        // A port picked here can be taken before the broker binds it: retry a few times.
        for _ in 0..3 {
            let ports = (free_port()?, free_port()?);
            let xml = broker_xml(
                scratch.path(),
                ports,
                (&writer_password, &reader_password),
                &store,
            );
            std::fs::write(&conf, xml)?;
            let _ = std::fs::remove_dir_all(scratch.path().join("data"));
            let started = Instant::now();
            let mut child = spawn_java(&home, scratch.path(), &conf, &log)?;
            match wait_ready(&mut child, ports, &reader_password, &log) {
                Ok(()) => {
                    return Ok(Self {
                        pid: child.id(),
                        child: Some(child),
                        stomp_port: ports.0,
                        stomp_ssl_port: ports.1,
                        writer_password,
                        reader_password,
                        ca_pem,
                        log,
                        started_in: started.elapsed(),
                        scratch,
                    });
                }
                Err(e) => {
                    kill_group(child.id());
                    let _ = child.wait();
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(HarnessError::NotReady {
            what: "activemq".into(),
            secs: START_TIMEOUT.as_secs(),
            log: log.display().to_string(),
        }))
    }

    /// The plain STOMP port (consumers; an emitter on loopback may use it too).
    pub fn stomp_port(&self) -> u16 {
        self.stomp_port
    }

    /// The STOMP-over-TLS port (certificate for `localhost` and `127.0.0.1`, see
    /// [`ActiveMq::ca_pem_path`]).
    pub fn stomp_ssl_port(&self) -> u16 {
        self.stomp_ssl_port
    }

    /// `stomp+ssl://127.0.0.1:{port}`: the URL an emitter is given.
    pub fn stomp_ssl_url(&self) -> String {
        format!("stomp+ssl://127.0.0.1:{}", self.stomp_ssl_port)
    }

    /// The password of [`WRITER`] (random, for this broker only).
    pub fn writer_password(&self) -> &str {
        &self.writer_password
    }

    /// The password of [`READER`] (random, for this broker only).
    pub fn reader_password(&self) -> &str {
        &self.reader_password
    }

    /// Path of the throwaway CA's PEM file (what an emitter's `caBundle` points to).
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem
    }

    /// Path of the broker's log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The broker's process id (the `java` process, leader of its process group).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Time from starting `java` to the first accepted STOMP `CONNECT`.
    pub fn startup_time(&self) -> Duration {
        self.started_in
    }

    /// A [`Subscriber`] of `destination` (`/topic/name`, `/queue/name`) as [`READER`] over
    /// plain STOMP, returned once the broker confirmed the subscription.
    pub async fn subscribe(&self, destination: &str) -> Result<Subscriber, HarnessError> {
        Subscriber::start(self, destination).await
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(self.pid);
            let _ = child.wait();
        }
    }

    /// Starts a background shell that kills the broker's process group when `pid` (the calling
    /// process) is gone: the stop for a broker kept in a `static`, whose drop never runs.
    fn watch_process(&self, pid: u32) -> Result<(), HarnessError> {
        let cleanup = if std::env::var_os("AUTHTRAIL_KEEP_LOGS").is_none() {
            format!("rm -rf '{}'", self.scratch.path().display())
        } else {
            String::from("true")
        };
        // procps' kill: dash's built-in one takes no `--` before a negative (group) id.
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; /bin/kill -KILL -- -{} 2>/dev/null; {cleanup}",
            self.pid
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|source| HarnessError::Spawn {
                what: "activemq watchdog".into(),
                source,
            })
    }
}

impl Drop for ActiveMq {
    fn drop(&mut self) {
        self.kill();
    }
}

static SHARED: OnceLock<Result<ActiveMq, String>> = OnceLock::new();

/// The one broker of this test binary, started on first use and stopped when the process ends
/// (a watchdog kills it, since a `static` is never dropped). Tests share it: each should use
/// its own destinations.
pub fn shared() -> Result<&'static ActiveMq, HarnessError> {
    let slot = SHARED.get_or_init(|| {
        let mq = ActiveMq::start().map_err(|e| e.to_string())?;
        mq.watch_process(std::process::id())
            .map_err(|e| e.to_string())?;
        Ok(mq)
    });
    slot.as_ref()
        .map_err(|e| HarnessError::Setup(format!("shared ActiveMQ: {e}")))
}

/// A `stomp.py` subscriber of one destination (see [`ActiveMq::subscribe`]), collecting the
/// messages it prints; stopped on drop.
pub struct Subscriber {
    child: tokio::process::Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    messages: Vec<Message>,
    errors: Vec<String>,
    _script: ScratchDir,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("messages", &self.messages.len())
            .field("errors", &self.errors)
            .finish_non_exhaustive()
    }
}

impl Subscriber {
    async fn start(mq: &ActiveMq, destination: &str) -> Result<Self, HarnessError> {
        let python = venv_bin("python3");
        if !python.is_file() {
            return Err(HarnessError::Missing {
                what: "the project's Python (stomp.py)".into(),
                path: python.display().to_string(),
                hint: "install the pinned Python tools with `make venv`",
            });
        }
        let script_dir = ScratchDir::new("stomp-subscriber")?;
        let script = script_dir.path().join("subscriber.py");
        std::fs::write(&script, SUBSCRIBER_PY)?;
        let mut child = tokio::process::Command::new(python)
            .arg(&script)
            .args(["127.0.0.1", &mq.stomp_port.to_string(), READER])
            .arg(&mq.reader_password)
            .arg(destination)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                what: "stomp.py subscriber".into(),
                source,
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(HarnessError::Setup("subscriber pipes missing".into()));
        };
        let mut me = Self {
            child,
            stdin: Some(stdin),
            lines: BufReader::new(stdout).lines(),
            messages: Vec::new(),
            errors: Vec::new(),
            _script: script_dir,
        };
        let started = Instant::now();
        loop {
            let left = Duration::from_secs(30).saturating_sub(started.elapsed());
            match tokio::time::timeout(left, me.lines.next_line()).await {
                Ok(Ok(Some(line))) => {
                    let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| {
                        HarnessError::Setup(format!("subscriber said {line:?}: {e}"))
                    })?;
                    if v.get("ready").is_some() {
                        return Ok(me);
                    }
                    me.take(v);
                }
                Ok(Ok(None)) | Ok(Err(_)) => {
                    return Err(HarnessError::Setup(format!(
                        "the stomp.py subscriber of {destination} ended before subscribing: {:?}",
                        me.errors
                    )));
                }
                Err(_) => {
                    return Err(HarnessError::NotReady {
                        what: format!("stomp.py subscriber of {destination}"),
                        secs: 30,
                        log: "stderr".into(),
                    });
                }
            }
        }
    }

    fn take(&mut self, v: serde_json::Value) {
        if let Some(e) = v.get("error") {
            self.errors.push(e.to_string());
            return;
        }
        let headers = v
            .get("headers")
            .and_then(serde_json::Value::as_object)
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let body = v
            .get("body")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string();
        self.messages.push(Message { headers, body });
    }

    /// Reads messages until there are at least `n` or `limit` passed; then until none came for
    /// `quiet` (so that duplicates arriving late are seen too). Returns every message so far.
    pub async fn wait_for(&mut self, n: usize, limit: Duration, quiet: Duration) -> &[Message] {
        let started = Instant::now();
        while self.messages.len() < n {
            let left = limit.saturating_sub(started.elapsed());
            if left.is_zero() || !self.next(left).await {
                return &self.messages;
            }
        }
        while self.next(quiet).await {}
        &self.messages
    }

    /// Reads one line within `limit`: whether one came.
    async fn next(&mut self, limit: Duration) -> bool {
        match tokio::time::timeout(limit, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => {
                if let Ok(v) = serde_json::from_str(&line) {
                    self.take(v);
                }
                true
            }
            _ => false,
        }
    }

    /// The messages read so far.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// `ERROR` frames the subscriber received (their bodies).
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    /// Disconnects and waits for the subscriber to end.
    pub async fn stop(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_broker_starts_refuses_a_wrong_password_and_a_subscriber_reads_what_was_sent() {
        let mq = tokio::task::spawn_blocking(ActiveMq::start)
            .await
            .unwrap()
            .expect("ActiveMQ (make apt-deps) and the venv (make venv)");
        assert!(stomp_connects(
            mq.stomp_port(),
            WRITER,
            mq.writer_password()
        ));
        assert!(!stomp_connects(mq.stomp_port(), WRITER, "wrong"));
        let mut sub = mq.subscribe("/queue/audit.harness").await.unwrap();
        let mut s = TcpStream::connect(("127.0.0.1", mq.stomp_port())).unwrap();
        let send = format!(
            "CONNECT\naccept-version:1.2\nhost:localhost\nlogin:{WRITER}\npasscode:{}\n\n\0\
             SEND\ndestination:/queue/audit.harness\ncontent-type:application/json\nx-id:a\\cb\n\n{{\"a\":1}}\0",
            mq.writer_password()
        );
        s.write_all(send.as_bytes()).unwrap();
        let got = sub
            .wait_for(1, Duration::from_secs(20), Duration::from_millis(200))
            .await
            .to_vec();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].body, "{\"a\":1}");
        assert_eq!(got[0].header("x-id"), Some("a:b"));
        assert_eq!(got[0].header("content-length"), None, "a text message");
        sub.stop().await;
        println!("ActiveMQ started in {:?}", mq.startup_time());
        let pid = mq.pid;
        drop(mq);
        let alive = Command::new("kill")
            .args(["-0", &pid.to_string()])
            .status()
            .unwrap();
        assert!(!alive.success(), "the broker is stopped on drop");
    }

    #[test]
    fn the_watchdog_kills_the_broker_once_the_watched_process_is_gone() {
        let mq = ActiveMq::start().expect("ActiveMQ (make apt-deps)");
        let mut watched = Command::new("sleep").arg("1").spawn().unwrap();
        mq.watch_process(watched.id()).unwrap();
        let _ = watched.wait();
        let started = Instant::now();
        // Killed, the broker is a zombie until this process (its parent) reaps it.
        let running = || {
            std::fs::read_to_string(format!("/proc/{}/stat", mq.pid())).is_ok_and(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
        };
        while running() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "broker still running"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
