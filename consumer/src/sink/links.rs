//! `learner_links`: which user logged in on which browser. A request record
//! that carries both a user and a visitor id links them, so that the user's
//! progress also counts what that browser watched before the login (the
//! visitor's events whose `ts` is before the link's `at`).
//!
//! One document per (visitor, user), written with a conditional replace
//! keyed on the earliest request (`first_request`, a UUID v7 string, so the
//! comparison is a string one: nx-27017 compares dates only to the second
//! and its `$min` on dates stores a string). Replays and any arrival order
//! give the same document: the one of the earliest request.
//!
//! Most requests carry a link already stored: each process remembers the
//! links it last read back ([`KnownLinks`]) for a minute, so a batch
//! writes and reads only the links it does not know, not one per browser
//! (a batch of a thousand learners' requests cost 35 µs of CPU per record
//! in conditional upserts that all ended in duplicate keys).
//!
//! Which progress documents a link or a linked visitor's event makes fold
//! again is decided here ([`Sink::link_targets`]); the fold itself, over
//! the merged history, is in `history`.

use std::collections::{BTreeMap, HashMap, HashSet};

use bson::{Document, doc};
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use uuid::Uuid;
use visitlog_schema::{EventRecord, Learner, RequestRecord, learner_link_id, user_name};

use super::history::Target;
use super::{LEARNER_LINKS, Sink, valid};
use crate::error::Result;

/// Visitor ids or users per `$in` query.
const CHUNK: usize = 200;

/// How long a link read back is trusted without reading it again: a link
/// only ever moves to an earlier request, but an erasure deletes it, and
/// the next request then makes it anew within this time.
const KNOWN_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Links this process read back lately, by `_id`, with when.
#[derive(Debug, Clone)]
pub(super) struct KnownLinks(
    std::sync::Arc<quick_cache::sync::Cache<String, (LearnerLink, std::time::Instant)>>,
);

impl KnownLinks {
    /// Room for this many links (browsers with a logged-in user).
    pub(super) fn new(capacity: usize) -> Self {
        Self(std::sync::Arc::new(quick_cache::sync::Cache::new(capacity)))
    }

    /// The stored link of `id`, when read back less than [`KNOWN_FOR`] ago.
    fn get(&self, id: &str) -> Option<LearnerLink> {
        self.0
            .get(id)
            .filter(|(_, at)| at.elapsed() < KNOWN_FOR)
            .map(|(link, _)| link)
    }

    fn remember(&self, link: &LearnerLink) {
        self.0
            .insert(link.id(), (link.clone(), std::time::Instant::now()));
    }
}

/// A browser (visitor id) on which a user logged in, from the earliest
/// request seen that carried both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnerLink {
    /// The browser's visitor id.
    pub visitor_id: Uuid,
    /// The user's learner key, `user:<name>` (what their events' `learner` is).
    pub user: String,
    /// Server time of the earliest request seen with both ids: the
    /// visitor's events before it count for the user too.
    pub at: DateTime<Utc>,
    /// That request record's `_id`; the smallest one's link is kept.
    pub first_request: Uuid,
}

impl LearnerLink {
    /// The link a request record makes, when it carries both a user (one
    /// the records keep: see `visitlog_schema::user_name`) and a visitor id
    /// the browser sent. A visitor id minted by this very request (the
    /// first visit's first request: `new_visit` and visit 1) has no events
    /// before it, so it links nothing; and a browser that drops the cookie
    /// (a privacy extension, a script) would otherwise make a new link with
    /// every request, each one more history for the user's every refold.
    pub fn of(record: &RequestRecord) -> Option<Self> {
        if record.new_visit == Some(true) && record.visit_number == Some(1) {
            return None;
        }
        let user = user_name(record.user.as_deref()?)?;
        Some(Self {
            visitor_id: record.visitor_id?,
            user: Learner::User(user.to_owned()).key(),
            at: record.ts,
            first_request: record.id,
        })
    }

    /// The document's `_id`.
    pub fn id(&self) -> String {
        learner_link_id(&self.visitor_id, &self.user)
    }

    /// The visitor's learner key, `visitor:<id>`.
    pub fn visitor_key(&self) -> String {
        Learner::Visitor(self.visitor_id).key()
    }

    /// Whether `e` (an event of any learner) counts for the linked user
    /// through this link: the visitor's, from before the link.
    pub fn counts(&self, e: &EventRecord) -> bool {
        e.ts < self.at && e.learner == self.visitor_key()
    }

    /// The stored document.
    pub fn to_document(&self) -> Document {
        doc! {
            "_id": self.id(),
            "visitor_id": self.visitor_id.to_string(),
            "user": &self.user,
            "at": bson::DateTime::from_chrono(self.at),
            "first_request": self.first_request.to_string(),
        }
    }

