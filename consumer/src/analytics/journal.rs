//! A stored batch's marks as one document, and their expansion into marks.
//!
//! Marking each key a batch touches costs the server one upsert per key:
//! about as much as storing the record itself when each record of a batch
//! is another visit (1,000 learners on a site at once). Yet a busy key,
//! marked by every batch, is computed at most once per interval. So a
//! consumer with the analytics on writes its batch's marks as one
//! `derivations` document of kind `batch` (a thousand marks each), and the
//! analytics expand the batches due together into one statement per
//! distinct key.
//!
//! Nothing changes for the keys: a batch's document is written after its
//! records are stored and before the batch is acknowledged, as its marks
//! were, and each mark comes out due when it would have been, the batch's
//! time plus the interval. The batch's document is due half an interval
//! after it was written, so that the batches of that half interval are
//! expanded together; its keys then wait the other half. A batch document
//! is claimed like any key (a consumer that dies while expanding leaves it
//! to another once the lease lapses; expanding twice marks twice, which is
//! harmless), and settled (deleted) once its marks are written.

use bson::{Bson, Document, doc};

use super::marks::{Claimed, DerivedKind, Mark, Marks, distinct, now_ms};
use crate::error::Result;

/// Marks per batch document at most: a document stays far below MongoDB's
/// 16 MiB, whatever the batch size.
const MARKS_PER_DOCUMENT: usize = 1000;

impl Marks {
    /// Writes a stored batch's marks as `batch` documents, expanded later by
    /// the analytics; returns how many distinct keys they name.
    pub async fn journal(&self, marks: impl IntoIterator<Item = Mark>) -> Result<u64> {
        let now = now_ms();
        let marks = distinct(marks.into_iter().map(|m| (m, now)));
        if marks.is_empty() {
            return Ok(0);
        }
        let due = due_with_its_half(now, self.interval_ms / 2);
        let docs: Vec<Document> = marks
            .chunks(MARKS_PER_DOCUMENT)
            .map(|chunk| {
                let key = uuid::Uuid::new_v4().simple().to_string();
                let listed: Vec<Document> = chunk.iter().map(|(_, m, _)| listed(m)).collect();
                doc! {
                    "_id": format!("{}:{key}", DerivedKind::Batch.as_str()),
                    "kind": DerivedKind::Batch.as_str(),
                    "key": key,
                    "gen": 1_i64,
                    "due_ms": due,
                    "lease_ms": 0_i64,
                    "fence": 0_i64,
                    "count": chunk.len() as i64,
                    "args": { "at_ms": now, "marks": listed },
                }
            })
            .collect();
        self.coll.insert_many(docs).await?;
        Ok(marks.len() as u64)
    }

    /// Writes the marks of claimed batch documents, each key once, due at
    /// the earliest of its batches' times plus the interval; returns how
    /// many keys.
    pub async fn expand(&self, claimed: &[Claimed]) -> Result<u64> {
        let mut all = Vec::new();
        for c in claimed {
            let at = match c.mark.args.get("at_ms") {
                Some(Bson::Int64(ms)) => *ms,
                Some(Bson::Int32(ms)) => i64::from(*ms),
                _ => now_ms(),
            };
            let due = at + self.interval_ms;
            let marks = c.mark.args.get_array("marks").map(Vec::as_slice);
            for m in marks
                .unwrap_or_default()
                .iter()
                .filter_map(Bson::as_document)
            {
                match unlisted(m) {
                    Some(m) => all.push((m, due)),
                    None => {
                        tracing::warn!(batch = %c.mark.key, mark = %m, "unreadable mark in a batch; skipped");
                    }
                }
            }
        }
        self.write_marks(&distinct(all)).await
    }
}

/// When a batch written at `now` is due: at the end of its `half` of an
/// interval (counted from 1970), so that the batches of one half are due,
/// claimed and expanded together; at once when there is no interval.
fn due_with_its_half(now: i64, half: i64) -> i64 {
    match half {
        ..=0 => now,
        _ => (now.div_euclid(half) + 1) * half,
    }
}

/// A mark as a batch document lists it.
fn listed(m: &Mark) -> Document {
    let mut d = doc! { "kind": m.kind.as_str(), "key": &m.key };
    if let Some(from) = m.from_ms {
        d.insert("from_ms", from);
    }
    if !m.args.is_empty() {
        d.insert("args", m.args.clone());
    }
    d
}

/// A listed mark read back; `None` if it names no kind a batch marks.
fn unlisted(d: &Document) -> Option<Mark> {
    let kind = DerivedKind::parse(d.get_str("kind").ok()?)?;
    if kind == DerivedKind::Batch {
        return None;
    }
    Some(Mark {
        kind,
        key: d.get_str("key").ok()?.to_owned(),
        from_ms: match d.get("from_ms") {
            Some(Bson::Int64(ms)) => Some(*ms),
            Some(Bson::Int32(ms)) => Some(i64::from(*ms)),
            _ => None,
        },
        args: d.get_document("args").cloned().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_of_one_half_interval_are_due_together_at_its_end() {
        assert_eq!(due_with_its_half(12_345, 0), 12_345);
        assert_eq!(due_with_its_half(10_000, 5_000), 15_000);
        assert_eq!(due_with_its_half(10_001, 5_000), 15_000);
        assert_eq!(due_with_its_half(14_999, 5_000), 15_000);
        assert_eq!(due_with_its_half(15_000, 5_000), 20_000);
    }

    #[test]
    fn a_mark_listed_reads_back_the_same() {
        let mut day = Mark::new(DerivedKind::TutorialDay, "d");
        day.args = doc! { "foss": "Python", "day": "2026-12-03" };
        for m in [
            Mark::new(DerivedKind::Visit, "v:1"),
            Mark::learner("user:ann", 5_000),
            day,
        ] {
            assert_eq!(unlisted(&listed(&m)), Some(m));
        }
        assert_eq!(unlisted(&doc! { "kind": "batch", "key": "x" }), None);
        assert_eq!(unlisted(&doc! { "kind": "nonsense", "key": "x" }), None);
        assert_eq!(unlisted(&doc! { "kind": "visit" }), None);
    }
}
