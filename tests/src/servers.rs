//! The services tests run against: the shared Redis and MongoDB that
//! `scripts/services` started, and servers owned by one test (to stop,
//! freeze or restart them).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};

/// A `redis-server` process owned by one test; killed on drop.
pub struct RedisServer {
    port: u16,
    password: Option<String>,
    /// Listens with TLS only (`rediss://`).
    tls: bool,
    child: Option<Child>,
}

/// A throwaway certificate authority and a server certificate it signed
/// for `127.0.0.1` and `localhost`, as PEM files in a temporary directory.
pub struct TestCa {
    _dir: tempfile::TempDir,
    /// The CA's certificate.
    pub ca: PathBuf,
    /// The server's certificate.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

impl TestCa {
    /// Makes a new CA (its own key, never seen before) and a server
    /// certificate.
    pub fn new() -> anyhow::Result<Self> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir()?;
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "visitlog test CA");
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate()?;
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?
            .signed_by(&server_key, &issuer)?;
        let write = |name: &str, pem: String| -> anyhow::Result<PathBuf> {
            let path = dir.path().join(name);
            std::fs::write(&path, pem)?;
            Ok(path)
        };
        Ok(Self {
            ca: write("ca.pem", ca_cert.pem())?,
            cert: write("server.pem", server.pem())?,
            key: write("server.key", server_key.serialize_pem())?,
            _dir: dir,
        })
    }
}

impl RedisServer {
    /// Starts a server on a free loopback port.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_on(free_port()?)
    }

    /// Starts a server on `port` (to restart one that was stopped).
    pub fn start_on(port: u16) -> anyhow::Result<Self> {
        Self::launch(port, None)
    }

    /// Starts a server on `port` that wants `password` (`requirepass`).
    pub fn start_with_password(port: u16, password: &str) -> anyhow::Result<Self> {
        Self::launch(port, Some(password.to_owned()))
    }

    /// Starts a server that speaks only TLS, with `ca`'s server certificate,
    /// on a free loopback port.
    pub fn start_tls(ca: &TestCa) -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut command = Command::new("redis-server");
        command
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(&ca.cert)
            .arg("--tls-key-file")
            .arg(&ca.key)
            .arg("--tls-ca-cert-file")
            .arg(&ca.ca)
            .args(["--tls-auth-clients", "no"]);
        Self::spawn(command, port, None, true)
    }

    fn launch(port: u16, password: Option<String>) -> anyhow::Result<Self> {
        let mut command = Command::new("redis-server");
        if let Some(p) = &password {
            command.args(["--requirepass", p]);
        }
        command.args(["--port", &port.to_string()]);
        Self::spawn(command, port, password, false)
    }

    fn spawn(
        mut command: Command,
        port: u16,
        password: Option<String>,
        tls: bool,
    ) -> anyhow::Result<Self> {
        let child = command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run redis-server: run scripts/services start, or install the redis-server package")?;
        let server = Self {
            port,
            password,
            tls,
            child: Some(child),
        };
        wait_for_port(port, Duration::from_secs(10))?;
        Ok(server)
    }

    /// `redis://127.0.0.1:PORT` (`rediss://` for TLS), with the password
    /// when there is one.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        match &self.password {
            Some(p) => format!("{scheme}://:{p}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (its data is gone; nothing is persisted).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server with SIGSTOP: connections are accepted by the
    /// kernel but nothing is ever answered, as with a stalled server.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("-STOP")
    }

    /// Thaws a paused server with SIGCONT.
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let Some(child) = &self.child else {
            bail!("server not running")
        };
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill {signal} failed");
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.resume();
        self.stop();
    }
}

/// The shared Redis of this test run.
pub fn shared_redis_url() -> String {
    static PRIVATE: OnceLock<Result<RedisServer, String>> = OnceLock::new();
    if let Ok(url) = std::env::var("VISITLOG_TEST_REDIS_URL") {
        return url;
    }
    match PRIVATE.get_or_init(|| RedisServer::start().map_err(|e| format!("{e:#}"))) {
        Ok(server) => server.url(),
        Err(e) => panic!("no Redis for tests: {e}"),
    }
}

/// A free loopback port.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn wait_for_port(port: u16, within: Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if std::time::Instant::now() > deadline {
            bail!("nothing listens on port {port} after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The shared MongoDB of this test run (from `scripts/services`).
pub fn shared_mongodb_uri() -> String {
    std::env::var("VISITLOG_TEST_MONGODB_URI").unwrap_or_else(|_| {
        panic!("VISITLOG_TEST_MONGODB_URI is not set: run the tests with scripts/test")
    })
}

/// A fresh database name for one test.
pub fn test_database() -> String {
    format!("visitlog_test_{}", uuid::Uuid::new_v4().simple())
}

/// A MongoDB server owned by one test (to stop and restart it): a real
/// `mongod` when one is on PATH, else nx-27017 from the virtualenv that
/// `scripts/services` made. Data survives a restart; killed on drop.
pub struct MongoServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl MongoServer {
    /// Starts a server on a free port with an empty data directory.
    pub fn start() -> anyhow::Result<Self> {
        let mut server = Self {
            port: free_port()?,
            dir: tempfile::Builder::new()
                .prefix("visitlog-mongo-")
                .tempdir()?,
            child: None,
        };
        server.restart()?;
        Ok(server)
    }

    /// `mongodb://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }

    /// Kills the server; its data stays for [`restart`](Self::restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let port = self.port.to_string();
        let dir = self.dir.path();
        let mut command = if which("mongod") {
            let mut c = Command::new("mongod");
            c.args(["--bind_ip", "127.0.0.1", "--port", &port, "--dbpath"])
                .arg(dir);
            c
        } else {
            let nx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/venv/bin/nx-27017");
            anyhow::ensure!(
                nx.exists(),
                "no mongod and no {}: run scripts/services start once",
                nx.display()
            );
            let mut c = Command::new(nx);
            c.args(["--host", "127.0.0.1", "--port", &port, "--data-dir"])
                .arg(dir);
            c.arg("--log-file")
                .arg(dir.join("nx.log"))
                .arg("--pid-file")
                .arg(dir.join("nx.pid"));
            c
        };
        self.child = Some(
            command
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        wait_for_port(self.port, Duration::from_secs(20))
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
}
