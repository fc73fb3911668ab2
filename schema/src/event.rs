//! Learning events: what a tutorial page's script reports (video play, pause,
//! seek, progress, ended; tutorial marked complete or incomplete), stamped by
//! the server and stored in the `events` collection. The consumer derives
//! `video_positions` and `tutorial_progress` from them.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::record::{Kind, SCHEMA_VERSION, ts_millis};

/// Longest `learner` key: `user:` and a user name of [`crate::limits::SHORT`] characters.
pub const LEARNER_MAX: usize = 272;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// Playback started (or resumed) at `position`.
    #[serde(rename = "video.play")]
    VideoPlay,
    /// Playback paused at `position`.
    #[serde(rename = "video.pause")]
    VideoPause,
    /// The learner jumped `from` one position `to` another.
    #[serde(rename = "video.seek")]
    VideoSeek,
    /// Heartbeat while playing.
    #[serde(rename = "video.progress")]
    VideoProgress,
    /// Playback reached the end.
    #[serde(rename = "video.ended")]
    VideoEnded,
    /// The learner marked the tutorial complete.
    #[serde(rename = "tutorial.complete")]
    TutorialComplete,
    /// The learner marked the tutorial not complete.
    #[serde(rename = "tutorial.incomplete")]
    TutorialIncomplete,
    /// A visit to the tutorial page; derived by the consumer from request
    /// records, never accepted from a client.
    #[serde(rename = "page.view")]
    PageView,
    /// The page is still open, visible, and its learner active (sent every
    /// 15 s); carries `page_view` and `active_ms`.
    #[serde(rename = "page.ping")]
    PagePing,
    /// The page was hidden or closed; carries `page_view` and `active_ms`.
    #[serde(rename = "page.hide")]
    PageHide,
}

impl EventType {
    /// The types a page's script may send.
    pub const CLIENT: [EventType; 9] = [
        EventType::VideoPlay,
        EventType::VideoPause,
        EventType::VideoSeek,
        EventType::VideoProgress,
        EventType::VideoEnded,
        EventType::TutorialComplete,
        EventType::TutorialIncomplete,
        EventType::PagePing,
        EventType::PageHide,
    ];

    /// The name on the wire, e.g. `video.play`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::VideoPlay => "video.play",
            EventType::VideoPause => "video.pause",
            EventType::VideoSeek => "video.seek",
            EventType::VideoProgress => "video.progress",
            EventType::VideoEnded => "video.ended",
            EventType::TutorialComplete => "tutorial.complete",
            EventType::TutorialIncomplete => "tutorial.incomplete",
            EventType::PageView => "page.view",
            EventType::PagePing => "page.ping",
            EventType::PageHide => "page.hide",
        }
    }

    /// A `page.ping` or `page.hide`: time on page, not learning; progress
    /// never folds it.
    pub fn is_page_activity(self) -> bool {
        matches!(self, EventType::PagePing | EventType::PageHide)
    }

    /// A `video.*` event: it carries `video_id`, `position` and `duration`.
    pub fn is_video(self) -> bool {
        matches!(
            self,
            EventType::VideoPlay
                | EventType::VideoPause
                | EventType::VideoSeek
                | EventType::VideoProgress
                | EventType::VideoEnded
        )
    }
}

impl FromStr for EventType {
    type Err = ();

    /// Parses a client event type (`page.view` is not one).
    fn from_str(s: &str) -> Result<Self, ()> {
        EventType::CLIENT
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or(())
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The user name as records store it: `None` when empty, or when longer
/// than [`crate::limits::SHORT`] characters. Such a name is never cut to
/// fit, since two long names sharing a prefix would then share a learner
/// and its progress: a user with one is recorded as anonymous, and the
/// learning-events endpoint refuses their events.
pub fn user_name(user: &str) -> Option<&str> {
    (!user.is_empty() && user.chars().count() <= crate::limits::SHORT).then_some(user)
}

/// Whose progress an event counts for: the user when logged in, else the
/// browser's visitor id. Stored as a key, `user:<name>` or `visitor:<uuid>`,
/// so a user named like a UUID never meets a visitor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Learner {
    /// A logged-in user, as the app names them.
    User(String),
    /// An anonymous browser, by its visitor cookie.
    Visitor(Uuid),
}

impl Learner {
    /// The learner of a record: the user when there is one, else the visitor.
    pub fn of(user: Option<&str>, visitor_id: Option<Uuid>) -> Option<Learner> {
        match (user.filter(|u| !u.is_empty()), visitor_id) {
            (Some(user), _) => Some(Learner::User(user.to_owned())),
            (None, Some(visitor)) => Some(Learner::Visitor(visitor)),
            (None, None) => None,
        }
    }

