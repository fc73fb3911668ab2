//! `visitlog-consumer report`: the site's figures over a range of days, in
//! the terminal, read from the derived documents (`site_daily`,
//! `tutorial_daily`) and the range's page views (for distinct counts, which
//! days cannot be added up for).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use bson::{Bson, Document, doc};
use chrono::NaiveDate;
use futures_util::TryStreamExt;
use serde::Serialize;

use crate::analytics::store::PAGE_VIEWS;
use crate::error::Result;
use crate::sink::Sink;

/// Tutorials listed.
const TOP: usize = 10;

/// The figures of a range of days.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Report {
    /// First day, `YYYY-MM-DD`.
    pub from: String,
    /// Last day, included.
    pub to: String,
    /// Page views.
    pub page_views: u64,
    /// Visits (a visit over midnight counts on both days).
    pub visits: u64,
    /// Distinct visitors (browsers) with a page view.
    pub visitors: u64,
    /// Distinct logged-in learners with a page view.
    pub learners: u64,
    /// Visits of browsers seen before.
    pub returning_visits: u64,
    /// Mean time on page over the pages whose time is known, in seconds.
    pub avg_time_on_page_s: Option<f64>,
    /// Sessions starting in the range.
    pub sessions: u64,
    /// Of them, bounces.
    pub bounces: u64,
    /// Media seconds watched.
    pub video_s: f64,
    /// Tutorials completed (by the rules, and marked by hand).
    pub completions: u64,
    /// The most viewed tutorials.
    pub tutorials: Vec<TutorialRow>,
}

/// One tutorial's figures over the range.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct TutorialRow {
    /// The software.
    pub foss: String,
    /// The tutorial.
    pub tutorial: String,
    /// Its language.
    pub language: String,
    /// Page views.
    pub views: u64,
    /// Visits.
    pub visits: u64,
    /// Mean time on page, in seconds.
    pub avg_time_on_page_s: Option<f64>,
    /// Completions.
    pub completions: u64,
    /// Media seconds watched.
    pub video_s: f64,
}

/// Reads the report of `from..=to` (days), tutorials of `foss` only when
/// given.
pub async fn report(
    sink: &Sink,
    from: NaiveDate,
    to: NaiveDate,
    foss: &[String],
) -> Result<Report> {
    let (from, to) = (from.to_string(), to.to_string());
    let days = doc! { "day": { "$gte": &from, "$lte": &to } };
    let db = sink.database();
    let mut r = Report {
        from: from.clone(),
        to: to.clone(),
        ..Report::default()
    };
    let (mut top_sum, mut top_n) = (0.0, 0);
    let mut cursor = db
        .collection::<Document>("site_daily")
        .find(days.clone())
        .await?;
    while let Some(d) = cursor.try_next().await? {
        r.page_views += int(&d, "page_views");
        r.visits += int(&d, "visits");
        r.returning_visits += int(&d, "returning_visits");
        r.sessions += int(&d, "sessions");
        r.bounces += int(&d, "bounces");
        r.video_s += float(&d, "video_s");
        r.completions += int(&d, "completions_auto") + int(&d, "completions_manual");
        top_sum += float(&d, "time_on_page_s_sum");
        top_n += int(&d, "time_on_page_n");
    }
    r.avg_time_on_page_s = mean(top_sum, top_n);
    // Distinct over the range: from the page views themselves.
    let (mut visitors, mut learners) = (BTreeSet::new(), BTreeSet::new());
    let mut cursor = db
        .collection::<Document>(PAGE_VIEWS)
        .find(days.clone())
        .projection(doc! { "visitor_id": 1, "user": 1, "learner": 1 })
        .await?;
    while let Some(d) = cursor.try_next().await? {
        if let Ok(v) = d.get_str("visitor_id") {
            visitors.insert(v.to_owned());
        }
        if let (Ok(_), Ok(l)) = (d.get_str("user"), d.get_str("learner")) {
            learners.insert(l.to_owned());
        }
    }
    r.visitors = visitors.len() as u64;
    r.learners = learners.len() as u64;
    let mut filter = days;
    if !foss.is_empty() {
        filter.insert("foss", doc! { "$in": foss });
    }
    let mut rows: BTreeMap<(String, String, String), (TutorialRow, f64, u64)> = BTreeMap::new();
    let mut cursor = db
        .collection::<Document>("tutorial_daily")
        .find(filter)
        .await?;
    while let Some(d) = cursor.try_next().await? {
        let key = (
            d.get_str("foss").unwrap_or_default().to_owned(),
            d.get_str("tutorial").unwrap_or_default().to_owned(),
            d.get_str("language").unwrap_or_default().to_owned(),
        );
        let (row, sum, n) = rows.entry(key.clone()).or_insert_with(|| {
            (
                TutorialRow {
                    foss: key.0,
                    tutorial: key.1,
                    language: key.2,
                    ..TutorialRow::default()
                },
                0.0,
                0,
            )
        });
        row.views += int(&d, "page_views");
        row.visits += int(&d, "visits");
        row.completions += int(&d, "completions_auto") + int(&d, "completions_manual");
        row.video_s += float(&d, "video_s");
        *sum += float(&d, "time_on_page_s_sum");
        *n += int(&d, "time_on_page_n");
    }
    let mut rows: Vec<TutorialRow> = rows
        .into_values()
        .map(|(mut row, sum, n)| {
            row.avg_time_on_page_s = mean(sum, n);
            row
        })
        .collect();
    rows.sort_by(|a, b| b.views.cmp(&a.views).then(a.tutorial.cmp(&b.tutorial)));
    rows.truncate(TOP);
    r.tutorials = rows;
    Ok(r)
}

