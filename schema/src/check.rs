//! The validators' rules on typed records: what `schema/validators/` says
//! of lengths, ranges and enums, checked on a record parsed straight from
//! its bytes (the rules a type cannot carry while parsing are in
//! [`crate::wire`]). A record parsed with serde and passing
//! [`RequestRecord::check`] or [`EventRecord::check`] is one the JSON
//! validator accepts, and the other way round; the consumer's property
//! tests prove it over their corpus. A refusal names the field and the
//! rule, as [`crate::RecordValidator`] does, never the value. The helpers
//! are public for the derived documents' checks (`visitlog-progress`).

use std::collections::BTreeMap;

use crate::{EventRecord, Kind, RequestRecord, SCHEMA_VERSION, ValidationFailure};

/// Where a check failed.
pub type Checked = Result<(), ValidationFailure>;

/// A refusal at `path` (a JSON pointer), saying which rule.
pub fn refuse(path: &str, message: String) -> Checked {
    Err(ValidationFailure {
        path: path.to_owned(),
        message,
    })
}

/// `s` has `min..=max` characters (JSON Schema counts code points).
pub fn length(path: &str, s: &str, min: usize, max: usize) -> Checked {
    // Characters are at most bytes, and at least one when there is a byte.
    if s.len() <= max && (min == 0 || (min == 1 && !s.is_empty())) {
        return Ok(());
    }
    let n = s.chars().count();
    if n > max {
        return refuse(path, format!("longer than {max} characters (maxLength)"));
    }
    if n < min {
        return refuse(path, format!("shorter than {min} characters (minLength)"));
    }
    Ok(())
}

/// [`length`], when there is a string.
pub fn optional_length(path: &str, s: Option<&String>, min: usize, max: usize) -> Checked {
    s.map_or(Ok(()), |s| length(path, s, min, max))
}

/// `x` lies in `min..=max` (a record's numbers come from JSON, never NaN).
pub fn range(path: &str, x: f64, min: f64, max: f64) -> Checked {
    if x < min {
        return refuse(path, format!("less than the minimum of {min} (minimum)"));
    }
    if x > max {
        return refuse(path, format!("greater than the maximum of {max} (maximum)"));
    }
    Ok(())
}

/// [`range`], when there is a number.
pub fn optional_range(path: &str, x: Option<f64>, min: f64, max: f64) -> Checked {
    x.map_or(Ok(()), |x| range(path, x, min, max))
}

/// A finite number in `min..=max`, for derived documents: NaN and
/// infinities have no JSON form and fail the validator's `double`.
pub fn number(path: &str, x: f64, min: f64, max: f64) -> Checked {
    if !x.is_finite() {
        return refuse(path, "not a finite number (bsonType)".to_owned());
    }
    range(path, x, min, max)
}

/// [`number`], when there is one.
pub fn optional_number(path: &str, x: Option<f64>, min: f64, max: f64) -> Checked {
    x.map_or(Ok(()), |x| number(path, x, min, max))
}

/// At most `max` items.
pub fn items(path: &str, n: usize, max: usize) -> Checked {
    if n > max {
        return refuse(path, format!("more than {max} items (maxItems)"));
    }
    Ok(())
}

/// A date the validator reads as RFC 3339 `date-time`: years 0 to 9999.
pub fn date(path: &str, t: &chrono::DateTime<chrono::Utc>) -> Checked {
    use chrono::Datelike;
    if (0..=9999).contains(&t.year()) {
        return Ok(());
    }
    refuse(path, "not a date-time (format)".to_owned())
}

/// [`date`], when there is one.
pub fn optional_date(path: &str, t: Option<&chrono::DateTime<chrono::Utc>>) -> Checked {
    t.map_or(Ok(()), |t| date(path, t))
}

/// A UUID's canonical text (lowercase, hyphenated: the validators' pattern).
pub fn uuid_text(path: &str, s: &str) -> Checked {
    let b = s.as_bytes();
    let canonical = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => matches!(c, b'0'..=b'9' | b'a'..=b'f'),
        });
    if canonical {
        return Ok(());
    }
    refuse(path, "not a UUID (pattern)".to_owned())
}

fn version(v: u32) -> Checked {
    if v == SCHEMA_VERSION {
        Ok(())
    } else {
        refuse(
            "/schema_version",
            format!("not schema version {SCHEMA_VERSION} (maximum)"),
        )
    }
}

fn kind(k: Kind, expected: Kind, name: &str) -> Checked {
    if k == expected {
        Ok(())
    } else {
        refuse("/kind", format!("not `{name}` (enum)"))
    }
}

fn visit_number(path: &str, n: Option<u32>) -> Checked {
    if n == Some(0) {
        return refuse(path, "less than the minimum of 1 (minimum)".to_owned());
    }
    Ok(())
}

/// A map of at most 32 strings of at most 512 characters.
fn string_map(path: &str, map: &BTreeMap<String, String>) -> Checked {
    use crate::limits::{MAX_ENTRIES, VALUE};
    if map.len() > MAX_ENTRIES {
        return refuse(
            path,
            format!("more than {MAX_ENTRIES} properties (maxProperties)"),
        );
    }
    for value in map.values() {
        length(path, value, 0, VALUE)?;
    }
    Ok(())
}

/// `ua.category`'s values.
const UA_CATEGORIES: [&str; 6] = [
    "pc",
    "smartphone",
    "mobilephone",
    "appliance",
    "crawler",
    "misc",
];

