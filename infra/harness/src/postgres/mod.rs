//! A real PostgreSQL 15 server for tests: `initdb` in a scratch directory, `pg_ctl` on a free
//! loopback port, TLS on with a throwaway CA (server certificate for `127.0.0.1`/`localhost`),
//! and a password-protected test role owning a test database. Stopped on drop.
//!
//! Rows are read back with `psql` ([`Postgres::query`], [`Postgres::query_json`]), a client other
//! than the emitter's, over TLS that verifies the throwaway CA.
//!
//! As root the server runs as the unprivileged `postgres` system user that the Debian package
//! creates (through `runuser`); without that user, start-up is refused with a clear message.
//! The server binaries are looked up in `PG_BIN_DIR`, else `/usr/lib/postgresql/15/bin`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::{HarnessError, ScratchDir, free_port};

mod client;

pub use client::Database;

/// Name of the test role (a login role with a password, owner of [`DATABASE`]).
pub const ROLE: &str = "authtrail";
/// Name of the test database.
pub const DATABASE: &str = "authtrail";
/// The system user the server runs as when the tests run as root.
const SYSTEM_USER: &str = "postgres";
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A PostgreSQL server running on a loopback port until dropped.
pub struct Postgres {
    port: u16,
    password: String,
    bin: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    ca_pem: PathBuf,
    log: PathBuf,
    run_as: Option<&'static str>,
    running: bool,
    _scratch: ScratchDir,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("port", &self.port)
            .field("data", &self.data)
            .field("running", &self.running)
            .finish_non_exhaustive()
    }
}

