//! Checking client events: every rule names the field it is about; a
//! checked [`ClientEvent`] is stamped by the server into an `EventRecord`.

use chrono::Utc;
use http::StatusCode;
use serde_json::{Map, Value};
use uuid::Uuid;
use visitlog_schema::{EventRecord, EventType, Kind, SCHEMA_VERSION, limits, truncate_chars};

use super::{MAX_EVENTS_PER_REQUEST, Refusal};
use crate::visitor::Visit;

/// Longest video, in seconds (a day).
pub(super) const MAX_SECONDS: f64 = 86_400.0;

/// The fields a client event may carry.
pub(super) const FIELDS: &[&str] = &[
    "type",
    "foss",
    "tutorial",
    "language",
    "video_id",
    "position",
    "duration",
    "from",
    "to",
    "played_from",
    "rate",
    "page_view",
    "client_event_id",
    "active_ms",
];

/// Most active time one `page.ping` or `page.hide` reports: an hour.
pub(super) const MAX_ACTIVE_MS: u64 = 3_600_000;

/// Slowest and fastest playback speed accepted (what browsers offer).
pub(super) const RATES: std::ops::RangeInclusive<f64> = 0.25..=4.0;

/// One checked client event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClientEvent {
    pub(crate) event_type: EventType,
    pub(crate) foss: String,
    pub(crate) tutorial: String,
    pub(crate) language: String,
    pub(crate) video_id: Option<String>,
    pub(crate) position: Option<f64>,
    pub(crate) duration: Option<f64>,
    pub(crate) from: Option<f64>,
    pub(crate) to: Option<f64>,
    pub(crate) played_from: Option<f64>,
    pub(crate) rate: Option<f64>,
    pub(crate) page_view: Option<Uuid>,
    pub(crate) client_event_id: Option<Uuid>,
    pub(crate) active_ms: Option<u64>,
}

impl ClientEvent {
    pub(super) fn stamp(
        self,
        ts: chrono::DateTime<Utc>,
        learner: &str,
        user: Option<&str>,
        visit: Option<Visit>,
        staff: bool,
    ) -> EventRecord {
        EventRecord {
            id: Uuid::now_v7(),
            schema_version: SCHEMA_VERSION,
            kind: Kind::Event,
            ts,
            event_type: self.event_type,
            learner: learner.to_owned(),
            user: user.map(str::to_owned),
            visitor_id: visit.map(|v| v.visitor_id),
            visit_number: visit.map(|v| v.visit_number),
            session_id: None,
            foss: self.foss,
            tutorial: self.tutorial,
            language: self.language,
            video_id: self.video_id,
            position: self.position,
            duration: self.duration,
            from: self.from,
            to: self.to,
            played_from: self.played_from,
            rate: self.rate,
            page_view: self.page_view,
            client_event_id: self.client_event_id,
            active_ms: self.active_ms,
            staff,
        }
    }
}

/// One event object, or a non-empty array of them.
pub(crate) fn parse_events(value: &Value) -> Result<Vec<ClientEvent>, Refusal> {
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(Refusal::field("events", "empty array"));
            }
            if items.len() > MAX_EVENTS_PER_REQUEST {
                return Err(Refusal::field(
                    "events",
                    format!("more than {MAX_EVENTS_PER_REQUEST} events"),
                ));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    parse_event(item).map_err(|mut r| {
                        r.message = format!("events[{i}].{}", r.message);
                        r
                    })
                })
                .collect()
        }
        item => parse_event(item).map(|e| vec![e]),
    }
}

