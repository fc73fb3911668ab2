//! Learning state derived from events: the rules, as pure functions.
//!
//! A `tutorial_progress` document is a *fold* of the learner's events for
//! that tutorial and language, taken in `_id` order (UUID v7 given by the
//! server, so server-time order). The document keeps the fold's state and
//! where it got to (`through`, the newest event folded, and `folded`, how
//! many), so new events that are all newer are folded on top of it; an
//! event older than `through` (a late or replayed batch) makes the consumer
//! fold the whole history again from the `events` collection. Either way the
//! document is the same function of the same set of events, whatever the
//! batch order or split, and replaying events changes nothing.
//!
//! `video_positions` needs no fold: the newest event by `_id` wins.

use std::borrow::Borrow;
use std::fmt;

use bson::{Bson, Document, doc};
use chrono::{DateTime, Utc};
use uuid::Uuid;
use visitlog_schema::{EventRecord, EventType, Learner, RequestRecord, progress_id};

/// Most merged intervals kept in `watched`; beyond it the closest two merge.
pub const MAX_INTERVALS: usize = 256;
/// Most visitors remembered to tell a new visit from one already counted.
pub const MAX_RECENT_VISITORS: usize = 16;

/// How events become progress.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Coverage or watched position, as a fraction of the duration, that
    /// completes a tutorial automatically.
    pub completion_threshold: f64,
    /// Count visits of anonymous visitors to tutorial pages too (useful when
    /// the site accepts anonymous events).
    pub anonymous_visits: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            completion_threshold: 0.8,
            anonymous_visits: false,
        }
    }
}

/// What a tutorial page visit or a learning event contributes to a fold.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldEvent {
    /// The event's `_id` (the request's, for a page view).
    pub id: Uuid,
    /// Server time.
    pub ts: DateTime<Utc>,
    /// What happened.
    pub kind: EventType,
    /// Learner key.
    pub learner: String,
    /// Tutorial.
    pub foss: String,
    /// Tutorial.
    pub tutorial: String,
    /// Tutorial.
    pub language: String,
    /// Browser, for telling visits apart.
    pub visitor_id: Option<Uuid>,
    /// Visit number of that browser.
    pub visit_number: Option<u32>,
    /// Video fields.
    pub video_id: Option<String>,
    /// Seconds.
    pub position: Option<f64>,
    /// Seconds.
    pub duration: Option<f64>,
    /// Seconds (a seek's start).
    pub from: Option<f64>,
    /// Seconds, where the reported stretch of playback began.
    pub played_from: Option<f64>,
}

impl FoldEvent {
    /// From an event as it came off the queue.
    pub fn from_record(e: &EventRecord) -> Self {
        Self {
            id: e.id,
            ts: e.ts,
            kind: e.event_type,
            learner: e.learner.clone(),
            foss: e.foss.clone(),
            tutorial: e.tutorial.clone(),
            language: e.language.clone(),
            visitor_id: e.visitor_id,
            visit_number: e.visit_number,
            video_id: e.video_id.clone(),
            position: e.position,
            duration: e.duration,
            from: e.from,
            played_from: e.played_from,
        }
    }

    /// From a stored `events` document (a refold).
    pub fn from_document(d: &Document) -> Result<Self, String> {
        let text = |k: &str| {
            d.get_str(k)
                .map(str::to_owned)
                .map_err(|e| format!("{k}: {e}"))
        };
        let opt_text = |k: &str| d.get_str(k).ok().map(str::to_owned);
        let kind: EventType = bson::from_bson(d.get("type").cloned().unwrap_or(Bson::Null))
            .map_err(|e| format!("type: {e}"))?;
        Ok(Self {
            id: text("_id")?.parse().map_err(|e| format!("_id: {e}"))?,
            ts: d
                .get_datetime("ts")
                .map_err(|e| format!("ts: {e}"))?
                .to_chrono(),
            kind,
            learner: text("learner")?,
            foss: text("foss")?,
            tutorial: text("tutorial")?,
            language: text("language")?,
            visitor_id: opt_text("visitor_id").and_then(|s| s.parse().ok()),
            visit_number: number(d.get("visit_number")).map(|n| n as u32),
            video_id: opt_text("video_id"),
            position: number(d.get("position")),
            duration: number(d.get("duration")),
            from: number(d.get("from")),
            played_from: number(d.get("played_from")),
        })
    }

