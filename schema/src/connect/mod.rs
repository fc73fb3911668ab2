//! Opening Redis, the same way in the middleware and the consumer: one
//! server, a master found through Redis Sentinel, or a Redis Cluster.
//!
//! [`RedisTarget`] is what the settings say (`VISITLOG_REDIS_MODE`,
//! `VISITLOG_REDIS_URL`, `VISITLOG_REDIS_SENTINEL_MASTER`,
//! `VISITLOG_REDIS_CA_CERT`); [`RedisConn`] is a connection to it that
//! every command of visitlog goes through, whatever the mode.

use std::time::Duration;

use redis::{ConnectionInfo, IntoConnectionInfo, RedisResult};

mod client;
mod conn;
mod sentinel;

pub use client::{read_ca_cert, redis_client};
pub use conn::RedisConn;

/// How Redis is deployed (`VISITLOG_REDIS_MODE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// One server (`redis://` or `rediss://`), the default.
    #[default]
    Standalone,
    /// A master and its replicas watched by Redis Sentinel: the URLs are the
    /// sentinels', and the master is asked of them at every (re)connection.
    Sentinel,
    /// A Redis Cluster: the URLs are seed nodes; keys are routed by slot.
    Cluster,
}

impl std::str::FromStr for RedisMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "standalone" => Ok(Self::Standalone),
            "sentinel" => Ok(Self::Sentinel),
            "cluster" => Ok(Self::Cluster),
            _ => Err("use standalone, sentinel or cluster".to_owned()),
        }
    }
}

impl std::fmt::Display for RedisMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Standalone => "standalone",
            Self::Sentinel => "sentinel",
            Self::Cluster => "cluster",
        })
    }
}

/// A setting that does not describe a Redis to connect to. The reason
/// never repeats a URL (it may hold a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// `VISITLOG_REDIS_URL` is wrong for the mode.
    #[error("{0}")]
    Url(String),
    /// `VISITLOG_REDIS_SENTINEL_MASTER` is missing or wrong.
    #[error("{0}")]
    Master(String),
    /// `VISITLOG_REDIS_CA_CERT` cannot apply in this mode.
    #[error("{0}")]
    CaCert(String),
}

/// Deadlines of one connection.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// To connect (each node, each attempt).
    pub connect: Duration,
    /// For each answer; a blocking command needs more than its own wait.
    pub response: Duration,
}

/// Where Redis is: checked settings, no connection made.
#[derive(Clone)]
pub struct RedisTarget {
    mode: RedisMode,
    /// Standalone: the server.
    single: Option<redis::Client>,
    /// Sentinel: the sentinels; cluster: the seed nodes.
    nodes: Vec<ConnectionInfo>,
    master: Option<String>,
    ca_cert: Option<Vec<u8>>,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Addresses only: a URL may hold a password.
        let nodes: Vec<String> = self.nodes.iter().map(|n| n.addr().to_string()).collect();
        f.debug_struct("RedisTarget")
            .field("mode", &self.mode)
            .field("nodes", &nodes)
            .field("master", &self.master)
            .finish_non_exhaustive()
    }
}

