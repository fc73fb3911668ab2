//! The example tutorial site.
//!
//! Run with: `cargo run -p visitlog-example -- --listen 127.0.0.1:8080`
//! (configured by the `VISITLOG_*` variables; see the README).

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use visitlog_middleware::{CaptureLayer, Config};

/// The shipper builds a record on another thread than the request's: a
/// thread-caching allocator makes that cheaper (the library does not need it).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A tutorial website that logs every request with visitlog.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "VISITLOG_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// MongoDB the consumer writes to, for resume positions, progress and
    /// the staff analytics; without it the pages work but do not resume.
    // `--help` must not show its value: the URI may hold a password.
    #[arg(long, env = "VISITLOG_MONGODB_URI", hide_env_values = true)]
    mongodb_uri: Option<String>,
    /// The consumer's database.
    #[arg(long, env = "VISITLOG_DATABASE", default_value = "visitlog")]
    database: String,
    /// Users marked staff (comma-separated): their requests and events are
    /// stored, flagged `staff`, and left out of every analytics figure.
    #[arg(long, env = "VISITLOG_EXAMPLE_STAFF", default_value = visitlog_example::DEFAULT_STAFF)]
    staff: String,
    /// How long to keep sending buffered records to Redis on shutdown.
    #[arg(long, default_value = "5s")]
    flush_deadline: humantime::Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let config = Config::from_env()?;
    let queue = config.queue_name().to_owned();
    let (capture, shipper) = CaptureLayer::new(config)?;
    let shipper = shipper.spawn();
    // What the site offers, so figures show unwatched videos too and
    // progress knows each tutorial's main video. Idempotent: every start
    // publishes it again, and the newest publication wins.
    let published = capture
        .catalog()
        .publish(visitlog_example::catalog())
        .context("publishing the catalog")?;
    tracing::info!(publications = published, "catalog published");
    let store = match &args.mongodb_uri {
        Some(uri) => Some(
            visitlog_example::Store::connect(uri, &args.database)
                .await
                .context("VISITLOG_MONGODB_URI")?,
        ),
        None => None,
    };
    let staff = visitlog_example::Staff::from_list(&args.staff);
    let app = visitlog_example::app_with(capture, store, staff);

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, %queue, "tutorial-site ready");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;

    let stats = shipper.shutdown(args.flush_deadline.into()).await;
    tracing::info!(
        captured = stats.captured,
        shipped = stats.shipped,
        dropped = stats.dropped,
        "tutorial-site stopped"
    );
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}
