//! A real rsyslog on loopback for syslog tests and the demo: TCP, TLS (gtls driver, with the
//! receiver's generated certificate) and UDP inputs on free ports, and an output template that
//! writes the RFC 5424 fields rsyslog parsed (pri, facility, severity, hostname, app-name,
//! msgid, msg, and which input took it) as one JSON object per line.
//!
//! Needs the Debian packages `rsyslog` and `rsyslog-gnutls` (`make test` installs them).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::process::{Child, Command};

use crate::ReceiverError;
use crate::certs::CertFiles;

/// One message as rsyslog parsed it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct SyslogMessage {
    /// `tcp`, `tls` or `udp`.
    pub input: String,
    pub pri: String,
    /// rsyslog's names: `authpriv`, `local0`, ...
    pub facility: String,
    /// rsyslog's names: `emerg`, `alert`, `crit`, `err`, `warning`, `notice`, `info`, `debug`.
    pub severity: String,
    pub version: String,
    pub timestamp: String,
    pub hostname: String,
    pub appname: String,
    pub procid: String,
    pub msgid: String,
    pub msg: String,
}

/// A running rsyslogd, killed on drop.
pub struct Rsyslog {
    child: Child,
    pub tcp_port: u16,
    pub tls_port: u16,
    pub udp_port: u16,
    output: PathBuf,
    log: PathBuf,
}

const PROBE_APP: &str = "authtrail-probe";

fn free_port() -> Result<u16, ReceiverError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn free_udp_port() -> Result<u16, ReceiverError> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
    Ok(s.local_addr()?.port())
}

/// The rsyslogd binary: `RSYSLOGD` or the Debian path.
pub fn rsyslogd_path() -> PathBuf {
    std::env::var_os("RSYSLOGD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/rsyslogd"))
}

impl Rsyslog {
    /// Writes a configuration into `dir`, starts `rsyslogd -n` and waits until it processes
    /// messages.
    pub async fn start(dir: &Path, certs: &CertFiles) -> Result<Self, ReceiverError> {
        let bin = rsyslogd_path();
        if !bin.is_file() {
            return Err(ReceiverError::Missing(format!(
                "rsyslogd not found at {}: install rsyslog and rsyslog-gnutls (make apt-deps)",
                bin.display()
            )));
        }
        std::fs::create_dir_all(dir)?;
        let work = dir.join("work");
        std::fs::create_dir_all(&work)?;
        let output = dir.join("messages.jsonl");
        let log = dir.join("rsyslogd.log");
        let conf = dir.join("rsyslog.conf");
        let (tcp_port, tls_port, udp_port) = (free_port()?, free_port()?, free_udp_port()?);
        let q = |p: &Path| p.display().to_string().replace('"', "\\\"");
        let text = format!(
            r#"global(workDirectory="{work}" maxMessageSize="64k"
  DefaultNetstreamDriverCAFile="{ca}" DefaultNetstreamDriverCertFile="{cert}" DefaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" MaxSessions="200")
module(load="imudp")
template(name="authtrail-json" type="list" option.jsonf="on") {{
  property(outname="input" name="inputname" format="jsonf")
  property(outname="pri" name="pri" format="jsonf")
  property(outname="facility" name="syslogfacility-text" format="jsonf")
  property(outname="severity" name="syslogseverity-text" format="jsonf")
  property(outname="version" name="protocol-version" format="jsonf")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="appname" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}}
ruleset(name="authtrail") {{
  action(type="omfile" file="{out}" template="authtrail-json" flushOnTXEnd="on" asyncWriting="off")
}}
input(type="imtcp" port="{tcp_port}" address="127.0.0.1" name="tcp" ruleset="authtrail")
input(type="imtcp" port="{tls_port}" address="127.0.0.1" name="tls" ruleset="authtrail" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imudp" port="{udp_port}" address="127.0.0.1" name="udp" ruleset="authtrail")
"#,
            work = q(&work),
            ca = q(&certs.ca_pem_path),
            cert = q(&certs.cert_pem_path),
            key = q(&certs.key_pem_path),
            out = q(&output),
        );
        std::fs::write(&conf, text)?;
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(&bin)
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                ReceiverError::Missing(format!("could not start {}: {e}", bin.display()))
            })?;
        let mut me = Self {
            child,
            tcp_port,
            tls_port,
            udp_port,
            output,
            log,
        };
        me.wait_ready().await?;
        Ok(me)
    }

    /// Sends UDP probes until one comes out the other end (TCP is then up too: rsyslog opens
    /// its inputs before it processes anything).
    async fn wait_ready(&mut self) -> Result<(), ReceiverError> {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(ReceiverError::Missing(format!(
                    "rsyslogd exited with {status}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )));
            }
            let probe = format!("<14>1 - - {PROBE_APP} - - - ready");
            let _ = sock
                .send_to(probe.as_bytes(), ("127.0.0.1", self.udp_port))
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            if self.all_messages().iter().any(|m| m.appname == PROBE_APP) {
                // TCP inputs: check they accept connections.
                if tokio::net::TcpStream::connect(("127.0.0.1", self.tcp_port))
                    .await
                    .is_ok()
                {
                    return Ok(());
                }
            }
        }
        Err(ReceiverError::Missing(format!(
            "rsyslogd did not become ready in 20 s: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )))
    }

    fn all_messages(&self) -> Vec<SyslogMessage> {
        let text = std::fs::read_to_string(&self.output).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Every message received so far (readiness probes left out).
    pub fn messages(&self) -> Vec<SyslogMessage> {
        self.all_messages()
            .into_iter()
            .filter(|m| m.appname != PROBE_APP)
            .collect()
    }

    /// Waits until at least `n` messages arrived (or `timeout` passed) and returns them.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<SyslogMessage> {
        let started = Instant::now();
        loop {
            let m = self.messages();
            if m.len() >= n || started.elapsed() > timeout {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// rsyslogd's own log (startup errors, TLS errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}
