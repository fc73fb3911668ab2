//! The fold: a learner's events for one tutorial and language, taken in
//! `_id` order, become their [`Progress`]; and when a batch cannot be folded
//! on top of the stored state ([`needs_refold`]).

use std::borrow::Borrow;

use chrono::{DateTime, Utc};
use uuid::Uuid;
use visitlog_schema::{EventRecord, EventType};

use crate::Rules;
use crate::intervals::{add_interval, coverage};
use crate::tutorial::{CompletedBy, MAX_RECENT_VISITORS, Manual, Progress, RecentVisit};

impl Progress {
    /// The empty state before `first`.
    fn empty(first: &EventRecord) -> Self {
        Self::new(
            &first.learner,
            &first.foss,
            &first.tutorial,
            &first.language,
            first.ts,
        )
    }

    /// The empty progress of `learner` in one tutorial and language, to
    /// fold events on: a user's own, and those their browser made before
    /// they logged in (whose `learner` is the visitor's, so the fold never
    /// reads an event's `learner`).
    pub fn new(
        learner: &str,
        foss: &str,
        tutorial: &str,
        language: &str,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: visitlog_schema::progress_id(learner, foss, tutorial, language),
            learner: learner.to_owned(),
            foss: foss.to_owned(),
            tutorial: tutorial.to_owned(),
            language: language.to_owned(),
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
            updated_at: at,
        }
    }

    /// Folds `events` (sorted by `_id`, all of one progress key) on top of
    /// `state`, or on an empty state; `None` when there is neither.
    ///
    /// The events are taken one at a time and never kept: a history of any
    /// length folds in the memory of one event and the state.
    pub fn fold<E: Borrow<EventRecord>>(
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
    pub fn fold_one(state: Option<Progress>, event: &EventRecord, rules: &Rules) -> Progress {
        let mut p = state.unwrap_or_else(|| Progress::empty(event));
        p.apply(event, rules);
        p
    }

    fn apply(&mut self, e: &EventRecord, rules: &Rules) {
        self.through = e.id;
        self.folded += 1;
        self.updated_at = e.ts;
        match e.event_type {
            EventType::PageView => self.visit(e),
            EventType::TutorialComplete | EventType::TutorialIncomplete => {
                let completed = e.event_type == EventType::TutorialComplete;
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

    fn visit(&mut self, e: &EventRecord) {
        self.first_visit = Some(self.first_visit.map_or(e.ts, |t| t.min(e.ts)));
        self.last_visit = Some(self.last_visit.map_or(e.ts, |t| t.max(e.ts)));
        let (Some(visitor), Some(visit)) = (e.visitor_id, e.visit_number) else {
            return; // No visitor cookie: visits cannot be told apart.
        };
        let seen = RecentVisit { visitor, visit };
        match self.recent_visits.iter().position(|r| r.visitor == visitor) {
            // Folding in time order, a browser's visit numbers only grow.
            Some(i) if self.recent_visits[i].visit >= visit => {}
            Some(i) => {
                self.recent_visits.remove(i);
                self.recent_visits.push(seen);
                self.visits += 1;
            }
            None => {
                self.recent_visits.push(seen);
                if self.recent_visits.len() > MAX_RECENT_VISITORS {
                    self.recent_visits.remove(0);
                }
                self.visits += 1;
            }
        }
    }

    fn watch(&mut self, e: &EventRecord, rules: &Rules) {
        if e.video_id.is_some() {
            self.video_id.clone_from(&e.video_id);
        }
        if let Some(d) = e.duration {
            self.duration = Some(self.duration.map_or(d, |old| old.max(d)));
        }
        let before = self.coverage;
        // The stretch this event reports: up to the seek's start, or up to the position.
        let end = if e.event_type == EventType::VideoSeek {
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
        if e.event_type == EventType::VideoEnded || crossed || reached {
            self.auto_complete(e);
        }
    }

    /// Completes by the rules, unless the learner marked the tutorial
    /// incomplete in this same visit.
    fn auto_complete(&mut self, e: &EventRecord) {
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
pub fn needs_refold(existing: Option<&Progress>, batch: &[EventRecord]) -> bool {
    existing.is_some_and(|p| batch.iter().any(|e| e.id <= p.through))
}
