//! `sessions`: a claimed learner's sessions computed again from the
//! earliest activity its marks brought. The window starts at the stored
//! session that activity may join (the earliest ending within a timeout
//! before it), or at the activity itself; every session from there on is
//! folded again from the learner's page views and events, written, and the
//! stored ones that no longer exist (merged, moved) are deleted.

use std::collections::{BTreeSet, VecDeque};

use bson::{DateTime as BsonDate, Document, doc};
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use mongodb::{Collection, Cursor};
use visitlog_analytics::{PageView, Session, SessionFold};
use visitlog_progress::event_from_document;
use visitlog_schema::EventRecord;

use super::batch::tutorial_day;
use super::engine::{Analytics, Computed};
use super::marks::{Claimed, DerivedKind, Mark};
use super::store::{PAGE_VIEWS, READ_BATCH, SESSIONS, delete_ids, find_all, replace_all};
use crate::error::Result;

impl Analytics {
    pub(super) async fn learners(&self, claimed: &[Claimed]) -> Result<Computed> {
        let mut computed = Computed::default();
        for c in claimed {
            let from = c
                .mark
                .from_ms
                .and_then(DateTime::<Utc>::from_timestamp_millis)
                .unwrap_or(DateTime::UNIX_EPOCH);
            let one = self.learner(&c.mark.key, from, c.fence).await?;
            computed.written += one.written;
            computed.feeds.extend(one.feeds);
        }
        Ok(computed)
    }

    async fn learner(&self, learner: &str, from: DateTime<Utc>, fence: i64) -> Result<Computed> {
        let db = self.sink.database();
        let sessions = db.collection::<bson::Document>(SESSIONS);
        let timeout =
            chrono::Duration::from_std(self.rules.session_timeout).unwrap_or(chrono::Duration::MAX);
        // nx-27017 compares dates to the second: a second's margin.
        let second = chrono::Duration::seconds(1);
        // The stored sessions from the one the activity may join (the
        // earliest ending within a timeout before it) on: every later one
        // ends later still, so one query finds them all.
        let joined_by = from
            .checked_sub_signed(timeout + second)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let recent: Vec<Session> = find_all(
            &sessions,
            doc! { "learner": learner, "end": { "$gte": date(joined_by) } },
            doc! { "start": 1 },
        )
        .await?
        .iter()
        .filter_map(|d| Session::from_document(d).ok())
        .collect();
        let start = recent.first().map_or(from, |s| s.start.min(from));
        let old: Vec<Session> = recent.into_iter().filter(|s| s.start >= start).collect();
        // Page views and events are streamed, merged by time: a learner's
        // window may hold any number of them.
        let mut pages = PageStream::open(&db.collection(PAGE_VIEWS), learner, start).await?;
        let mut known = KnownPages::default();
        // Most windows' page views fit one reply: read ahead, and pings
        // naming them need no lookup.
        pages.fill(READ_BATCH as usize).await?;
        for p in &pages.buffered {
            known.saw(&p.id);
        }
        let mut events = self
            .sink
            .events()
            .find(doc! { "learner": learner, "ts": { "$gte": date(start - second) } })
            .sort(doc! { "_id": 1 })
            .batch_size(READ_BATCH)
            .await?;
        let mut fold = SessionFold::new(learner, self.rules);
        let mut chunk = Vec::with_capacity(READ_BATCH as usize);
        loop {
            let next = events.try_next().await?;
            let end = next.is_none();
            if let Some(e) = next
                .and_then(|d| event_from_document(d).ok())
                .filter(|e| e.ts >= start)
            {
                chunk.push(e);
            }
            if chunk.len() >= READ_BATCH as usize || (end && !chunk.is_empty()) {
                known
                    .learn(&db.collection(PAGE_VIEWS), learner, &chunk)
                    .await?;
                for e in chunk.drain(..) {
                    while let Some(p) = pages.next_by(e.ts).await? {
                        known.saw(&p.id);
                        fold.add_page(&p);
                    }
                    // A ping counts only for a page view of this learner:
                    // one naming a page that is not (a forged id, staff's
                    // or a bot's page, a page that failed) is no activity.
                    if !e.event_type.is_page_activity()
                        || e.page_view.is_some_and(|p| known.has(&p.to_string()))
                    {
                        fold.add_event(&e);
                    }
                }
            }
            if end {
                break;
            }
        }
        while let Some(p) = pages.next_by(DateTime::<Utc>::MAX_UTC).await? {
            fold.add_page(&p);
        }
        let now = Utc::now();
        let new: Vec<Session> = fold
            .finish()
            .into_iter()
            .map(|mut s| {
                s.fence = fence;
                s.derived_at = now;
                s
            })
            .collect();
        let mut computed = Computed::default();
        // The days and tutorial days of the sessions before and after.
        for s in old.iter().chain(&new) {
            computed.feeds.extend(feeds(s));
        }
        let keep: BTreeSet<&str> = new.iter().map(|s| s.id.as_str()).collect();
        let gone: Vec<String> = old
            .iter()
            .filter(|s| !keep.contains(s.id.as_str()))
            .map(|s| s.id.clone())
            .collect();
        let docs = new.iter().filter_map(|s| s.to_document().ok()).collect();
        computed.written +=
            replace_all(&self.sink, visitlog_schema::Collection::Sessions, docs).await?;
        computed.written += delete_ids(&self.sink, SESSIONS, gone).await?;
        Ok(computed)
    }
}

