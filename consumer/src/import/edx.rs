//! Open edX tracking-log lines to visitlog records: server page events and
//! `page_close` become request records, video events become learning
//! events whose stretches follow the pipeline's viewings ([`super::viewings`]),
//! and everything else is counted and left out. See the README's
//! "Importing history" for the mapping table.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use visitlog_middleware::{Enrichment, PastRequest};
use visitlog_schema::{
    EventRecord, EventType, Kind, Learner, MAX_DURATION, SCHEMA_VERSION, user_name,
};

use super::ids::record_id;
use super::lenient::{Number, Text};
use super::pages::OpenPages;
use super::recent::MAX_KEY;
use super::viewings::{MAX_TIME, StreamKey, Viewings};
use super::visits::Visits;
use super::{Mapped, Skip};

/// The language of a video the catalog does not know (ISO 639-2 "undetermined").
pub const UNKNOWN_LANGUAGE: &str = "und";

/// Distinct missing video ids remembered for the summary.
const MISSING_KEPT: usize = 10_000;

/// One tracking-log line; fields of an unexpected type are absent.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    username: Text<'a>,
    #[serde(borrow, default)]
    event_source: Text<'a>,
    #[serde(borrow, default)]
    event_type: Text<'a>,
    #[serde(borrow, default)]
    name: Text<'a>,
    #[serde(borrow, default)]
    time: Text<'a>,
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
    #[serde(borrow, default)]
    agent: Text<'a>,
    #[serde(borrow, default)]
    ip: Text<'a>,
    #[serde(borrow, default)]
    session: Text<'a>,
    #[serde(borrow, default)]
    referer: Text<'a>,
    #[serde(borrow, default)]
    page: Text<'a>,
    #[serde(borrow, default)]
    context: Option<&'a RawValue>,
    /// Present in visitlog's own records (a `--format` mix-up).
    #[serde(borrow, default)]
    kind: Text<'a>,
}

#[derive(Deserialize, Default)]
struct Context<'a> {
    #[serde(borrow, default)]
    course_id: Text<'a>,
}

/// The `event` of a video event (a JSON string in browser events, an
/// object in mobile ones).
#[derive(Deserialize, Default)]
struct VideoData<'a> {
    #[serde(borrow, default)]
    id: Text<'a>,
    #[serde(default, rename = "currentTime")]
    current_time: Number,
    #[serde(default, rename = "current_time")]
    current_time_mobile: Number,
    #[serde(default)]
    old_time: Number,
    #[serde(default)]
    new_time: Number,
    #[serde(default)]
    new_speed: Number,
    #[serde(default)]
    duration: Number,
}

/// What a video event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Load,
    Play,
    Pause,
    Seek,
    /// The browser's `stop_video` (the end reached) and the mobile
    /// `edx.video.completed`.
    End,
    /// The mobile `edx.video.stopped` (the learner left the video).
    Stop,
    Speed,
}

fn action(name: &str) -> Option<Action> {
    Some(match name {
        "load_video" | "edx.video.loaded" => Action::Load,
        "play_video" | "edx.video.played" => Action::Play,
        "pause_video" | "edx.video.paused" => Action::Pause,
        "seek_video" | "edx.video.position.changed" => Action::Seek,
        "stop_video" | "edx.video.completed" => Action::End,
        "edx.video.stopped" => Action::Stop,
        "speed_change_video" | "edx.video.speed.changed" => Action::Speed,
        _ => return None,
    })
}

/// Where a video belongs, from the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    /// Its FOSS.
    pub foss: String,
    /// Its tutorial.
    pub tutorial: String,
    /// Its language.
    pub language: String,
    /// Its duration, when the catalog knows it.
    pub duration: Option<f64>,
}

/// Videos not in the catalog, imported under their course and block id.
#[derive(Debug, Default, Clone)]
pub struct Missing {
    /// Their ids (the first [`MISSING_KEPT`]).
    pub videos: BTreeSet<String>,
    /// More distinct ids than were kept.
    pub more: bool,
    /// Their events.
    pub events: u64,
}

