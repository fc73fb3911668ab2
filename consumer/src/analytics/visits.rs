//! `page_views`: a claimed visit's page views computed again from its
//! request records and the pings of its pages. A key `page:<id>` (a page
//! without a visitor cookie, or the page a ping names) is resolved to the
//! visit of that request record first: a page without a visitor cookie is
//! a visit of its own, computed here; a page of a visit `<visitor>:<n>`
//! only marks that visit, due at once. Claims exclude per key, not per
//! visit: were the page's key to compute the visit too, its claim and the
//! visit's could be held by two consumers at once, and the one that read
//! before a ping could write after the other, both settling cleanly with
//! the ping left out for good. So one key owns each visit's page views,
//! and the protocol's guarantee (every write is followed by a computation
//! that read everything stored before it) holds per document.
//!
//! A ping's batch marks its page's key once the ping is stored, and that
//! key's claim reads the page's record later still: it finds the record
//! and marks the visit, or the record is stored after that read and its
//! own batch marks the visit. Either way the visit is computed again from
//! a read after the ping, whatever the order, replays and consumers.

use std::collections::BTreeMap;

use bson::doc;
use chrono::Utc;
use visitlog_analytics::{PageView, day_of, is_page_view, visit_key, visit_page_views};
use visitlog_progress::event_from_document;
use visitlog_schema::{EventRecord, RequestRecord};

use super::batch::tutorial_day;
use super::engine::{Analytics, Computed};
use super::marks::{Claimed, DerivedKind, Mark};
use super::store::{PAGE_VIEWS, find_all, replace_checked, request_from_document};
use crate::error::Result;

/// Visits read per query.
const VISITS_PER_QUERY: usize = 100;

/// One visit: a browser's visit, or a lone page view.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Visit {
    Of { visitor: String, number: u32 },
    Page(String),
}

