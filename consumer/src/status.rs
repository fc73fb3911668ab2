//! The status endpoint, Flower-like: a JSON API, a live HTML dashboard,
//! Prometheus metrics, and health checks.
//!
//! Every instance writes its own figures to Redis with each heartbeat
//! (`{queue}:status:{id}`, expiring with the heartbeat) and adds what each
//! batch did to fleet-wide totals (`{queue}:totals`, which survive
//! restarts). So any one instance shows the whole fleet. A sampler reads
//! the queue and the fleet every few seconds; requests are answered from
//! that sample and never wait on Redis or MongoDB, except `/readyz`, which
//! checks both live.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use base64::Engine;
use chrono::{DateTime, Utc};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::fleet::{FleetMember, InstanceStatus, Totals};
use crate::internal_events::{Dependencies, Metrics, MetricsSnapshot};
use crate::sink::Sink;
use crate::source::Source;
use visitlog_schema::redact_urls_in as mask_secrets;

mod server;

/// Samples kept for the charts and rates: one hour.
const HISTORY: usize = 720;
/// Batch latencies kept for percentiles.
const LATENCIES: usize = 1024;
/// The build's git commit, set by build.rs.
pub const COMMIT: &str = env!("VISITLOG_BUILD_COMMIT");

/// What the status endpoint shows; shared with the worker.
pub struct StatusState {
    pub(crate) instance: InstanceStatus,
    pub(crate) queue: String,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) token: Option<String>,
    pub(crate) source: Source,
    pub(crate) sink: Sink,
    pub(crate) dependencies: Arc<Dependencies>,
    started_at: tokio::time::Instant,
    latencies: Mutex<VecDeque<f64>>,
    histogram: Histogram,
    newest_stored: Mutex<Option<DateTime<Utc>>>,
    sample: Mutex<Option<Sample>>,
    history: Mutex<VecDeque<Point>>,
}

/// One reading of the queue and the fleet.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// When it was taken.
    pub at: DateTime<Utc>,
    /// Records waiting.
    pub pending: u64,
    /// Age of the record at the head of the queue, in seconds.
    pub oldest_pending_age_seconds: Option<f64>,
    /// Processing lists and their lengths.
    pub processing: BTreeMap<String, u64>,
    /// Documents in `dead_letters`.
    pub dead_letters: Option<u64>,
    /// Live instances, from their heartbeats.
    pub consumers: Vec<FleetMember>,
    /// Fleet-wide totals since the queue was first consumed.
    pub totals: Totals,
    /// The newest stored record's time, over the fleet.
    pub newest_stored: Option<DateTime<Utc>>,
    /// What went wrong reading it, if anything.
    pub error: Option<String>,
}

/// One point of the charts.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Point {
    /// Unix seconds.
    pub t: i64,
    /// Records waiting.
    pub pending: u64,
    /// Fleet-wide records stored so far.
    pub stored_all: u64,
    /// This instance's records stored so far.
    pub stored: u64,
}