/// Maps edX lines, keeping the viewing state across files.
pub struct EdxMapper {
    enrichment: Enrichment,
    catalog: HashMap<String, Placed>,
    viewings: Viewings,
    pages: OpenPages,
    visits: Visits,
    /// Times after this (a day after the import began) are not believed.
    latest: DateTime<Utc>,
    /// Videos the catalog did not place.
    pub missing: Missing,
}

impl EdxMapper {
    /// A mapper placing videos by `catalog` (`video_id` to its tutorial).
    pub fn new(enrichment: Enrichment, catalog: HashMap<String, Placed>) -> Self {
        Self {
            visits: Visits::new(enrichment.visit_timeout(), enrichment.returning_window()),
            enrichment,
            catalog,
            viewings: Viewings::default(),
            pages: OpenPages::default(),
            latest: Utc::now() + chrono::Duration::days(1),
            missing: Missing::default(),
        }
    }

    /// Video events earlier than their stream's latest (logs not in time
    /// order, such as per-server logs imported one after the other).
    pub fn out_of_order(&self) -> u64 {
        self.viewings.out_of_order()
    }

    /// What `line` becomes.
    pub fn map(&mut self, line: &[u8]) -> Mapped {
        let parsed: Line<'_> = match serde_json::from_slice(line) {
            Ok(parsed) => parsed,
            Err(_) => return Mapped::Skipped(Skip::NotJson),
        };
        let name = match parsed.event_type.get().or(parsed.name.get()) {
            Some(name) => name,
            None if parsed.kind.get().is_some() => return Mapped::Skipped(Skip::VisitlogRecord),
            None => return Mapped::Skipped(Skip::NoEventType),
        };
        let Some(time) = parsed.time.get() else {
            return Mapped::Skipped(Skip::NoTime);
        };
        let Some(ts) = parse_time(time) else {
            return Mapped::Skipped(Skip::BadTime);
        };
        if ts > self.latest {
            return Mapped::Skipped(Skip::FutureTime);
        }
        let Some(id) = record_id(ts, line) else {
            return Mapped::Skipped(Skip::BadTime);
        };
        if let Some(action) = action(name) {
            return self.video(&parsed, action, ts, id);
        }
        let who = parsed.session.get().or(parsed.username.get());
        let at = ts.timestamp_millis();
        let mut method = "GET";
        let target = if parsed.event_source.get() == Some("server") && name.starts_with('/') {
            if posted(parsed.event) {
                method = "POST";
            }
            if let Some(who) = who {
                self.pages.served(who, path_of(name), at);
            }
            name.to_owned()
        } else if name == "page_close" {
            let Some(target) = parsed.page.get().and_then(target_of_url) else {
                return Mapped::Skipped(Skip::NoPage);
            };
            if who.is_some_and(|who| self.pages.closed(who, path_of(&target), at)) {
                return Mapped::Used(Used::PageClose);
            }
            target
        } else {
            return Mapped::Other(name.to_owned());
        };
        let path = path_of(&target);
        let record = self.enrichment.request(PastRequest {
            id,
            ts,
            method: method.to_owned(),
            route: route_of(path),
            content_type: Some(media_type_of(path).to_owned()),
            target,
            status: 200,
            referer: parsed.referer.get().map(str::to_owned),
            user_agent: parsed.agent.get().map(str::to_owned),
            client_ip: parsed.ip.get().and_then(|ip| ip.parse().ok()),
            user: parsed.username.get().map(str::to_owned),
            session: parsed.session.get().map(str::to_owned),
            // A session id too long to remember makes a visit of its own.
            visit: parsed
                .session
                .get()
                .filter(|raw| raw.len() <= MAX_KEY)
                .map(|raw| self.visits.visit(raw, at, || self.enrichment.visitor(raw))),
        });
        Mapped::record(&record)
    }

    fn video(
        &mut self,
        line: &Line<'_>,
        action: Action,
        ts: DateTime<Utc>,
        id: uuid::Uuid,
    ) -> Mapped {
        let Some(user) = line.username.get() else {
            return Mapped::Skipped(Skip::VideoWithoutUser);
        };
        let Some(user) = user_name(user) else {
            return Mapped::Skipped(Skip::UserTooLong);
        };
        // The event data: a JSON string holding an object, or the object.
        let text: std::borrow::Cow<'_, str> = match line.event {
            Some(raw) if raw.get().starts_with('"') => {
                match serde_json::from_str::<String>(raw.get()) {
                    Ok(inner) => inner.into(),
                    Err(_) => return Mapped::Skipped(Skip::BadVideoData),
                }
            }
            Some(raw) => raw.get().into(),
            None => return Mapped::Skipped(Skip::BadVideoData),
        };
        let Ok(data) = serde_json::from_str::<VideoData<'_>>(&text) else {
            return Mapped::Skipped(Skip::BadVideoData);
        };
        let Some(video) = data.id.get() else {
            return Mapped::Skipped(Skip::NoVideoId);
        };
        let course = line
            .context
            .and_then(|c| serde_json::from_str::<Context<'_>>(c.get()).ok())
            .and_then(|c| c.course_id.get().map(str::to_owned));
        // Both are the viewing's key across lines.
        if video.len() > MAX_KEY || course.as_ref().is_some_and(|c| c.len() > MAX_KEY) {
            return Mapped::Skipped(Skip::IdTooLong);
        }
        let placed = match self.catalog.get(video) {
            Some(placed) => placed.clone(),
            None => {
                let Some(course) = course.clone() else {
                    return Mapped::Skipped(Skip::NoCourse);
                };
                self.missing.events += 1;
                if self.missing.videos.len() < MISSING_KEPT {
                    self.missing.videos.insert(video.to_owned());
                } else if !self.missing.videos.contains(video) {
                    self.missing.more = true;
                }
                Placed {
                    foss: course,
                    tutorial: video.to_owned(),
                    language: UNKNOWN_LANGUAGE.to_owned(),
                    duration: None,
                }
            }
        };
        let duration = placed
            .duration
            .or(data.duration.0.filter(|d| *d > 0.0 && *d <= MAX_DURATION));
        let key: StreamKey = (
            user.to_owned(),
            course.unwrap_or_default(),
            video.to_owned(),
        );
        let at = ts.timestamp_millis();
        let current = data.current_time.0.or(data.current_time_mobile.0);
        let (event_type, step, from_to) = match action {
            Action::Load => return Mapped::Used(Used::VideoLoad),
            Action::Speed => {
                let Some(speed) = data.new_speed.0.filter(|s| *s > 0.0) else {
                    return Mapped::Skipped(Skip::BadVideoData);
                };
                self.viewings.speed(&key, at, speed);
                return Mapped::Used(Used::SpeedChange);
            }
            Action::Seek => {
                let (Some(old), Some(new)) = (time_of(data.old_time), time_of(data.new_time))
                else {
                    return Mapped::Skipped(Skip::VideoTime);
                };
                let step = self.viewings.seek(&key, at, old, new, duration);
                (EventType::VideoSeek, step, Some((old, new)))
            }
            Action::Play => {
                let Some(current) = time_of(Number(current)) else {
                    return Mapped::Skipped(Skip::VideoTime);
                };
                (
                    EventType::VideoPlay,
                    self.viewings.play(&key, at, current),
                    None,
                )
            }
            Action::Pause | Action::Stop | Action::End => {
                // A pause at the very start may have no position.
                let current = match (action, current) {
                    (Action::Pause, None) => Some(0.0),
                    (_, current) => current,
                };
                let Some(current) = time_of(Number(current)) else {
                    return Mapped::Skipped(Skip::VideoTime);
                };
                let kind = if action == Action::End {
                    EventType::VideoEnded
                } else {
                    EventType::VideoPause
                };
                (kind, self.viewings.stop(&key, at, current, duration), None)
            }
        };
        let event = EventRecord {
            id,
            schema_version: SCHEMA_VERSION,
            kind: Kind::Event,
            ts,
            event_type,
            learner: Learner::User(user.to_owned()).key(),
            user: Some(user.to_owned()),
            visitor_id: None,
            visit_number: None,
            session_id: line.session.get().map(|s| self.enrichment.session(s)),
            foss: placed.foss,
            tutorial: placed.tutorial,
            language: placed.language,
            video_id: Some(video.to_owned()),
            position: Some(step.position),
            duration,
            from: from_to.map(|(old, _)| old),
            to: from_to.map(|(_, new)| new),
            played_from: step.played_from,
            rate: Some(step.rate),
            page_view: None,
            client_event_id: None,
            active_ms: None,
            staff: false,
        };
        match Mapped::record(&event) {
            Mapped::Record(payload, _) => Mapped::Record(payload, Some(step.viewing)),
            other => other,
        }
    }
}