    /// The `tutorial_progress` document this event counts for.
    pub fn progress_id(&self) -> String {
        progress_id(&self.learner, &self.foss, &self.tutorial, &self.language)
    }

    fn visit_key(&self) -> Option<String> {
        Some(format!("{}:{}", self.visitor_id?, self.visit_number?))
    }
}

/// The `page.view` event a request record makes, when it is a successful
/// visit to a tutorial page by a person (not a bot).
pub fn page_view(record: &RequestRecord, rules: &Rules) -> Option<EventRecord> {
    let tutorial = record.tutorial.as_ref()?;
    let ok = record.method == "GET" && (200..400).contains(&record.status) && !record.ua.is_bot;
    if !ok || (record.user.is_none() && !rules.anonymous_visits) {
        return None;
    }
    let learner = Learner::of(record.user.as_deref(), record.visitor_id)?;
    Some(EventRecord {
        id: record.id,
        schema_version: record.schema_version,
        kind: visitlog_schema::Kind::Event,
        ts: record.ts,
        event_type: EventType::PageView,
        learner: learner.key(),
        user: record.user.clone(),
        visitor_id: record.visitor_id,
        visit_number: record.visit_number,
        session_id: record.session_id.clone(),
        foss: tutorial.foss.clone(),
        tutorial: tutorial.tutorial.clone(),
        language: tutorial.language.clone(),
        video_id: None,
        position: None,
        duration: None,
        from: None,
        to: None,
        played_from: None,
    })
}

/// Who completed a tutorial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletedBy {
    /// The watching rules.
    Auto,
    /// The learner's own mark.
    Manual,
}

impl fmt::Display for CompletedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CompletedBy::Auto => "auto",
            CompletedBy::Manual => "manual",
        })
    }
}

/// The latest manual mark.
#[derive(Debug, Clone, PartialEq)]
pub struct Manual {
    /// Marked complete (`true`) or incomplete.
    pub completed: bool,
    /// When.
    pub at: DateTime<Utc>,
    /// In which visit (`<visitor>:<n>`), when known.
    pub visit: Option<String>,
}

/// One learner's progress in one tutorial and language: the fold state,
/// stored as the `tutorial_progress` document.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// [`progress_id`] of the four fields below.
    pub id: String,
    /// Learner key.
    pub learner: String,
    /// Tutorial.
    pub foss: String,
    /// Tutorial.
    pub tutorial: String,
    /// Tutorial.
    pub language: String,
    /// The tutorial's video, once an event named it.
    pub video_id: Option<String>,
    /// First visit to the tutorial page.
    pub first_visit: Option<DateTime<Utc>>,
    /// Latest visit to the tutorial page.
    pub last_visit: Option<DateTime<Utc>>,
    /// Distinct visits to the tutorial page.
    pub visits: u32,
    /// Completed, by the rules or by hand.
    pub completed: bool,
    /// When it was completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// How it was completed.
    pub completed_by: Option<CompletedBy>,
    /// Merged watched intervals, whole seconds, sorted and disjoint.
    pub watched: Vec<[u32; 2]>,
    /// The video's duration (the largest reported).
    pub duration: Option<f64>,
    /// Watched fraction of the duration, 0 to 1.
    pub coverage: f64,
    /// The latest manual mark.
    pub manual: Option<Manual>,
    /// The latest visit number seen per visitor (most recent last, bounded).
    pub recent_visits: Vec<(Uuid, u32)>,
    /// The newest event folded in.
    pub through: Uuid,
    /// How many events were folded in.
    pub folded: u64,
    /// Server time of the newest event folded in.
    pub updated_at: DateTime<Utc>,
}