    /// The stored key: `user:<name>` or `visitor:<uuid>`.
    pub fn key(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Learner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Learner::User(user) => write!(f, "user:{user}"),
            Learner::Visitor(id) => write!(f, "visitor:{id}"),
        }
    }
}

impl FromStr for Learner {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(user) = s.strip_prefix("user:").filter(|u| !u.is_empty()) {
            Ok(Learner::User(user.to_owned()))
        } else if let Some(id) = s.strip_prefix("visitor:") {
            id.parse()
                .map(Learner::Visitor)
                .map_err(|e| format!("bad visitor id in learner `{s}`: {e}"))
        } else {
            Err(format!(
                "learner `{s}` is neither `user:<name>` nor `visitor:<uuid>`"
            ))
        }
    }
}

/// One learning event, as stored in the `events` collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRecord {
    /// UUID v7 given by the server: unique, and orders events by server time.
    #[serde(rename = "_id", with = "crate::wire::id_v7")]
    pub id: Uuid,
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Always [`Kind::Event`].
    pub kind: Kind,
    /// When the server received it (the client's clock is never used).
    #[serde(with = "ts_millis")]
    pub ts: DateTime<Utc>,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The [`Learner`] key.
    pub learner: String,
    /// The logged-in user, if any.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub user: Option<String>,
    /// The browser's visitor id, if it has one.
    #[serde(with = "crate::wire::uuid")]
    pub visitor_id: Option<Uuid>,
    /// The browser's visit number; with `visitor_id` it names the visit.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub visit_number: Option<u32>,
    /// A keyed hash of the app's session id.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub session_id: Option<String>,
    /// The tutorial's software.
    pub foss: String,
    /// The tutorial.
    pub tutorial: String,
    /// The tutorial's language.
    pub language: String,
    /// The video, for `video.*` events (and optionally the tutorial ones).
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub video_id: Option<String>,
    /// Playback position in seconds.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub position: Option<f64>,
    /// Video duration in seconds.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub duration: Option<f64>,
    /// `video.seek`: where the learner jumped from.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub from: Option<f64>,
    /// `video.seek`: where the learner jumped to.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub to: Option<f64>,
    /// Where the stretch of playback that ends with this event began: the
    /// stretch up to `position` (`from` for a seek) was watched.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub played_from: Option<f64>,
    /// Playback speed of `video.*` events (0.25 to 4; 1 when not said).
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub rate: Option<f64>,
    /// The request record that served the page the event comes from (the
    /// page embeds it): its server time bounds what the page may report.
    #[serde(with = "crate::wire::uuid")]
    pub page_view: Option<Uuid>,
    /// The client's own id for the event (a UUID it made), so that a retry
    /// of an event the server did get is stored once.
    #[serde(with = "crate::wire::uuid")]
    pub client_event_id: Option<Uuid>,
    /// `page.ping` and `page.hide`: milliseconds the learner was active on
    /// the page since its previous ping (at most an hour).
    #[serde(default)]
    pub active_ms: Option<u64>,
    /// The app marked the user as staff: stored, never counted in figures.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub staff: bool,
}

