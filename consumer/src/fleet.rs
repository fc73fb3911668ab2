//! The fleet: instances register their id, keep a heartbeat, and with each
//! heartbeat publish an [`InstanceReport`] (`{queue}:status:{id}`, expiring
//! with the heartbeat) and add what each batch did to the fleet-wide
//! [`Totals`] (`{queue}:totals`, which survive restarts). Any one instance
//! reads them all back ([`Source::observe`]), so its status page shows the
//! whole fleet. The report and the totals are typed: the worker writes the
//! same structs the status side reads. The operations are methods of
//! [`Source`], whose Redis connection they share; [`QueueLengths`] is the
//! one reader of the queue's and processing lists' lengths (for the status
//! sample and for `stats`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::{AsyncCommands, RedisResult};
use serde::{Deserialize, Serialize};
use visitlog_schema::keys;

use crate::error::{Error, Result};
use visitlog_schema::RedisConn;
use visitlog_schema::keys::QueueKeys;

use crate::source::{Source, hostname_string, processing_lists, stranded};

/// Who an instance is, as the status page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// Consumer id.
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// When it started.
    pub started: DateTime<Utc>,
}

impl InstanceStatus {
    /// This process, as consumer `id`.
    pub fn this_process(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            host: hostname_string(),
            pid: std::process::id(),
            started: Utc::now(),
        }
    }
}

/// What one batch, one instance or the whole fleet did. Field names are
/// the fields of the `{queue}:totals` hash and of the instance report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Totals {
    /// Records stored.
    pub stored: u64,
    /// Records already stored (replays).
    pub duplicates: u64,
    /// Records sent to `dead_letters`.
    pub dead_lettered: u64,
    /// Derived documents written.
    pub derived: u64,
    /// Batch attempts retried.
    pub retries: u64,
    /// Batches completed.
    pub batches: u64,
}

impl Totals {
    /// The non-zero counts by field name (the names come from serde, so
    /// they are written nowhere else).
    fn fields(&self) -> Vec<(String, u64)> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.as_u64()?)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Totals from a hash's fields; unknown fields are ignored.
    fn from_fields(fields: HashMap<String, u64>) -> Self {
        serde_json::to_value(fields)
            .and_then(serde_json::from_value)
            .unwrap_or_default()
    }
}

/// What an instance says of itself with each heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceReport {
    /// Who it is.
    #[serde(flatten)]
    pub instance: InstanceStatus,
    /// When it wrote this.
    pub last_heartbeat: DateTime<Utc>,
    /// `running`.
    pub state: String,
    /// Its counters since it started.
    #[serde(flatten)]
    pub totals: Totals,
    /// The newest record it stored.
    pub newest_stored: Option<DateTime<Utc>>,
    /// Its version.
    pub version: String,
}

/// A member of the fleet as the status page lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum FleetMember {
    /// It published a report.
    Reported(InstanceReport),
    /// It has a heartbeat but no (readable) report yet.
    Silent {
        /// Consumer id.
        id: String,
        /// Always `unknown`.
        state: &'static str,
    },
}

/// The lengths of the queue and of every processing list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueLengths {
    /// Records waiting, in all shards.
    pub pending: u64,
    /// Processing lists and their lengths.
    pub processing: BTreeMap<String, u64>,
    /// Lists of this queue that another shard count would fill and this
    /// one never reads ([`QueueKeys::strays`]), those not empty, with
    /// their lengths: records there wait for ever. Filled by the status
    /// sampler every twelfth sample, not by
    /// [`QueueLengths::read`].
    pub stranded: BTreeMap<String, u64>,
}

impl QueueLengths {
    /// Reads them: the one reader of queue and processing lengths.
    async fn read(conn: &mut RedisConn, keys: &QueueKeys) -> RedisResult<Self> {
        let mut pending = 0;
        for shard in keys.shards() {
            let n: u64 = redis::cmd("LLEN").arg(shard).query_async(conn).await?;
            pending += n;
        }
        let mut processing = BTreeMap::new();
        for list in processing_lists(conn, keys).await? {
            let n: u64 = redis::cmd("LLEN").arg(&list).query_async(conn).await?;
            processing.insert(list, n);
        }
        // The lists of other shard counts are read apart, less often (the
        // status sampler) or once (`stats`).
        Ok(Self {
            pending,
            processing,
            stranded: BTreeMap::new(),
        })
    }

