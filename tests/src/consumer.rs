//! The `visitlog-consumer` binary as ops run it: configured by environment
//! for one test's namespace and database, stopped with SIGTERM. The binary's
//! path comes from the test (`CARGO_BIN_EXE_*` in the consumer's own tests).

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::Namespace;

/// `bin` with only the settings of this namespace and database, and test
/// timings, in its environment.
pub fn command(bin: &Path, ns: &Namespace, uri: &str, db: &str) -> Command {
    let mut c = Command::new(bin);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("VISITLOG_REDIS_URL", ns.redis_url())
        .env("VISITLOG_QUEUE", ns.queue())
        .env("VISITLOG_MONGODB_URI", uri)
        .env("VISITLOG_DATABASE", db)
        .env("VISITLOG_HEARTBEAT_INTERVAL", "200ms")
        // The shutdown deadline must be below the TTL, and long enough for
        // in-flight batches to finish on a loaded machine.
        .env("VISITLOG_HEARTBEAT_TTL", "10s")
        .env("VISITLOG_SHUTDOWN_DEADLINE", "8s")
        .env("VISITLOG_FLUSH_INTERVAL", "50ms")
        .env("VISITLOG_MAX_BACKOFF", "500ms")
        // Tests run in parallel: any free port, never the default 5555.
        .env("VISITLOG_STATUS_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn");
    c
}

/// Starts `bin run` as consumer `id`, batches of 300, its log on stderr.
pub fn spawn(bin: &Path, ns: &Namespace, uri: &str, db: &str, id: &str) -> std::io::Result<Child> {
    command(bin, ns, uri, db)
        .args(["--consumer-id", id, "--batch-size", "300", "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
}

/// Sends SIGTERM, as systemd does to stop it; panics (fails the test) if
/// it cannot.
pub fn terminate(child: &Child) {
    let sent = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .is_ok_and(|s| s.success());
    assert!(sent, "kill -TERM {} failed", child.id());
}