impl RedisTarget {
    /// Checks the settings: `urls` is one URL in standalone mode, a
    /// comma-separated list of sentinels or cluster seeds otherwise;
    /// `master` is required in sentinel mode and refused in the others.
    /// `ca_cert` (PEM) is the CA a `rediss://` server must chain to.
    pub fn new(
        mode: RedisMode,
        urls: &str,
        master: Option<&str>,
        ca_cert: Option<&[u8]>,
    ) -> Result<Self, TargetError> {
        let list = url_list(urls);
        if list.is_empty() {
            return Err(TargetError::Url("is empty".to_owned()));
        }
        let master = master.map(str::trim).filter(|m| !m.is_empty());
        match (mode, master) {
            (RedisMode::Sentinel, None) => {
                return Err(TargetError::Master(
                    "is required in sentinel mode: the name the sentinels know the master by"
                        .to_owned(),
                ));
            }
            (RedisMode::Standalone | RedisMode::Cluster, Some(_)) => {
                return Err(TargetError::Master(format!(
                    "applies to sentinel mode only (the mode is {mode})"
                )));
            }
            _ => {}
        }
        if mode == RedisMode::Sentinel && ca_cert.is_some() {
            return Err(TargetError::CaCert(
                "applies to standalone and cluster modes; in sentinel mode the master's certificate must chain to the system's roots".to_owned(),
            ));
        }
        let mut target = Self {
            mode,
            single: None,
            nodes: Vec::new(),
            master: master.map(str::to_owned),
            ca_cert: ca_cert.map(<[u8]>::to_vec),
        };
        if mode == RedisMode::Standalone {
            let [url] = list[..] else {
                return Err(TargetError::Url(format!(
                    "holds {} URLs; standalone mode takes one (set VISITLOG_REDIS_MODE to sentinel or cluster for several)",
                    list.len()
                )));
            };
            target.single =
                Some(redis_client(url, ca_cert).map_err(|e| {
                    TargetError::Url(format!("not a Redis URL: {}", url_fault(&e)))
                })?);
            return Ok(target);
        }
        for (i, url) in list.iter().enumerate() {
            let info = url.into_connection_info().map_err(|e| {
                TargetError::Url(format!(
                    "address {} of {} is not a Redis URL: {}",
                    i + 1,
                    list.len(),
                    url_fault(&e)
                ))
            })?;
            if matches!(info.addr(), redis::ConnectionAddr::Unix(_)) {
                return Err(TargetError::Url(format!(
                    "address {} of {} is a Unix socket; {mode} mode needs TCP addresses",
                    i + 1,
                    list.len()
                )));
            }
            target.nodes.push(info);
        }
        let tls = target.nodes.iter().filter(|n| is_tls(n.addr())).count();
        if tls != 0 && tls != target.nodes.len() {
            return Err(TargetError::Url(format!(
                "mixes `redis://` and `rediss://` addresses; in {mode} mode every address takes the same"
            )));
        }
        if tls != 0 {
            // As for one server: rustls needs a process-wide provider.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        match mode {
            // A cluster has database 0 alone (`SELECT` is refused there), and
            // its client takes the seeds' credentials as one; the rest of
            // what its client would refuse is checked by building it, which
            // connects to nothing.
            RedisMode::Cluster => {
                if let Some(i) = target
                    .nodes
                    .iter()
                    .position(|n| n.redis_settings().db() != 0)
                {
                    return Err(TargetError::Url(format!(
                        "address {} of {} names a database; a cluster has database 0 only",
                        i + 1,
                        list.len()
                    )));
                }
                // The client takes the first seed's credentials for every
                // node, and would drop another's without a word.
                let credentials = |n: &ConnectionInfo| {
                    let r = n.redis_settings();
                    (
                        r.username().map(str::to_owned),
                        r.password().map(str::to_owned),
                    )
                };
                let first = credentials(&target.nodes[0]);
                if target.nodes[1..].iter().any(|n| credentials(n) != first) {
                    return Err(TargetError::Url(
                        "the addresses cannot seed one cluster client: give every one the same user and password".to_owned(),
                    ));
                }
                redis::cluster::ClusterClient::builder(target.nodes.clone())
                    .build()
                    .map_err(|e| {
                        TargetError::Url(format!(
                            "the addresses cannot seed one cluster client ({:?}): give every one the same user and password",
                            e.kind()
                        ))
                    })?;
            }
            // The database is the master's (the sentinels have none): of
            // the first address, as its user and password are.
            RedisMode::Sentinel => {
                if target.nodes[1..]
                    .iter()
                    .any(|n| n.redis_settings().db() != target.nodes[0].redis_settings().db())
                {
                    return Err(TargetError::Url(
                        "names different databases; the master's database is the first address's (give it there only, or the same everywhere)".to_owned(),
                    ));
                }
            }
            RedisMode::Standalone => {}
        }
        Ok(target)
    }

    /// The deployment.
    pub fn mode(&self) -> RedisMode {
        self.mode
    }

    /// How many addresses were given.
    pub fn node_count(&self) -> usize {
        self.nodes.len().max(usize::from(self.single.is_some()))
    }

