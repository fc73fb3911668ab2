//! The command line: `run`, `setup`, `check-config`, `dead-letters`,
//! `catalog`, `stats`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::admin::{self, Selection};
use crate::config::{Config, LogFormat};
use crate::internal_events::Metrics;
use crate::origin::{Origin, Origins};
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

/// Settings shared by every command: the configuration file, and every
/// [`Config`] setting as a flag or variable over it.
#[derive(Debug, Default)]
struct Settings {
    /// `--config`.
    file: Option<PathBuf>,
    /// The flags and variables given (none has a clap default).
    given: clap::ArgMatches,
}

/// The `--config` argument.
#[derive(Args, Debug)]
struct ConfigFile {
    /// TOML configuration file (unknown keys are refused).
    #[arg(long, global = true, env = "VISITLOG_CONFIG", hide_env_values = true)]
    config: Option<PathBuf>,
}

impl clap::FromArgMatches for Settings {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Ok(Self {
            file: ConfigFile::from_arg_matches(matches)?.config,
            given: matches.clone(),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for Settings {
    /// Every setting: global (before or after the command), optional
    /// (the file or the default fills it), and with `hide_env_values`, so
    /// that `--help` never prints a value (the URLs carry passwords).
    fn augment_args(cmd: clap::Command) -> clap::Command {
        Config::augment_args(ConfigFile::augment_args(cmd))
            .mut_args(|arg| arg.global(true).required(false).hide_env_values(true))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
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
    /// The catalog of tutorials and videos.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Erase one person's data (GDPR article 17): from the queue, the
    /// processing lists and every collection, and mark the figures their
    /// records fed to be derived again. Prints what it removed.
    Erase(SubjectArgs),
    /// Export one person's data (GDPR article 15) as JSON lines, one
    /// `{"collection", "document"}` each, to standard output or --output.
    Export {
        #[command(flatten)]
        subject: SubjectArgs,
        /// Write here instead of standard output (created with mode 0600).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Import historic logs into the same collections as live records:
    /// Open edX tracking logs, or visitlog records as JSON lines.
    ///
    /// Idempotent: each record's id comes from its line, so importing a
    /// file again, or overlapping files, adds nothing (counted as
    /// duplicates), and an interrupted import is simply run again. After
    /// loading the catalog, import the same edX files again to move the
    /// events of videos it did not know to their tutorials. GeoIP, IP
    /// anonymisation, redaction and session hashing follow the app's
    /// VISITLOG_GEODB, VISITLOG_ANONYMIZE_IP, VISITLOG_DENY_PARAMS,
    /// VISITLOG_TUTORIAL_ROUTE and VISITLOG_COOKIE_KEY.
    Import {
        /// `edx`: Open edX tracking logs; `jsonl`: visitlog records, one
        /// per line (what the queue carries).
        #[arg(long, value_enum, default_value_t = crate::import::Format::Edx)]
        format: crate::import::Format,
        /// Read, map and check every line, and print what would be
        /// imported; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Files (`.log`, `.json`, `.jsonl`, optionally `.gz`; gzip is
        /// known by its first bytes) or directories (their files in name
        /// order).
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// The site's figures over a range of days (UTC): page views, visits,
    /// learners, time on page, sessions, video watched, completions, and
    /// the most viewed tutorials.
    Report {
        /// First day, YYYY-MM-DD (default: 29 days before --to; at most
        /// 366 days are read at once).
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        /// Last day, included, YYYY-MM-DD (default: today, UTC).
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
        /// Only this FOSS's tutorial pages (repeatable): no sessions or
        /// top lists then, which are kept for the whole site only.
        #[arg(long)]
        foss: Vec<String>,
        /// `table` for people, `json` for scripts, `csv` for spreadsheets (a
        /// `site` row of totals, then a `tutorial` row each).
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
    },
}

/// How `report` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ReportFormat {
    Table,
    Json,
    Csv,
}

/// Whose data: exactly one of `--user` and `--visitor`.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct SubjectArgs {
    /// A logged-in user, by the name the app records (with the browsers
    /// linked to them only).
    #[arg(long)]
    user: Option<String>,
    /// A browser, by its visitor id (the `visitor_id` of its records).
    #[arg(long)]
    visitor: Option<uuid::Uuid>,
}

impl SubjectArgs {
    fn subject(self) -> crate::erasure::Subject {
        use crate::erasure::Subject;
        match (self.user, self.visitor) {
            (Some(user), _) => Subject::User(user),
            (None, Some(visitor)) => Subject::Visitor(visitor.to_string()),
            // clap's group makes one of them required.
            (None, None) => Subject::User(String::new()),
        }
    }
}

#[derive(Subcommand, Debug)]
enum CatalogCommand {
    /// Import a catalog kept elsewhere: all or nothing, idempotent.
    ///
    /// FILE is a JSON array of items, or CSV whose header row names the
    /// columns foss,tutorial,language,video_id,title,duration,order,main,level
    /// (foss to title required; `main` is true/false/1/0/yes/no; an empty
    /// duration or level is none). `-` reads standard input. Any bad row
    /// and nothing is imported: the errors name the line (CSV) or item
    /// index (JSON) and the field.
    ///
    /// Each FOSS in the file is published whole, as the app's own
    /// publications are: videos of a FOSS that the file does not list
    /// become inactive (`active: false`, kept). Import a FOSS's full list,
    /// never part of it.
    Import {
        /// The file (`.json` or `.csv`; `-` for standard input).
        file: PathBuf,
        /// Check the file and print what would change, writing nothing.
        #[arg(long)]
        dry_run: bool,
    },
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
    /// Defaults, then the file, then the variables and flags given.
    #[cfg(test)]
    fn resolve(self) -> anyhow::Result<Config> {
        Ok(self.resolve_with_origins()?.0)
    }

    /// [`Settings::resolve`], and where each value came from.
    fn resolve_with_origins(self) -> anyhow::Result<(Config, Origins)> {
        use clap::{CommandFactory, FromArgMatches};
        let (mut c, keys) = match &self.file {
            Some(path) => {
                let c = Config::from_file(path)?;
                // Read again for its keys: it parsed, so it is TOML.
                let keys = std::fs::read_to_string(path)
                    .ok()
                    .and_then(|text| text.parse::<toml::Table>().ok())
                    .map(|table| table.keys().cloned().collect())
                    .unwrap_or_default();
                (c, keys)
            }
            None => (Config::default(), Vec::new()),
        };
        c.update_from_arg_matches(&self.given)?;
        let file = self.file.as_deref().map(|path| (path, keys.as_slice()));
        let origins = Origins::new(&Cli::command(), &self.given, file);
        if let Err(e) = c.validate() {
            // Named where the operator wrote it, not only by its TOML key.
            if let crate::config::ConfigError::Invalid { key, message } = &e
                && let Some(origin) = origins.of(key).filter(|o| **o != Origin::Default)
            {
                anyhow::bail!("{key} ({origin}): {message}");
            }
            return Err(e.into());
        }
        Ok((c, origins))
    }
}

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colour only for a person at a terminal: journald and files would
    // store the escape codes as bytes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Parses the command line and runs it; the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match from_environment(&e) {
            Some(message) => {
                eprintln!("visitlog-consumer: {message}");
                return ExitCode::from(2);
            }
            None => e.exit(),
        },
    };
    let (config, origins) = match cli.settings.resolve_with_origins() {
        Ok(resolved) => resolved,
        Err(e) => {
            eprintln!("visitlog-consumer: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(config.log_format);
    for (key, origin) in origins.overridden() {
        tracing::warn!(
            "{key}: the configuration file's value is overridden by {origin}; keep each setting in one place"
        );
    }
    if matches!(cli.command, Command::CheckConfig) {
        print!("{}", origins.annotate(&config.to_redacted_toml()));
        return ExitCode::SUCCESS;
    }
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
    match runtime.block_on(execute(cli.command, config.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("visitlog-consumer: {:#}", name_the_dependency(e, &config));
            ExitCode::FAILURE
        }
    }
}

/// A bad value given in a `VISITLOG_*` variable, told under the variable's
/// name (clap names the flag, which the operator never typed).
fn from_environment(e: &clap::Error) -> Option<String> {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ErrorKind};
    if !matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let shown = e.get(ContextKind::InvalidArg)?.to_string();
    let long = shown.split_whitespace().next()?.strip_prefix("--")?;
    let command = Cli::command();
    let arg = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))?;
    let var = arg.get_env()?.to_string_lossy().into_owned();
    let on_command_line =
        std::env::args().any(|a| a == format!("--{long}") || a.starts_with(&format!("--{long}=")));
    if on_command_line || std::env::var_os(&var).is_none() {
        return None;
    }
    let message = e.render().to_string();
    let message = message.lines().next().unwrap_or_default();
    let message = message.strip_prefix("error: ").unwrap_or(message);
    Some(message.replace(&format!("for '{shown}'"), &format!("in {var}")))
}

/// Prefixes a Redis or MongoDB failure with the dependency and its address
/// (password masked): "Connection refused" alone says not whose.
fn name_the_dependency(e: anyhow::Error, config: &Config) -> anyhow::Error {
    use crate::error::Error;
    let redis = || anyhow::anyhow!("Redis at {}", crate::config::redact_url(&config.redis_url));
    let mongo = || {
        anyhow::anyhow!(
            "MongoDB at {}",
            crate::config::redact_url(&config.mongodb_uri)
        )
    };
    let which = match e.downcast_ref::<Error>() {
        Some(Error::Redis(_) | Error::RedisUrl(_)) => Some(redis()),
        Some(Error::Mongo(_) | Error::MongoUri(_)) => Some(mongo()),
        _ if e.downcast_ref::<redis::RedisError>().is_some() => Some(redis()),
        _ if e.downcast_ref::<mongodb::error::Error>().is_some() => Some(mongo()),
        _ => None,
    };
    match which {
        Some(context) => e.context(context.to_string()),
        None => e,
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
            let sink = Sink::open(&config).await?;
            sink.setup(&config.retention()).await?;
            crate::analytics::Analytics::new(
                sink.clone(),
                config.analytics_rules(),
                config.derive_interval,
                "setup",
            )
            .setup()
            .await?;
            println!(
                "collections, validators and indexes of `{}` are in place",
                config.database
            );
        }
        Command::Erase(args) => {
            let summary = crate::erasure::erase(&config, &args.subject()).await?;
            print!("erased:\n{summary}");
        }
        Command::Export { subject, output } => {
            let summary = match output {
                Some(path) => {
                    let mut file = create_private(&path)?;
                    let summary =
                        crate::erasure::export(&config, &subject.subject(), &mut file).await?;
                    std::io::Write::flush(&mut file)?;
                    summary
                }
                None => {
                    let mut out = std::io::stdout().lock();
                    crate::erasure::export(&config, &subject.subject(), &mut out).await?
                }
            };
            eprint!("exported:\n{summary}");
        }
        Command::Catalog(CatalogCommand::Import { file, dry_run }) => {
            import_catalog(&config, &file, dry_run).await?;
        }
        Command::Import {
            format,
            dry_run,
            paths,
        } => {
            let options = crate::import::Options {
                format,
                dry_run,
                paths,
            };
            let summary = crate::import::import(&config, options).await?;
            print!("{summary}");
            if !summary.errors.is_empty() {
                anyhow::bail!(
                    "{} files could not be read to their end",
                    summary.errors.len()
                );
            }
        }
        Command::Report {
            from,
            to,
            foss,
            format,
        } => {
            use visitlog_analytics::staff::{DEFAULT_DAYS, Range};
            let to = to.unwrap_or_else(|| chrono::Utc::now().date_naive());
            let from = from.unwrap_or(to - chrono::Duration::days(DEFAULT_DAYS - 1));
            let range = Range::new(from, to, foss).map_err(|e| anyhow::anyhow!("report: {e}"))?;
            let sink = Sink::open(&config).await?;
            let report = crate::report::report(&sink, &range).await?;
            match format {
                ReportFormat::Table => print!("{}", report.table()),
                ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                ReportFormat::Csv => print!("{}", report.csv()?),
            }
        }
        // Printed by `main`, with where each value came from.
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

/// A new file only its owner can read: an export is personal data.
fn create_private(path: &std::path::Path) -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    Ok(std::io::BufWriter::new(file))
}

/// `catalog import`: see [`CatalogCommand::Import`].
async fn import_catalog(
    config: &Config,
    file: &std::path::Path,
    dry_run: bool,
) -> anyhow::Result<()> {
    use crate::catalog_import::{Format, SHOWN_ERRORS, import, publications, read_input};
    let text =
        read_input(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let records = match publications(&text, Format::of(file, &text), chrono::Utc::now()) {
        Ok(records) => records,
        Err(errors) => {
            for e in errors.iter().take(SHOWN_ERRORS) {
                eprintln!("{e}");
            }
            if errors.len() > SHOWN_ERRORS {
                eprintln!("… and {} more", errors.len() - SHOWN_ERRORS);
            }
            anyhow::bail!(
                "catalog not imported: {} errors in {}",
                errors.len(),
                file.display()
            );
        }
    };
    let sink = Sink::open(config).await?;
    if !dry_run {
        sink.setup(&config.retention()).await?;
    }
    let summaries = import(&sink, &records, &config.rules(), dry_run).await?;
    for summary in summaries {
        if dry_run {
            println!("{summary} (dry run: nothing written)");
        } else {
            println!("{summary}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
            "redis://10.0.0.1:26379,redis://10.0.0.2:26379",
            "--redis-mode",
            "sentinel",
            "--redis-sentinel-master",
            "mymaster",
            "--queue",
            "q2",
            "--queue-shards",
            "4",
            "--mongodb-uri",
            "mongodb://db:27018",
            "--database",
            "d2",
            "--write-concern",
            "2",
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
            "--events-retention",
            "400d",
            "--dead-letters-retention",
            "90d",
            "--analytics-retention",
            "2y",
            "--dead-letter-max-bytes",
            "2048",
            "--completion-threshold",
            "0.9",
            "--anonymous-visits",
            "true",
            "--analytics",
            "false",
            "--derive-interval",
            "2s",
            "--session-timeout",
            "45m",
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
            redis_url: "redis://10.0.0.1:26379,redis://10.0.0.2:26379".into(),
            // Checked by `redis_ca_cert_is_read_and_checked_at_start`.
            redis_ca_cert: None,
            redis_mode: visitlog_schema::RedisMode::Sentinel,
            redis_sentinel_master: Some("mymaster".into()),
            queue: "q2".into(),
            queue_shards: 4,
            mongodb_uri: "mongodb://db:27018".into(),
            database: "d2".into(),
            write_concern: Some("2".into()),
            consumer_id: Some("c2".into()),
            batch_size: 20,
            flush_interval: Duration::from_secs(1),
            max_in_flight: 3,
            heartbeat_interval: Duration::from_secs(2),
            heartbeat_ttl: Duration::from_secs(9),
            shutdown_deadline: Duration::from_secs(4),
            max_backoff: Duration::from_secs(7),
            retention: Some(Duration::from_secs(30 * 86400)),
            events_retention: Some(Duration::from_secs(400 * 86400)),
            dead_letters_retention: Some(Duration::from_secs(90 * 86400)),
            analytics_retention: Some(humantime::parse_duration("2y").unwrap()),
            dead_letter_max_bytes: 2048,
            completion_threshold: 0.9,
            anonymous_visits: true,
            analytics: false,
            derive_interval: Duration::from_secs(2),
            session_timeout: Duration::from_secs(45 * 60),
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
