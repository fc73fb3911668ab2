//! Redis Sentinel: the master is whichever server the sentinels name now.
//! A connection is made to it; after an error that a failover causes
//! (refused, dropped, timed out, `READONLY` from a demoted master) the next
//! command asks the sentinels again.

use std::sync::Arc;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
};

use super::{RedisTarget, Timeouts};

/// A connection to the master, made again after a failover.
#[derive(Clone)]
pub(crate) struct Following {
    shared: Arc<Shared>,
}

struct Shared {
    target: RedisTarget,
    timeouts: Timeouts,
    current: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl Following {
    pub(super) fn new(target: RedisTarget, timeouts: Timeouts) -> Self {
        Self {
            shared: Arc::new(Shared {
                target,
                timeouts,
                current: tokio::sync::Mutex::new(None),
            }),
        }
    }

    async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        let mut current = self.shared.current.lock().await;
        if let Some(conn) = current.as_ref() {
            return Ok(conn.clone());
        }
        let conn = master_connection(&self.shared.target, self.shared.timeouts).await?;
        *current = Some(conn.clone());
        Ok(conn)
    }

    /// After `error`, drops the connection if the master may have moved.
    async fn after(&self, error: &RedisError) {
        if master_may_have_moved(error) {
            *self.shared.current.lock().await = None;
        }
    }

    pub(super) fn get_db(&self) -> i64 {
        self.shared
            .target
            .nodes
            .first()
            .map_or(0, |n| n.redis_settings().db())
    }
}

impl ConnectionLike for Following {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let result = conn.req_packed_command(cmd).await;
            if let Err(e) = &result {
                self.after(e).await;
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let result = conn.req_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &result {
                self.after(e).await;
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        Following::get_db(self)
    }
}

/// Errors after which the master is asked for again.
fn master_may_have_moved(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
        || e.kind() == ErrorKind::Server(ServerErrorKind::MasterDown)
}

/// Asks the sentinels for the master (the first that answers; the crate
/// checks with `ROLE` that the server named is a master) and connects.
/// The master is reached with the user, password and database of the first
/// sentinel URL, over TLS when the sentinels are; each sentinel with its
/// own URL's user and password, and no database.
pub(super) async fn master_connection(
    target: &RedisTarget,
    timeouts: Timeouts,
) -> RedisResult<MultiplexedConnection> {
    let master = target.master.as_deref().unwrap_or_default();
    let mut node = SentinelNodeConnectionInfo::default();
    if let Some(first) = target.nodes.first() {
        node = node.set_redis_connection_info(first.redis_settings().clone());
        if super::is_tls(first.addr()) {
            node = node.set_tls_mode(redis::TlsMode::Secure);
        }
    }
    // The database is the master's: a sentinel refuses `SELECT`.
    let sentinel_nodes: Vec<redis::ConnectionInfo> = target
        .nodes
        .iter()
        .map(|n| {
            let settings = n.redis_settings().clone().set_db(0);
            n.clone().set_redis_settings(settings)
        })
        .collect();
    let mut sentinels = SentinelClient::build(
        sentinel_nodes,
        master,
        Some(node),
        SentinelServerType::Master,
    )?;
    let client = tokio::time::timeout(timeouts.connect * 2, sentinels.async_get_client())
        .await
        .map_err(|_| RedisError::from((ErrorKind::Io, "no sentinel answered in time")))??;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeouts.connect))
        .set_response_timeout(Some(timeouts.response));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}
