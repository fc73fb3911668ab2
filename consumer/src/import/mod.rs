//! `visitlog-consumer import`: historic logs into the collections live
//! records go to, so that progress, sessions and figures cover the whole
//! history. Two formats: Open edX tracking logs ([`edx`]), and visitlog's
//! own records as JSON lines (what the queue carries), for moving data
//! between installations.
//!
//! A thread reads, maps and checks lines ([`read`]); this side stores each
//! batch exactly as the daemon stores a queue batch (the same `Sink`
//! steps: store, derive, fold again, mark the figures), then derives the
//! figures the import touched. Every imported record's `_id` comes from
//! its line ([`ids`]), so an import run again, or two overlapping files,
//! add nothing: the records count as duplicates. An interrupted import is
//! simply run again.

pub mod edx;
mod files;
mod ids;
mod lenient;
mod pages;
mod progress;
mod read;
mod recent;
mod summary;
mod viewings;
mod visits;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::mpsc;

use crate::analytics::Analytics;
use crate::batch::{Prepared, Preparer};
use crate::config::Config;
use crate::sink::Sink;
pub use edx::{EdxMapper, Placed, Used};
pub use files::{MAX_LINE, Source, sources};
pub use ids::record_id;
pub use progress::plain_line;
pub use summary::Summary;
pub use viewings::Viewing;

/// Batches read ahead of the one being stored.
const READ_AHEAD: usize = 2;

/// Who writes the imported records (dead letters name it).
const WRITER: &str = "import";

/// The input's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Open edX tracking logs.
    Edx,
    /// visitlog records, one JSON object per line (what the queue carries).
    Jsonl,
}

/// What to import, and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The input's format.
    pub format: Format,
    /// Read, map and check everything; write nothing.
    pub dry_run: bool,
    /// Files and directories.
    pub paths: Vec<PathBuf>,
}

/// What one line becomes.
#[derive(Debug)]
pub enum Mapped {
    /// A record, as the queue carries it; for a video event that ends a
    /// viewing, what became of the viewing.
    Record(Vec<u8>, Option<Viewing>),
    /// Read and used without a record of its own (a speed change).
    Used(Used),
    /// An event of a type visitlog does not keep.
    Other(String),
    /// A line that cannot be imported.
    Skipped(Skip),
}

impl Mapped {
    fn record<T: serde::Serialize>(record: &T) -> Self {
        match serde_json::to_vec(record) {
            Ok(payload) => Mapped::Record(payload, None),
            Err(e) => Mapped::Skipped(Skip::Refused(e.to_string())),
        }
    }
}

/// Why a line was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    /// Blank.
    #[error("empty line")]
    Empty,
    /// Longer than [`MAX_LINE`].
    #[error("longer than 1 MiB")]
    TooLong,
    /// Not JSON (or not UTF-8).
    #[error("not JSON")]
    NotJson,
    /// A visitlog record given as edX.
    #[error("a visitlog record, not an edX event (import it with --format jsonl)")]
    VisitlogRecord,
    /// No `event_type` or `name`.
    #[error("no event_type")]
    NoEventType,
    /// No `time`.
    #[error("no time")]
    NoTime,
    /// A `time` not understood, or before 1970.
    #[error("time not understood")]
    BadTime,
    /// A `time` more than a day after the import: a clock gone wrong,
    /// which would make every later live event look late.
    #[error("time in the future")]
    FutureTime,
    /// A `page_close` without a `page`.
    #[error("page_close without a page URL")]
    NoPage,
    /// A video event of nobody.
    #[error("video event without a username")]
    VideoWithoutUser,
    /// A user name longer than visitlog keeps.
    #[error("username longer than 256 characters")]
    UserTooLong,
    /// The `event` of a video event not understood.
    #[error("video event data not understood")]
    BadVideoData,
    /// A video event without the video's `id`.
    #[error("video event without an id")]
    NoVideoId,
    /// A video the catalog does not know, without a course to place it.
    #[error("video not in the catalog, and no course_id")]
    NoCourse,
    /// A video or course id too long to remember across lines.
    #[error("video or course id longer than 512 bytes")]
    IdTooLong,
    /// A position missing, negative or over 10 hours.
    #[error("video time missing, negative or over 10 hours")]
    VideoTime,
    /// Refused by the collection's validator, as a queue record would be.
    #[error("refused: {0}")]
    Refused(String),
}

