//! What an import did, counted as it goes, in memory bounded whatever the
//! files hold (a few line numbers per reason, a bounded list of names), and
//! printed at the end.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::edx::Missing;
use super::viewings::Viewing;
use super::{Skip, Used};

/// Line numbers shown per reason.
pub(crate) const SHOWN_LINES: usize = 5;

/// Distinct event types (or reasons) named at most.
const NAMES_KEPT: usize = 200;

/// Lines skipped for one reason.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Skipped {
    /// How many.
    pub count: u64,
    /// The first few, as `file:line`.
    pub lines: Vec<String>,
}

/// What an import did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    /// Nothing was written.
    pub dry_run: bool,
    /// Files read.
    pub files: usize,
    /// Bytes read from disk (compressed, for gzip files).
    pub bytes: u64,
    /// Lines read.
    pub lines: u64,
    /// Records made, by kind (`request`, `video.play`, ...).
    pub records: BTreeMap<String, u64>,
    /// New records stored.
    pub stored: u64,
    /// Records already stored (an earlier import of the same lines).
    pub duplicates: u64,
    /// Stored events moved to the tutorial the catalog now names.
    pub moved: u64,
    /// Records MongoDB refused, kept in `dead_letters`.
    pub dead_lettered: u64,
    /// Ends of video viewings: credited, or discarded and why.
    pub viewings: BTreeMap<String, u64>,
    /// Lines used without a record of their own.
    pub used: BTreeMap<String, u64>,
    /// Other events, not imported, by type (the [`NAMES_KEPT`] first types).
    pub other: BTreeMap<String, u64>,
    /// Other events of types past those kept.
    pub other_more: u64,
    /// Lines skipped, by reason.
    pub skipped: BTreeMap<String, Skipped>,
    /// Videos the catalog did not place.
    #[serde(skip)]
    pub missing: Missing,
    /// Video events earlier than the latest of their learner and video.
    pub out_of_order: u64,
    /// Files that could not be read to their end.
    pub errors: Vec<String>,
    /// Progress documents written (folds and refolds).
    pub derived: u64,
    /// Analytics documents derived at the end.
    pub analytics: u64,
    /// Seconds the figures took, at the end (part of [`Summary::seconds`]).
    pub analytics_seconds: f64,
    /// Seconds taken.
    pub seconds: f64,
}

impl Summary {
    /// Counts a record of `kind`.
    pub fn record(&mut self, kind: &str, viewing: Option<Viewing>) {
        *self.records.entry(kind.to_owned()).or_default() += 1;
        let ended = match viewing {
            None | Some(Viewing::None) => return,
            Some(Viewing::Credited) => "credited",
            Some(Viewing::TooShort) => "discarded: under 0.25 s, or ending before it began",
            Some(Viewing::PastTheEnd) => "discarded: ending past the duration + 1 s",
        };
        *self.viewings.entry(ended.to_owned()).or_default() += 1;
    }

    /// Counts a line used without a record.
    pub fn used(&mut self, used: Used) {
        *self.used.entry(used.as_str().to_owned()).or_default() += 1;
    }

    /// Counts an event of another type.
    pub fn other(&mut self, event_type: String) {
        if let Some(n) = self.other.get_mut(&event_type) {
            *n += 1;
        } else if self.other.len() < NAMES_KEPT {
            self.other.insert(event_type, 1);
        } else {
            self.other_more += 1;
        }
    }

    /// Counts a skipped line, `file:line`.
    pub fn skip(&mut self, reason: &Skip, at: impl FnOnce() -> String) {
        let text = reason.to_string();
        let key = if self.skipped.contains_key(&text) || self.skipped.len() < NAMES_KEPT {
            text
        } else {
            "other reasons".to_owned()
        };
        let entry = self.skipped.entry(key).or_default();
        entry.count += 1;
        if entry.lines.len() < SHOWN_LINES {
            entry.lines.push(at());
        }
    }

    /// Lines skipped, all reasons.
    pub fn skipped_lines(&self) -> u64 {
        self.skipped.values().map(|s| s.count).sum()
    }
}

/// `1234567` as `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `bytes` in KiB below a MiB, else in MiB.
fn size(bytes: f64) -> String {
    const KIB: f64 = 1024.0;
    if bytes < KIB * KIB {
        format!("{:.1} KiB", bytes / KIB)
    } else {
        format!("{:.1} MiB", bytes / (KIB * KIB))
    }
}