impl Progress {
    /// The empty state before `first`.
    fn empty(first: &FoldEvent) -> Self {
        Self {
            id: first.progress_id(),
            learner: first.learner.clone(),
            foss: first.foss.clone(),
            tutorial: first.tutorial.clone(),
            language: first.language.clone(),
            video_id: None,
            first_visit: None,
            last_visit: None,
            visits: 0,
            completed: false,
            completed_at: None,
            completed_by: None,
            watched: Vec::new(),
            duration: None,
            coverage: 0.0,
            manual: None,
            recent_visits: Vec::new(),
            through: Uuid::nil(),
            folded: 0,
            updated_at: first.ts,
        }
    }

    /// Folds `events` (sorted by `_id`, all of one progress key) on top of
    /// `state`, or on an empty state; `None` when there is neither.
    ///
    /// The events are taken one at a time and never kept: a history of any
    /// length folds in the memory of one event and the state.
    pub fn fold<E: Borrow<FoldEvent>>(
        state: Option<Progress>,
        events: impl IntoIterator<Item = E>,
        rules: &Rules,
    ) -> Option<Progress> {
        events
            .into_iter()
            .fold(state, |p, e| Some(Progress::fold_one(p, e.borrow(), rules)))
    }

    /// Folds one more event (newer than any folded so far) on top of
    /// `state`, or on an empty state.
    pub fn fold_one(state: Option<Progress>, event: &FoldEvent, rules: &Rules) -> Progress {
        let mut p = state.unwrap_or_else(|| Progress::empty(event));
        p.apply(event, rules);
        p
    }

    fn apply(&mut self, e: &FoldEvent, rules: &Rules) {
        self.through = e.id;
        self.folded += 1;
        self.updated_at = e.ts;
        match e.kind {
            EventType::PageView => self.visit(e),
            EventType::TutorialComplete | EventType::TutorialIncomplete => {
                let completed = e.kind == EventType::TutorialComplete;
                self.manual = Some(Manual {
                    completed,
                    at: e.ts,
                    visit: e.visit_key(),
                });
                self.set_completed(completed, e.ts, CompletedBy::Manual);
            }
            _ => self.watch(e, rules),
        }
    }

    fn visit(&mut self, e: &FoldEvent) {
        self.first_visit = Some(self.first_visit.map_or(e.ts, |t| t.min(e.ts)));
        self.last_visit = Some(self.last_visit.map_or(e.ts, |t| t.max(e.ts)));
        let (Some(visitor), Some(number)) = (e.visitor_id, e.visit_number) else {
            return; // No visitor cookie: visits cannot be told apart.
        };
        match self.recent_visits.iter().position(|(v, _)| *v == visitor) {
            // Folding in time order, a browser's visit numbers only grow.
            Some(i) if self.recent_visits[i].1 >= number => {}
            Some(i) => {
                self.recent_visits.remove(i);
                self.recent_visits.push((visitor, number));
                self.visits += 1;
            }
            None => {
                self.recent_visits.push((visitor, number));
                if self.recent_visits.len() > MAX_RECENT_VISITORS {
                    self.recent_visits.remove(0);
                }
                self.visits += 1;
            }
        }
    }

    fn watch(&mut self, e: &FoldEvent, rules: &Rules) {
        if e.video_id.is_some() {
            self.video_id.clone_from(&e.video_id);
        }
        if let Some(d) = e.duration {
            self.duration = Some(self.duration.map_or(d, |old| old.max(d)));
        }
        let before = self.coverage;
        // The stretch this event reports: up to the seek's start, or up to the position.
        let end = if e.kind == EventType::VideoSeek {
            e.from
        } else {
            e.position
        };
        let mut watched_to = None;
        if let (Some(start), Some(end)) = (e.played_from, end) {
            add_interval(&mut self.watched, start.round() as u32, end.round() as u32);
            self.coverage = coverage(&self.watched, self.duration);
            watched_to = Some(end);
        }
        let threshold = rules.completion_threshold;
        let crossed = before < threshold && self.coverage >= threshold;
        let reached = match (watched_to, self.duration) {
            (Some(to), Some(d)) if d > 0.0 => to / d >= threshold,
            _ => false,
        };
        if e.kind == EventType::VideoEnded || crossed || reached {
            self.auto_complete(e);
        }
    }

