//! Redis past one server, on loopback ports, owned by one test: a cluster
//! made with `redis-cli --cluster create` (masters, and a replica each if
//! asked), and a master with a replica watched by three sentinels
//! (`redis-server --sentinel`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::servers::free_port;

/// One `redis-server` process; killed on drop.
struct Node {
    port: u16,
    child: Option<Child>,
}

impl Node {
    /// A server on `port`, in `dir`, with `args`.
    fn spawn(dir: &Path, port: u16, args: &[&str]) -> anyhow::Result<Self> {
        let mut command = Command::new("redis-server");
        command
            .args(args)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir)
            .args(["--save", "", "--appendonly", "no"]);
        Self::run(command, port)
    }

    /// `command` (a redis-server), until it listens on `port`.
    fn run(mut command: Command, port: u16) -> anyhow::Result<Self> {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run redis-server: install the redis-server package")?;
        let node = Self {
            port,
            child: Some(child),
        };
        wait_until(Duration::from_secs(10), || {
            Ok(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
        })
        .with_context(|| format!("redis-server on port {port} does not listen"))?;
        Ok(node)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `redis-cli -p PORT args…`, its output.
fn cli(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .context("cannot run redis-cli: install the redis-tools package")?;
    ensure!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_until(
    within: Duration,
    mut ready: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if ready().unwrap_or(false) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("not ready after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A Redis Cluster covering all 16,384 slots: masters, with or without a
/// replica each.
pub struct RedisCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts `masters` nodes and joins them into one cluster.
    pub fn start(masters: usize) -> anyhow::Result<Self> {
        Self::start_with_replicas(masters, 0)
    }

    /// Starts `masters` masters with `replicas` replicas each, joined into
    /// one cluster; returns once every node reports the cluster ok and
    /// every replica is in sync with its master.
    pub fn start_with_replicas(masters: usize, replicas: usize) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut nodes = Vec::new();
        for i in 0..masters * (1 + replicas) {
            let port = free_port()?;
            let node_dir = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir)?;
            nodes.push(Node::spawn(
                &node_dir,
                port,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ],
            )?);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let first = nodes[0].port;
        let mut create = vec!["--cluster", "create"];
        create.extend(addrs.iter().map(String::as_str));
        let replicas = replicas.to_string();
        create.extend(["--cluster-replicas", &replicas, "--cluster-yes"]);
        cli(first, &create)?;
        let cluster = Self { nodes, _dir: dir };
        for node in &cluster.nodes {
            wait_until(Duration::from_secs(20), || {
                Ok(cli(node.port, &["CLUSTER", "INFO"])?.contains("cluster_state:ok"))
            })
            .with_context(|| format!("cluster node {} never reported ok", node.port))?;
            wait_until(Duration::from_secs(20), || {
                let role = cli(node.port, &["ROLE"])?;
                Ok(role.starts_with("master")
                    || cli(node.port, &["INFO", "replication"])?.contains("master_link_status:up"))
            })
            .with_context(|| format!("cluster replica {} never synced", node.port))?;
        }
        Ok(cluster)
    }

    /// The port of the master serving `key`'s slot now, as a live node sees it.
    pub fn master_of(&self, key: &str) -> anyhow::Result<u16> {
        let node = self
            .nodes
            .iter()
            .find(|n| n.child.is_some())
            .context("no node alive")?;
        let slot: u16 = cli(node.port, &["CLUSTER", "KEYSLOT", key])?
            .trim()
            .parse()
            .context("CLUSTER KEYSLOT")?;
        // `<id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch> <link> <slots>…`
        for line in cli(node.port, &["CLUSTER", "NODES"])?.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let serving = fields.get(2).is_some_and(|f| {
                f.split(',').any(|f| f == "master") && !f.split(',').any(|f| f == "fail")
            });
            let covers = fields.iter().skip(8).any(|range| {
                let mut ends = range.splitn(2, '-').map(str::parse::<u16>);
                match (ends.next(), ends.next()) {
                    (Some(Ok(a)), Some(Ok(b))) => (a..=b).contains(&slot),
                    (Some(Ok(a)), None) => a == slot,
                    _ => false,
                }
            });
            if serving && covers {
                let addr = fields.get(1).context("no address")?;
                let port = addr
                    .split(['@', ':'])
                    .nth(1)
                    .and_then(|p| p.parse().ok())
                    .context("no port")?;
                return Ok(port);
            }
        }
        bail!("no master serves slot {slot}")
    }

    /// Waits until every master's writes reached its replicas (`WAIT`).
    pub fn sync_replicas(&self, replicas: usize) -> anyhow::Result<()> {
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            if cli(node.port, &["ROLE"])?.starts_with("master") {
                let acked: usize = cli(node.port, &["WAIT", &replicas.to_string(), "5000"])?
                    .trim()
                    .parse()
                    .context("WAIT")?;
                ensure!(
                    acked >= replicas,
                    "master {} synced {acked} replicas",
                    node.port
                );
            }
        }
        Ok(())
    }

    /// Kills the node on `port` (SIGKILL: no shutdown, no last sync).
    pub fn kill(&mut self, port: u16) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port == port) {
            node.kill();
        }
    }

    /// Waits until `key`'s slot is served by a master other than `dead`
    /// and every live node reports the cluster ok.
    pub fn wait_failover(&self, key: &str, dead: u16, within: Duration) -> anyhow::Result<()> {
        wait_until(within, || {
            let moved = self.master_of(key)? != dead;
            let mut ok = true;
            for node in self.nodes.iter().filter(|n| n.child.is_some()) {
                ok &= cli(node.port, &["CLUSTER", "INFO"])?.contains("cluster_state:ok");
            }
            Ok(moved && ok)
        })
        .context("no cluster failover")
    }

    /// Every node's URL, comma-separated (`VISITLOG_REDIS_URL` in cluster mode).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The nodes' ports.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// Every key of every node matching `pattern` (`redis-cli --scan`).
    pub fn keys(&self, pattern: &str) -> anyhow::Result<Vec<String>> {
        let mut all = Vec::new();
        for node in &self.nodes {
            let out = cli(node.port, &["--scan", "--pattern", pattern])?;
            all.extend(out.lines().filter(|l| !l.is_empty()).map(str::to_owned));
        }
        all.sort();
        Ok(all)
    }
}

