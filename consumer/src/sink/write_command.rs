//! Unordered `update` and `delete` commands of many statements, the way the
//! derived documents, the marks and the analytics are written: raw BSON, in
//! commands of at most [`MAX_STATEMENTS`] statements and [`MAX_BYTES`], each
//! with the client's write concern.
//!
//! The driver's `run_command` sends a command exactly as given: without
//! `writeConcern` in it, the server's default applies (on MongoDB 4.4, the
//! primary's acknowledgement alone), whatever `write-concern` says. A
//! derived document or a mark acknowledged that way could be rolled back
//! with a failed primary after its batch left the queue. The statements are
//! split so that no command nears MongoDB's 16 MiB limit, whatever one
//! batch derives (a refold of many learners' histories).

use std::ops::Range;

use bson::{Bson, Document, RawArrayBuf, RawDocumentBuf, rawdoc};
use mongodb::Database;

use super::{DUPLICATE_KEY, number_of};
use crate::error::{Error, Result};

/// Statements per command at most.
pub(crate) const MAX_STATEMENTS: usize = 1000;

/// Bytes of statements per command at most (a statement larger than this
/// goes alone): half of MongoDB's 16 MiB, so that the command, its
/// array's keys and its write concern always fit.
pub(crate) const MAX_BYTES: usize = 8 * 1024 * 1024;

/// Which command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    /// `update`, statements `{q, u, upsert}`.
    Update,
    /// `delete`, statements `{q, limit}`.
    Delete,
}

impl Verb {
    const fn command(self) -> &'static str {
        match self {
            Verb::Update => "update",
            Verb::Delete => "delete",
        }
    }

    const fn statements(self) -> &'static str {
        match self {
            Verb::Update => "updates",
            Verb::Delete => "deletes",
        }
    }
}

/// What the commands of one call reported.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct WriteErrors {
    /// Statements that lost a race (11000), by index among those given.
    pub(crate) duplicates: Vec<usize>,
    /// Statements refused, duplicates included; the others are logged.
    pub(crate) refused: u64,
    /// Documents the statements changed (`nModified`; `n` for deletes).
    pub(crate) modified: u64,
}

/// Sends `statements` to `collection` in as many unordered commands as
/// [`plan`] makes, with `db`'s write concern. A refused statement is
/// reported (duplicates by index) and logged, never an error; a write
/// concern error is an error, as is a command that fails as a whole.
pub(crate) async fn send(
    db: &Database,
    verb: Verb,
    collection: &str,
    statements: Vec<RawDocumentBuf>,
) -> Result<WriteErrors> {
    let mut out = WriteErrors::default();
    if statements.is_empty() {
        return Ok(out);
    }
    let concern = write_concern(db)?;
    let sizes: Vec<usize> = statements.iter().map(|s| s.as_bytes().len()).collect();
    let mut statements = statements.into_iter();
    for chunk in plan(&sizes, MAX_STATEMENTS, MAX_BYTES) {
        let mut array = RawArrayBuf::new();
        for statement in statements.by_ref().take(chunk.len()) {
            array.push(statement);
        }
        let mut command = rawdoc! {
            verb.command(): collection,
            verb.statements(): array,
            "ordered": false,
        };
        if let Some(concern) = &concern {
            command.append("writeConcern", concern.clone());
        }
        let reply = db.run_raw_command(command).await?;
        read_reply(verb, collection, &reply, chunk.start, &mut out)?;
    }
    Ok(out)
}

/// [`send`] of statements made as `Document`s.
pub(crate) async fn send_documents(
    db: &Database,
    verb: Verb,
    collection: &str,
    statements: &[Document],
) -> Result<WriteErrors> {
    send(db, verb, collection, raw(statements)?).await
}

/// Statements made as `Document`s, as raw BSON.
pub(crate) fn raw(statements: &[Document]) -> Result<Vec<RawDocumentBuf>> {
    let raw = statements
        .iter()
        .map(RawDocumentBuf::from_document)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(mongodb::error::Error::from)?;
    Ok(raw)
}