/// The directory holding the PostgreSQL server binaries (`initdb`, `pg_ctl`, `psql`).
pub fn pg_bin_dir() -> PathBuf {
    std::env::var_os("PG_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

fn cert_err(e: rcgen::Error) -> HarnessError {
    HarnessError::Setup(format!("test certificate: {e}"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// Writes `ca.pem`, `server.pem` and `server.key` (mode 0600) into `dir`; returns the CA's path.
fn write_certs(dir: &Path) -> Result<PathBuf, HarnessError> {
    use std::os::unix::fs::PermissionsExt;
    let ca_key = KeyPair::generate().map_err(cert_err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "authtrail PostgreSQL test CA");
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
    std::fs::write(dir.join("server.pem"), leaf_cert.pem())?;
    let key = dir.join("server.key");
    std::fs::write(&key, leaf_key.serialize_pem())?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    Ok(ca_path)
}

/// A random password for the test role (hex of 16 random bytes from the OS).
fn random_password() -> Result<String, HarnessError> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Postgres {
    /// Starts a fresh server (see the module documentation) and creates the test role and
    /// database. Blocking: call it from `spawn_blocking` or before the runtime is busy.
    pub fn start() -> Result<Self, HarnessError> {
        let bin = pg_bin_dir();
        for tool in ["initdb", "pg_ctl", "psql"] {
            if !bin.join(tool).is_file() {
                return Err(HarnessError::Missing {
                    what: format!("PostgreSQL's {tool}"),
                    path: bin.join(tool).display().to_string(),
                    hint: "install postgresql-15 (make apt-deps) or set PG_BIN_DIR",
                });
            }
        }
        let run_as = if is_root() {
            let known = Command::new("id")
                .arg("-u")
                .arg(SYSTEM_USER)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !known {
                return Err(HarnessError::Setup(format!(
                    "running as root, PostgreSQL must run as an unprivileged user, and the \
                     `{SYSTEM_USER}` system user (made by the postgresql-15 package) does not exist"
                )));
            }
            Some(SYSTEM_USER)
        } else {
            None
        };
        let scratch = ScratchDir::new("postgres")?;
        let data = scratch.path().join("data");
        let socket_dir = scratch.path().join("run");
        std::fs::create_dir_all(&socket_dir)?;
        let certs = scratch.path().join("certs");
        std::fs::create_dir_all(&certs)?;
        let ca_pem = write_certs(&certs)?;
        let password = random_password()?;
        let pwfile = scratch.path().join("pwfile");
        std::fs::write(&pwfile, &password)?;
        if let Some(user) = run_as {
            let status = Command::new("chown")
                .args([
                    "-R",
                    &format!("{user}:"),
                    &scratch.path().display().to_string(),
                ])
                .status()?;
            if !status.success() {
                return Err(HarnessError::Setup(format!(
                    "chown of the scratch directory to {user} failed"
                )));
            }
        }
        let log = scratch.path().join("postgres.log");
        let mut me = Self {
            port: 0,
            password,
            bin,
            data,
            socket_dir,
            ca_pem,
            log,
            run_as,
            running: false,
            _scratch: scratch,
        };
        me.initdb(&pwfile, &certs)?;
        let _ = std::fs::remove_file(&pwfile);
        me.start_on_free_port()?;
        me.create_role_and_database()?;
        Ok(me)
    }

    /// A command for a PostgreSQL tool, run as the server's user when the tests run as root.
    fn tool(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        match self.run_as {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(path);
                cmd
            }
            None => Command::new(path),
        }
    }

    fn run(&self, what: &str, cmd: &mut Command) -> Result<String, HarnessError> {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|source| HarnessError::Spawn {
                what: what.to_string(),
                source,
            })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(HarnessError::Command {
                what: what.to_string(),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
    }

    fn initdb(&self, pwfile: &Path, certs: &Path) -> Result<(), HarnessError> {
        let mut cmd = self.tool("initdb");
        cmd.arg("-D")
            .arg(&self.data)
            .args([
                "-U",
                SYSTEM_USER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .args(["--encoding=UTF8", "--locale=C", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()));
        self.run("initdb", &mut cmd)?;
        let conf = format!(
            "\n# authtrail test harness\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{sock}'\nssl = on\nssl_cert_file = '{c}/server.pem'\n\
             ssl_key_file = '{c}/server.key'\nssl_ca_file = '{c}/ca.pem'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             max_connections = 50\nlog_min_messages = warning\n",
            sock = self.socket_dir.display(),
            c = certs.display(),
        );
        let path = self.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path)?;
        text.push_str(&conf);
        std::fs::write(&path, text)?;
        Ok(())
    }

    /// Picks a free port and starts the server there; retries when the port was taken.
    fn start_on_free_port(&mut self) -> Result<(), HarnessError> {
        let mut last = None;
        for _ in 0..5 {
            self.port = free_port()?;
            match self.pg_ctl_start() {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(HarnessError::NotReady {
            what: "postgres".into(),
            secs: START_TIMEOUT.as_secs(),
            log: self.log.display().to_string(),
        }))
    }

    fn pg_ctl_start(&mut self) -> Result<(), HarnessError> {
        let mut cmd = self.tool("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .arg("-o")
            .arg(format!("-p {}", self.port))
            .args(["-w", "-t", &START_TIMEOUT.as_secs().to_string(), "start"]);
        // pg_ctl leaves the server's output file open in its child: do not wait for its pipes.
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let status = cmd
            .stdin(Stdio::null())
            .status()
            .map_err(|source| HarnessError::Spawn {
                what: "pg_ctl start".into(),
                source,
            })?;
        if !status.success() {
            return Err(HarnessError::NotReady {
                what: format!("postgres on port {} (pg_ctl {status})", self.port),
                secs: START_TIMEOUT.as_secs(),
                log: self.log.display().to_string(),
            });
        }
        self.running = true;
        self.wait_accepting()
    }

    /// Waits until the server answers a query (as the superuser over its Unix socket, which
    /// works before the test role exists).
    fn wait_accepting(&self) -> Result<(), HarnessError> {
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            let mut cmd = self.tool("psql");
            cmd.args(["-X", "-q", "-h"])
                .arg(&self.socket_dir)
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    SYSTEM_USER,
                    "-d",
                    "postgres",
                ])
                .args(["-c", "SELECT 1"]);
            if self.run("psql", &mut cmd).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(HarnessError::NotReady {
            what: "postgres".into(),
            secs: START_TIMEOUT.as_secs(),
            log: self.log.display().to_string(),
        })
    }

    /// Runs SQL as the superuser over the server's Unix socket (administration only).
    pub fn admin_sql(&self, database: &str, sql: &str) -> Result<String, HarnessError> {
        let mut cmd = self.tool("psql");
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.socket_dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SYSTEM_USER,
                "-d",
                database,
            ])
            .args(["-c", sql]);
        self.run("psql (admin)", &mut cmd)
    }

    fn create_role_and_database(&self) -> Result<(), HarnessError> {
        // The password is hex: safe inside a quoted literal.
        self.admin_sql(
            "postgres",
            &format!("CREATE ROLE {ROLE} LOGIN PASSWORD '{}'", self.password),
        )?;
        self.admin_sql(
            "postgres",
            &format!("CREATE DATABASE {DATABASE} OWNER {ROLE}"),
        )?;
        Ok(())
    }

    /// Stops the server (fast shutdown); the data directory stays, so [`Postgres::resume`]
    /// brings the same database back on the same port.
    pub fn pause(&mut self) -> Result<(), HarnessError> {
        if !self.running {
            return Ok(());
        }
        let mut cmd = self.tool("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"]);
        self.run("pg_ctl stop", &mut cmd)?;
        self.running = false;
        Ok(())
    }

    /// Starts a paused server again on its port and waits until it accepts connections.
    pub fn resume(&mut self) -> Result<(), HarnessError> {
        if self.running {
            return Ok(());
        }
        self.pg_ctl_start()
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host to connect to (`127.0.0.1`).
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The test role's name ([`ROLE`]).
    pub fn username(&self) -> &'static str {
        ROLE
    }

    /// The test role's password (a random value for this server only).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The test database's name ([`DATABASE`]).
    pub fn database(&self) -> &'static str {
        DATABASE
    }

    /// Path of the throwaway CA's PEM file (what an emitter's `caBundle` points to).
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem
    }

    /// Path of the server's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// A `psql` client of the test database ([`DATABASE`]) as the test role.
    pub fn db(&self) -> Database {
        self.db_named(DATABASE)
    }

    fn db_named(&self, name: &str) -> Database {
        Database {
            port: self.port,
            name: name.to_string(),
            password: self.password.clone(),
            psql: self.bin.join("psql"),
            ca_pem: self.ca_pem.clone(),
        }
    }

    /// Creates another database owned by the test role (a lowercase identifier), so that tests
    /// sharing one server keep their tables apart, and returns its client.
    pub fn create_database(&self, name: &str) -> Result<Database, HarnessError> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(HarnessError::Setup(format!(
                "database name {name:?}: lowercase letters, digits and _ only"
            )));
        }
        self.admin_sql("postgres", &format!("CREATE DATABASE {name} OWNER {ROLE}"))?;
        Ok(self.db_named(name))
    }

    /// The test database's connection string (see [`Database::conninfo`]).
    pub fn conninfo(&self) -> String {
        self.db().conninfo()
    }

    /// [`Database::query`] on the test database.
    pub fn query(&self, sql: &str) -> Result<Vec<Vec<String>>, HarnessError> {
        self.db().query(sql)
    }

    /// [`Database::query_json`] on the test database.
    pub fn query_json(&self, select: &str) -> Result<Vec<serde_json::Value>, HarnessError> {
        self.db().query_json(select)
    }

    /// [`Database::execute`] on the test database.
    pub fn execute(&self, sql: &str) -> Result<(), HarnessError> {
        self.db().execute(sql)
    }

    /// [`Database::execute_file`] on the test database.
    pub fn execute_file(&self, path: &Path) -> Result<(), HarnessError> {
        self.db().execute_file(path)
    }

    /// Starts a background shell that stops the server when `pid` (the calling process)
    /// is gone: the stop watchdog for a server kept in a `static`, whose drop never runs.
    fn watch_process(&self, pid: u32) -> Result<(), HarnessError> {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = match self.run_as {
            Some(user) => format!("runuser -u {user} -- '{}'", pg_ctl.display()),
            None => format!("'{}'", pg_ctl.display()),
        };
        let cleanup = if std::env::var_os("AUTHTRAIL_KEEP_LOGS").is_none() {
            format!("rm -rf '{}'", self._scratch.path().display())
        } else {
            String::from("true")
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {stop} -D '{}' -m immediate stop >/dev/null 2>&1; {cleanup}",
            self.data.display(),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|source| HarnessError::Spawn {
                what: "postgres watchdog".into(),
                source,
            })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let mut cmd = self.tool("pg_ctl");
            cmd.arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = cmd.status();
        }
    }
}

static SHARED: OnceLock<Result<std::sync::Mutex<Postgres>, String>> = OnceLock::new();

/// The one server of this test binary, started on first use and stopped when the process ends
/// (a watchdog runs `pg_ctl stop`, since a `static` is never dropped). Tests share it: each
/// should use its own tables. The mutex lets a test pause and resume it.
pub fn shared() -> Result<&'static std::sync::Mutex<Postgres>, HarnessError> {
    let slot = SHARED.get_or_init(|| {
        let pg = Postgres::start().map_err(|e| e.to_string())?;
        pg.watch_process(std::process::id())
            .map_err(|e| e.to_string())?;
        Ok(std::sync::Mutex::new(pg))
    });
    slot.as_ref()
        .map_err(|e| HarnessError::Setup(format!("shared PostgreSQL: {e}")))
}