impl EventRecord {
    /// A filled `video.progress` event, for documentation and tests.
    pub fn example() -> Self {
        Self {
            id: Uuid::now_v7(),
            schema_version: SCHEMA_VERSION,
            kind: Kind::Event,
            ts: DateTime::from_timestamp_millis(1_763_000_000_123).unwrap_or_default(),
            event_type: EventType::VideoProgress,
            learner: Learner::User("alice".to_owned()).key(),
            user: Some("alice".to_owned()),
            visitor_id: Some(Uuid::now_v7()),
            visit_number: Some(2),
            session_id: Some("3f1c2d4e5a6b7c8d9e0f1a2b3c4d5e6f".to_owned()),
            foss: "Python".to_owned(),
            tutorial: "Getting-started".to_owned(),
            language: "English".to_owned(),
            video_id: Some("Python/Getting-started/English".to_owned()),
            position: Some(42.0),
            duration: Some(600.0),
            from: None,
            to: None,
            played_from: Some(32.0),
            rate: Some(1.0),
            page_view: None,
            client_event_id: None,
            active_ms: None,
            staff: false,
        }
    }

    /// The visit this event belongs to, `<visitor>:<n>`, when known.
    pub fn visit_key(&self) -> Option<String> {
        Some(format!("{}:{}", self.visitor_id?, self.visit_number?))
    }

    /// The `_id` of the `tutorial_progress` document this event counts for.
    pub fn progress_id(&self) -> String {
        progress_id(&self.learner, &self.foss, &self.tutorial, &self.language)
    }
}

/// The `_id` of a `tutorial_progress` document.
pub fn progress_id(learner: &str, foss: &str, tutorial: &str, language: &str) -> String {
    hashed_id(&[learner, foss, tutorial, language])
}

/// The `_id` of a `video_positions` document.
pub fn video_position_id(learner: &str, video_id: &str) -> String {
    hashed_id(&[learner, video_id])
}

/// The `_id` of a `learner_links` document: one per visitor id and user
/// (its learner key, `user:<name>`).
pub fn learner_link_id(visitor_id: &Uuid, user: &str) -> String {
    hashed_id(&[&visitor_id.to_string(), user])
}

/// 32 hex digits of SHA-256 over the length-prefixed parts: stable, and
/// never ambiguous whatever characters the parts contain. Every derived
/// document's `_id` made of names is one.
pub fn hashed_id(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// Lower-case hex digits.
const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_round_trip_by_name() {
        for t in EventType::CLIENT {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(t));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
        assert!("page.view".parse::<EventType>().is_err());
        assert!("video.rewind".parse::<EventType>().is_err());
    }

    #[test]
    fn learner_keys_round_trip_and_never_collide() {
        let id = Uuid::now_v7();
        let visitor = Learner::Visitor(id);
        let user = Learner::User(id.to_string());
        assert_ne!(visitor.key(), user.key());
        assert_eq!(visitor.key().parse::<Learner>().unwrap(), visitor);
        assert_eq!(user.key().parse::<Learner>().unwrap(), user);
        assert!("alice".parse::<Learner>().is_err());
        assert!("user:".parse::<Learner>().is_err());
        assert_eq!(
            Learner::of(Some("bob"), Some(id)),
            Some(Learner::User("bob".into()))
        );
        assert_eq!(Learner::of(Some(""), Some(id)), Some(visitor));
        assert_eq!(Learner::of(None, None), None);
    }

    #[test]
    fn long_user_names_are_refused_never_cut() {
        let long = "a".repeat(crate::limits::SHORT);
        assert_eq!(user_name(&long), Some(long.as_str()));
        assert_eq!(user_name(&format!("{long}x")), None);
        assert_eq!(user_name(""), None);
        // Multi-byte names are counted in characters.
        let accented = "é".repeat(crate::limits::SHORT);
        assert_eq!(user_name(&accented), Some(accented.as_str()));
    }

    #[test]
    fn ids_are_stable_and_unambiguous() {
        assert_eq!(
            progress_id("user:a", "b", "c", "d"),
            progress_id("user:a", "b", "c", "d")
        );
        assert_ne!(
            progress_id("user:a", "bc", "", "d"),
            progress_id("user:a", "b", "c", "d")
        );
        assert_eq!(video_position_id("user:a", "v").len(), 32);
    }

    #[test]
    fn events_round_trip_through_json() {
        let event = EventRecord::example();
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "video.progress");
        assert_eq!(json["kind"], "event");
        assert_eq!(serde_json::from_value::<EventRecord>(json).unwrap(), event);
    }
}
