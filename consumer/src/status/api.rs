//! The JSON API and the health checks, as typed views: each response is a
//! `Serialize` struct whose field names are the API's contract
//! (`/api/status`, `/api/queue`, `/api/consumers`, `/api/dead-letters`,
//! `/healthz`, `/readyz`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use visitlog_schema::redact_urls_in;

use super::COMMIT;
use super::state::{Point, Sample, StatusState};
use crate::batch::DeadLetterDocument;
use crate::fleet::{FleetMember, Totals};
use crate::internal_events::{DependencyState, MetricsSnapshot};

/// `/api/status`.
#[derive(Debug, Serialize)]
pub struct StatusView {
    version: &'static str,
    commit: &'static str,
    instance: InstanceView,
    queue: Option<QueueView>,
    totals: TotalsView,
    rates: RatesView,
    batch_latency_ms: LatencyView,
    lag_seconds: Option<f64>,
    derivations: Option<super::state::Derivations>,
    redis: Option<DependencyState>,
    mongodb: Option<DependencyState>,
    geoip: Option<()>,
    consumers: Vec<FleetMember>,
    sampled_at: Option<DateTime<Utc>>,
    sample_error: Option<String>,
    history: Vec<Point>,
}

#[derive(Debug, Serialize)]
struct InstanceView {
    id: String,
    host: String,
    pid: u32,
    started: DateTime<Utc>,
    uptime_seconds: u64,
}

/// `/api/queue`, and `queue` in `/api/status`.
#[derive(Debug, Serialize)]
pub struct QueueView {
    name: String,
    pending: u64,
    oldest_pending_age_seconds: Option<f64>,
    processing: BTreeMap<String, u64>,
    processing_total: u64,
    /// Records on lists this shard count never reads, by list (only those
    /// holding any): the apps were given another `VISITLOG_QUEUE_SHARDS`.
    stranded: BTreeMap<String, u64>,
    stranded_total: u64,
    dead_letters: Option<u64>,
}

impl QueueView {
    fn of(name: &str, s: &Sample) -> Self {
        Self {
            name: name.to_owned(),
            pending: s.lengths.pending,
            oldest_pending_age_seconds: s.oldest_pending_age_seconds,
            processing: s.lengths.processing.clone(),
            processing_total: s.lengths.processing_total(),
            stranded: s.lengths.stranded.clone(),
            stranded_total: s.lengths.stranded_total(),
            dead_letters: s.dead_letters,
        }
    }
}

#[derive(Debug, Serialize)]
struct TotalsView {
    instance: InstanceTotals,
    all: Option<Totals>,
}

/// This instance's counters as `/api/status` has always shown them.
#[derive(Debug, Serialize)]
struct InstanceTotals {
    stored: u64,
    duplicates: u64,
    dead_lettered: u64,
    derived: u64,
    retries: u64,
}

impl From<MetricsSnapshot> for InstanceTotals {
    fn from(m: MetricsSnapshot) -> Self {
        Self {
            stored: m.stored,
            duplicates: m.duplicates,
            dead_lettered: m.dead_lettered,
            derived: m.derived,
            retries: m.retries,
        }
    }
}

#[derive(Debug, Serialize)]
struct RatesView {
    instance: Rates,
    all: Rates,
}

#[derive(Debug, Serialize)]
struct Rates {
    stored_per_second_1m: Option<f64>,
    stored_per_second_5m: Option<f64>,
}

#[derive(Debug, Serialize)]
struct LatencyView {
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
    batches: usize,
}

impl LatencyView {
    fn of(sorted: &[f64]) -> Self {
        let at = |q: f64| {
            let last = sorted.len().checked_sub(1)?;
            sorted.get((last as f64 * q).round() as usize).copied()
        };
        Self {
            p50: at(0.5),
            p95: at(0.95),
            p99: at(0.99),
            batches: sorted.len(),
        }
    }
}

impl StatusState {
    /// The `queue` object of the last sample (`None` before the first).
    pub fn queue(&self) -> Option<QueueView> {
        self.last_sample().map(|s| QueueView::of(&self.queue, &s))
    }

    /// The live instances of the last sample.
    pub fn consumers(&self) -> Vec<FleetMember> {
        self.last_sample().map(|s| s.consumers).unwrap_or_default()
    }