    /// Reads a stored document back; `None` (logged) when it cannot be.
    pub fn from_document(d: &Document) -> Option<Self> {
        let read = || -> Option<Self> {
            Some(Self {
                visitor_id: d.get_str("visitor_id").ok()?.parse().ok()?,
                user: d.get_str("user").ok()?.to_owned(),
                at: d.get_datetime("at").ok()?.to_chrono(),
                first_request: d.get_str("first_request").ok()?.parse().ok()?,
            })
        };
        let link = read();
        if link.is_none() {
            tracing::warn!(id = ?d.get("_id"), "unreadable learner link skipped");
        }
        link
    }
}

/// The earliest link of each (visitor, user) among `links`.
fn earliest(links: Vec<LearnerLink>) -> BTreeMap<String, LearnerLink> {
    let mut out: BTreeMap<String, LearnerLink> = BTreeMap::new();
    for link in links {
        // The id is a keyed hash: made once per link.
        match out.entry(link.id()) {
            std::collections::btree_map::Entry::Occupied(mut seen) => {
                if link.first_request < seen.get().first_request {
                    seen.insert(link);
                }
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(link);
            }
        }
    }
    out
}

impl Sink {
    /// Stores the links of a batch's request records; returns those whose
    /// stored document is now this batch's (a new link, an earlier one, or
    /// a replay of the batch that wrote it): their visitor's events must be
    /// counted for the user again (see [`Sink::link_targets`]). A replay
    /// counts as one, so a crash between this write and the refolds it
    /// calls for loses nothing.
    pub async fn record_links(&self, links: Vec<LearnerLink>) -> Result<Vec<LearnerLink>> {
        let mut links = earliest(links);
        let mut mine = Vec::new();
        // A link stored from an earlier request than ours stays as it is:
        // nothing to write, and not ours. The very one we would write is
        // a replay's: ours, as the database would say.
        links.retain(|id, link| match self.known_links.get(id) {
            Some(stored) if stored == *link => {
                mine.push(stored);
                false
            }
            Some(stored) => stored.first_request > link.first_request,
            None => true,
        });
        if links.is_empty() {
            return Ok(mine);
        }
        let mut statements = Vec::new();
        for (id, link) in &links {
            let doc = link.to_document();
            if !valid(&self.validators.links, &doc, id) {
                continue;
            }
            // Replaced only by an earlier request; inserted when missing
            // (and then 11000 if it is there with an earlier one, or if
            // another consumer inserted it meanwhile: compared again below).
            statements.push(doc! {
                "q": { "_id": id, "first_request": { "$gt": link.first_request.to_string() } },
                "u": doc,
                "upsert": true,
            });
        }
        let outcome = self
            .update_documents(LEARNER_LINKS, statements.clone())
            .await?;
        let again: Vec<Document> = outcome
            .conflicts
            .iter()
            .filter_map(|&i| statements.get(i).cloned())
            .map(|mut s| {
                s.insert("upsert", false);
                s
            })
            .collect();
        self.update_documents(LEARNER_LINKS, again).await?;
        let ids: Vec<&String> = links.keys().collect();
        for chunk in ids.chunks(CHUNK) {
            let mut cursor = self.links.find(doc! { "_id": { "$in": chunk } }).await?;
            while let Some(d) = cursor.try_next().await? {
                if let Some(stored) = LearnerLink::from_document(&d) {
                    self.known_links.remember(&stored);
                    if links.get(&stored.id()) == Some(&stored) {
                        mine.push(stored);
                    }
                }
            }
        }
        Ok(mine)
    }

    /// The links whose `field` (`visitor_id` or `user`) is one of `values`,
    /// by that value, each list sorted by `_id`.
    pub(super) async fn links_by(
        &self,
        field: &str,
        values: &[String],
    ) -> Result<HashMap<String, Vec<LearnerLink>>> {
        let mut out: HashMap<String, Vec<LearnerLink>> = HashMap::new();
        for chunk in values.chunks(CHUNK) {
            let mut cursor = self
                .links
                .find(doc! { field: { "$in": chunk } })
                .sort(doc! { "_id": 1 })
                .await?;
            while let Some(d) = cursor.try_next().await? {
                if let Some(link) = LearnerLink::from_document(&d) {
                    let key = match field {
                        "user" => link.user.clone(),
                        _ => link.visitor_id.to_string(),
                    };
                    out.entry(key).or_default().push(link);
                }
            }
        }
        Ok(out)
    }