    /// One connection, made now: for a caller that drops it on an error and
    /// asks again (the middleware's shipper, one-off commands). In sentinel
    /// mode each call asks the sentinels for the master.
    pub async fn connect(&self, timeouts: Timeouts) -> RedisResult<RedisConn> {
        match self.mode {
            RedisMode::Standalone => {
                let client = self.single_client()?;
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeouts.connect))
                    .set_response_timeout(Some(timeouts.response));
                let conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Ok(RedisConn::single(conn))
            }
            RedisMode::Sentinel => {
                let conn = sentinel::master_connection(self, timeouts).await?;
                Ok(RedisConn::single(conn))
            }
            RedisMode::Cluster => self.cluster(timeouts).await,
        }
    }

    /// A connection that mends itself: it reconnects after an error (in
    /// sentinel mode, to whichever server is master by then), so a
    /// long-running caller keeps it (the consumer).
    pub async fn connect_lasting(&self, timeouts: Timeouts) -> RedisResult<RedisConn> {
        match self.mode {
            RedisMode::Standalone => {
                let client = self.single_client()?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeouts.connect))
                    .set_response_timeout(Some(timeouts.response))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(2));
                let conn =
                    redis::aio::ConnectionManager::new_with_config(client.clone(), config).await?;
                Ok(RedisConn::managed(conn))
            }
            RedisMode::Sentinel => Ok(RedisConn::following(sentinel::Following::new(
                self.clone(),
                timeouts,
            ))),
            RedisMode::Cluster => self.cluster(timeouts).await,
        }
    }

    fn single_client(&self) -> RedisResult<&redis::Client> {
        self.single.as_ref().ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::Client, "no Redis server configured"))
        })
    }

    async fn cluster(&self, timeouts: Timeouts) -> RedisResult<RedisConn> {
        let mut builder = redis::cluster::ClusterClient::builder(self.nodes.clone())
            .connection_timeout(timeouts.connect)
            .response_timeout(timeouts.response)
            .retries(3);
        if let Some(pem) = &self.ca_cert {
            builder = builder.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            });
        }
        let client = builder.build()?;
        let conn = client.get_async_connection().await?;
        Ok(RedisConn::cluster(conn))
    }
}

/// What is wrong with a URL the Redis client refused, safe to show: the
/// client's own fixed description ("Invalid database number", "Missing
/// hostname", ...), never the URL nor the detail it may carry.
pub fn url_fault(e: &redis::RedisError) -> String {
    let text = e.to_string();
    let description = text.split(" - ").next().unwrap_or_default();
    let fixed = e.kind() == redis::ErrorKind::InvalidClientConfig
        && !description.is_empty()
        && description.len() <= 80
        && !description.contains(['@', ':', '/']);
    if fixed {
        description.to_owned()
    } else {
        format!("{:?}", e.kind())
    }
}

/// The URLs of a comma-separated list, each trimmed, empty items dropped.
/// A `,` separates two URLs only where a `scheme://` follows it, so a
/// password may hold a comma.
pub fn url_list(urls: &str) -> Vec<&str> {
    crate::redact::split_urls(urls)
        .into_iter()
        .map(|u| u.trim_matches(|c: char| c == ',' || c.is_whitespace()))
        .filter(|u| !u.is_empty())
        .collect()
}