/// Kinds of lines used without a record of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Used {
    /// `page_close` of a page the import saw served: not a second view.
    PageClose,
    /// `speed_change_video`: the rate of later stretches.
    SpeedChange,
    /// `load_video`: nothing to record.
    VideoLoad,
}

impl Used {
    /// For the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            Used::PageClose => "page closes (of pages served in the logs)",
            Used::SpeedChange => "speed changes (the rate of later stretches)",
            Used::VideoLoad => "video loads (nothing to record)",
        }
    }
}

/// A video position the pipeline believes: present, finite, 0 to 10 hours.
fn time_of(n: Number) -> Option<f64> {
    n.0.filter(|t| (0.0..=MAX_TIME).contains(t))
}

/// An edX `time`: RFC 3339, or without a zone (then UTC), `T` or space.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.to_utc());
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .map(|t| t.and_utc())
}

/// Whether a server event's `event` (`{"GET": {...}, "POST": {...}}`)
/// holds POST parameters: the request was a POST.
fn posted(event: Option<&RawValue>) -> bool {
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(borrow, default, rename = "POST")]
        post: Option<&'a RawValue>,
    }
    let Some(params) = event.and_then(|e| serde_json::from_str::<Params<'_>>(e.get()).ok()) else {
        return false;
    };
    params.post.is_some_and(|post| {
        let text: String = post.get().split_whitespace().collect();
        !matches!(text.as_str(), "{}" | "[]" | "null" | "\"\"")
    })
}

