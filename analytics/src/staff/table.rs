//! `?format=csv`: a list answer as CSV, its columns named in the order the
//! API documents them. Nulls (unknown or hidden) are empty cells; a text
//! cell that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab,
//! return first) is quoted with a leading `'` (OWASP's advice on CSV
//! injection: names come from page URLs, which anyone can send).

use serde_json::Value;

/// The columns of each list.
pub(crate) mod columns {
    /// `/api/overview`: its daily series.
    pub(crate) const SERIES: &[&str] = &[
        "day",
        "page_views",
        "visits",
        "learners",
        "anonymous_visitors",
        "sessions",
        "video_s",
        "completions",
        "hidden",
    ];
    /// `/api/tutorials`.
    pub(crate) const TUTORIALS: &[&str] = &[
        "foss",
        "tutorial",
        "language",
        "title",
        "views",
        "visits",
        "visitors",
        "learners",
        "avg_time_on_page_s",
        "completions",
        "video_s",
        "coverage_mean",
        "video_id",
        "watched",
        "hidden",
    ];
    /// `/api/videos/{video_id}`: its segments.
    pub(crate) const SEGMENTS: &[&str] = &["start", "viewers", "views"];
    /// `/api/unwatched`.
    pub(crate) const UNWATCHED: &[&str] = &[
        "video_id",
        "foss",
        "tutorial",
        "language",
        "title",
        "duration",
        "order",
        "main",
        "viewers_ever",
        "hidden",
    ];
    /// `/api/learners/{learner}`: their tutorials.
    pub(crate) const LEARNER: &[&str] = &[
        "foss",
        "tutorial",
        "language",
        "completed",
        "completed_at",
        "completed_by",
        "completed_rule",
        "video_id",
        "coverage",
        "visits",
        "first_visit",
        "last_visit",
    ];
}

/// `rows` (an array of objects) as CSV with `columns`; a column a row
/// lacks is an empty cell.
pub(crate) fn csv(rows: &Value, columns: &[&str]) -> Result<String, csv::Error> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(columns)?;
    for row in rows.as_array().into_iter().flatten() {
        out.write_record(columns.iter().map(|c| cell(row.get(*c))))?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if s.starts_with(['=', '+', '-', '@', '\t', '\r']) => {
            format!("'{s}")
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nulls_are_empty_formulas_are_defused_and_commas_quoted() {
        let rows = json!([
            { "foss": "=HYPERLINK(\"x\")", "tutorial": "a, b", "views": 3, "title": null, "watched": true },
            { "foss": "Python", "tutorial": "-1", "views": 0 }
        ]);
        let text = csv(&rows, &["foss", "tutorial", "views", "title", "watched"]).unwrap();
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(&rows[0][0], "'=HYPERLINK(\"x\")");
        assert_eq!(&rows[0][1], "a, b");
        assert_eq!((&rows[0][2], &rows[0][3], &rows[0][4]), ("3", "", "true"));
        assert_eq!((&rows[1][1], &rows[1][4]), ("'-1", ""));
    }
}