impl StatusState {
    /// Builds the state for one instance.
    pub fn new(
        instance: InstanceStatus,
        queue: String,
        metrics: Arc<Metrics>,
        token: Option<String>,
        source: Source,
        sink: Sink,
        dependencies: Arc<Dependencies>,
    ) -> Self {
        // Batch latency buckets: 5 ms to 30 s.
        let buckets = [
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        Self {
            instance,
            queue,
            metrics,
            token,
            source,
            sink,
            dependencies,
            started_at: tokio::time::Instant::now(),
            latencies: Mutex::new(VecDeque::with_capacity(LATENCIES)),
            histogram: Histogram::new(buckets),
            newest_stored: Mutex::new(None),
            sample: Mutex::new(None),
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }

    /// Notes one stored batch: how long MongoDB took, and its newest record.
    pub fn batch_stored(&self, took: Duration, newest: Option<DateTime<Utc>>) {
        let seconds = took.as_secs_f64();
        self.histogram.observe(seconds);
        let mut l = lock(&self.latencies);
        if l.len() == LATENCIES {
            l.pop_front();
        }
        l.push_back(seconds * 1000.0);
        drop(l);
        if let Some(ts) = newest {
            let mut n = lock(&self.newest_stored);
            *n = Some(n.map_or(ts, |old| old.max(ts)));
        }
    }

    /// The newest record this instance stored.
    pub fn newest_stored(&self) -> Option<DateTime<Utc>> {
        *lock(&self.newest_stored)
    }

    /// Reads the queue and the fleet once, and keeps the reading.
    pub async fn sample(&self) {
        let observed = self.source.observe().await;
        match &observed {
            Ok(_) => self.dependencies.redis.ok(),
            Err(e) => self.dependencies.redis.failed(e),
        }
        let mut sample = match observed {
            Ok(o) => Sample {
                at: Utc::now(),
                pending: o.lengths.pending,
                oldest_pending_age_seconds: o
                    .oldest_pending
                    .map(|ts| (Utc::now() - ts).num_milliseconds().max(0) as f64 / 1000.0),
                processing: o.lengths.processing,
                dead_letters: None,
                consumers: o.consumers,
                totals: o.totals,
                newest_stored: o.newest_stored,
                error: None,
            },
            Err(e) => {
                // Keep the last good figures; say why they are old.
                let mut old = lock(&self.sample).clone().unwrap_or_else(|| Sample {
                    at: Utc::now(),
                    pending: 0,
                    oldest_pending_age_seconds: None,
                    processing: BTreeMap::new(),
                    dead_letters: None,
                    consumers: Vec::new(),
                    totals: Totals::default(),
                    newest_stored: None,
                    error: None,
                });
                old.error = Some(format!("Redis: {}", mask_secrets(&e.to_string())));
                old
            }
        };
        match tokio::time::timeout(Duration::from_secs(2), self.sink.dead_letter_estimate()).await {
            Ok(Ok(n)) => sample.dead_letters = Some(n),
            Ok(Err(e)) => {
                sample.dead_letters = lock(&self.sample).as_ref().and_then(|s| s.dead_letters);
                sample
                    .error
                    .get_or_insert_with(|| format!("MongoDB: {}", mask_secrets(&e.to_string())));
            }
            Err(_) => {
                sample.dead_letters = lock(&self.sample).as_ref().and_then(|s| s.dead_letters);
                sample
                    .error
                    .get_or_insert_with(|| "MongoDB: no answer within 2 s".to_owned());
            }
        }
        let point = Point {
            t: sample.at.timestamp(),
            pending: sample.pending,
            stored_all: sample.totals.stored,
            stored: self.metrics.snapshot().stored,
        };
        let mut history = lock(&self.history);
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(point);
        drop(history);
        *lock(&self.sample) = Some(sample);
    }

    fn percentiles(&self) -> Value {
        let mut l: Vec<f64> = lock(&self.latencies).iter().copied().collect();
        if l.is_empty() {
            return json!({ "p50": null, "p95": null, "p99": null, "batches": 0 });
        }
        l.sort_by(f64::total_cmp);
        let at = |q: f64| l[((l.len() - 1) as f64 * q).round() as usize];
        json!({ "p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "batches": l.len() })
    }

    /// Records stored per second over the last `seconds`, for this instance
    /// and for the fleet, from the sampled history.
    fn rates(&self, seconds: i64) -> (Option<f64>, Option<f64>) {
        let history = lock(&self.history);
        let (Some(last), Some(first)) = (history.back(), history.front()) else {
            return (None, None);
        };
        let from = history
            .iter()
            .find(|p| p.t >= last.t - seconds)
            .unwrap_or(first);
        let dt = (last.t - from.t) as f64;
        if dt <= 0.0 {
            return (None, None);
        }
        (
            Some(last.stored.saturating_sub(from.stored) as f64 / dt),
            Some(last.stored_all.saturating_sub(from.stored_all) as f64 / dt),
        )
    }

    /// The `queue` object of the last sample (`null` before the first).
    pub fn queue(&self) -> Value {
        lock(&self.sample)
            .as_ref()
            .map_or(Value::Null, |s| queue_json(&self.queue, s))
    }

    /// The live instances of the last sample.
    pub fn consumers(&self) -> Vec<FleetMember> {
        lock(&self.sample)
            .as_ref()
            .map(|s| s.consumers.clone())
            .unwrap_or_default()
    }

    /// The whole status, as `/api/status` answers it.
    pub fn status(&self) -> Value {
        let sample = lock(&self.sample).clone();
        let now = Utc::now();
        let mine = self.metrics.snapshot();
        let (redis, mongodb) = self.dependencies.snapshot();
        let (mine_1m, all_1m) = self.rates(60);
        let (mine_5m, all_5m) = self.rates(300);
        let newest = sample
            .as_ref()
            .and_then(|s| s.newest_stored)
            .max(self.newest_stored());
        let history: Vec<Point> = lock(&self.history).iter().copied().collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "commit": COMMIT,
            "instance": {
                "id": self.instance.id,
                "host": self.instance.host,
                "pid": self.instance.pid,
                "started": self.instance.started,
                "uptime_seconds": self.started_at.elapsed().as_secs(),
            },
            "queue": self.queue(),
            "totals": {
                "instance": totals_json(&mine),
                "all": sample.as_ref().map(|s| &s.totals),
            },
            "rates": {
                "instance": { "stored_per_second_1m": mine_1m, "stored_per_second_5m": mine_5m },
                "all": { "stored_per_second_1m": all_1m, "stored_per_second_5m": all_5m },
            },
            "batch_latency_ms": self.percentiles(),
            "lag_seconds": newest.map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0),
            "redis": redis,
            "mongodb": mongodb,
            "geoip": Value::Null,
            "consumers": self.consumers(),
            "sampled_at": sample.as_ref().map(|s| s.at),
            "sample_error": sample.as_ref().and_then(|s| s.error.clone()),
            "history": history,
        })
    }

    /// The Prometheus text exposition.
    pub fn metrics_text(&self) -> String {
        let mut registry = Registry::with_prefix("visitlog_consumer");
        let m = self.metrics.snapshot();
        let counters: [(&str, &str, u64); 7] = [
            (
                "records_stored",
                "Records stored in MongoDB by this instance (requests and events)",
                m.stored,
            ),
            (
                "records_duplicate",
                "Records skipped as already stored (redelivered)",
                m.duplicates,
            ),
            (
                "records_dead_lettered",
                "Records sent to dead_letters",
                m.dead_lettered,
            ),
            (
                "derived_documents",
                "video_positions and tutorial_progress documents written",
                m.derived,
            ),
            ("batches", "Batches completed", m.batches),
            (
                "batch_retries",
                "Batch attempts that failed and were retried",
                m.retries,
            ),
            (
                "records_reaped",
                "Records given back to the queue from dead instances",
                m.reaped,
            ),
        ];
        for (name, help, value) in counters {
            registry.register(name, help, ConstCounter::new(value));
        }
        if let Some(s) = lock(&self.sample).clone() {
            let gauges: [(&str, &str, i64); 4] = [
                (
                    "queue_pending",
                    "Records waiting on the queue",
                    s.pending as i64,
                ),
                (
                    "processing_records",
                    "Records in processing lists",
                    s.processing.values().sum::<u64>() as i64,
                ),
                (
                    "consumers_online",
                    "Instances with a live heartbeat",
                    s.consumers.len() as i64,
                ),
                (
                    "dead_letters",
                    "Documents in dead_letters",
                    s.dead_letters.unwrap_or(0) as i64,
                ),
            ];
            for (name, help, value) in gauges {
                registry.register(name, help, ConstGauge::new(value));
            }
            registry.register(
                "queue_oldest_pending_age_seconds",
                "Age of the record at the head of the queue (0 when empty)",
                ConstGauge::new(s.oldest_pending_age_seconds.unwrap_or(0.0)),
            );
        }
        if let Some(newest) = self.newest_stored() {
            registry.register(
                "lag_seconds",
                "Now minus the newest stored record's time",
                ConstGauge::new((Utc::now() - newest).num_milliseconds().max(0) as f64 / 1000.0),
            );
        }
        let up = Family::<Vec<(String, String)>, Gauge>::default();
        let (redis, mongodb) = self.dependencies.snapshot();
        for (name, state) in [("redis", redis), ("mongodb", mongodb)] {
            up.get_or_create(&vec![("dependency".to_owned(), name.to_owned())])
                .set(i64::from(state.is_some_and(|s| s.state == "ok")));
        }
        registry.register(
            "dependency_up",
            "1 when the dependency answered last time",
            up,
        );
        let info = Family::<Vec<(String, String)>, Gauge>::default();
        info.get_or_create(&vec![
            ("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
            ("commit".to_owned(), COMMIT.to_owned()),
        ])
        .set(1);
        registry.register("build_info", "Version and commit; always 1", info);
        registry.register(
            "batch_duration_seconds",
            "Time MongoDB took to store a batch",
            self.histogram.clone(),
        );
        let mut out = String::new();
        if encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn queue_json(name: &str, s: &Sample) -> Value {
    json!({
        "name": name,
        "pending": s.pending,
        "oldest_pending_age_seconds": s.oldest_pending_age_seconds,
        "processing": s.processing,
        "processing_total": s.processing.values().sum::<u64>(),
        "dead_letters": s.dead_letters,
    })
}

fn totals_json(m: &MetricsSnapshot) -> Value {
    json!({
        "stored": m.stored, "duplicates": m.duplicates, "dead_lettered": m.dead_lettered,
        "derived": m.derived, "retries": m.retries,
    })
}

/// The status router: `/`, `/api/*`, `/metrics`, `/healthz`, `/readyz`.
pub fn router(state: Arc<StatusState>) -> Router {
    let protected = Router::new()
        .route("/", get(dashboard))
        .route(
            "/api/status",
            get(|State(s): State<Arc<StatusState>>| async move { Json(s.status()) }),
        )
        .route(
            "/api/consumers",
            get(|State(s): State<Arc<StatusState>>| async move { Json(s.consumers()) }),
        )
        .route(
            "/api/queue",
            get(|State(s): State<Arc<StatusState>>| async move { Json(s.queue()) }),
        )
        .route("/api/dead-letters", get(dead_letters))
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authorize,
        ));
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "alive" })) }),
        )
        .merge(protected)
        .with_state(state)
}

