//! `visitlog-consumer catalog import FILE`: a catalog kept elsewhere (a JSON
//! array of items, or CSV with the items' field names as its header row)
//! read and checked whole, then applied per FOSS exactly as a publication
//! from the queue is (`Sink::apply_catalog`, then the progress of tutorials
//! whose main video changed folded again). All or nothing: one bad row and
//! nothing is written.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use chrono::{DateTime, Utc};
use visitlog_schema::{CatalogItem, CatalogRecord};

use crate::sink::{CatalogSummary, Sink};

/// Errors shown at most.
pub const SHOWN_ERRORS: usize = 20;

/// The CSV columns, as the items' fields are named.
const COLUMNS: [&str; 9] = [
    "foss", "tutorial", "language", "video_id", "title", "duration", "order", "main", "level",
];

/// Columns a CSV file must have (the rest have defaults).
const REQUIRED: [&str; 5] = ["foss", "tutorial", "language", "video_id", "title"];

/// One refusal: where (`line 4` of a CSV file, `item 3` of a JSON array),
/// which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    /// `line N` or `item N`.
    pub at: String,
    /// The field, when one is to blame.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}: {}: {}", self.at, field, self.message),
            None => write!(f, "{}: {}", self.at, self.message),
        }
    }
}

fn error(at: &str, field: Option<&str>, message: impl Into<String>) -> ImportError {
    ImportError {
        at: at.to_owned(),
        field: field.map(str::to_owned),
        message: message.into(),
    }
}

/// The file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON array of items.
    Json,
    /// CSV with a header row.
    Csv,
}

impl Format {
    /// By the file's extension; else JSON when the text starts with `[`.
    pub fn of(path: &Path, text: &str) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => Format::Csv,
            Some(e) if e.eq_ignore_ascii_case("json") => Format::Json,
            _ if text.trim_start().starts_with('[') => Format::Json,
            _ => Format::Csv,
        }
    }
}

/// Reads `path` (`-`: standard input) whole.
pub fn read_input(path: &Path) -> std::io::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path)
    }
}

/// The publications `text` makes, one per FOSS, all at `version`; or every
/// error found (each row is checked on its own, then the publications).
pub fn publications(
    text: &str,
    format: Format,
    version: DateTime<Utc>,
) -> Result<Vec<CatalogRecord>, Vec<ImportError>> {
    let (rows, mut errors) = match format {
        Format::Json => json_items(text),
        Format::Csv => csv_items(text),
    };
    for (at, item) in &rows {
        if let Err(e) = item.check() {
            errors.push(error(at, Some(&e.field), e.message));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // A video belongs to one FOSS: the split below would not see it twice.
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (at, item) in &rows {
        if let Some(first) = seen.insert(&item.video_id, at) {
            errors.push(error(
                at,
                Some("video_id"),
                format!("listed twice (first at {first})"),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let (places, items): (Vec<String>, Vec<CatalogItem>) = rows.into_iter().unzip();
    let records = CatalogRecord::per_foss(items.clone(), version);
    for record in &records {
        if let Err(e) = record.check() {
            // `items[k].field`: the k-th row of this FOSS.
            let (k, field) = e
                .field
                .strip_prefix("items[")
                .and_then(|rest| rest.split_once("]."))
                .and_then(|(k, f)| Some((k.parse::<usize>().ok()?, f)))
                .unzip();
            let at = k
                .and_then(|k| {
                    items
                        .iter()
                        .zip(&places)
                        .filter(|(i, _)| i.foss == record.foss)
                        .nth(k)
                })
                .map_or_else(|| format!("FOSS {}", record.foss), |(_, at)| at.clone());
            errors.push(error(&at, Some(field.unwrap_or(&e.field)), e.message));
        }
    }
    if errors.is_empty() {
        Ok(records)
    } else {
        Err(errors)
    }
}

/// Items of a JSON array, each with its place (`item N`, from 0).
fn json_items(text: &str) -> (Vec<(String, CatalogItem)>, Vec<ImportError>) {
    let values: Vec<serde_json::Value> = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return (
                Vec::new(),
                vec![error("file", None, format!("not a JSON array: {e}"))],
            );
        }
    };
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (i, value) in values.into_iter().enumerate() {
        let at = format!("item {i}");
        match serde_json::from_value::<CatalogItem>(value) {
            Ok(item) => rows.push((at, item)),
            // serde names the field in its message (missing, unknown, type).
            Err(e) => errors.push(error(&at, None, e.to_string())),
        }
    }
    (rows, errors)
}

/// Items of CSV text, each with its place (`line N`, the file's line).
fn csv_items(text: &str) -> (Vec<(String, CatalogItem)>, Vec<ImportError>) {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => return (Vec::new(), vec![error("line 1", None, e.to_string())]),
    };
    let mut errors = Vec::new();
    let mut column: HashMap<&str, usize> = HashMap::new();
    for (i, name) in headers.iter().enumerate() {
        match COLUMNS.iter().find(|c| **c == name) {
            Some(c) if column.insert(c, i).is_some() => {
                errors.push(error("line 1", Some(name), "column given twice"));
            }
            Some(_) => {}
            None => errors.push(error(
                "line 1",
                Some(name),
                format!("unknown column (the columns are {})", COLUMNS.join(",")),
            )),
        }
    }
    for c in REQUIRED.iter().filter(|c| !column.contains_key(*c)) {
        errors.push(error("line 1", Some(c), "missing column"));
    }
    if !errors.is_empty() {
        return (Vec::new(), errors);
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let at = e
                    .position()
                    .map_or_else(|| "file".to_owned(), |p| format!("line {}", p.line()));
                errors.push(error(&at, None, e.to_string()));
                continue;
            }
        };
        let at = record
            .position()
            .map_or_else(|| "file".to_owned(), |p| format!("line {}", p.line()));
        let get = |name: &str| {
            column
                .get(name)
                .and_then(|&i| record.get(i))
                .unwrap_or_default()
        };
        match csv_item(&get) {
            Ok(item) => rows.push((at, item)),
            Err((field, message)) => errors.push(error(&at, Some(field), message)),
        }
    }
    (rows, errors)
}

/// One CSV row's item; empty `duration`/`level` are none, empty `order` 0,
/// empty `main` false.
fn csv_item<'a>(get: &impl Fn(&str) -> &'a str) -> Result<CatalogItem, (&'static str, String)> {
    let duration = match get("duration") {
        "" => None,
        d => Some(
            d.parse::<f64>()
                .map_err(|_| ("duration", format!("`{d}` is not a number of seconds")))?,
        ),
    };
    let order = match get("order") {
        "" => 0,
        o => o
            .parse::<u32>()
            .map_err(|_| ("order", format!("`{o}` is not a whole number from 0")))?,
    };
    let main = match get("main").to_ascii_lowercase().as_str() {
        "" | "false" | "0" | "no" => false,
        "true" | "1" | "yes" => true,
        other => {
            return Err((
                "main",
                format!("`{other}` is none of true/false/1/0/yes/no"),
            ));
        }
    };
    let level = Some(get("level"))
        .filter(|l| !l.is_empty())
        .map(str::to_owned);
    Ok(CatalogItem {
        foss: get("foss").to_owned(),
        tutorial: get("tutorial").to_owned(),
        language: get("language").to_owned(),
        video_id: get("video_id").to_owned(),
        title: get("title").to_owned(),
        duration,
        order,
        main,
        level,
    })
}