impl Analytics {
    pub(super) async fn visits(&self, claimed: &[Claimed]) -> Result<Computed> {
        // Each visit, with the fence of its key's claim.
        let mut visits: BTreeMap<Visit, i64> = BTreeMap::new();
        let mut pages: BTreeMap<String, i64> = BTreeMap::new();
        for c in claimed {
            match parse(&c.mark.key) {
                Some(Visit::Page(id)) => {
                    pages.insert(id, c.fence);
                }
                Some(v) => {
                    visits.insert(v, c.fence);
                }
                None => tracing::warn!(key = %c.mark.key, "not a visit key; skipped"),
            }
        }
        // Pages named by id: a lone page is computed as its own visit, a
        // page of a visit marks it (see the module's comment). A page not
        // stored yet marks its visit when it is; a request that is no page
        // view has no page view for its pings to change.
        let requests = self.sink.request_logs();
        let mut computed = Computed::default();
        if !pages.is_empty() {
            let ids: Vec<&String> = pages.keys().collect();
            for d in find_all(requests, doc! { "_id": { "$in": ids } }, doc! { "_id": 1 }).await? {
                let Some(r) = request_from_document(d).filter(is_page_view) else {
                    continue;
                };
                match visit_of(&r) {
                    Visit::Page(id) => {
                        let fence = pages.get(&id).copied().unwrap_or_default();
                        visits.insert(Visit::Page(id), fence);
                    }
                    Visit::Of { .. } => computed
                        .handed
                        .push(Mark::new(DerivedKind::Visit, visit_key(&r))),
                }
            }
        }
        let all: Vec<(Visit, i64)> = visits.into_iter().collect();
        for chunk in all.chunks(VISITS_PER_QUERY) {
            // `$in` on indexed fields, pairs checked here: nx-27017 takes
            // seconds over an `$or` of a hundred clauses.
            let (mut visitors, mut numbers, mut lone) = (Vec::new(), Vec::new(), Vec::new());
            for (v, _) in chunk {
                match v {
                    Visit::Of { visitor, number } => {
                        visitors.push(visitor.clone());
                        numbers.push(i64::from(*number));
                    }
                    Visit::Page(id) => lone.push(id.clone()),
                }
            }
            let wanted: std::collections::BTreeSet<&Visit> = chunk.iter().map(|(v, _)| v).collect();
            let mut docs = Vec::new();
            if !visitors.is_empty() {
                // Only what may be a page view is read (a visit kept alive by
                // an API poller has many other requests); the rule itself is
                // `is_page_view`, below.
                let filter = doc! {
                    "visitor_id": { "$in": &visitors }, "visit_number": { "$in": &numbers },
                    "method": "GET", "status": { "$gte": 200, "$lt": 300 },
                };
                docs.extend(find_all(requests, filter, doc! { "ts": 1, "_id": 1 }).await?);
            }
            if !lone.is_empty() {
                docs.extend(
                    find_all(
                        requests,
                        doc! { "_id": { "$in": &lone } },
                        doc! { "_id": 1 },
                    )
                    .await?,
                );
            }
            let records: Vec<RequestRecord> = docs
                .into_iter()
                .filter_map(request_from_document)
                .filter(is_page_view)
                .filter(|r| wanted.contains(&visit_of(r)))
                .collect();
            let ids: Vec<String> = records.iter().map(|r| r.id.to_string()).collect();
            let pings: Vec<EventRecord> = if ids.is_empty() {
                Vec::new()
            } else {
                find_all(
                    self.sink.events(),
                    doc! { "page_view": { "$in": &ids }, "type": { "$in": ["page.ping", "page.hide"] } },
                    doc! { "_id": 1 },
                )
                .await?
                .into_iter()
                .filter_map(|d| event_from_document(d).ok())
                .collect()
            };
            let fences: BTreeMap<&Visit, i64> = chunk.iter().map(|(v, f)| (v, *f)).collect();
            let mut by_visit: BTreeMap<Visit, Vec<RequestRecord>> = BTreeMap::new();
            for r in records {
                by_visit.entry(visit_of(&r)).or_default().push(r);
            }
            let mut docs = Vec::new();
            let now = Utc::now();
            for (visit, pages) in by_visit {
                let fence = fences.get(&visit).copied().unwrap_or_default();
                for mut view in visit_page_views(&pages, &pings, &self.rules) {
                    view.fence = fence;
                    view.derived_at = now;
                    computed.feeds.extend(feeds(&view));
                    // The validator's rules, on the typed document (a guard
                    // against our own bugs).
                    if let Err(f) = view.check() {
                        tracing::error!(collection = PAGE_VIEWS, id = %view.id, field = %f.path, error = %f.message, "derived document fails its validator; not written");
                        continue;
                    }
                    match view.to_document() {
                        Ok(d) => docs.push(d),
                        Err(e) => {
                            tracing::error!(page = %view.id, error = %e, "page view not written")
                        }
                    }
                }
            }
            computed.written +=
                replace_checked(&self.sink, visitlog_schema::Collection::PageViews, docs).await?;
        }
        Ok(computed)
    }
}

/// What a page view feeds: its learner's sessions, its day, its tutorial's day.
fn feeds(view: &PageView) -> Vec<Mark> {
    let mut marks = vec![Mark::new(DerivedKind::Day, day_of(view.start))];
    if let Some(learner) = &view.learner {
        marks.push(Mark::learner(learner, view.start.timestamp_millis()));
    }
    if let Some(t) = &view.tutorial {
        marks.push(tutorial_day(&t.foss, &t.tutorial, &t.language, &view.day));
    }
    marks
}

/// The visit of a request record (itself without a visitor cookie).
fn visit_of(r: &RequestRecord) -> Visit {
    match (r.visitor_id, r.visit_number) {
        (Some(v), Some(n)) => Visit::Of {
            visitor: v.to_string(),
            number: n,
        },
        _ => Visit::Page(r.id.to_string()),
    }
}

/// A visit key: `<visitor>:<n>` or `page:<id>`.
fn parse(key: &str) -> Option<Visit> {
    if let Some(id) = key.strip_prefix("page:") {
        return Some(Visit::Page(id.to_owned()));
    }
    let (visitor, n) = key.rsplit_once(':')?;
    Some(Visit::Of {
        visitor: visitor.to_owned(),
        number: n.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visit_keys_parse() {
        assert_eq!(parse("page:abc"), Some(Visit::Page("abc".into())));
        assert_eq!(
            parse("0190f7a2-1c3d-7e4f-8a9b-0c1d2e3f4a5b:3"),
            Some(Visit::Of {
                visitor: "0190f7a2-1c3d-7e4f-8a9b-0c1d2e3f4a5b".into(),
                number: 3
            })
        );
        assert_eq!(parse("nonsense"), None);
    }
}