/// What a session feeds: its day and its tutorials' days.
fn feeds(s: &Session) -> Vec<Mark> {
    let mut marks = vec![Mark::new(DerivedKind::Day, s.day.clone())];
    for t in &s.tutorials {
        marks.push(tutorial_day(&t.foss, &t.tutorial, &t.language, &s.day));
    }
    marks
}

/// A learner's page views from a time on, sorted by `start` then `_id`,
/// read one reply at a time.
struct PageStream {
    cursor: Cursor<Document>,
    start: DateTime<Utc>,
    /// Read, not yet yielded.
    buffered: VecDeque<PageView>,
    done: bool,
}

impl PageStream {
    async fn open(
        coll: &Collection<Document>,
        learner: &str,
        start: DateTime<Utc>,
    ) -> Result<Self> {
        let second = chrono::Duration::seconds(1);
        let cursor = coll
            .find(doc! { "learner": learner, "start": { "$gte": date(start - second) } })
            .sort(doc! { "start": 1, "_id": 1 })
            .batch_size(READ_BATCH)
            .await?;
        Ok(Self {
            cursor,
            start,
            buffered: VecDeque::new(),
            done: false,
        })
    }

    /// Reads ahead until `n` page views are buffered or none is left.
    async fn fill(&mut self, n: usize) -> Result<()> {
        while !self.done && self.buffered.len() < n {
            match self.cursor.try_next().await? {
                Some(d) => {
                    if let Ok(p) = PageView::from_document(&d)
                        && p.start >= self.start
                    {
                        self.buffered.push_back(p);
                    }
                }
                None => self.done = true,
            }
        }
        Ok(())
    }

    /// The next page view starting at or before `t`, if any.
    async fn next_by(&mut self, t: DateTime<Utc>) -> Result<Option<PageView>> {
        self.fill(1).await?;
        if self.buffered.front().is_some_and(|p| p.start <= t) {
            return Ok(self.buffered.pop_front());
        }
        Ok(None)
    }
}

/// The page views of this learner that pings may name: those the stream
/// has yielded (up to a bound) and those one lookup per chunk of events
/// found (a page view may start before the window, or later in the stream
/// than its pings).
#[derive(Default)]
struct KnownPages {
    seen: BTreeSet<String>,
    found: BTreeSet<String>,
}

impl KnownPages {
    const MAX: usize = 4 * READ_BATCH as usize;

    fn saw(&mut self, id: &str) {
        if self.seen.len() < Self::MAX {
            self.seen.insert(id.to_owned());
        }
    }

    fn has(&self, id: &str) -> bool {
        self.seen.contains(id) || self.found.contains(id)
    }

    /// Before a chunk of events is folded: looks up, in one query, the
    /// page views its pings name that the stream has not yielded.
    async fn learn(
        &mut self,
        coll: &Collection<Document>,
        learner: &str,
        events: &[EventRecord],
    ) -> Result<()> {
        if self.seen.len() >= Self::MAX {
            self.seen.clear();
        }
        self.found.clear();
        let asked: Vec<String> = events
            .iter()
            .filter(|e| e.event_type.is_page_activity())
            .filter_map(|e| e.page_view.map(|p| p.to_string()))
            .filter(|p| !self.seen.contains(p))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if asked.is_empty() {
            return Ok(());
        }
        for d in find_all(
            coll,
            doc! { "_id": { "$in": asked }, "learner": learner },
            doc! { "_id": 1 },
        )
        .await?
        {
            if let Ok(id) = d.get_str("_id") {
                self.found.insert(id.to_owned());
            }
        }
        Ok(())
    }
}

fn date(t: DateTime<Utc>) -> BsonDate {
    BsonDate::from_chrono(t)
}