/// Checks one event object: every rule names the field it is about.
pub(crate) fn parse_event(value: &Value) -> Result<ClientEvent, Refusal> {
    let Value::Object(map) = value else {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "an event must be a JSON object",
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        // The name is the client's: echoed, but never at length.
        return Err(Refusal::field(truncate_chars(unknown, 64), "unknown field"));
    }
    let kind = string(map, "type", 64)?.ok_or_else(|| Refusal::field("type", "missing"))?;
    let event_type: EventType = kind.parse().map_err(|()| {
        let known: Vec<_> = EventType::CLIENT.iter().map(|t| t.as_str()).collect();
        Refusal::field(
            "type",
            format!("unknown type `{kind}`; one of {}", known.join(", ")),
        )
    })?;
    if event_type.is_page_activity() {
        return parse_page_activity(map, event_type);
    }
    let required = |name: &'static str| -> Result<String, Refusal> {
        string(map, name, limits::VALUE)?.ok_or_else(|| Refusal::field(name, "missing"))
    };
    let foss = required("foss")?;
    let tutorial = required("tutorial")?;
    let language = required("language")?;
    if map.get("active_ms").is_some_and(|v| !v.is_null()) {
        return Err(Refusal::field(
            "active_ms",
            format!("does not apply to {event_type}"),
        ));
    }
    let video = event_type.is_video();
    let video_id = match video {
        true => Some(required("video_id")?),
        false => string(map, "video_id", limits::VALUE)?,
    };
    let seconds = |name: &'static str, needed: bool| -> Result<Option<f64>, Refusal> {
        match (map.get(name), needed) {
            (None | Some(Value::Null), true) => Err(Refusal::field(name, "missing")),
            (None | Some(Value::Null), false) => Ok(None),
            (Some(Value::Number(n)), _) => {
                let v = n
                    .as_f64()
                    .ok_or_else(|| Refusal::field(name, "not a number"))?;
                if !v.is_finite() {
                    Err(Refusal::field(name, "must be finite"))
                } else if v < 0.0 {
                    Err(Refusal::field(name, "must not be negative"))
                } else if v > MAX_SECONDS {
                    Err(Refusal::field(name, format!("over {MAX_SECONDS} seconds")))
                } else {
                    Ok(Some(v))
                }
            }
            (Some(_), _) => Err(Refusal::field(name, "must be a number of seconds")),
        }
    };
    let seek = event_type == EventType::VideoSeek;
    // Unknown (live streams, media whose metadata has not loaded): null.
    let duration = seconds("duration", false)?;
    if duration == Some(0.0) {
        return Err(Refusal::field("duration", "must be more than 0"));
    }
    let from = seconds("from", seek)?;
    let to = seconds("to", seek)?;
    let position = seconds("position", video && !seek)?.or(to);
    let played_from = seconds("played_from", false)?;
    let not_for = |name: &str| Refusal::field(name, format!("does not apply to {event_type}"));
    if !seek && from.is_some() {
        return Err(not_for("from"));
    }
    if !seek && to.is_some() {
        return Err(not_for("to"));
    }
    if played_from.is_some() && !video {
        return Err(not_for("played_from"));
    }
    if played_from.is_some() && event_type == EventType::VideoPlay {
        return Err(not_for("played_from"));
    }
    if let Some(duration) = duration {
        for (name, value) in [
            ("position", position),
            ("from", from),
            ("to", to),
            ("played_from", played_from),
        ] {
            if value.is_some_and(|v| v > duration) {
                return Err(Refusal::field(name, "beyond the duration"));
            }
        }
    }
    // The watched stretch ends where the seek started, or at the position.
    let end = if seek { from } else { position };
    if let (Some(start), Some(end)) = (played_from, end)
        && start > end
    {
        return Err(Refusal::field(
            "played_from",
            "after the end of the stretch it reports",
        ));
    }
    let rate = match map.get("rate") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(r) if RATES.contains(&r) => Some(r),
            _ => {
                return Err(Refusal::field(
                    "rate",
                    format!(
                        "playback speed must be from {} to {}",
                        RATES.start(),
                        RATES.end()
                    ),
                ));
            }
        },
        Some(_) => return Err(Refusal::field("rate", "must be a number")),
    };
    if rate.is_some() && !video {
        return Err(not_for("rate"));
    }
    let page_view = uuid(map, "page_view")?;
    let client_event_id = uuid(map, "client_event_id")?;
    Ok(ClientEvent {
        event_type,
        foss,
        tutorial,
        language,
        video_id,
        position,
        duration,
        from,
        to,
        played_from,
        rate,
        page_view,
        client_event_id,
        active_ms: None,
    })
}

/// `page.ping` and `page.hide`: the page they come from (`page_view`,
/// required) and the learner's active milliseconds since the previous ping
/// (`active_ms`, required, at most an hour); the tutorial when the page is
/// one (all three names, or none); nothing about videos.
fn parse_page_activity(
    map: &Map<String, Value>,
    event_type: EventType,
) -> Result<ClientEvent, Refusal> {
    for name in [
        "video_id",
        "position",
        "duration",
        "from",
        "to",
        "played_from",
        "rate",
    ] {
        if map.get(name).is_some_and(|v| !v.is_null()) {
            return Err(Refusal::field(
                name,
                format!("does not apply to {event_type}"),
            ));
        }
    }
    let foss = string(map, "foss", limits::VALUE)?;
    let tutorial = string(map, "tutorial", limits::VALUE)?;
    let language = string(map, "language", limits::VALUE)?;
    let (foss, tutorial, language) = match (foss, tutorial, language) {
        (Some(f), Some(t), Some(l)) => (f, t, l),
        (None, None, None) => Default::default(),
        (f, t, _) => {
            let missing = if f.is_none() {
                "foss"
            } else if t.is_none() {
                "tutorial"
            } else {
                "language"
            };
            return Err(Refusal::field(
                missing,
                "missing: name all of foss, tutorial and language, or none",
            ));
        }
    };
    let page_view =
        uuid(map, "page_view")?.ok_or_else(|| Refusal::field("page_view", "missing"))?;
    let active_ms = match map.get("active_ms") {
        None | Some(Value::Null) => return Err(Refusal::field("active_ms", "missing")),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(ms) if ms <= MAX_ACTIVE_MS => ms,
            Some(_) => {
                return Err(Refusal::field(
                    "active_ms",
                    format!("over {MAX_ACTIVE_MS} milliseconds"),
                ));
            }
            None => {
                return Err(Refusal::field(
                    "active_ms",
                    "must be a whole number of milliseconds, not negative",
                ));
            }
        },
        Some(_) => return Err(Refusal::field("active_ms", "must be a number")),
    };
    Ok(ClientEvent {
        event_type,
        foss,
        tutorial,
        language,
        video_id: None,
        position: None,
        duration: None,
        from: None,
        to: None,
        played_from: None,
        rate: None,
        page_view: Some(page_view),
        client_event_id: uuid(map, "client_event_id")?,
        active_ms: Some(active_ms),
    })
}

/// A UUID field (any version, hyphenated): `Ok(None)` when absent or null.
fn uuid(map: &Map<String, Value>, name: &str) -> Result<Option<Uuid>, Refusal> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() == 36 => s
            .parse()
            .map(Some)
            .map_err(|_| Refusal::field(name, "not a UUID")),
        Some(_) => Err(Refusal::field(name, "must be a UUID string")),
    }
}

/// A string field: `Ok(None)` when absent or null; refused when empty, too
/// long or not a string.
fn string(map: &Map<String, Value>, name: &str, max: usize) -> Result<Option<String>, Refusal> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Err(Refusal::field(name, "empty")),
        Some(Value::String(s)) if s.chars().count() > max => Err(Refusal::field(
            name,
            format!("longer than {max} characters"),
        )),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Refusal::field(name, "must be a string")),
    }
}
