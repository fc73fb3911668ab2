//! Which days and FOSS a staff question is about: `from`/`to` (UTC days,
//! both included; by default the last 30 days) and a `foss` filter, checked
//! so that every bad value is refused with a message saying why.

use chrono::{Duration, NaiveDate};
use std::fmt;

/// Days a range covers at most: a year, leap or not. A longer question is
/// refused rather than read whole.
pub const MAX_DAYS: i64 = 366;

/// Days covered when `from` is not given.
pub const DEFAULT_DAYS: i64 = 30;

/// FOSS names one filter may list.
pub const MAX_FOSS: usize = 64;

/// Longest FOSS name (the catalog's limit).
const MAX_NAME: usize = 512;

/// A refused range, its message fit for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeError(String);

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RangeError {}

/// A checked range of UTC days and the FOSS it is about (none: all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    from: NaiveDate,
    to: NaiveDate,
    foss: Vec<String>,
}

impl Range {
    /// `from..=to`, about `foss` (empty: every FOSS).
    pub fn new(from: NaiveDate, to: NaiveDate, mut foss: Vec<String>) -> Result<Self, RangeError> {
        foss.sort();
        foss.dedup();
        if to < from {
            return Err(RangeError(format!("`to` ({to}) is before `from` ({from})")));
        }
        let days = (to - from).num_days() + 1;
        if days > MAX_DAYS {
            return Err(RangeError(format!(
                "{from} to {to} is {days} days; at most {MAX_DAYS} are read at once"
            )));
        }
        if let Some(bad) = foss.iter().find(|f| f.is_empty() || f.len() > MAX_NAME) {
            return Err(RangeError(format!(
                "a FOSS name has 1 to {MAX_NAME} bytes, not {}",
                bad.len()
            )));
        }
        Ok(Self { from, to, foss })
    }

    /// The range a query string gives: `from` and `to` as `YYYY-MM-DD`
    /// (`to` defaults to `today`, `from` to 30 days ending at `to`), `foss`
    /// a comma-separated list.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        foss: Option<&str>,
        today: NaiveDate,
    ) -> Result<Self, RangeError> {
        let to = match to.filter(|s| !s.is_empty()) {
            Some(s) => day("to", s)?,
            None => today,
        };
        let from = match from.filter(|s| !s.is_empty()) {
            Some(s) => day("from", s)?,
            None => to - Duration::days(DEFAULT_DAYS - 1),
        };
        let foss = foss
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|f| !f.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let range = Self::new(from, to, foss)?;
        // A limit on what a query string may name; a scope the app grants
        // (`with_foss`) may hold more.
        if range.foss.len() > MAX_FOSS {
            return Err(RangeError(format!(
                "{} FOSS named; at most {MAX_FOSS}",
                range.foss.len()
            )));
        }
        Ok(range)
    }

    /// The first day.
    pub fn from(&self) -> NaiveDate {
        self.from
    }

    /// The last day (included).
    pub fn to(&self) -> NaiveDate {
        self.to
    }

    /// The FOSS it is about; empty for all.
    pub fn foss(&self) -> &[String] {
        &self.foss
    }

    /// The same days about `foss` instead.
    pub fn with_foss(&self, foss: Vec<String>) -> Result<Self, RangeError> {
        Self::new(self.from, self.to, foss)
    }

    /// Its days, first to last.
    pub fn days(&self) -> impl Iterator<Item = NaiveDate> + use<> {
        let (from, to) = (self.from, self.to);
        from.iter_days().take_while(move |d| *d <= to)
    }
}

fn day(name: &str, s: &str) -> Result<NaiveDate, RangeError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| RangeError(format!("`{name}` is a day as YYYY-MM-DD, not {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn defaults_to_the_last_30_days_ending_today() {
        let r = Range::parse(None, None, None, d("2026-12-02")).unwrap();
        assert_eq!((r.from(), r.to()), (d("2026-11-03"), d("2026-12-02")));
        assert_eq!(r.days().count(), 30);
        let r = Range::parse(None, Some("2026-01-10"), Some(""), d("2026-12-02")).unwrap();
        assert_eq!(r.from(), d("2025-12-12"));
        assert!(r.foss().is_empty());
    }

    #[test]
    fn foss_is_a_comma_separated_list_sorted_without_repeats() {
        let r = Range::parse(None, None, Some(" Scilab, Python,,Scilab"), d("2026-12-02")).unwrap();
        assert_eq!(r.foss(), ["Python", "Scilab"]);
    }

    #[test]
    fn bad_ranges_are_refused_with_the_reason() {
        let today = d("2026-12-02");
        let e = Range::parse(Some("2026-13-01"), None, None, today).unwrap_err();
        assert!(
            e.to_string().contains("`from` is a day as YYYY-MM-DD"),
            "{e}"
        );
        let e = Range::parse(Some("2026-12-02"), Some("2026-12-01"), None, today).unwrap_err();
        assert!(e.to_string().contains("before"), "{e}");
        // A year is fine, a leap year too; a day more is not.
        assert!(Range::parse(Some("2024-01-01"), Some("2024-12-31"), None, today).is_ok());
        let e = Range::parse(Some("0001-01-01"), None, None, today).unwrap_err();
        assert!(e.to_string().contains("at most 366"), "{e}");
        let many = vec!["x"; MAX_FOSS + 1].join(",");
        assert!(
            Range::parse(None, None, Some(&many), today).is_ok(),
            "repeats collapse"
        );
        let many: Vec<String> = (0..=MAX_FOSS).map(|i| format!("f{i}")).collect();
        let e = Range::parse(None, None, Some(&many.join(",")), today).unwrap_err();
        assert!(e.to_string().contains("at most 64"), "{e}");
        let long = "x".repeat(513);
        assert!(Range::parse(None, None, Some(&long), today).is_err());
        // A scope the app grants may hold more FOSS than a question may name.
        let r = Range::parse(None, None, None, today).unwrap();
        assert_eq!(r.with_foss(many).unwrap().foss().len(), MAX_FOSS + 1);
    }
}
