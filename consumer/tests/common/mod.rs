//! What the consumer's integration tests share.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use visitlog_consumer::config::Config;
use visitlog_consumer::internal_events::{Metrics, MetricsSnapshot};
use visitlog_consumer::shutdown::Shutdown;
use visitlog_consumer::worker::{self, RunOptions};
use visitlog_tests::Namespace;

pub fn config(ns: &Namespace, mongodb_uri: &str, database: &str, id: &str) -> Config {
    Config {
        redis_url: ns.redis_url().to_owned(),
        queue: ns.queue().to_owned(),
        mongodb_uri: mongodb_uri.to_owned(),
        database: database.to_owned(),
        consumer_id: Some(id.to_owned()),
        batch_size: 500,
        flush_interval: Duration::from_millis(50),
        heartbeat_interval: Duration::from_millis(200),
        heartbeat_ttl: Duration::from_secs(1),
        // Below the heartbeat TTL, as it must be.
        shutdown_deadline: Duration::from_millis(800),
        max_backoff: Duration::from_millis(500),
        ..Config::default()
    }
}

/// A consumer running in this process until `stop` is called.
pub struct InProcess {
    pub stop: tokio::sync::watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<visitlog_consumer::error::Result<MetricsSnapshot>>,
    pub metrics: Arc<Metrics>,
}

impl InProcess {
    pub fn start(config: Config) -> Self {
        Self::launch(config, false)
    }

    /// Like `start`, serving the status endpoint on `config.status_addr`.
    pub fn start_with_status(config: Config) -> Self {
        Self::launch(config, true)
    }

    fn launch(config: Config, status: bool) -> Self {
        // `RUST_LOG=debug cargo test` shows what the consumer did.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let (stop, shutdown) = Shutdown::manual();
        let metrics = Arc::new(Metrics::default());
        let task = tokio::spawn(worker::run(
            config,
            RunOptions {
                setup: true,
                status,
            },
            shutdown,
            metrics.clone(),
        ));
        Self {
            stop,
            task,
            metrics,
        }
    }

    pub async fn stop(self) -> MetricsSnapshot {
        let _ = self.stop.send(true);
        self.task.await.unwrap().unwrap()
    }
}

/// Every document of `name` in `db`, in `_id` order.
pub async fn documents(uri: &str, db: &str, name: &str) -> Vec<bson::Document> {
    use futures_util::TryStreamExt;
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    client
        .database(db)
        .collection::<bson::Document>(name)
        .find(bson::doc! {})
        .sort(bson::doc! { "_id": 1 })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// The `tutorial_progress` document `id`, read as the app reads it.
pub async fn stored_progress(uri: &str, db: &str, id: &str) -> Option<visitlog_progress::Progress> {
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    let doc = client
        .database(db)
        .collection::<bson::Document>("tutorial_progress")
        .find_one(bson::doc! { "_id": id })
        .await
        .unwrap()?;
    Some(visitlog_progress::Progress::from_document(&doc).unwrap())
}