    /// The users' progress documents to fold again because of links:
    /// - for each stored event of a linked visitor from before a link, the
    ///   linked user's document of that tutorial (the event is in its
    ///   history now);
    /// - for each link in `set` (written by this batch), the user's
    ///   document of every tutorial the visitor has events in. Every one,
    ///   not only those before `at`: a link made earlier may have had a
    ///   later `at` that a refold already counted (and the visitor's events
    ///   are few: a browser before login).
    ///
    /// Called after the batch's events and links are stored, and reading
    /// both back: of an event and a link stored at the same time by two
    /// consumers, one always sees the other.
    pub(super) async fn link_targets(
        &self,
        events: &[EventRecord],
        set: &[LearnerLink],
    ) -> Result<Vec<Target>> {
        let mut targets = Vec::new();
        let visitors: Vec<String> = events
            .iter()
            .filter_map(visitor_of)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if !visitors.is_empty() {
            let links = self.links_by("visitor_id", &visitors).await?;
            for e in events {
                let Some(visitor) = visitor_of(e) else {
                    continue;
                };
                for link in links.get(&visitor).into_iter().flatten() {
                    if link.counts(e) {
                        targets.push(Target::new(&link.user, &e.foss, &e.tutorial, &e.language));
                    }
                }
            }
        }
        for chunk in set.chunks(CHUNK) {
            let keys: Vec<String> = chunk.iter().map(LearnerLink::visitor_key).collect();
            let mut cursor = self
                .events
                .find(doc! { "learner": { "$in": &keys } })
                .projection(
                    doc! { "_id": 0, "learner": 1, "foss": 1, "tutorial": 1, "language": 1 },
                )
                .await?;
            let mut seen: HashSet<(String, String, String, String)> = HashSet::new();
            while let Some(d) = cursor.try_next().await? {
                let field = |k: &str| d.get_str(k).unwrap_or_default().to_owned();
                seen.insert((
                    field("learner"),
                    field("foss"),
                    field("tutorial"),
                    field("language"),
                ));
            }
            for (learner, foss, tutorial, language) in seen {
                for link in chunk.iter().filter(|l| l.visitor_key() == learner) {
                    targets.push(Target::new(&link.user, &foss, &tutorial, &language));
                }
            }
        }
        Ok(targets)
    }
}

/// The visitor id of an event whose learner is a visitor, as text.
fn visitor_of(e: &EventRecord) -> Option<String> {
    match e.learner.parse::<Learner>() {
        Ok(Learner::Visitor(v)) => Some(v.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(first: u64, at_ms: i64) -> LearnerLink {
        LearnerLink {
            visitor_id: Uuid::from_u128(7),
            user: "user:alice".into(),
            at: DateTime::from_timestamp_millis(at_ms).unwrap_or_default(),
            first_request: Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, first, 0)),
        }
    }

    #[test]
    fn the_earliest_request_of_a_pair_wins_in_any_order() {
        let (a, b) = (link(100, 100_000), link(200, 200_000));
        let one = earliest(vec![a.clone(), b.clone()]);
        let other = earliest(vec![b, a.clone()]);
        assert_eq!(one, other);
        assert_eq!(one.values().next(), Some(&a));
    }

    #[test]
    fn a_link_counts_only_the_visitors_events_before_it() {
        let l = link(100, 100_000);
        let mut e = EventRecord::example();
        e.learner = l.visitor_key();
        e.ts = DateTime::from_timestamp_millis(99_999).unwrap_or_default();
        assert!(l.counts(&e));
        e.ts = l.at;
        assert!(!l.counts(&e), "not at the login itself");
        e.ts = DateTime::from_timestamp_millis(99_999).unwrap_or_default();
        e.learner = "user:alice".into();
        assert!(!l.counts(&e), "only the visitor's events");
    }

    #[test]
    fn only_records_with_both_ids_and_a_kept_user_name_link() {
        let mut r = RequestRecord::example();
        r.user = Some("bob".into());
        r.visitor_id = Some(Uuid::from_u128(9));
        let l = LearnerLink::of(&r).unwrap();
        assert_eq!(l.user, "user:bob");
        assert_eq!(l.at, r.ts);
        assert_eq!(LearnerLink::from_document(&l.to_document()), Some(l));
        r.visitor_id = None;
        assert_eq!(LearnerLink::of(&r), None);
        r.visitor_id = Some(Uuid::from_u128(9));
        r.user = Some("x".repeat(visitlog_schema::limits::SHORT + 1));
        assert_eq!(LearnerLink::of(&r), None, "refused names never link");
        // A visitor id this very request minted (no cookie came) has no
        // history: no link, whatever a cookie-dropping browser sends.
        r.user = Some("bob".into());
        (r.new_visit, r.visit_number) = (Some(true), Some(1));
        assert_eq!(LearnerLink::of(&r), None);
        (r.new_visit, r.visit_number) = (Some(false), Some(1));
        assert!(LearnerLink::of(&r).is_some(), "a cookie the browser sent");
    }
}