/// What one client may hold of the status endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; beyond it, the one idle the longest closes.
    pub max_connections: usize,
    /// Time to send a request's headers, from connecting or from the
    /// previous response (so also the keep-alive idle limit).
    pub header_timeout: Duration,
    /// A connection on which no byte moves for this long is closed.
    pub idle_timeout: Duration,
}

impl Limits {
    /// The limits `config` sets.
    pub fn of(config: &crate::config::Config) -> Self {
        Self {
            max_connections: config.status_max_connections,
            header_timeout: config.status_header_timeout,
            idle_timeout: config.status_idle_timeout,
        }
    }
}

/// Serves the status endpoint on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    limits: Limits,
    state: Arc<StatusState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::StatusAddr { addr, source })?;
    if !addr.ip().is_loopback() && state.token.is_none() {
        tracing::warn!(%addr, "the status endpoint listens beyond this host without VISITLOG_STATUS_TOKEN; anyone who can reach it can read it");
    }
    let local = listener
        .local_addr()
        .map_err(|source| Error::StatusAddr { addr, source })?;
    tracing::info!(addr = %local, "status endpoint listening");
    let app = router(state);
    Ok(tokio::spawn(server::serve(listener, app, limits, shutdown)))
}

/// Bearer token, or basic auth with the token as password.
async fn authorize(
    State(state): State<Arc<StatusState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = state.token.as_deref() else {
        return next.run(request).await;
    };
    if presented_token(request.headers())
        .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
    {
        return next.run(request).await;
    }
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "error": "a token is required" })),
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"visitlog-consumer\", charset=\"UTF-8\""),
    );
    response
}