fn is_tls(addr: &redis::ConnectionAddr) -> bool {
    matches!(addr, redis::ConnectionAddr::TcpTls { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print_the_same() {
        for mode in [
            RedisMode::Standalone,
            RedisMode::Sentinel,
            RedisMode::Cluster,
        ] {
            assert_eq!(mode.to_string().parse::<RedisMode>(), Ok(mode));
        }
        assert_eq!(" Cluster ".parse::<RedisMode>(), Ok(RedisMode::Cluster));
        assert!("clustered".parse::<RedisMode>().is_err());
    }

    #[test]
    fn each_mode_takes_what_it_needs_and_refuses_the_rest() {
        let one = "redis://127.0.0.1:6379";
        let three = "redis://127.0.0.1:7000, redis://127.0.0.1:7001,redis://127.0.0.1:7002";
        assert!(RedisTarget::new(RedisMode::Standalone, one, None, None).is_ok());
        assert!(matches!(
            RedisTarget::new(RedisMode::Standalone, three, None, None),
            Err(TargetError::Url(m)) if m.contains("holds 3 URLs")
        ));
        let cluster = RedisTarget::new(RedisMode::Cluster, three, None, None).expect("cluster");
        assert_eq!(cluster.node_count(), 3);
        assert!(matches!(
            RedisTarget::new(RedisMode::Sentinel, three, None, None),
            Err(TargetError::Master(_))
        ));
        assert!(matches!(
            RedisTarget::new(RedisMode::Cluster, three, Some("mymaster"), None),
            Err(TargetError::Master(_))
        ));
        assert!(RedisTarget::new(RedisMode::Sentinel, three, Some("mymaster"), None).is_ok());
        assert!(matches!(
            RedisTarget::new(RedisMode::Cluster, " , ", None, None),
            Err(TargetError::Url(m)) if m == "is empty"
        ));
    }

    #[test]
    fn a_bad_address_is_named_by_position_never_by_its_text() {
        let urls = "redis://127.0.0.1:7000,http://user:hunter2@example.org";
        let Err(TargetError::Url(reason)) = RedisTarget::new(RedisMode::Cluster, urls, None, None)
        else {
            panic!("a non-Redis URL is refused");
        };
        assert!(reason.contains("address 2 of 2"), "{reason}");
        assert!(!reason.contains("hunter2"), "{reason}");
        let target = RedisTarget::new(
            RedisMode::Sentinel,
            "redis://:hunter2@127.0.0.1:26379",
            Some("mymaster"),
            None,
        )
        .expect("sentinel");
        assert!(!format!("{target:?}").contains("hunter2"));
    }

    #[test]
    fn a_list_is_cut_where_a_url_begins_so_a_password_may_hold_a_comma() {
        assert_eq!(
            url_list("redis://a:1, redis://b:2,,rediss://c:3,"),
            ["redis://a:1", "redis://b:2", "rediss://c:3"]
        );
        assert_eq!(url_list("redis://:pa,ss@h:1"), ["redis://:pa,ss@h:1"]);
        assert_eq!(
            url_list("redis://:pa,ss@h:1,redis://:x,y@h:2"),
            ["redis://:pa,ss@h:1", "redis://:x,y@h:2"]
        );
        assert!(url_list(" , ").is_empty());
        assert_eq!(
            crate::redact::split_urls("redis://a:1, redis://b:2").join(","),
            "redis://a:1, redis://b:2"
        );
        let target = RedisTarget::new(
            RedisMode::Standalone,
            "redis://:pa,ss@127.0.0.1:6379",
            None,
            None,
        );
        assert!(target.is_ok(), "a comma in a password: {target:?}");
        let two = RedisTarget::new(
            RedisMode::Cluster,
            "redis://:pa,ss@127.0.0.1:7000,redis://:pa,ss@127.0.0.1:7001",
            None,
            None,
        );
        assert_eq!(two.map(|t| t.node_count()).ok(), Some(2));
    }

    #[test]
    fn lists_a_cluster_or_sentinel_client_could_never_use_are_refused_up_front() {
        let refused = |mode, urls: &str, master: Option<&str>, says: &str| match RedisTarget::new(
            mode, urls, master, None,
        ) {
            Err(TargetError::Url(m)) => assert!(m.contains(says), "{urls}: {m}"),
            other => panic!("{urls}: {other:?}"),
        };
        let mixed = "redis://127.0.0.1:7000,rediss://127.0.0.1:7001";
        refused(RedisMode::Cluster, mixed, None, "mixes");
        refused(RedisMode::Sentinel, mixed, Some("m"), "mixes");
        refused(
            RedisMode::Cluster,
            "redis://127.0.0.1:7000/3",
            None,
            "database 0 only",
        );
        refused(
            RedisMode::Cluster,
            "redis://127.0.0.1:7000/0,redis://127.0.0.1:7001/2",
            None,
            "address 2 of 2",
        );
        refused(
            RedisMode::Cluster,
            "redis://:one@127.0.0.1:7000,redis://:two@127.0.0.1:7001",
            None,
            "same user and password",
        );
        // The first without a password: the client would use none for all.
        refused(
            RedisMode::Cluster,
            "redis://127.0.0.1:7000,redis://:two@127.0.0.1:7001",
            None,
            "same user and password",
        );
        refused(
            RedisMode::Sentinel,
            "redis://127.0.0.1:26379/1,redis://127.0.0.1:26380/2",
            Some("m"),
            "different databases",
        );
        // The master's database on the first sentinel, or on all: taken.
        for urls in [
            "redis://127.0.0.1:26379/3,redis://127.0.0.1:26380/3",
            "redis://127.0.0.1:26379/3",
        ] {
            assert!(RedisTarget::new(RedisMode::Sentinel, urls, Some("m"), None).is_ok());
        }
    }

    #[test]
    fn a_refused_url_says_what_is_wrong_without_itself() {
        for (url, says) in [
            ("redis://:hunter2@h:1/x", "Invalid database number"),
            ("http://:hunter2@h:1", "did not parse"),
            ("redis://:hunter2@h:99999", "did not parse"),
            ("h:hunter2", "did not parse"),
            ("redis://:hunter2@/0", "did not parse"),
        ] {
            for mode in [RedisMode::Standalone, RedisMode::Cluster] {
                let Err(TargetError::Url(m)) = RedisTarget::new(mode, url, None, None) else {
                    panic!("{url} accepted in {mode} mode");
                };
                assert!(m.contains(says), "{url}: {m}");
                assert!(!m.contains("hunter2"), "{m}");
            }
        }
    }
}