/// The commands' ranges of statements: in order, each at most `max_count`
/// statements and `max_bytes` (but for a single larger statement), none
/// empty.
pub(crate) fn plan(sizes: &[usize], max_count: usize, max_bytes: usize) -> Vec<Range<usize>> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, &size) in sizes.iter().enumerate() {
        let full = i - start >= max_count || bytes + size > max_bytes;
        if i > start && full {
            chunks.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < sizes.len() {
        chunks.push(start..sizes.len());
    }
    chunks
}

/// The database's write concern as a command's `writeConcern`; none when
/// nothing is set (the server's default).
fn write_concern(db: &Database) -> Result<Option<RawDocumentBuf>> {
    let Some(w) = db.write_concern() else {
        return Ok(None);
    };
    if w.w.is_none() && w.w_timeout.is_none() && w.journal.is_none() {
        return Ok(None);
    }
    let raw = bson::to_raw_document_buf(w).map_err(mongodb::error::Error::from)?;
    Ok(Some(raw))
}

/// Adds one command's reply to `out`; its statements start at `offset`.
fn read_reply(
    verb: Verb,
    collection: &str,
    reply: &Document,
    offset: usize,
    out: &mut WriteErrors,
) -> Result<()> {
    let errors = reply
        .get_array("writeErrors")
        .map(Vec::as_slice)
        .unwrap_or_default();
    for error in errors.iter().filter_map(Bson::as_document) {
        let code = error.get_i32("code").unwrap_or_default();
        let index = error
            .get_i32("index")
            .ok()
            .and_then(|i| usize::try_from(i).ok())
            .unwrap_or_default();
        if code == DUPLICATE_KEY {
            out.duplicates.push(offset + index);
        } else {
            tracing::error!(collection, code, error = %error.get_str("errmsg").unwrap_or_default(), "derived document refused by MongoDB");
        }
    }
    out.refused += errors.len() as u64;
    let counted = match verb {
        Verb::Update => "nModified",
        Verb::Delete => "n",
    };
    out.modified += number_of(reply.get(counted));
    if let Ok(concern) = reply.get_document("writeConcernError") {
        return Err(Error::WriteConcern {
            collection: collection.to_owned(),
            detail: concern.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lens(chunks: &[Range<usize>]) -> Vec<usize> {
        chunks.iter().map(Range::len).collect()
    }

    #[test]
    fn statements_are_split_on_count_and_bytes_in_order() {
        assert!(plan(&[], 3, 100).is_empty());
        assert_eq!(lens(&plan(&[10; 7], 3, 100)), [3, 3, 1]);
        assert_eq!(lens(&plan(&[10; 6], 3, 100)), [3, 3]);
        // Bytes: 40 + 40 fits in 100, a third does not.
        assert_eq!(lens(&plan(&[40, 40, 40, 40, 40], 10, 100)), [2, 2, 1]);
        // Exactly the limit fits.
        assert_eq!(lens(&plan(&[50, 50, 50], 10, 100)), [2, 1]);
        // A statement larger than the limit goes alone, never dropped.
        assert_eq!(lens(&plan(&[10, 500, 10], 10, 100)), [1, 1, 1]);
        assert_eq!(lens(&plan(&[500], 10, 100)), [1]);
        // Contiguous, covering every statement once.
        let chunks = plan(&[30; 25], 4, 100);
        assert_eq!(chunks.first().map(|c| c.start), Some(0));
        assert!(chunks.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(chunks.last().map(|c| c.end), Some(25));
        assert!(chunks.iter().all(|c| c.len() <= 3), "90 bytes at most");
    }

    #[test]
    fn a_reply_gives_refusals_by_index_and_fails_on_write_concern() {
        let mut out = WriteErrors::default();
        let reply = bson::doc! {
            "n": 5, "nModified": 3,
            "writeErrors": [
                { "index": 1, "code": 11000, "errmsg": "dup" },
                { "index": 2, "code": 121, "errmsg": "validation" },
            ],
        };
        read_reply(Verb::Update, "c", &reply, 1000, &mut out).unwrap();
        assert_eq!(out.duplicates, [1001]);
        assert_eq!(out.refused, 2);
        assert_eq!(out.modified, 3);
        let reply = bson::doc! { "n": 2, "writeConcernError": { "code": 64, "errmsg": "waiting" } };
        let err = read_reply(Verb::Delete, "c", &reply, 0, &mut out).unwrap_err();
        assert!(matches!(err, Error::WriteConcern { .. }), "{err}");
        assert_eq!(out.modified, 5, "a delete counts n");
    }

    /// Against the test server: 3,000 statements of 10 KB (30 MB, twice
    /// what one command may hold) are all written, and a lost race is
    /// reported at its index among all of them, not within its command.
    #[tokio::test]
    async fn many_large_statements_are_written_and_races_reported_by_index() {
        let uri = visitlog_tests::shared_mongodb_uri();
        let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
        let db = client.database(&visitlog_tests::test_database());
        let coll = db.collection::<Document>("large");
        coll.insert_one(bson::doc! { "_id": "k2500", "v": 5 })
            .await
            .unwrap();
        let pad = "x".repeat(10_000);
        let statements: Vec<RawDocumentBuf> = (0..3000)
            .map(|i| {
                rawdoc! {
                    "q": { "_id": format!("k{i}"), "v": { "$lt": 0 } },
                    "u": { "$set": { "pad": pad.as_str() } },
                    "upsert": true,
                }
            })
            .collect();
        let total: usize = statements.iter().map(|s| s.as_bytes().len()).sum();
        assert!(total > 2 * 16 * 1024 * 1024 - 4 * 1024 * 1024, "{total}");
        let out = send(&db, Verb::Update, "large", statements).await.unwrap();
        assert_eq!(out.duplicates, [2500]);
        assert_eq!(out.refused, 1);
        assert_eq!(coll.count_documents(bson::doc! {}).await.unwrap(), 3000);
        let deletes: Vec<Document> = (0..3000)
            .map(|i| bson::doc! { "q": { "_id": format!("k{i}") }, "limit": 1 })
            .collect();
        let out = send_documents(&db, Verb::Delete, "large", &deletes)
            .await
            .unwrap();
        assert_eq!(out.modified, 3000, "deleted");
        assert_eq!(coll.count_documents(bson::doc! {}).await.unwrap(), 0);
    }
}