impl RequestRecord {
    /// Checks the `request_logs` validator's rules that serde does not.
    pub fn check(&self) -> Result<(), ValidationFailure> {
        use crate::limits::{
            CONTENT_TYPE, METHOD, REQUEST_ID, ROUTE, SHORT, URL, USER_AGENT, VALUE,
        };
        version(self.schema_version)?;
        kind(self.kind, Kind::Request, "request")?;
        length("/method", &self.method, 1, METHOD)?;
        length("/path", &self.path, 1, URL)?;
        optional_length("/query", self.query.as_ref(), 0, URL)?;
        optional_length("/route", self.route.as_ref(), 0, ROUTE)?;
        range("/status", f64::from(self.status), 100.0, 999.0)?;
        range("/latency_ms", self.latency_ms, 0.0, f64::INFINITY)?;
        optional_length("/referer", self.referer.as_ref(), 0, URL)?;
        if let Some(geo) = &self.geo {
            for (path, value) in [
                ("/geo/country_code", &geo.country_code),
                ("/geo/country", &geo.country),
                ("/geo/region_code", &geo.region_code),
                ("/geo/region", &geo.region),
                ("/geo/city", &geo.city),
                ("/geo/time_zone", &geo.time_zone),
            ] {
                optional_length(path, value.as_ref(), 0, SHORT)?;
            }
            optional_range("/geo/latitude", geo.latitude, -90.0, 90.0)?;
            optional_range("/geo/longitude", geo.longitude, -180.0, 180.0)?;
        }
        length("/ua/raw", &self.ua.raw, 0, USER_AGENT)?;
        for (path, value) in [
            ("/ua/name", &self.ua.name),
            ("/ua/os", &self.ua.os),
            ("/ua/os_version", &self.ua.os_version),
            ("/ua/version", &self.ua.version),
            ("/ua/vendor", &self.ua.vendor),
        ] {
            optional_length(path, value.as_ref(), 0, SHORT)?;
        }
        if let Some(category) = &self.ua.category
            && !UA_CATEGORIES.contains(&category.as_str())
        {
            return refuse("/ua/category", "not a known category (enum)".to_owned());
        }
        visit_number("/visit_number", self.visit_number)?;
        optional_length("/user", self.user.as_ref(), 0, SHORT)?;
        optional_length("/session_id", self.session_id.as_ref(), 0, SHORT)?;
        string_map("/view_args", &self.view_args)?;
        if let Some(t) = &self.tutorial {
            length("/tutorial/foss", &t.foss, 1, VALUE)?;
            length("/tutorial/tutorial", &t.tutorial, 1, VALUE)?;
            length("/tutorial/language", &t.language, 1, VALUE)?;
        }
        string_map("/headers", &self.headers)?;
        optional_length("/content_type", self.content_type.as_ref(), 0, CONTENT_TYPE)?;
        optional_length("/request_id", self.request_id.as_ref(), 1, REQUEST_ID)?;
        if let Some(rate) = self.sample_rate
            && !(rate > 0.0 && rate <= 1.0)
        {
            return refuse(
                "/sample_rate",
                "outside (0, 1] (exclusiveMinimum, maximum)".to_owned(),
            );
        }
        Ok(())
    }
}

impl EventRecord {
    /// Checks the `events` validator's rules that serde does not.
    pub fn check(&self) -> Result<(), ValidationFailure> {
        use crate::limits::{SHORT, VALUE};
        version(self.schema_version)?;
        kind(self.kind, Kind::Event, "event")?;
        length("/learner", &self.learner, 1, crate::LEARNER_MAX)?;
        optional_length("/user", self.user.as_ref(), 1, SHORT)?;
        visit_number("/visit_number", self.visit_number)?;
        optional_length("/session_id", self.session_id.as_ref(), 0, SHORT)?;
        length("/foss", &self.foss, 0, VALUE)?;
        length("/tutorial", &self.tutorial, 0, VALUE)?;
        length("/language", &self.language, 0, VALUE)?;
        optional_length("/video_id", self.video_id.as_ref(), 1, VALUE)?;
        for (path, value) in [
            ("/position", self.position),
            ("/duration", self.duration),
            ("/from", self.from),
            ("/to", self.to),
            ("/played_from", self.played_from),
        ] {
            optional_range(path, value, 0.0, 86_400.0)?;
        }
        optional_range("/rate", self.rate, 0.25, 4.0)?;
        if self.active_ms.is_some_and(|ms| ms > 3_600_000) {
            return refuse(
                "/active_ms",
                "greater than the maximum of 3600000 (maximum)".to_owned(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_pass_and_each_rule_names_its_field() {
        assert_eq!(RequestRecord::example().check(), Ok(()));
        assert_eq!(EventRecord::example().check(), Ok(()));
        let mut r = RequestRecord::example();
        r.path = "é".repeat(2048);
        assert_eq!(r.check(), Ok(()), "characters, not bytes");
        r.path.push('é');
        assert_eq!(r.check().map_err(|f| f.path), Err("/path".to_owned()));
        let mut r = RequestRecord::example();
        r.ua.category = Some("toaster".into());
        assert_eq!(
            r.check().map_err(|f| f.path),
            Err("/ua/category".to_owned())
        );
        let mut e = EventRecord::example();
        e.rate = Some(8.0);
        assert_eq!(e.check().map_err(|f| f.path), Err("/rate".to_owned()));
        let mut e = EventRecord::example();
        e.user = Some(String::new());
        assert_eq!(e.check().map_err(|f| f.path), Err("/user".to_owned()));
    }
}