/// What an edX path answered: XBlock handlers (transcripts, state saves,
/// problem checks), `/api/` and `/event` answer JSON; other paths pages.
/// edX logs no media type, and a handler is not a page view.
fn media_type_of(path: &str) -> &'static str {
    let json = path.starts_with("/api/")
        || path.starts_with("/event")
        || path.split('/').any(|s| {
            matches!(
                s,
                "handler" | "handler_noauth" | "xblock" | "xmodule_handler"
            )
        });
    if json {
        "application/json"
    } else {
        "text/html"
    }
}

/// The path of a request target (without query and fragment).
fn path_of(target: &str) -> &str {
    target.split(['?', '#']).next().unwrap_or("/")
}

/// The path and query of a page URL (`https://host/path?q#f` or `/path`).
fn target_of_url(url: &str) -> Option<String> {
    let rest = match url.find("://") {
        Some(i) => {
            let after = &url[i + 3..];
            match after.find(['/', '?', '#']) {
                Some(j) => &after[j..],
                None => "/",
            }
        }
        None if url.starts_with('/') => url,
        None => return None,
    };
    let rest = rest.split('#').next().unwrap_or("/");
    Some(if rest.starts_with('/') {
        rest.to_owned()
    } else {
        format!("/{rest}")
    })
}