    /// Completes by the rules, unless the learner marked the tutorial
    /// incomplete in this same visit.
    fn auto_complete(&mut self, e: &FoldEvent) {
        if self.completed {
            return;
        }
        let blocked = self
            .manual
            .as_ref()
            .is_some_and(|m| !m.completed && m.visit.is_some() && m.visit == e.visit_key());
        if !blocked {
            self.set_completed(true, e.ts, CompletedBy::Auto);
        }
    }

    fn set_completed(&mut self, completed: bool, at: DateTime<Utc>, by: CompletedBy) {
        self.completed = completed;
        self.completed_at = completed.then_some(at);
        self.completed_by = completed.then_some(by);
    }

    /// The stored document (BSON dates).
    pub fn to_document(&self) -> Document {
        let date = |t: &Option<DateTime<Utc>>| t.map_or(Bson::Null, |t| Bson::DateTime(t.into()));
        doc! {
            "_id": &self.id,
            "learner": &self.learner,
            "foss": &self.foss,
            "tutorial": &self.tutorial,
            "language": &self.language,
            "video_id": self.video_id.as_deref().map_or(Bson::Null, Bson::from),
            "first_visit": date(&self.first_visit),
            "last_visit": date(&self.last_visit),
            "visits": i64::from(self.visits),
            "completed": self.completed,
            "completed_at": date(&self.completed_at),
            "completed_by": self.completed_by.map_or(Bson::Null, |b| Bson::from(b.to_string())),
            "watched": self.watched.iter().map(|[a, b]| Bson::Array(vec![Bson::Int64(i64::from(*a)), Bson::Int64(i64::from(*b))])).collect::<Vec<_>>(),
            "duration": self.duration.map_or(Bson::Null, Bson::Double),
            "coverage": self.coverage,
            "manual": self.manual.as_ref().map_or(Bson::Null, |m| Bson::Document(doc! {
                "completed": m.completed,
                "at": bson::DateTime::from_chrono(m.at),
                "visit": m.visit.as_deref().map_or(Bson::Null, Bson::from),
            })),
            "recent_visits": self.recent_visits.iter().map(|(v, n)| Bson::Document(doc! {
                "visitor": v.to_string(), "visit": i64::from(*n),
            })).collect::<Vec<_>>(),
            "through": self.through.to_string(),
            "folded": i64::try_from(self.folded).unwrap_or(i64::MAX),
            "updated_at": bson::DateTime::from_chrono(self.updated_at),
        }
    }

    /// Reads a stored document back.
    pub fn from_document(d: &Document) -> Result<Self, String> {
        let text = |k: &str| {
            d.get_str(k)
                .map(str::to_owned)
                .map_err(|e| format!("{k}: {e}"))
        };
        let date = |k: &str| d.get_datetime(k).ok().map(|t| t.to_chrono());
        let int = |k: &str| number(d.get(k)).ok_or_else(|| format!("{k}: not a number"));
        let watched = d
            .get_array("watched")
            .map_err(|e| format!("watched: {e}"))?
            .iter()
            .filter_map(|pair| match pair {
                Bson::Array(p) => Some([number(p.first())? as u32, number(p.get(1))? as u32]),
                _ => None,
            })
            .collect();
        let manual = match d.get("manual") {
            Some(Bson::Document(m)) => Some(Manual {
                completed: m
                    .get_bool("completed")
                    .map_err(|e| format!("manual: {e}"))?,
                at: m
                    .get_datetime("at")
                    .map_err(|e| format!("manual: {e}"))?
                    .to_chrono(),
                visit: m.get_str("visit").ok().map(str::to_owned),
            }),
            _ => None,
        };
        let recent_visits = d
            .get_array("recent_visits")
            .map_err(|e| format!("recent_visits: {e}"))?
            .iter()
            .filter_map(|v| {
                let v = v.as_document()?;
                Some((
                    v.get_str("visitor").ok()?.parse().ok()?,
                    number(v.get("visit"))? as u32,
                ))
            })
            .collect();
        Ok(Self {
            id: text("_id")?,
            learner: text("learner")?,
            foss: text("foss")?,
            tutorial: text("tutorial")?,
            language: text("language")?,
            video_id: d.get_str("video_id").ok().map(str::to_owned),
            first_visit: date("first_visit"),
            last_visit: date("last_visit"),
            visits: int("visits")? as u32,
            completed: d
                .get_bool("completed")
                .map_err(|e| format!("completed: {e}"))?,
            completed_at: date("completed_at"),
            completed_by: match d.get_str("completed_by") {
                Ok("auto") => Some(CompletedBy::Auto),
                Ok("manual") => Some(CompletedBy::Manual),
                _ => None,
            },
            watched,
            duration: number(d.get("duration")),
            coverage: number(d.get("coverage")).unwrap_or(0.0),
            manual,
            recent_visits,
            through: text("through")?
                .parse()
                .map_err(|e| format!("through: {e}"))?,
            folded: int("folded")? as u64,
            updated_at: date("updated_at").ok_or("updated_at: missing")?,
        })
    }
}

