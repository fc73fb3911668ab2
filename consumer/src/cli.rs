//! The command line: `run`, `setup`, `check-config`, `dead-letters`, `stats`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::admin::{self, Selection};
use crate::config::{Config, LogFormat, parse_duration};
use crate::internal_events::Metrics;
use crate::shutdown::Shutdown;
use crate::sink::Sink;
use crate::worker::{self, RunOptions};

/// Moves visitlog records from Redis into MongoDB.
#[derive(Parser, Debug)]
#[command(name = "visitlog-consumer", version)]
pub struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
}

/// Settings shared by every command; each overrides the config file.
///
/// Every setting read from the environment has `hide_env_values`: `--help`
/// must never print a value (the URLs carry passwords).
#[derive(Args, Debug, Default)]
struct Settings {
    /// TOML configuration file (unknown keys are refused).
    #[arg(long, global = true, env = "VISITLOG_CONFIG", hide_env_values = true)]
    config: Option<PathBuf>,
    /// Redis URL.
    #[arg(
        long,
        global = true,
        env = "VISITLOG_REDIS_URL",
        hide_env_values = true
    )]
    redis_url: Option<String>,
    /// Queue key.
    #[arg(long, global = true, env = "VISITLOG_QUEUE", hide_env_values = true)]
    queue: Option<String>,
    /// MongoDB URI.
    #[arg(
        long,
        global = true,
        env = "VISITLOG_MONGODB_URI",
        hide_env_values = true
    )]
    mongodb_uri: Option<String>,
    /// Database name.
    #[arg(long, global = true, env = "VISITLOG_DATABASE", hide_env_values = true)]
    database: Option<String>,
    /// This instance's id.
    #[arg(
        long,
        global = true,
        env = "VISITLOG_CONSUMER_ID",
        hide_env_values = true
    )]
    consumer_id: Option<String>,
    /// Most records per batch.
    #[arg(
        long,
        global = true,
        env = "VISITLOG_BATCH_SIZE",
        hide_env_values = true
    )]
    batch_size: Option<usize>,
    /// Longest wait for an idle queue (e.g. 200ms).
    #[arg(long, global = true, env = "VISITLOG_FLUSH_INTERVAL", hide_env_values = true, value_parser = parse_duration)]
    flush_interval: Option<Duration>,
    /// Batches stored at once.
    #[arg(
        long,
        global = true,
        env = "VISITLOG_MAX_IN_FLIGHT",
        hide_env_values = true
    )]
    max_in_flight: Option<usize>,
    /// Heartbeat period.
    #[arg(long, global = true, env = "VISITLOG_HEARTBEAT_INTERVAL", hide_env_values = true, value_parser = parse_duration)]
    heartbeat_interval: Option<Duration>,
    /// Heartbeat lifetime; a silent instance is dead after it.
    #[arg(long, global = true, env = "VISITLOG_HEARTBEAT_TTL", hide_env_values = true, value_parser = parse_duration)]
    heartbeat_ttl: Option<Duration>,
    /// Time in-flight batches get on SIGTERM.
    #[arg(long, global = true, env = "VISITLOG_SHUTDOWN_DEADLINE", hide_env_values = true, value_parser = parse_duration)]
    shutdown_deadline: Option<Duration>,
    /// Longest pause between retries.
    #[arg(long, global = true, env = "VISITLOG_MAX_BACKOFF", hide_env_values = true, value_parser = parse_duration)]
    max_backoff: Option<Duration>,
    /// Keep request records this long (TTL index).
    #[arg(long, global = true, env = "VISITLOG_RETENTION", hide_env_values = true, value_parser = parse_duration)]
    retention: Option<Duration>,
    /// Largest payload kept verbatim in a dead letter, in bytes.
    #[arg(
        long,
        global = true,
        env = "VISITLOG_DEAD_LETTER_MAX_BYTES",
        hide_env_values = true
    )]
    dead_letter_max_bytes: Option<usize>,
    /// Fraction of a video that completes its tutorial automatically.
    #[arg(
        long,
        global = true,
        env = "VISITLOG_COMPLETION_THRESHOLD",
        hide_env_values = true
    )]
    completion_threshold: Option<f64>,
    /// Count tutorial visits of anonymous visitors too.
    #[arg(
        long,
        global = true,
        env = "VISITLOG_ANONYMOUS_VISITS",
        hide_env_values = true
    )]
    anonymous_visits: Option<bool>,
    /// Where the status page, JSON API and /metrics listen.
    #[arg(
        long,
        global = true,
        env = "VISITLOG_STATUS_ADDR",
        hide_env_values = true
    )]
    status_addr: Option<std::net::SocketAddr>,
    /// Token the status endpoints require (all but /healthz).
    #[arg(
        long,
        global = true,
        env = "VISITLOG_STATUS_TOKEN",
        hide_env_values = true
    )]
    status_token: Option<String>,
    /// Most connections the status endpoint holds open.
    #[arg(
        long,
        global = true,
        env = "VISITLOG_STATUS_MAX_CONNECTIONS",
        hide_env_values = true
    )]
    status_max_connections: Option<usize>,
    /// Time a status client has to send a request's headers (e.g. 5s).
    #[arg(long, global = true, env = "VISITLOG_STATUS_HEADER_TIMEOUT", hide_env_values = true, value_parser = parse_duration)]
    status_header_timeout: Option<Duration>,
    /// A status connection idle this long either way is closed (e.g. 30s).
    #[arg(long, global = true, env = "VISITLOG_STATUS_IDLE_TIMEOUT", hide_env_values = true, value_parser = parse_duration)]
    status_idle_timeout: Option<Duration>,
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "VISITLOG_LOG_FORMAT",
        hide_env_values = true,
        value_enum
    )]
    log_format: Option<LogFormat>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Consume the queue until SIGTERM/SIGINT.
    Run {
        /// Do not create or update collections and indexes at start.
        #[arg(long)]
        no_setup: bool,
        /// Do not serve the status page, JSON API and /metrics.
        #[arg(long)]
        no_status: bool,
    },
    /// Create or update the collections, validators and indexes (idempotent).
    Setup,
    /// Check the configuration and print it (passwords masked); exit 1 if invalid.
    CheckConfig,
    /// Inspect or act on records that could not be stored.
    #[command(subcommand)]
    DeadLetters(DeadLetters),
    /// Queue, processing and dead-letter counts, as JSON.
    Stats,
}