    /// The whole status, as `/api/status` answers it.
    pub fn status(&self) -> StatusView {
        let sample = self.last_sample();
        let (redis, mongodb) = self.dependencies.snapshot();
        let (mine_1m, all_1m) = self.rates(60);
        let (mine_5m, all_5m) = self.rates(300);
        let lag_seconds = self.lag_seconds(sample.as_ref());
        StatusView {
            version: env!("CARGO_PKG_VERSION"),
            commit: COMMIT,
            instance: InstanceView {
                id: self.instance.id.clone(),
                host: self.instance.host.clone(),
                pid: self.instance.pid,
                started: self.instance.started,
                uptime_seconds: self.started_at.elapsed().as_secs(),
            },
            queue: sample.as_ref().map(|s| QueueView::of(&self.queue, s)),
            totals: TotalsView {
                instance: self.metrics.snapshot().into(),
                all: sample.as_ref().map(|s| s.totals),
            },
            rates: RatesView {
                instance: Rates {
                    stored_per_second_1m: mine_1m,
                    stored_per_second_5m: mine_5m,
                },
                all: Rates {
                    stored_per_second_1m: all_1m,
                    stored_per_second_5m: all_5m,
                },
            },
            batch_latency_ms: LatencyView::of(&self.latencies()),
            lag_seconds,
            derivations: sample.as_ref().and_then(|s| s.derivations),
            redis,
            mongodb,
            geoip: None,
            consumers: sample
                .as_ref()
                .map(|s| s.consumers.clone())
                .unwrap_or_default(),
            sampled_at: sample.as_ref().map(|s| s.at),
            sample_error: sample.and_then(|s| s.error),
            history: self.history(),
        }
    }
}

/// A one-field error body: `{"error": ...}`.
#[derive(Debug, Serialize)]
pub(super) struct ErrorBody {
    pub(super) error: Option<String>,
}

/// `/healthz`: the process answers.
pub(super) async fn healthz() -> Json<BTreeMap<&'static str, &'static str>> {
    Json(BTreeMap::from([("status", "alive")]))
}

/// One dependency in `/readyz`: `"ok"`, or `{"error": ...}`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Check {
    Ok(&'static str),
    Failed(ErrorBody),
}

#[derive(Debug, Serialize)]
struct Readiness {
    redis: Check,
    mongodb: Check,
}

/// `/readyz`: both dependencies, checked live.
pub(super) async fn readyz(State(state): State<Arc<StatusState>>) -> Response {
    let limit = Duration::from_secs(2);
    let check = |outcome: Result<Result<(), String>, tokio::time::error::Elapsed>| match outcome {
        Ok(Ok(())) => Check::Ok("ok"),
        Ok(Err(e)) => Check::Failed(ErrorBody {
            error: Some(redact_urls_in(&e)),
        }),
        Err(_) => Check::Failed(ErrorBody {
            error: Some("no answer within 2 s".to_owned()),
        }),
    };
    let redis = tokio::time::timeout(limit, async {
        state.source.ping().await.map_err(|e| e.to_string())
    })
    .await;
    let mongodb = tokio::time::timeout(limit, async {
        state.sink.ping().await.map_err(|e| e.to_string())
    })
    .await;
    let body = Readiness {
        redis: check(redis),
        mongodb: check(mongodb),
    };
    let ready = matches!((&body.redis, &body.mongodb), (Check::Ok(_), Check::Ok(_)));
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

#[derive(Deserialize)]
pub(super) struct Limit {
    limit: Option<i64>,
}

/// Payload characters shown per dead letter.
const PAYLOAD_PREVIEW: usize = 512;

/// One dead letter in `/api/dead-letters`: the stored document with the
/// payload cut for display.
#[derive(Debug, Serialize)]
struct DeadLetterView<'a> {
    id: &'a str,
    at: DateTime<Utc>,
    reason: &'a str,
    consumer: &'a str,
    size: i64,
    payload: Option<&'a str>,
    payload_truncated: bool,
    binary: bool,
}

impl<'a> DeadLetterView<'a> {
    fn of(d: &'a DeadLetterDocument) -> Self {
        let payload = d.payload.as_deref();
        Self {
            id: &d.id,
            at: d.at,
            reason: &d.reason,
            consumer: &d.consumer,
            size: d.size,
            payload: payload.map(|p| visitlog_schema::truncate_chars(p, PAYLOAD_PREVIEW)),
            payload_truncated: payload.is_some_and(|p| p.chars().count() > PAYLOAD_PREVIEW)
                || d.truncated,
            binary: d.payload_raw.is_some(),
        }
    }
}

/// `/api/dead-letters?limit=N`: the newest dead letters.
pub(super) async fn dead_letters(
    State(state): State<Arc<StatusState>>,
    Query(q): Query<Limit>,
) -> Response {
    let limit = q.limit.unwrap_or(20).clamp(1, 200);
    match state.sink.dead_letters(limit).await {
        Ok(docs) => Json(docs.iter().map(DeadLetterView::of).collect::<Vec<_>>()).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(ErrorBody {
                error: Some(redact_urls_in(&e.to_string())),
            }),
        )
            .into_response(),
    }
}