impl Report {
    /// The report as a table for a terminal.
    pub fn table(&self) -> String {
        let secs = |s: Option<f64>| s.map_or("–".to_owned(), |s| format!("{s:.0} s"));
        let mut out = format!("visitlog report, {} to {} (UTC)\n", self.from, self.to);
        let bounce = match self.sessions {
            0 => "–".to_owned(),
            n => format!("{:.0} %", 100.0 * self.bounces as f64 / n as f64),
        };
        for (name, value) in [
            ("page views", self.page_views.to_string()),
            ("visits", self.visits.to_string()),
            ("visitors", self.visitors.to_string()),
            ("learners", self.learners.to_string()),
            ("returning visits", self.returning_visits.to_string()),
            ("avg time on page", secs(self.avg_time_on_page_s)),
            ("sessions", self.sessions.to_string()),
            ("bounce rate", bounce),
            ("video watched", format!("{:.0} s", self.video_s)),
            ("completions", self.completions.to_string()),
        ] {
            let _ = writeln!(out, "  {name:<18} {value:>10}");
        }
        let _ = writeln!(
            out,
            "\n  {:<44} {:>6} {:>6} {:>9} {:>6} {:>9}",
            "tutorial", "views", "visits", "time/page", "done", "video"
        );
        for t in &self.tutorials {
            let name = format!("{}: {} ({})", t.foss, t.tutorial, t.language);
            let _ = writeln!(
                out,
                "  {name:<44} {:>6} {:>6} {:>9} {:>6} {:>8.0}s",
                t.views,
                t.visits,
                secs(t.avg_time_on_page_s),
                t.completions,
                t.video_s
            );
        }
        if self.tutorials.is_empty() {
            out.push_str("  (no tutorial page viewed)\n");
        }
        out
    }
}

/// One line of the CSV form: the site's totals or one tutorial's.
#[derive(Serialize)]
struct CsvRow<'a> {
    scope: &'static str,
    foss: &'a str,
    tutorial: &'a str,
    language: &'a str,
    from: &'a str,
    to: &'a str,
    page_views: u64,
    visits: u64,
    avg_time_on_page_s: Option<f64>,
    completions: u64,
    video_s: f64,
}

impl Report {
    /// The report as CSV: a header, a `site` row of totals, then a
    /// `tutorial` row per tutorial listed (empty cells: unknown).
    pub fn csv(&self) -> std::result::Result<String, csv::Error> {
        let mut out = csv::Writer::from_writer(Vec::new());
        out.serialize(CsvRow {
            scope: "site",
            foss: "",
            tutorial: "",
            language: "",
            from: &self.from,
            to: &self.to,
            page_views: self.page_views,
            visits: self.visits,
            avg_time_on_page_s: self.avg_time_on_page_s,
            completions: self.completions,
            video_s: self.video_s,
        })?;
        for t in &self.tutorials {
            out.serialize(CsvRow {
                scope: "tutorial",
                foss: &t.foss,
                tutorial: &t.tutorial,
                language: &t.language,
                from: &self.from,
                to: &self.to,
                page_views: t.views,
                visits: t.visits,
                avg_time_on_page_s: t.avg_time_on_page_s,
                completions: t.completions,
                video_s: t.video_s,
            })?;
        }
        let bytes = out
            .into_inner()
            .map_err(|e| csv::Error::from(e.into_error()))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

fn mean(sum: f64, n: u64) -> Option<f64> {
    (n > 0).then(|| sum / n as f64)
}

fn int(d: &Document, key: &str) -> u64 {
    match d.get(key) {
        Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
        Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
        Some(Bson::Double(f)) if *f >= 0.0 => *f as u64,
        _ => 0,
    }
}

fn float(d: &Document, key: &str) -> f64 {
    match d.get(key) {
        Some(Bson::Double(f)) => *f,
        Some(Bson::Int32(n)) => f64::from(*n),
        Some(Bson::Int64(n)) => *n as f64,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_a_site_row_then_a_row_per_tutorial_and_reads_back() {
        let report = Report {
            from: "2026-11-01".into(),
            to: "2026-11-30".into(),
            page_views: 12,
            visits: 5,
            avg_time_on_page_s: Some(42.5),
            completions: 2,
            video_s: 90.0,
            tutorials: vec![TutorialRow {
                foss: "Python".into(),
                tutorial: "Getting, \"started\"".into(),
                language: "English".into(),
                views: 7,
                visits: 3,
                avg_time_on_page_s: None,
                completions: 1,
                video_s: 60.0,
            }],
            ..Report::default()
        };
        let text = report.csv().unwrap();
        let mut rows = csv::Reader::from_reader(text.as_bytes());
        let header: Vec<String> = rows.headers().unwrap().iter().map(str::to_owned).collect();
        assert_eq!(
            header,
            [
                "scope",
                "foss",
                "tutorial",
                "language",
                "from",
                "to",
                "page_views",
                "visits",
                "avg_time_on_page_s",
                "completions",
                "video_s"
            ]
        );
        let rows: Vec<csv::StringRecord> = rows.records().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[0][0], "site");
        assert_eq!(&rows[0][6], "12");
        assert_eq!(&rows[0][8], "42.5");
        assert_eq!(&rows[1][0], "tutorial");
        assert_eq!(&rows[1][2], "Getting, \"started\"", "quoted, not split");
        assert_eq!(&rows[1][8], "", "an unknown time is an empty cell, not 0");
    }
}
