//! `sessions`: a claimed learner's sessions computed again from the
//! earliest activity its marks brought. The window starts at the stored
//! session that activity may join (the earliest ending within a timeout
//! before it), or at the activity itself; every session from there on is
//! folded again from the learner's page views and events, written, and the
//! stored ones that no longer exist (merged, moved) are deleted.

use std::collections::BTreeSet;

use bson::{DateTime as BsonDate, doc};
use chrono::{DateTime, Utc};
use visitlog_analytics::{PageView, Session, SessionFold};
use visitlog_progress::event_from_document;
use visitlog_schema::EventRecord;

use super::batch::tutorial_day;
use super::engine::{Analytics, Computed};
use super::marks::{Claimed, DerivedKind, Mark};
use super::store::{PAGE_VIEWS, SESSIONS, delete_ids, find_all, replace_all};
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
        let joined = sessions
            .find_one(doc! { "learner": learner, "end": { "$gte": date(from - timeout - second) } })
            .sort(doc! { "start": 1 })
            .await?;
        let start = joined
            .as_ref()
            .and_then(|d| d.get_datetime("start").ok())
            .map_or(from, |s| s.to_chrono().min(from));
        let old: Vec<Session> = find_all(
            &sessions,
            doc! { "learner": learner, "start": { "$gte": date(start - second) } },
            doc! { "start": 1 },
        )
        .await?
        .iter()
        .filter_map(|d| Session::from_document(d).ok())
        .filter(|s| s.start >= start)
        .collect();
        let pages: Vec<PageView> = find_all(
            &db.collection(PAGE_VIEWS),
            doc! { "learner": learner, "start": { "$gte": date(start - second) } },
            doc! { "start": 1, "_id": 1 },
        )
        .await?
        .iter()
        .filter_map(|d| PageView::from_document(d).ok())
        .filter(|p| p.start >= start)
        .collect();
        let events: Vec<EventRecord> = find_all(
            self.sink.events(),
            doc! { "learner": learner, "ts": { "$gte": date(start - second) } },
            doc! { "_id": 1 },
        )
        .await?
        .into_iter()
        .filter_map(|d| event_from_document(d).ok())
        .filter(|e| e.ts >= start)
        .collect();
        // A ping counts only for a page view of this learner: one naming
        // a page that is not (a forged id, staff's or a bot's page, a
        // page that failed) is no activity.
        let mut known: BTreeSet<String> = pages.iter().map(|p| p.id.clone()).collect();
        let asked: Vec<String> = events
            .iter()
            .filter(|e| e.event_type.is_page_activity())
            .filter_map(|e| e.page_view.map(|p| p.to_string()))
            .filter(|p| !known.contains(p))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !asked.is_empty() {
            for d in find_all(
                &db.collection(PAGE_VIEWS),
                doc! { "_id": { "$in": asked }, "learner": learner },
                doc! { "_id": 1 },
            )
            .await?
            {
                if let Ok(id) = d.get_str("_id") {
                    known.insert(id.to_owned());
                }
            }
        }
        let events = events.into_iter().filter(|e| {
            !e.event_type.is_page_activity()
                || e.page_view.is_some_and(|p| known.contains(&p.to_string()))
        });
        let mut fold = SessionFold::new(learner, self.rules);
        let mut pages = pages.iter().peekable();
        for e in events {
            while let Some(p) = pages.next_if(|p| p.start <= e.ts) {
                fold.add_page(p);
            }
            fold.add_event(&e);
        }
        pages.for_each(|p| fold.add_page(p));
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

fn date(t: DateTime<Utc>) -> BsonDate {
    BsonDate::from_chrono(t)
}