fn listed(counts: &BTreeMap<String, u64>) -> String {
    let mut by_count: Vec<(&String, &u64)> = counts.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    by_count
        .iter()
        .take(10)
        .map(|(name, n)| format!("{name} {}", thousands(**n)))
        .collect::<Vec<_>>()
        .join(", ")
        + if by_count.len() > 10 { ", …" } else { "" }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.seconds.max(0.001);
        writeln!(
            f,
            "read {} file{}, {} lines, {} in {:.1} s ({} lines/s, {}/s)",
            self.files,
            if self.files == 1 { "" } else { "s" },
            thousands(self.lines),
            size(self.bytes as f64),
            self.seconds,
            thousands((self.lines as f64 / secs) as u64),
            size(self.bytes as f64 / secs),
        )?;
        let records: u64 = self.records.values().sum();
        writeln!(
            f,
            "records: {}{}",
            thousands(records),
            if records > 0 {
                format!(" ({})", listed(&self.records))
            } else {
                String::new()
            }
        )?;
        if self.dry_run {
            writeln!(f, "  dry run: nothing written")?;
        } else {
            writeln!(
                f,
                "  {} new, {} already stored (duplicates), {} dead letters",
                thousands(self.stored),
                thousands(self.duplicates),
                thousands(self.dead_lettered)
            )?;
        }
        if self.moved > 0 {
            writeln!(
                f,
                "  {} stored events moved to the tutorial the catalog names",
                thousands(self.moved)
            )?;
        }
        if !self.viewings.is_empty() {
            writeln!(f, "viewings: {}", listed(&self.viewings))?;
        }
        if !self.used.is_empty() {
            writeln!(f, "used without a record: {}", listed(&self.used))?;
        }
        let other: u64 = self.other.values().sum::<u64>() + self.other_more;
        if other > 0 {
            writeln!(
                f,
                "not imported: {} events of other types ({})",
                thousands(other),
                listed(&self.other)
            )?;
        }
        let skipped = self.skipped_lines();
        if skipped > 0 {
            writeln!(f, "skipped: {} lines", thousands(skipped))?;
            for (reason, s) in &self.skipped {
                let more = if s.count > s.lines.len() as u64 {
                    ", …"
                } else {
                    ""
                };
                writeln!(
                    f,
                    "  {reason}: {} ({}{more})",
                    thousands(s.count),
                    s.lines.join(", ")
                )?;
            }
        }
        if self.missing.events > 0 {
            let names: Vec<&str> = self
                .missing
                .videos
                .iter()
                .take(10)
                .map(String::as_str)
                .collect();
            let count = if self.missing.more {
                format!("more than {}", thousands(self.missing.videos.len() as u64))
            } else {
                thousands(self.missing.videos.len() as u64)
            };
            writeln!(
                f,
                "videos not in the catalog: {count}, with {} events, imported under FOSS = course id, tutorial = video id, language `und`: {}{}",
                thousands(self.missing.events),
                names.join(", "),
                if self.missing.videos.len() > 10 {
                    ", …"
                } else {
                    ""
                },
            )?;
            writeln!(
                f,
                "  load the catalog (`visitlog-consumer catalog import`) and import the same files again to move their events"
            )?;
        }
        if self.out_of_order > 0 {
            writeln!(
                f,
                "video events out of time order: {} (their plays and pauses may be paired wrongly; import logs split per server merged by time, e.g. one file per day)",
                thousands(self.out_of_order)
            )?;
        }
        for error in &self.errors {
            writeln!(f, "error: {error}")?;
        }
        if !self.dry_run {
            writeln!(
                f,
                "derived: {} progress documents while storing ({:.1} s), {} analytics documents after ({:.1} s)",
                thousands(self.derived),
                self.seconds - self.analytics_seconds,
                thousands(self.analytics),
                self.analytics_seconds,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn skipped_lines_keep_a_few_numbers_each() {
        let mut s = Summary::default();
        for i in 0..100 {
            s.skip(&Skip::NotJson, || format!("a.log:{i}"));
        }
        let skipped = &s.skipped["not JSON"];
        assert_eq!(skipped.count, 100);
        assert_eq!(skipped.lines.len(), SHOWN_LINES);
        assert!(s.to_string().contains("not JSON: 100 (a.log:0, a.log:1"));
        for i in 0..(NAMES_KEPT + 5) {
            s.other(format!("type{i}"));
        }
        assert_eq!(s.other.len(), NAMES_KEPT);
        assert_eq!(s.other_more, 5);
    }
}