fn presented_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Some(rest.trim().to_owned()),
        "basic" => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            Some(text.split_once(':')?.1.to_owned())
        }
        _ => None,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(State(state): State<Arc<StatusState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics_text(),
    )
        .into_response()
}

async fn readyz(State(state): State<Arc<StatusState>>) -> Response {
    let limit = Duration::from_secs(2);
    let redis = tokio::time::timeout(limit, state.source.ping()).await;
    let mongodb = tokio::time::timeout(limit, state.sink.ping()).await;
    let say = |ok: bool, error: Option<String>| match ok {
        true => json!("ok"),
        false => json!({ "error": error.map(|e| mask_secrets(&e)) }),
    };
    let redis_ok = matches!(redis, Ok(Ok(())));
    let mongodb_ok = matches!(mongodb, Ok(Ok(())));
    let body = json!({
        "redis": say(redis_ok, match redis { Ok(Err(e)) => Some(e.to_string()), Err(_) => Some("no answer within 2 s".into()), _ => None }),
        "mongodb": say(mongodb_ok, match mongodb { Ok(Err(e)) => Some(e.to_string()), Err(_) => Some("no answer within 2 s".into()), _ => None }),
    });
    let status = if redis_ok && mongodb_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<i64>,
}

/// Payload characters shown per dead letter.
const PAYLOAD_PREVIEW: usize = 512;

