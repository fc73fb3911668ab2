//! The fold: a learner's events for one tutorial and language, taken in
//! `_id` order, become their [`Progress`]; and when a batch cannot be folded
//! on top of the stored state ([`needs_refold`]).
//!
//! Each video event is credited to its own video (`watching.rs`), through
//! the stretch it reports or implies and its page's budget (`stretch.rs`);
//! then completion is settled on the main video.

use std::borrow::Borrow;

use chrono::{DateTime, Utc};
use uuid::Uuid;
use visitlog_schema::{EventRecord, EventType};

use crate::bits::watched_intervals;
use crate::stretch::{self, MAX_PAGE_VIEWS, PageView};
use crate::tutorial::{
    CompletedBy, CompletedRule, MAX_CLIENT_EVENTS, MAX_RECENT_VISITORS, Manual, Progress,
    RecentVisit,
};
use crate::watching::{MAX_VIDEOS, VideoProgress};
use crate::{MainVideo, Rules};

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
            completed_rule: None,
            watched: Vec::new(),
            duration: None,
            coverage: 0.0,
            videos: Vec::new(),
            ignored: 0,
            page_views: Vec::new(),
            streams: Vec::new(),
            client_events: Vec::new(),
            manual: None,
            recent_visits: Vec::new(),
            through: Uuid::nil(),
            folded: 0,
            updated_at: at,
            staff: false,
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
        Self::fold_with(state, events, rules, None)
    }

    /// [`Progress::fold`], with the catalog's main video when it names one
    /// (issue 12); without it the main video is the longest reported.
    pub fn fold_with<E: Borrow<EventRecord>>(
        state: Option<Progress>,
        events: impl IntoIterator<Item = E>,
        rules: &Rules,
        main: Option<MainVideo<'_>>,
    ) -> Option<Progress> {
        events.into_iter().fold(state, |p, e| {
            let mut p = p.unwrap_or_else(|| Progress::empty(e.borrow()));
            p.apply(e.borrow(), rules, main);
            Some(p)
        })
    }

    /// Folds one more event (newer than any folded so far) on top of
    /// `state`, or on an empty state.
    pub fn fold_one(state: Option<Progress>, event: &EventRecord, rules: &Rules) -> Progress {
        Self::fold_one_with(state, event, rules, None)
    }

    /// [`Progress::fold_one`], with the catalog's main video when it names
    /// one: a refold streams a history event by event and must judge it on
    /// the same main video as [`Progress::fold_with`] would.
    pub fn fold_one_with(
        state: Option<Progress>,
        event: &EventRecord,
        rules: &Rules,
        main: Option<MainVideo<'_>>,
    ) -> Progress {
        let mut p = state.unwrap_or_else(|| Progress::empty(event));
        p.apply(event, rules, main);
        p
    }

    fn apply(&mut self, e: &EventRecord, rules: &Rules, main: Option<MainVideo<'_>>) {
        if e.event_type.is_page_activity() {
            // Time on page, not learning: not folded at all, so a history
            // read with or without them folds the same.
            return;
        }
        self.through = e.id;
        self.folded += 1;
        // Sticky: one staff event marks the whole document as staff's, so
        // analytics leave it out whatever else was folded.
        self.staff |= e.staff;
        self.updated_at = e.ts;
        if let Some(id) = e.client_event_id {
            // The same client event stored twice (a retry) counts once.
            if self.client_events.contains(&id) {
                return;
            }
            self.client_events.push(id);
            if self.client_events.len() > MAX_CLIENT_EVENTS {
                self.client_events.remove(0);
            }
        }
        match e.event_type {
            EventType::PageView => self.visit(e),
            EventType::TutorialComplete | EventType::TutorialIncomplete => {
                let completed = e.event_type == EventType::TutorialComplete;
                self.manual = Some(Manual {
                    completed,
                    at: e.ts,
                    visit: e.visit_key(),
                });
                if completed {
                    self.set_completed(Some((e.ts, CompletedRule::Manual)));
                } else {
                    // Whatever the visit, device or time: only watching after
                    // the mark counts from now on.
                    self.set_completed(None);
                    self.videos
                        .iter_mut()
                        .for_each(VideoProgress::mark_incomplete);
                    // Nor does playing that began before it: a stretch an
                    // event implies (no `played_from`) cannot reach back
                    // across the mark.
                    self.streams.iter_mut().for_each(|s| s.playing = false);
                }
            }
            _ => self.watch(e, rules, main),
        }
        self.settle(e.ts, rules, main);
    }

    fn visit(&mut self, e: &EventRecord) {
        self.first_visit = Some(self.first_visit.map_or(e.ts, |t| t.min(e.ts)));
        self.last_visit = Some(self.last_visit.map_or(e.ts, |t| t.max(e.ts)));
        // Its budget: what the page's events may report (by server time).
        self.page_views.push(PageView {
            id: e.id,
            at: e.ts,
            wall_s: 0.0,
        });
        if self.page_views.len() > MAX_PAGE_VIEWS {
            self.page_views.remove(0);
        }
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

    fn watch(&mut self, e: &EventRecord, rules: &Rules, main: Option<MainVideo<'_>>) {
        // The endpoint requires a `video_id` on video events; a stored event
        // without one has no video to count for.
        let Some(video_id) = e.video_id.clone() else {
            return;
        };
        let i = match self.videos.iter().position(|v| v.video_id == video_id) {
            Some(i) => i,
            None if self.videos.len() < MAX_VIDEOS => {
                self.videos.push(VideoProgress::new(&video_id));
                self.videos.len() - 1
            }
            None => {
                self.ignored += 1;
                return;
            }
        };
        // The catalog's duration wins; else the latest reported one.
        let catalog = main
            .filter(|m| m.video_id == video_id)
            .and_then(|m| m.duration);
        if let Some(d) = catalog.or(e.duration).filter(|d| *d > 0.0)
            && self.videos[i].duration != Some(d)
        {
            self.videos[i].set_duration(d);
        }
        let seek = e.event_type == EventType::VideoSeek;
        if seek && e.played_from.is_none() && e.from.is_some() && e.from == e.to {
            return; // A page's own seek (resume): moves nothing.
        }
        let duration = self.videos[i].duration;
        let at = e.ts;
        let s = stretch::stream(
            &mut self.streams,
            stretch::playing_context(e),
            &video_id,
            at,
        );
        let Some((start, end)) = stretch::stretch(s, e, duration) else {
            return;
        };
        if end - start < rules.min_viewing {
            return; // Not a viewing: not even against the budget.
        }
        let rate = e
            .rate
            .filter(|r| r.is_finite())
            .unwrap_or(1.0)
            .clamp(0.25, 4.0);
        let media = end - start;
        let slack = rules.plausibility_slack;
        let page = e
            .page_view
            .and_then(|id| self.page_views.iter_mut().find(|p| p.id == id));
        let plausible = match page {
            Some(page) => {
                let ok = stretch::fits(page.wall_s, media, page.at, at, rate, slack);
                if ok {
                    page.wall_s += media / rate;
                }
                ok
            }
            None => {
                // No page view the fold saw (another client, a forged or
                // evicted id): the budget of this visit and video.
                let context = stretch::visit_context(e);
                let b = stretch::stream(&mut self.streams, context, &video_id, at);
                let ok = stretch::fits(b.wall_s, media, b.since, at, rate, slack);
                if ok {
                    b.wall_s += media / rate;
                }
                ok
            }
        };
        let v = &mut self.videos[i];
        if plausible {
            v.watch(start, end, rate, rules);
        } else {
            v.suspect(start, end, rules);
        }
    }

    /// The main video's index: the catalog's when it names one (none if it
    /// was not watched), else the longest duration (first seen among equals;
    /// the first video while no duration is known).
    fn main_index(&self, main: Option<MainVideo<'_>>) -> Option<usize> {
        if let Some(m) = main {
            return self.videos.iter().position(|v| v.video_id == m.video_id);
        }
        let mut best: Option<usize> = None;
        for (i, v) in self.videos.iter().enumerate() {
            let longer = match best {
                None => true,
                Some(b) => v.duration.unwrap_or(0.0) > self.videos[b].duration.unwrap_or(0.0),
            };
            if longer {
                best = Some(i);
            }
        }
        best
    }

    /// Shows the main video at the top level, and completes by the rules on
    /// it. An automatic completion sticks for the same main video; a new
    /// main video (a longer one appeared) takes it back and decides again.
    fn settle(&mut self, at: DateTime<Utc>, rules: &Rules, main: Option<MainVideo<'_>>) {
        let Some(i) = self.main_index(main) else {
            return;
        };
        if self.video_id.as_deref() != Some(self.videos[i].video_id.as_str()) {
            if self.completed_by == Some(CompletedBy::Auto) {
                self.set_completed(None);
            }
            self.video_id = Some(self.videos[i].video_id.clone());
        }
        let v = &self.videos[i];
        self.watched = watched_intervals(&v.seen);
        self.duration = v.duration;
        self.coverage = v.coverage.unwrap_or(0.0);
        if self.completed {
            return;
        }
        let Some(counted) = v.counted_coverage() else {
            return; // The duration is unknown: wait for it.
        };
        let rule = if counted >= rules.completion_threshold {
            Some(CompletedRule::Coverage)
        } else if v.end_reached && counted >= rules.end_min_coverage {
            Some(CompletedRule::End)
        } else {
            None
        };
        if let Some(rule) = rule {
            self.set_completed(Some((at, rule)));
        }
    }

    fn set_completed(&mut self, how: Option<(DateTime<Utc>, CompletedRule)>) {
        self.completed = how.is_some();
        self.completed_at = how.map(|h| h.0);
        self.completed_rule = how.map(|h| h.1);
        self.completed_by = how.map(|h| match h.1 {
            CompletedRule::Manual => CompletedBy::Manual,
            _ => CompletedBy::Auto,
        });
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
