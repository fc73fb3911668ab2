//! `visitlog-consumer report`: the staff overview and the most viewed
//! tutorials of a range of days, in the terminal. The figures are read by
//! `visitlog_analytics::staff::AnalyticsReader`, the staff API's reader, so
//! the terminal and the dashboard always agree.

use std::fmt::Write as _;

use serde::Serialize;
use visitlog_analytics::staff::{AnalyticsReader, Overview, Range, TutorialRow};

use crate::sink::Sink;

/// Tutorials listed.
const TOP: usize = 10;

/// The figures of a range of days.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// The site's (or the FOSS's) figures.
    #[serde(flatten)]
    pub overview: Overview,
    /// The most viewed tutorials, at most 10.
    pub tutorials: Vec<TutorialRow>,
}

/// Reads the report of `range`.
pub async fn report(sink: &Sink, range: &Range) -> Result<Report, visitlog_progress::ReadError> {
    let reader = AnalyticsReader::new(sink.database());
    let overview = reader.overview(range).await?;
    let mut tutorials = reader.tutorials(range).await?;
    tutorials.truncate(TOP);
    Ok(Report {
        overview,
        tutorials,
    })
}

impl Report {
    /// The report as a table for a terminal.
    pub fn table(&self) -> String {
        let o = &self.overview;
        let secs = |s: Option<f64>| s.map_or("–".to_owned(), |s| format!("{s:.0} s"));
        let or_dash = |n: Option<u64>| n.map_or("–".to_owned(), |n| n.to_string());
        let mut out = format!("visitlog report, {} to {} (UTC)", o.from, o.to);
        if !o.foss.is_empty() {
            let _ = write!(out, ", {}", o.foss.join(", "));
        }
        out.push('\n');
        let bounce = o
            .bounce_rate
            .map_or("–".to_owned(), |r| format!("{:.0} %", 100.0 * r));
        for (name, value) in [
            ("page views", o.page_views.to_string()),
            ("visits", o.visits.to_string()),
            ("visitors", o.visitors.to_string()),
            ("learners", o.learners.to_string()),
            ("returning visits", o.returning_visits.to_string()),
            ("avg time on page", secs(o.avg_time_on_page_s)),
            ("sessions", or_dash(o.sessions)),
            ("avg session", secs(o.avg_session_s)),
            ("bounce rate", bounce),
            ("video watched", format!("{:.0} s", o.video_s)),
            ("completions", o.completions.to_string()),
        ] {
            let _ = writeln!(out, "  {name:<18} {value:>10}");
        }
        let _ = writeln!(
            out,
            "\n  {:<44} {:>6} {:>8} {:>9} {:>6} {:>9}",
            "tutorial", "views", "learners", "time/page", "done", "video"
        );
        for t in &self.tutorials {
            let name = format!("{}: {} ({})", t.foss, t.tutorial, t.language);
            let _ = writeln!(
                out,
                "  {name:<44} {:>6} {:>8} {:>9} {:>6} {:>8.0}s",
                t.views,
                t.learners,
                secs(t.avg_time_on_page_s),
                t.completions,
                t.video_s
            );
        }
        if self.tutorials.is_empty() {
            out.push_str("  (no tutorial in the catalog or viewed)\n");
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
    learners: u64,
    avg_time_on_page_s: Option<f64>,
    completions: u64,
    video_s: f64,
}

impl Report {
    /// The report as CSV: a header, a `site` row of totals (its `foss`
    /// the FOSS it is about, `;`-separated, empty for all), then a
    /// `tutorial` row per tutorial listed (empty cells: unknown).
    pub fn csv(&self) -> Result<String, csv::Error> {
        let o = &self.overview;
        let foss = o.foss.join(";");
        let mut out = csv::Writer::from_writer(Vec::new());
        out.serialize(CsvRow {
            scope: "site",
            foss: &foss,
            tutorial: "",
            language: "",
            from: &o.from,
            to: &o.to,
            page_views: o.page_views,
            visits: o.visits,
            learners: o.learners,
            avg_time_on_page_s: o.avg_time_on_page_s,
            completions: o.completions,
            video_s: o.video_s,
        })?;
        for t in &self.tutorials {
            out.serialize(CsvRow {
                scope: "tutorial",
                foss: &t.foss,
                tutorial: &t.tutorial,
                language: &t.language,
                from: &o.from,
                to: &o.to,
                page_views: t.views,
                visits: t.visits,
                learners: t.learners,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_a_site_row_then_a_row_per_tutorial_and_reads_back() {
        let report = Report {
            overview: Overview {
                from: "2026-11-01".into(),
                to: "2026-11-30".into(),
                page_views: 12,
                visits: 5,
                avg_time_on_page_s: Some(42.5),
                completions: 2,
                video_s: 90.0,
                ..Overview::default()
            },
            tutorials: vec![TutorialRow {
                foss: "Python".into(),
                tutorial: "Getting, \"started\"".into(),
                language: "English".into(),
                views: 7,
                visits: 3,
                avg_time_on_page_s: None,
                completions: 1,
                video_s: 60.0,
                ..TutorialRow::default()
            }],
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
                "learners",
                "avg_time_on_page_s",
                "completions",
                "video_s"
            ]
        );
        let rows: Vec<csv::StringRecord> = rows.records().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[0][0], "site");
        assert_eq!(&rows[0][6], "12");
        assert_eq!(&rows[0][9], "42.5");
        assert_eq!(&rows[1][0], "tutorial");
        assert_eq!(&rows[1][2], "Getting, \"started\"", "quoted, not split");
        assert_eq!(&rows[1][9], "", "an unknown time is an empty cell, not 0");
        assert!(
            report
                .table()
                .contains("Python: Getting, \"started\" (English)")
        );
    }
}