async fn dead_letters(State(state): State<Arc<StatusState>>, Query(q): Query<Limit>) -> Response {
    let limit = q.limit.unwrap_or(20).clamp(1, 200);
    match state.sink.dead_letters(limit).await {
        Ok(docs) => Json(
            docs.iter()
                .map(|d| {
                    let payload = d.get_str("payload").ok();
                    json!({
                        "id": d.get_str("_id").ok(),
                        "at": d.get_datetime("at").ok().map(|t| t.to_chrono()),
                        "reason": d.get_str("reason").ok(),
                        "consumer": d.get_str("consumer").ok(),
                        "size": d.get_i64("size").ok().or_else(|| d.get_i32("size").ok().map(i64::from)),
                        "payload": payload.map(|p| visitlog_schema::truncate_chars(p, PAYLOAD_PREVIEW)),
                        "payload_truncated": payload.is_some_and(|p| p.chars().count() > PAYLOAD_PREVIEW)
                            || d.get_bool("truncated").unwrap_or(false),
                        "binary": d.get("payload_raw").is_some(),
                    })
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": mask_secrets(&e.to_string()) })),
        )
            .into_response(),
    }
}

async fn dashboard() -> Html<&'static str> {
    Html(include_str!("status/dashboard.html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_as_bearer_or_basic_password() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(presented_token(&h).as_deref(), Some("abc"));
        let basic = base64::engine::general_purpose::STANDARD.encode("ops:s3cret");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {basic}")).unwrap(),
        );
        assert_eq!(presented_token(&h).as_deref(), Some("s3cret"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Digest x"));
        assert_eq!(presented_token(&h), None);
        assert!(constant_time_eq(b"same", b"same"));
        assert!(!constant_time_eq(b"same", b"sane"));
        assert!(!constant_time_eq(b"short", b"shorter"));
    }

    #[test]
    fn secrets_in_urls_are_masked() {
        assert_eq!(
            mask_secrets("failed to connect to redis://:hunter2@10.0.0.1:6379/0 (refused)"),
            "failed to connect to redis://:***@10.0.0.1:6379/0 (refused)"
        );
        assert_eq!(
            mask_secrets("mongodb://app:pw@db/x and http://host/path"),
            "mongodb://app:***@db/x and http://host/path"
        );
    }
}