/// Maps lines of one format.
pub enum Mapper {
    /// Open edX tracking logs.
    Edx(Box<EdxMapper>),
    /// visitlog records: the line is the record.
    Jsonl,
}

impl Mapper {
    fn map(&mut self, line: &[u8]) -> Mapped {
        match self {
            Mapper::Edx(edx) => edx.map(line),
            Mapper::Jsonl => Mapped::Record(line.trim_ascii().to_vec(), None),
        }
    }
}

/// Runs an import; the summary of what it did. Errors are for what stops
/// the whole import (a path that is not there, MongoDB gone); a bad line,
/// or a file that cannot be read to its end, is counted in the summary.
pub async fn import(config: &Config, options: Options) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let sources = sources(&options.paths)?;
    let total: u64 = sources.iter().map(|s| s.size).sum();
    let sink = Sink::open(config).await?;
    let analytics = Analytics::new(
        sink.clone(),
        config.analytics_rules(),
        Duration::ZERO,
        WRITER,
    );
    if !options.dry_run {
        sink.setup(&config.retention()).await?;
        analytics.setup().await?;
    }
    let mapper = match options.format {
        Format::Edx => Mapper::Edx(Box::new(edx_mapper(&sink, options.dry_run).await?)),
        Format::Jsonl => Mapper::Jsonl,
    };
    let preparer = Arc::new(Preparer::with_rules(config.rules())?);
    let tally = Arc::new(progress::Tally::default());
    let progress = progress::Progress::start(total, sources.len(), tally.clone());
    let (tx, mut rx) = mpsc::channel::<Prepared>(READ_AHEAD);
    let reader = std::thread::Builder::new()
        .name("visitlog-import".to_owned())
        .spawn(move || read::read_all(sources, mapper, preparer, tally, tx))
        .context("cannot start the reading thread")?;
    let mut stored = Summary::default();
    let mut pending = Pending::default();
    let outcome = async {
        while let Some(batch) = rx.recv().await {
            if !options.dry_run {
                store(
                    config,
                    &sink,
                    &analytics,
                    batch,
                    options.format,
                    &mut stored,
                    &mut pending,
                )
                .await?;
            }
        }
        pending
            .flush(config, &sink, &analytics, &mut stored)
            .await?;
        anyhow::Ok(())
    }
    .await;
    drop(rx);
    let read = reader.join();
    progress.finish();
    outcome.context(
        "import stopped; run it again to go on (records already stored count as duplicates)",
    )?;
    let mut summary = read.map_err(|_| anyhow::anyhow!("the reading thread failed"))?;
    summary.dry_run = options.dry_run;
    summary.stored = stored.stored;
    summary.duplicates = stored.duplicates;
    summary.dead_lettered = stored.dead_lettered;
    summary.moved = stored.moved;
    summary.derived = stored.derived;
    if !options.dry_run && config.analytics {
        eprintln!("import: deriving the figures the import touched");
        let figures = Instant::now();
        // Until a pass finds nothing due: a key another import held and
        // marked again when it settled is due at once, and computed by
        // whichever of the two passes last. (Bounded, should a live
        // consumer mark keys due at once all the time.)
        for _ in 0..20 {
            let passed = analytics.pass().await?;
            summary.analytics += passed.written;
            if passed.keys == 0 {
                break;
            }
        }
        summary.analytics_seconds = figures.elapsed().as_secs_f64();
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The edX mapper: the app's enrichment settings, and the catalog's
/// videos (a dry run goes on without them when MongoDB does not answer).
async fn edx_mapper(sink: &Sink, dry_run: bool) -> anyhow::Result<EdxMapper> {
    let settings = visitlog_middleware::Config::from_env()?;
    let enrichment = visitlog_middleware::Enrichment::new(&settings)?;
    if !enrichment.keyed_sessions() {
        tracing::warn!(
            "VISITLOG_COOKIE_KEY is not set: sessions are hashed with a fixed key, unlike live records'"
        );
    }
    let entries = match sink.catalog_entries(bson::doc! {}).await {
        Ok(entries) => entries,
        Err(e) if dry_run => {
            tracing::warn!(error = %e, "the catalog cannot be read; videos are placed as if it were empty");
            Vec::new()
        }
        Err(e) => return Err(e.into()),
    };
    let catalog: HashMap<String, Placed> = entries
        .into_iter()
        .map(|e| {
            (
                e.video_id,
                Placed {
                    foss: e.foss,
                    tutorial: e.tutorial,
                    language: e.language,
                    duration: e.duration,
                },
            )
        })
        .collect();
    Ok(EdxMapper::new(enrichment, catalog))
}

/// Histories to fold again gathered before they are folded: a re-import
/// makes every learner's history fold again, and folding it once per
/// batch it appears in would read it again and again.
const PENDING_REFOLDS: usize = 250;

/// What storing batches leaves to do: histories to fold again.
#[derive(Default)]
struct Pending {
    refolds: crate::sink::Refolds,
}

impl Pending {
    /// Folds the gathered histories again and marks what they touched.
    async fn flush(
        &mut self,
        config: &Config,
        sink: &Sink,
        analytics: &Analytics,
        summary: &mut Summary,
    ) -> anyhow::Result<()> {
        if self.refolds.is_empty() {
            return Ok(());
        }
        let refolds = std::mem::take(&mut self.refolds);
        let started = Instant::now();
        let (written, marks) = sink.refold(&refolds, &config.rules()).await?;
        tracing::debug!(histories = refolds.len(), took = ?started.elapsed(), "import refold");
        analytics.marks().mark(marks).await?;
        summary.derived += written;
        Ok(())
    }
}

/// Stores one batch as the daemon stores a queue batch; histories to fold
/// again wait in `pending` (up to [`PENDING_REFOLDS`]), except when the
/// batch moved events, whose old progress is folded and forgotten now.
async fn store(
    config: &Config,
    sink: &Sink,
    analytics: &Analytics,
    mut prepared: Prepared,
    format: Format,
    summary: &mut Summary,
    pending: &mut Pending,
) -> anyhow::Result<()> {
    let rules = config.rules();
    let started = Instant::now();
    let mut moved = if format == Format::Edx {
        let events: Vec<_> = prepared
            .events
            .iter()
            .filter(|e| e.raw.is_some())
            .map(|e| &e.fold)
            .collect();
        sink.reattribute(&events).await?
    } else {
        crate::sink::Moved::default()
    };
    let reattributed = started.elapsed();
    if format == Format::Edx {
        // An edX session stands for a visitor only to cut visits: no
        // browser's anonymous history is behind it to link to the user.
        prepared.links.clear();
    }
    let (stored, mut to_derive) = sink
        .store(prepared, WRITER, WRITER, config.dead_letter_max_bytes)
        .await?;
    let inserted = started.elapsed();
    let (derived, refolds) = sink.derive(&to_derive, &rules).await?;
    tracing::debug!(
        ?reattributed,
        ?inserted,
        derived = ?started.elapsed(),
        refolds = refolds.len(),
        "import batch"
    );
    pending.refolds.merge(refolds);
    pending.refolds.merge(moved.refolds.clone());
    to_derive.marks.append(&mut moved.marks);
    analytics
        .marks()
        .mark(std::mem::take(&mut to_derive.marks))
        .await?;
    summary.stored += stored.inserted;
    summary.duplicates += stored.duplicates;
    summary.dead_lettered += stored.dead_lettered;
    summary.moved += moved.events;
    summary.derived += derived;
    if moved.events > 0 || pending.refolds.len() >= PENDING_REFOLDS {
        pending.flush(config, sink, analytics, summary).await?;
    }
    if moved.events > 0 {
        summary.derived += sink.forget_emptied(&moved).await?;
    }
    Ok(())
}
