//! How far an import is: a progress bar on a terminal (bytes read of the
//! total, lines/s, ETA), else a plain line every few seconds (journald,
//! files, CI logs keep no bar), both on standard error.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::summary::thousands;

/// Between two plain progress lines.
pub(crate) const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// What the reader has done so far.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Bytes read from disk (each file's reader adds to it).
    pub bytes: Arc<AtomicU64>,
    /// Lines read.
    pub lines: AtomicU64,
}

/// The running display; [`Progress::finish`] ends it.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Starts showing the progress of `total` bytes in `files` files.
    pub(crate) fn start(total: u64, files: usize, tally: Arc<Tally>) -> Self {
        let started = Instant::now();
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            let shown = bar.clone();
            let task = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let lines = tally.lines.load(Ordering::Relaxed);
                    shown.set_position(tally.bytes.load(Ordering::Relaxed));
                    shown.set_message(format!(
                        "{} lines, {} lines/s",
                        thousands(lines),
                        thousands(per_second(lines, started))
                    ));
                }
            });
            return Self {
                bar: Some(bar),
                task,
            };
        }
        eprintln!(
            "import: {files} files, {:.1} MiB",
            total as f64 / (1024.0 * 1024.0)
        );
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(PLAIN_EVERY).await;
                let bytes = tally.bytes.load(Ordering::Relaxed);
                let lines = tally.lines.load(Ordering::Relaxed);
                eprintln!("{}", plain_line(bytes, total, lines, started.elapsed()));
            }
        });
        Self { bar: None, task }
    }

    /// Stops the display.
    pub(crate) fn finish(self) {
        self.task.abort();
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

fn per_second(n: u64, since: Instant) -> u64 {
    (n as f64 / since.elapsed().as_secs_f64().max(0.001)) as u64
}

/// `import: 37 % (12.0 of 32.4 MiB), 120,000 lines, 24,000 lines/s, ETA 8 s`.
pub fn plain_line(bytes: u64, total: u64, lines: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let percent = (bytes.min(total) * 100).checked_div(total).unwrap_or(100);
    let eta = if bytes == 0 {
        "unknown".to_owned()
    } else {
        let left = total.saturating_sub(bytes) as f64 / (bytes as f64 / secs);
        humantime::format_duration(Duration::from_secs(left.ceil() as u64)).to_string()
    };
    format!(
        "import: {percent} % ({:.1} of {:.1} MiB), {} lines, {} lines/s, ETA {eta}",
        bytes as f64 / (1024.0 * 1024.0),
        total as f64 / (1024.0 * 1024.0),
        thousands(lines),
        thousands((lines as f64 / secs) as u64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_say_how_far_and_how_long() {
        let line = plain_line(
            25 * 1024 * 1024,
            100 * 1024 * 1024,
            250_000,
            Duration::from_secs(10),
        );
        assert_eq!(
            line,
            "import: 25 % (25.0 of 100.0 MiB), 250,000 lines, 25,000 lines/s, ETA 30s"
        );
        assert!(plain_line(0, 10, 0, Duration::ZERO).ends_with("ETA unknown"));
    }
}