/// Whether `batch` can be folded on top of `existing` (or start a new
/// document): only when every event in it is newer than the newest already
/// folded. Otherwise (a late event, a replay) the whole history is folded
/// again.
///
/// A new document starts from its batch alone. Events of the same learner
/// and tutorial that other batches stored but have not derived yet are not
/// lost: when those batches derive, their events are older than `through`
/// (a refold) or newer (folded on top), so the document ends as the fold of
/// everything either way.
pub fn needs_refold(existing: Option<&Progress>, batch: &[FoldEvent]) -> bool {
    existing.is_some_and(|p| batch.iter().any(|e| e.id <= p.through))
}

/// Adds `[start, end]` to sorted, disjoint intervals, merging what touches,
/// then keeps at most [`MAX_INTERVALS`] by closing the smallest gaps.
pub fn add_interval(watched: &mut Vec<[u32; 2]>, start: u32, end: u32) {
    if end <= start {
        return;
    }
    let mut merged = [start, end];
    let mut out = Vec::with_capacity(watched.len() + 1);
    let mut placed = false;
    for &[a, b] in watched.iter() {
        if b < merged[0] {
            out.push([a, b]);
        } else if a > merged[1] {
            if !placed {
                out.push(merged);
                placed = true;
            }
            out.push([a, b]);
        } else {
            merged = [merged[0].min(a), merged[1].max(b)];
        }
    }
    if !placed {
        out.push(merged);
    }
    while out.len() > MAX_INTERVALS {
        let i = (0..out.len() - 1)
            .min_by_key(|&i| out[i + 1][0] - out[i][1])
            .unwrap_or(0);
        out[i][1] = out[i + 1][1];
        out.remove(i + 1);
    }
    *watched = out;
}

/// Watched seconds over the duration, capped at 1.
pub fn coverage(watched: &[[u32; 2]], duration: Option<f64>) -> f64 {
    match duration {
        Some(d) if d > 0.0 => {
            let seconds: u32 = watched.iter().map(|[a, b]| b - a).sum();
            (f64::from(seconds) / d).min(1.0)
        }
        _ => 0.0,
    }
}

/// A number stored as double, int32 or int64.
fn number(b: Option<&Bson>) -> Option<f64> {
    match b? {
        Bson::Double(v) => Some(*v),
        Bson::Int32(v) => Some(f64::from(*v)),
        Bson::Int64(v) => Some(*v as f64),
        _ => None,
    }
}

/// The `video_positions` document an event makes, if it is a video event.
/// The newest event per learner and video wins; after `video.ended` the
/// resume position is 0.
pub fn video_position(e: &FoldEvent) -> Option<Document> {
    if !e.kind.is_video() {
        return None;
    }
    let video_id = e.video_id.as_deref()?;
    let position = match e.kind {
        EventType::VideoEnded => 0.0,
        _ => e.position?,
    };
    Some(doc! {
        "_id": visitlog_schema::video_position_id(&e.learner, video_id),
        "learner": &e.learner,
        "video_id": video_id,
        "foss": &e.foss,
        "tutorial": &e.tutorial,
        "language": &e.language,
        "position": position,
        "duration": e.duration.unwrap_or(0.0),
        "updated_at": bson::DateTime::from_chrono(e.ts),
        "last_event": e.id.to_string(),
    })
}

#[cfg(test)]
mod tests;