/// Applies (or, with `dry_run`, only checks) each publication through the
/// same code as the queue's, then folds again the progress of tutorials
/// whose main video changed; one summary per FOSS.
pub async fn import(
    sink: &Sink,
    records: &[CatalogRecord],
    rules: &visitlog_progress::Rules,
    dry_run: bool,
) -> crate::error::Result<Vec<CatalogSummary>> {
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let summary = sink.apply_catalog(record, dry_run).await?;
        if !dry_run {
            let (_, mut marks) = sink.refold_tutorials(&summary.mains_changed, rules).await?;
            // As a queued publication does: its videos' stats take the
            // catalog's duration and tutorial, and unwatched ones show.
            marks.extend(record.items.iter().map(|item| {
                crate::analytics::Mark::new(
                    crate::analytics::DerivedKind::Video,
                    item.video_id.clone(),
                )
            }));
            sink.marks().mark(marks).await?;
        }
        out.push(summary);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "foss,tutorial,language,video_id,title,duration,order,main,level\n\
        Python,Intro,English,p1,Intro,600,1,yes,beginner\n\
        Python,Intro,English,p2,Extra,,2,no,\n\
        Java,Hello,English,j1,Hello,90.5,1,TRUE,\n";

    #[test]
    fn csv_rows_become_items_per_foss() {
        let records = publications(CSV, Format::Csv, Utc::now()).unwrap();
        assert_eq!(records.len(), 2);
        let p = &records[0];
        assert_eq!((p.foss.as_str(), p.items.len()), ("Python", 2));
        assert!(p.items[0].main && !p.items[1].main);
        assert_eq!(p.items[0].level.as_deref(), Some("beginner"));
        assert_eq!(
            (p.items[1].duration, p.items[1].level.as_deref()),
            (None, None)
        );
        assert_eq!(records[1].items[0].duration, Some(90.5));
    }

    #[test]
    fn bad_rows_are_named_by_line_and_field() {
        let bad = CSV.replace("p2,Extra,,2,no", "p2,Extra,long,2,maybe")
            + "Java,Hello,English,j2,,1,1,no,\n";
        let errors = publications(&bad, Format::Csv, Utc::now()).unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(shown[0].starts_with("line 3: duration:"), "{shown:?}");
        assert!(shown[1].starts_with("line 5: title:"), "{shown:?}");
        // Across rows: the second main of a tutorial, at its own line.
        let two_mains = CSV.replace("p2,Extra,,2,no", "p2,Extra,,2,1");
        let errors = publications(&two_mains, Format::Csv, Utc::now()).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "line 3: main: a second main video for the same tutorial and language"
        );
        let twice = CSV.replace("j1,", "p1,");
        let errors = publications(&twice, Format::Csv, Utc::now()).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "line 4: video_id: listed twice (first at line 2)"
        );
        let unknown = CSV.replace("level", "levle");
        let errors = publications(&unknown, Format::Csv, Utc::now()).unwrap_err();
        assert_eq!(errors[0].field.as_deref(), Some("levle"));
    }

    #[test]
    fn json_items_are_named_by_index() {
        let json = r#"[{"foss":"Python","tutorial":"Intro","language":"English","video_id":"p1","title":"Intro","duration":600,"main":true},
                       {"foss":"Python","tutorial":"Intro","language":"English","video_id":"p2","title":"x","duration":-1}]"#;
        assert_eq!(Format::of(Path::new("-"), json), Format::Json);
        let errors = publications(json, Format::Json, Utc::now()).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].to_string().starts_with("item 1: duration:"),
            "{}",
            errors[0]
        );
        let missing =
            r#"[{"foss":"Python","tutorial":"Intro","language":"English","video_id":"p1"}]"#;
        let errors = publications(missing, Format::Json, Utc::now()).unwrap_err();
        assert!(
            errors[0].to_string().contains("item 0") && errors[0].to_string().contains("title")
        );
    }
}
