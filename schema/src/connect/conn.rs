//! One connection type for every mode, so the code above it is written once.

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use super::sentinel::Following;

/// A connection to Redis in any mode; cheap to clone (clones share it).
///
/// In cluster mode a command goes to the master of its key's slot, so every
/// key of one script or pipeline must carry the same hash tag
/// ([`crate::keys::QueueKeys`] names them so).
#[derive(Clone)]
pub struct RedisConn(Kind);

#[derive(Clone)]
enum Kind {
    Single(MultiplexedConnection),
    Managed(ConnectionManager),
    Cluster(ClusterConnection),
    Following(Following),
}

impl RedisConn {
    pub(super) fn single(conn: MultiplexedConnection) -> Self {
        Self(Kind::Single(conn))
    }

    pub(super) fn managed(conn: ConnectionManager) -> Self {
        Self(Kind::Managed(conn))
    }

    pub(super) fn cluster(conn: ClusterConnection) -> Self {
        Self(Kind::Cluster(conn))
    }

    pub(super) fn following(conn: Following) -> Self {
        Self(Kind::Following(conn))
    }

    /// Every key matching `pattern` (`SCAN`), sorted. In cluster mode the
    /// scan runs on the master holding the slot of `near`: the pattern must
    /// only match keys of that slot's hash tag.
    pub async fn scan_near(&mut self, near: &str, pattern: &str) -> RedisResult<Vec<String>> {
        let route = match &self.0 {
            Kind::Cluster(_) => {
                let slot: u16 = redis::cmd("CLUSTER")
                    .arg("KEYSLOT")
                    .arg(near)
                    .query_async(self)
                    .await?;
                Some(RoutingInfo::SingleNode(
                    SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master)),
                ))
            }
            _ => None,
        };
        let mut cursor: u64 = 0;
        let mut found = Vec::new();
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, keys): (u64, Vec<String>) = match (&mut self.0, &route) {
                (Kind::Cluster(conn), Some(route)) => {
                    redis::from_redis_value(conn.route_command(scan, route.clone()).await?)?
                }
                _ => scan.query_async(self).await?,
            };
            found.extend(keys);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        found.sort();
        Ok(found)
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Kind::Single(c) => c.req_packed_command(cmd),
            Kind::Managed(c) => c.req_packed_command(cmd),
            Kind::Cluster(c) => c.req_packed_command(cmd),
            Kind::Following(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Kind::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Kind::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            Kind::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Kind::Following(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Kind::Single(c) => c.get_db(),
            Kind::Managed(c) => c.get_db(),
            Kind::Cluster(c) => c.get_db(),
            Kind::Following(c) => c.get_db(),
        }
    }
}