/// A route template for an edX path: the course key (`course-v1:…`, or
/// the three segments of an old `org/course/run` id) and block usage keys
/// become parameters, so the pages of every course group alike. `None`
/// for paths outside `/courses/` or holding braces.
pub fn route_of(path: &str) -> Option<String> {
    if path.contains(['{', '}']) {
        return None;
    }
    let rest = path.strip_prefix("/courses/")?;
    let mut segments = rest.split('/');
    let first = segments.next()?;
    let mut route = String::from("/courses/");
    if first.starts_with("course-v1:") {
        route.push_str("{course_id}");
    } else {
        // org/course/run
        let _course = segments.next()?;
        let _run = segments.next()?;
        route.push_str("{org}/{course}/{run}");
    }
    for segment in segments {
        route.push('/');
        if segment.starts_with("block-v1:") || segment.starts_with("i4x:") {
            route.push_str("{usage_id}");
        } else {
            route.push_str(segment);
        }
    }
    Some(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(source: &str, kind: &str, session: &str, secs: u32, page: &str) -> Vec<u8> {
        serde_json::json!({
            "username": "alice", "event_source": source, "event_type": kind,
            "time": format!("2014-10-25T10:00:{secs:02}+00:00"), "session": session,
            "page": page, "event": "",
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_page_close_after_its_server_request_is_no_second_view() {
        let config = visitlog_middleware::Config::default();
        let mut m = EdxMapper::new(Enrichment::new(&config).unwrap(), HashMap::new());
        let url = "https://lms.example.org/courses/c/about?x=1";
        let served = m.map(&page("server", "/courses/c/about", "s1", 0, url));
        assert!(matches!(served, Mapped::Record(_, None)));
        let closed = m.map(&page("browser", "page_close", "s1", 30, url));
        assert!(matches!(closed, Mapped::Used(Used::PageClose)));
        // Closed again, or in a session that never saw it served: a view.
        for session in ["s1", "s2"] {
            let again = m.map(&page("browser", "page_close", session, 40, url));
            assert!(matches!(again, Mapped::Record(_, None)), "{session}");
        }
    }

    #[test]
    fn hostile_lines_are_skipped_with_their_reason() {
        let config = visitlog_middleware::Config::default();
        let mut m = EdxMapper::new(Enrichment::new(&config).unwrap(), HashMap::new());
        let mut skipped = |line: &str| match m.map(line.as_bytes()) {
            Mapped::Skipped(reason) => reason.to_string(),
            _ => "mapped".to_owned(),
        };
        // Nested 10,000 deep: read without recursion, skipped.
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_ne!(skipped(&deep), "mapped");
        let deep = format!("{}1{}", "{\"a\": ".repeat(10_000), "}".repeat(10_000));
        assert_ne!(skipped(&deep), "mapped");
        assert_eq!(
            skipped("{\"event_type\": \"/x\", \"time\": 1e400}"),
            "not JSON"
        );
        assert_eq!(
            skipped("{\"event_type\": \"/x\", \"time\": \"9999-01-01T00:00:00+00:00\"}"),
            "time in the future"
        );
        assert_eq!(
            skipped("{\"event_type\": \"/x\", \"time\": \"1969-12-31T23:59:59+00:00\"}"),
            "time not understood"
        );
        let play = |data: &str| {
            format!(
                "{{\"username\": \"a\", \"event_type\": \"play_video\", \"time\": \"2014-10-25T10:00:00+00:00\", \"event\": {data}, \"context\": {{\"course_id\": \"c\"}}}}"
            )
        };
        assert_eq!(
            skipped(&play(r#""{\"id\": \"v\", \"currentTime\": 1e400}""#)),
            "video event data not understood"
        );
        assert_eq!(
            skipped(&play(r#"{"id": "v", "currentTime": "NaN"}"#)),
            "video time missing, negative or over 10 hours"
        );
        let long = format!(
            "{{\"username\": \"{}\", \"event_type\": \"play_video\", \"time\": \"2014-10-25T10:00:00+00:00\", \"event\": {{\"id\": \"v\", \"currentTime\": 1}}}}",
            "u".repeat(100_000)
        );
        assert_ne!(skipped(&long), "mapped");
        assert_eq!(skipped("\u{0}\u{ff}"), "not JSON");
        // Ids kept across lines are bounded, so 100,000 hostile lines of
        // 1 MiB ids cannot hold 100 GB.
        let huge = "v".repeat(MAX_KEY + 1);
        assert_eq!(
            skipped(&play(&format!(
                "{{\"id\": \"{huge}\", \"currentTime\": 1}}"
            ))),
            "video or course id longer than 512 bytes"
        );
    }

    #[test]
    fn handlers_and_posts_are_no_page_views() {
        let raw = |s: &str| serde_json::from_str::<Box<RawValue>>(s).unwrap();
        let post = raw(r#"{"GET": {}, "POST": {"saved_video_position": ["00:01:02"]}}"#);
        assert!(posted(Some(&post)));
        assert!(!posted(Some(&raw(r#"{"GET": {"x": ["1"]}, "POST": { }}"#))));
        assert!(!posted(Some(&raw("\"\""))));
        assert!(!posted(None));
        let handler = "/courses/course-v1:O+C+R/xblock/block-v1:O+C+R+type@video+block@v/handler/transcript/translation/en";
        assert_eq!(media_type_of(handler), "application/json");
        assert_eq!(
            media_type_of("/courses/course-v1:O+C+R/courseware/w/u/"),
            "text/html"
        );
        assert_eq!(media_type_of("/event"), "application/json");
    }

    #[test]
    fn times_in_every_shape_edx_wrote() {
        let t = |s| parse_time(s).map(|t| t.timestamp_micros());
        let expected = Some(1_414_231_200_123_456);
        assert_eq!(t("2014-10-25T10:00:00.123456+00:00"), expected);
        assert_eq!(t("2014-10-25T10:00:00.123456Z"), expected);
        assert_eq!(t("2014-10-25T10:00:00.123456"), expected);
        assert_eq!(t("2014-10-25 10:00:00.123456"), expected);
        assert_eq!(t("2014-10-25T12:00:00.123456+02:00"), expected);
        assert_eq!(t("yesterday"), None);
    }

    #[test]
    fn routes_name_courses_and_blocks() {
        assert_eq!(
            route_of("/courses/course-v1:edX+DemoX+Demo/courseware/ch/seq/").as_deref(),
            Some("/courses/{course_id}/courseware/ch/seq/")
        );
        assert_eq!(
            route_of("/courses/edX/DemoX/2014/jump_to/i4x:x").as_deref(),
            Some("/courses/{org}/{course}/{run}/jump_to/{usage_id}")
        );
        assert_eq!(
            route_of("/courses/course-v1:a+b+c/xblock/block-v1:a+b+c+type@video+block@1/handler/x")
                .as_deref(),
            Some("/courses/{course_id}/xblock/{usage_id}/handler/x")
        );
        assert_eq!(route_of("/dashboard"), None);
        assert_eq!(route_of("/courses/{x}/"), None);
        assert_eq!(route_of("/courses/a"), None);
    }

    #[test]
    fn page_urls_lose_host_and_fragment() {
        assert_eq!(
            target_of_url("https://lms.example.org/courses/x/?a=1#top").as_deref(),
            Some("/courses/x/?a=1")
        );
        assert_eq!(
            target_of_url("https://lms.example.org").as_deref(),
            Some("/")
        );
        assert_eq!(target_of_url("/dashboard").as_deref(), Some("/dashboard"));
        assert_eq!(target_of_url("about:blank"), None);
    }

    #[test]
    fn video_positions_outside_ten_hours_are_not_believed() {
        assert_eq!(time_of(Number(Some(12.5))), Some(12.5));
        assert_eq!(time_of(Number(Some(-0.1))), None);
        assert_eq!(time_of(Number(Some(36_000.1))), None);
        assert_eq!(time_of(Number(None)), None);
    }
}