    /// Records in all processing lists.
    pub fn processing_total(&self) -> u64 {
        self.processing.values().sum()
    }

    /// Records on lists no consumer of this shard count reads.
    pub fn stranded_total(&self) -> u64 {
        self.stranded.values().sum()
    }
}

/// The queue and the fleet, as one instance sees them.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The queue's and processing lists' lengths.
    pub lengths: QueueLengths,
    /// The time of the record at the head of the queue.
    pub oldest_pending: Option<DateTime<Utc>>,
    /// What each live instance last said of itself.
    pub consumers: Vec<FleetMember>,
    /// Fleet-wide totals.
    pub totals: Totals,
    /// The newest record any live instance stored.
    pub newest_stored: Option<DateTime<Utc>>,
}

impl Source {
    fn heartbeat_key(&self) -> String {
        keys::heartbeat(self.keys().base(), self.id())
    }

    /// The heartbeats in the shards that are not the fleet's key (checked
    /// by the reap script, which sees one shard's slot only).
    fn shard_heartbeat_keys(&self) -> Vec<String> {
        let own = self.heartbeat_key();
        self.keys()
            .shards()
            .iter()
            .map(|shard| keys::heartbeat(shard, self.id()))
            .filter(|key| *key != own)
            .collect()
    }

    /// Claims the consumer id: refuses when a live process elsewhere holds it;
    /// takes it over from a dead process of this host (a restart).
    pub async fn register(&self, token: &str, ttl: Duration) -> Result<()> {
        let mut conn = self.conn().await?;
        let current: Option<String> = conn.get(self.heartbeat_key()).await?;
        if let Some(holder) = current {
            let mut parts = holder.split(' ');
            let (host, pid) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            let same_host = host == hostname_string();
            let alive = same_host && std::path::Path::new(&format!("/proc/{pid}")).exists();
            if !same_host || (alive && pid != std::process::id().to_string()) {
                return Err(Error::IdInUse {
                    id: self.id().to_owned(),
                    holder,
                });
            }
        }
        let _: () = conn
            .sadd(keys::consumers(self.keys().base()), self.id())
            .await?;
        self.heartbeat(token, ttl).await?;
        Ok(())
    }

    /// Says this instance is alive for another `ttl`.
    pub async fn heartbeat(&self, token: &str, ttl: Duration) -> RedisResult<()> {
        let mut conn = self.conn().await?;
        let value = format!("{} {} {token}", hostname_string(), std::process::id());
        // Back into the set too: an instance stalled past its TTL was reaped
        // (and dropped from the set), and must show in the fleet again.
        redis::pipe()
            .cmd("SET")
            .arg(self.heartbeat_key())
            .arg(value)
            .arg("PX")
            .arg(millis(ttl))
            .ignore()
            .sadd(keys::consumers(self.keys().base()), self.id())
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        for key in self.shard_heartbeat_keys() {
            redis::cmd("SET")
                .arg(key)
                .arg(self.id())
                .arg("PX")
                .arg(millis(ttl))
                .query_async::<()>(&mut conn)
                .await?;
        }
        Ok(())
    }

    /// Leaves cleanly: the heartbeat goes, and the id leaves the set.
    pub async fn unregister(&self) -> RedisResult<()> {
        let mut conn = self.conn().await?;
        for key in self.shard_heartbeat_keys() {
            let _: () = conn.del(key).await?;
        }
        let base = self.keys().base();
        let _: () = conn.del(self.heartbeat_key()).await?;
        let _: () = conn.del(keys::status(base, self.id())).await?;
        let _: () = conn.srem(keys::consumers(base), self.id()).await?;
        Ok(())
    }