#[derive(Subcommand, Debug)]
enum DeadLetters {
    /// The newest dead letters.
    List {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Push dead letters back onto the queue, after fixing the cause.
    Requeue(SelectionArgs),
    /// Delete dead letters.
    Purge(SelectionArgs),
}

#[derive(Args, Debug)]
struct SelectionArgs {
    /// A dead letter's id (repeatable).
    #[arg(long = "id")]
    ids: Vec<String>,
    /// Those whose reason contains this text.
    #[arg(long)]
    reason_contains: Option<String>,
    /// All of them.
    #[arg(long)]
    all: bool,
}

impl From<SelectionArgs> for Selection {
    fn from(a: SelectionArgs) -> Self {
        Self {
            ids: a.ids,
            reason_contains: a.reason_contains,
            all: a.all,
        }
    }
}

impl Settings {
    fn resolve(self) -> anyhow::Result<Config> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        macro_rules! over {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { c.$field = v; } )* };
        }
        over!(
            redis_url,
            queue,
            mongodb_uri,
            database,
            batch_size,
            flush_interval,
            max_in_flight,
            heartbeat_interval,
            heartbeat_ttl,
            shutdown_deadline,
            max_backoff,
            dead_letter_max_bytes,
            completion_threshold,
            anonymous_visits,
            status_addr,
            status_max_connections,
            status_header_timeout,
            status_idle_timeout,
            log_format
        );
        if self.status_token.is_some() {
            c.status_token = self.status_token;
        }
        if self.consumer_id.is_some() {
            c.consumer_id = self.consumer_id;
        }
        if self.retention.is_some() {
            c.retention = self.retention;
        }
        c.validate()?;
        Ok(c)
    }
}

fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Parses the command line and runs it; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli.settings.resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("visitlog-consumer: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("visitlog-consumer: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("visitlog-consumer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Run {
            no_setup,
            no_status,
        } => {
            let metrics = Arc::new(Metrics::default());
            worker::run(
                config,
                RunOptions {
                    setup: !no_setup,
                    status: !no_status,
                },
                Shutdown::on_signals(),
                metrics,
            )
            .await?;
        }
        Command::Setup => {
            let sink = Sink::new(&config.mongodb_uri, &config.database).await?;
            sink.setup(config.retention).await?;
            println!(
                "collections, validators and indexes of `{}` are in place",
                config.database
            );
        }
        Command::CheckConfig => print!("{}", config.to_redacted_toml()),
        Command::Stats => println!("{:#}", admin::stats(&config).await?),
        Command::DeadLetters(DeadLetters::List { limit }) => {
            for line in admin::list(&config, limit).await? {
                println!("{line}");
            }
        }
        Command::DeadLetters(DeadLetters::Requeue(args)) => {
            let (requeued, skipped) = admin::requeue(&config, &args.into()).await?;
            println!("requeued {requeued} dead letters; {skipped} truncated ones left in place");
        }
        Command::DeadLetters(DeadLetters::Purge(args)) => {
            let n = admin::purge(&config, &args.into()).await?;
            println!("deleted {n} dead letters");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(args: &[&str]) -> anyhow::Result<Config> {
        let mut argv = vec!["visitlog-consumer"];
        argv.extend_from_slice(args);
        argv.push("check-config");
        Cli::try_parse_from(argv)?.settings.resolve()
    }

    #[test]
    fn every_flag_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "batch-size = 10\nqueue = \"from-file\"\ndatabase = \"filedb\"\n",
        )
        .unwrap();
        let file = file.to_str().unwrap();
        let from_file = resolve(&["--config", file]).unwrap();
        assert_eq!(
            (from_file.batch_size, from_file.queue.as_str()),
            (10, "from-file")
        );
        let c = resolve(&[
            "--config",
            file,
            "--redis-url",
            "redis://10.0.0.1:6380",
            "--queue",
            "q2",
            "--mongodb-uri",
            "mongodb://db:27018",
            "--database",
            "d2",
            "--consumer-id",
            "c2",
            "--batch-size",
            "20",
            "--flush-interval",
            "1s",
            "--max-in-flight",
            "3",
            "--heartbeat-interval",
            "2s",
            "--heartbeat-ttl",
            "9s",
            "--shutdown-deadline",
            "4s",
            "--max-backoff",
            "7s",
            "--retention",
            "30d",
            "--dead-letter-max-bytes",
            "2048",
            "--completion-threshold",
            "0.9",
            "--anonymous-visits",
            "true",
            "--status-addr",
            "0.0.0.0:9555",
            "--status-token",
            "a-long-enough-status-token",
            "--status-max-connections",
            "9",
            "--status-header-timeout",
            "3s",
            "--status-idle-timeout",
            "11s",
            "--log-format",
            "json",
        ])
        .unwrap();
        let expected = Config {
            redis_url: "redis://10.0.0.1:6380".into(),
            queue: "q2".into(),
            mongodb_uri: "mongodb://db:27018".into(),
            database: "d2".into(),
            consumer_id: Some("c2".into()),
            batch_size: 20,
            flush_interval: Duration::from_secs(1),
            max_in_flight: 3,
            heartbeat_interval: Duration::from_secs(2),
            heartbeat_ttl: Duration::from_secs(9),
            shutdown_deadline: Duration::from_secs(4),
            max_backoff: Duration::from_secs(7),
            retention: Some(Duration::from_secs(30 * 86400)),
            dead_letter_max_bytes: 2048,
            completion_threshold: 0.9,
            anonymous_visits: true,
            status_addr: "0.0.0.0:9555".parse().unwrap(),
            status_token: Some("a-long-enough-status-token".into()),
            status_max_connections: 9,
            status_header_timeout: Duration::from_secs(3),
            status_idle_timeout: Duration::from_secs(11),
            log_format: LogFormat::Json,
        };
        assert_eq!(c, expected);
    }

    /// `--help` shows `[env: VAR=value]` for an argument without
    /// `hide_env_values`: none may have it (the URLs carry passwords).
    #[test]
    fn help_never_shows_an_environment_value() {
        use clap::CommandFactory;
        let command = Cli::command();
        let mut with_env = 0;
        for arg in command.get_arguments() {
            if arg.get_env().is_some() {
                with_env += 1;
                assert!(
                    arg.is_hide_env_values_set(),
                    "--{} shows its environment value in --help",
                    arg.get_id()
                );
            }
        }
        assert!(with_env >= 20, "{with_env}");
    }

    #[test]
    fn bad_flag_values_name_the_key() {
        let err = resolve(&["--dead-letter-max-bytes", "10"])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("dead-letter-max-bytes"), "{err}");
        let err = resolve(&["--flush-interval", "soon"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--flush-interval"), "{err}");
    }
}
