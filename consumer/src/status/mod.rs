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
//!
//! [`state`] keeps the sample, `api` answers the JSON endpoints with typed
//! views, `actions` requeues and purges dead letters, `metrics` renders
//! `/metrics`, `auth` checks the token and
//! `server` serves the router with limits on idle clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::{Html, Json};
use axum::routing::{get, post};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::error::{Error, Result};

mod actions;
mod api;
mod auth;
mod metrics;
mod server;
mod state;

pub use api::{QueueView, StatusView};
pub use state::{Point, Sample, StatusState};

/// The build's git commit, set by build.rs.
pub const COMMIT: &str = env!("VISITLOG_BUILD_COMMIT");

/// The status router: `/`, `/api/*` (and `POST /api/dead-letters/requeue`
/// and `/purge`), `/metrics`, `/healthz`, `/readyz`.
pub fn router(state: Arc<StatusState>) -> Router {
    let protected = Router::new()
        .route("/", get(dashboard))
        .route(
            "/api/status",
            get(
                |axum::extract::State(s): axum::extract::State<Arc<StatusState>>| async move {
                    Json(s.status())
                },
            ),
        )
        .route(
            "/api/consumers",
            get(
                |axum::extract::State(s): axum::extract::State<Arc<StatusState>>| async move {
                    Json(s.consumers())
                },
            ),
        )
        .route(
            "/api/queue",
            get(
                |axum::extract::State(s): axum::extract::State<Arc<StatusState>>| async move {
                    Json(s.queue())
                },
            ),
        )
        .route("/api/dead-letters", get(api::dead_letters))
        .route("/api/dead-letters/requeue", post(actions::requeue))
        .route("/api/dead-letters/purge", post(actions::purge))
        .route("/metrics", get(metrics::metrics))
        .route("/readyz", get(api::readyz))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ));
    Router::new()
        .route("/healthz", get(api::healthz))
        .merge(protected)
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(TraceLayer::new_for_http())
}

/// The largest request body the status endpoint reads (a dead-letter
/// action names at most a page of ids).
const MAX_BODY: usize = 64 * 1024;

/// The longest a status answer may take (`/readyz` and the dead-letter
/// actions reach Redis and MongoDB, whose own timeouts are shorter).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

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

async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}

#[cfg(test)]
mod tests {
    use visitlog_schema::redact_urls_in as mask_secrets;

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