    /// Writes what this instance says of itself, for `ttl` (with the heartbeat).
    pub async fn publish_report(&self, report: &InstanceReport, ttl: Duration) -> Result<()> {
        let mut conn = self.conn().await?;
        let text = serde_json::to_string(report).unwrap_or_default();
        redis::cmd("SET")
            .arg(keys::status(self.keys().base(), self.id()))
            .arg(text)
            .arg("PX")
            .arg(millis(ttl))
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// Adds what a batch did to the fleet-wide totals.
    pub async fn add_totals(&self, totals: &Totals) -> RedisResult<()> {
        let mut conn = self.conn().await?;
        let key = keys::totals(self.keys().base());
        let mut pipe = redis::pipe();
        for (field, n) in totals.fields() {
            pipe.hincr(&key, field, n).ignore();
        }
        pipe.query_async::<()>(&mut conn).await
    }

    /// Reads the queue and the fleet.
    pub async fn observe(&self) -> RedisResult<Observed> {
        let mut conn = self.conn().await?;
        let mut out = Observed {
            lengths: QueueLengths::read(&mut conn, self.keys()).await?,
            ..Observed::default()
        };
        for shard in self.keys().shards() {
            let head: Option<Vec<u8>> = conn.lindex(shard, 0).await?;
            let ts = head.and_then(|raw| {
                #[derive(Deserialize)]
                struct Head {
                    ts: DateTime<Utc>,
                }
                serde_json::from_slice::<Head>(&raw).ok().map(|h| h.ts)
            });
            if let Some(ts) = ts {
                out.oldest_pending = Some(out.oldest_pending.map_or(ts, |o| o.min(ts)));
            }
        }
        let queue = self.keys().base();
        let mut members: Vec<String> = conn.smembers(keys::consumers(queue)).await?;
        members.sort();
        for id in members {
            let said: Option<String> = conn.get(keys::status(queue, &id)).await?;
            let alive: bool = conn.exists(keys::heartbeat(queue, &id)).await?;
            match said.and_then(|s| serde_json::from_str::<InstanceReport>(&s).ok()) {
                Some(report) => {
                    if let Some(t) = report.newest_stored {
                        out.newest_stored = Some(out.newest_stored.map_or(t, |o| o.max(t)));
                    }
                    out.consumers.push(FleetMember::Reported(report));
                }
                None if alive => out.consumers.push(FleetMember::Silent {
                    id,
                    state: "unknown",
                }),
                None => {}
            }
        }
        out.totals = Totals::from_fields(conn.hgetall(keys::totals(queue)).await?);
        Ok(out)
    }
}

/// Queue-wide figures, for `stats` and the status page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Records waiting on the queue.
    pub pending: u64,
    /// Records in processing lists (in flight, or left by a dead instance).
    pub processing: u64,
    /// Instance ids with a live heartbeat.
    pub consumers_alive: Vec<String>,
    /// Records on lists no consumer of this shard count reads, by list
    /// (see [`QueueLengths::stranded`]).
    pub stranded: BTreeMap<String, u64>,
}

/// Reads the queue-wide figures.
pub async fn queue_stats(conn: &mut RedisConn, keys: &QueueKeys) -> RedisResult<QueueStats> {
    let lengths = QueueLengths::read(conn, keys).await?;
    let queue = keys.base();
    let members: Vec<String> = conn.smembers(keys::consumers(queue)).await?;
    let mut consumers_alive = Vec::new();
    for id in members {
        if conn.exists(keys::heartbeat(queue, &id)).await? {
            consumers_alive.push(id);
        }
    }
    consumers_alive.sort();
    Ok(QueueStats {
        pending: lengths.pending,
        processing: lengths.processing_total(),
        consumers_alive,
        stranded: stranded(conn, keys).await?,
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_travel_as_hash_fields_by_their_names() {
        let t = Totals {
            stored: 3,
            derived: 2,
            batches: 1,
            ..Totals::default()
        };
        let fields: HashMap<String, u64> = t.fields().into_iter().collect();
        assert_eq!(fields.len(), 3, "zero counts are not written");
        assert_eq!(fields["stored"], 3);
        assert_eq!(Totals::from_fields(fields), t);
    }

    #[test]
    fn a_report_reads_back_as_written() {
        let report = InstanceReport {
            instance: InstanceStatus::this_process("c1"),
            last_heartbeat: Utc::now(),
            state: "running".into(),
            totals: Totals {
                stored: 7,
                ..Totals::default()
            },
            newest_stored: None,
            version: "0".into(),
        };
        let text = serde_json::to_string(&report).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (v["id"].as_str(), v["stored"].as_u64()),
            (Some("c1"), Some(7))
        );
        assert_eq!(
            serde_json::from_str::<InstanceReport>(&text).unwrap(),
            report
        );
    }
}