/// The master's name the sentinels know.
pub const SENTINEL_MASTER: &str = "mymaster";

/// A master, one replica and three sentinels that fail over after one
/// second without an answer.
pub struct SentinelGroup {
    master: Node,
    replica: Node,
    sentinels: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl SentinelGroup {
    /// Starts them and waits until every sentinel sees the master and its replica.
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let master = Node::spawn(dir.path(), free_port()?, &[])?;
        let replica_port = free_port()?;
        let replicaof = format!("127.0.0.1 {}", master.port);
        let replica = Node::spawn(
            dir.path(),
            replica_port,
            &["--replicaof", &replicaof, "--replica-read-only", "yes"],
        )?;
        wait_until(Duration::from_secs(20), || {
            Ok(cli(replica.port, &["INFO", "replication"])?.contains("master_link_status:up"))
        })
        .context("the replica never caught up with the master")?;
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_port()?;
            let conf = dir.path().join(format!("sentinel{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master} 2\n\
                     sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                     sentinel failover-timeout {SENTINEL_MASTER} 5000\n\
                     sentinel parallel-syncs {SENTINEL_MASTER} 1\n",
                    dir = dir.path().display(),
                    master = master.port,
                ),
            )?;
            let mut command = Command::new("redis-server");
            command.arg(&conf).arg("--sentinel");
            sentinels.push(Node::run(command, port).context("a sentinel does not start")?);
        }
        let group = Self {
            master,
            replica,
            sentinels,
            _dir: dir,
        };
        for s in &group.sentinels {
            wait_until(Duration::from_secs(20), || {
                let replicas = cli(s.port, &["SENTINEL", "REPLICAS", SENTINEL_MASTER])?;
                let sentinels = cli(s.port, &["SENTINEL", "SENTINELS", SENTINEL_MASTER])?;
                Ok(replicas.contains(&group.replica.port.to_string())
                    && sentinels.matches("127.0.0.1").count() >= 2)
            })
            .context("the sentinels never found each other and the replica")?;
        }
        Ok(group)
    }

    /// The sentinels' URLs, comma-separated (`VISITLOG_REDIS_URL` in sentinel mode).
    pub fn urls(&self) -> String {
        self.sentinels
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The port of the server the sentinels name master now.
    pub fn master_port(&self) -> anyhow::Result<u16> {
        let out = cli(
            self.sentinels[0].port,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER],
        )?;
        out.lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .context("no master address")
    }

    /// The first master's port.
    pub fn first_master_port(&self) -> u16 {
        self.master.port
    }

    /// The replica's port.
    pub fn replica_port(&self) -> u16 {
        self.replica.port
    }

    /// Kills the master (SIGKILL: no shutdown, no last sync).
    pub fn kill_master(&mut self) {
        self.master.kill();
    }

    /// Waits until the sentinels name the replica master and it answers as one.
    pub fn wait_failover(&self, within: Duration) -> anyhow::Result<()> {
        wait_until(within, || {
            Ok(self.master_port()? == self.replica.port
                && cli(self.replica.port, &["ROLE"])?.starts_with("master"))
        })
        .context("no failover")
    }
}
