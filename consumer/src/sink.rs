//! The MongoDB side: collections with validators and indexes, bulk inserts
//! that make replays harmless, and dead letters.

use std::time::Duration;

use bson::{Bson, Document, doc};
use chrono::Utc;
use futures_util::TryStreamExt;
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};
use visitlog_schema::Collection as Coll;

use crate::batch::{DeadLetter, Prepared};

/// MongoDB's duplicate-key error: the record is already stored.
const DUPLICATE_KEY: i32 = 11000;
/// MongoDB's "namespace exists" error on `create`.
const NAMESPACE_EXISTS: i32 = 48;

/// Collection names.
pub const REQUEST_LOGS: &str = "request_logs";
/// Where records that cannot be stored go.
pub const DEAD_LETTERS: &str = "dead_letters";

/// Handles to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Sink {
    db: Database,
    requests: Collection<Document>,
    dead: Collection<Document>,
}

/// What storing one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// New documents.
    pub inserted: u64,
    /// Documents that were already there (a replayed batch).
    pub duplicates: u64,
    /// Records sent to `dead_letters`, including ones MongoDB refused.
    pub dead_lettered: u64,
}

impl Sink {
    /// Prepares a client; connects lazily.
    pub async fn new(uri: &str, database: &str) -> mongodb::error::Result<Self> {
        let mut options = ClientOptions::parse(uri).await?;
        options
            .app_name
            .get_or_insert_with(|| "visitlog-consumer".to_owned());
        options
            .server_selection_timeout
            .get_or_insert(Duration::from_secs(5));
        options
            .connect_timeout
            .get_or_insert(Duration::from_secs(5));
        let client = Client::with_options(options)?;
        let db = client.database(database);
        Ok(Self {
            requests: db.collection(REQUEST_LOGS),
            dead: db.collection(DEAD_LETTERS),
            db,
        })
    }

    /// Answers when MongoDB does.
    pub async fn ping(&self) -> mongodb::error::Result<()> {
        self.db.run_command(doc! { "ping": 1 }).await.map(drop)
    }

    /// Creates the collections with their validators (or updates the
    /// validators with `collMod`) and the indexes. Idempotent.
    pub async fn setup(&self, retention: Option<Duration>) -> mongodb::error::Result<()> {
        for collection in Coll::ALL {
            let validator = collection
                .validator_document()
                .ok()
                .and_then(|v| bson::to_document(&v).ok())
                .unwrap_or_default();
            let name = collection.name();
            let create = self
                .db
                .run_command(doc! {
                    "create": name,
                    "validator": validator.clone(),
                    "validationLevel": "strict",
                    "validationAction": "error",
                })
                .await;
            match create {
                Ok(_) => {}
                Err(e) if command_code(&e) == Some(NAMESPACE_EXISTS) => {
                    self.db
                        .run_command(doc! {
                            "collMod": name,
                            "validator": validator,
                            "validationLevel": "strict",
                            "validationAction": "error",
                        })
                        .await?;
                }
                Err(e) => return Err(e),
            }
        }
        if let Err(e) = self.db.run_command(doc! { "create": DEAD_LETTERS }).await
            && command_code(&e) != Some(NAMESPACE_EXISTS)
        {
            return Err(e);
        }
        let ts = match retention {
            Some(keep) => IndexModel::builder()
                .keys(doc! { "ts": 1 })
                .options(IndexOptions::builder().expire_after(keep).build())
                .build(),
            None => IndexModel::builder().keys(doc! { "ts": 1 }).build(),
        };
        let by = |field: &str| {
            IndexModel::builder()
                .keys(doc! { field: 1, "ts": 1 })
                .build()
        };
        self.requests
            .create_indexes([ts, by("visitor_id"), by("user"), by("tutorial.foss")])
            .await?;
        self.dead
            .create_indexes([IndexModel::builder().keys(doc! { "at": -1 }).build()])
            .await?;
        Ok(())
    }

    /// Stores a prepared batch. `Err` only for trouble worth retrying the
    /// whole batch (network, server down, write concern): per-document
    /// refusals become dead letters, and duplicates are counted, not errors.
    pub async fn store(
        &self,
        prepared: Prepared,
        consumer: &str,
        queue: &str,
        dead_letter_max_bytes: usize,
    ) -> mongodb::error::Result<Stored> {
        let mut stored = Stored::default();
        let mut dead = prepared.dead;
        if !prepared.requests.is_empty() {
            let (docs, raws): (Vec<Document>, Vec<Vec<u8>>) = prepared.requests.into_iter().unzip();
            let total = docs.len() as u64;
            match self.requests.insert_many(docs).ordered(false).await {
                Ok(_) => stored.inserted = total,
                Err(e) => {
                    let ErrorKind::InsertMany(failure) = e.kind.as_ref() else {
                        return Err(e);
                    };
                    if failure.write_concern_error.is_some() {
                        return Err(e);
                    }
                    let errors = failure.write_errors.as_deref().unwrap_or_default();
                    for error in errors {
                        if error.code == DUPLICATE_KEY {
                            stored.duplicates += 1;
                        } else if let Some(raw) = raws.get(error.index) {
                            // Refused by the server (121: validation failed).
                            dead.push(DeadLetter {
                                raw: raw.clone(),
                                reason: format!(
                                    "rejected by MongoDB (code {}): {}",
                                    error.code, error.message
                                ),
                            });
                        }
                    }
                    stored.inserted = total - errors.len() as u64;
                }
            }
        }
        let now = Utc::now();
        for letter in &dead {
            let doc = letter.document(now, consumer, queue, dead_letter_max_bytes);
            // A replace keyed by the payload hash: a replay rewrites the same
            // document, and a requeued record that fails again renews it.
            let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
            self.dead
                .replace_one(doc! { "_id": id }, doc)
                .upsert(true)
                .await?;
        }
        stored.dead_lettered = dead.len() as u64;
        Ok(stored)
    }

    /// The number of dead letters.
    pub async fn dead_letter_count(&self) -> mongodb::error::Result<u64> {
        self.dead.count_documents(doc! {}).await
    }

    /// The newest `limit` dead letters.
    pub async fn dead_letters(&self, limit: i64) -> mongodb::error::Result<Vec<Document>> {
        self.dead
            .find(doc! {})
            .sort(doc! { "at": -1 })
            .limit(limit)
            .await?
            .try_collect()
            .await
    }

    /// Dead letters matching `filter`.
    pub async fn find_dead_letters(
        &self,
        filter: Document,
    ) -> mongodb::error::Result<Vec<Document>> {
        self.dead
            .find(filter)
            .sort(doc! { "at": 1 })
            .await?
            .try_collect()
            .await
    }

    /// Deletes one dead letter if it is unchanged since it was read.
    pub async fn remove_dead_letter(&self, id: &Bson, at: &Bson) -> mongodb::error::Result<bool> {
        let result = self
            .dead
            .delete_one(doc! { "_id": id.clone(), "at": at.clone() })
            .await?;
        Ok(result.deleted_count == 1)
    }

    /// Deletes dead letters matching `filter`; returns how many.
    pub async fn purge_dead_letters(&self, filter: Document) -> mongodb::error::Result<u64> {
        Ok(self.dead.delete_many(filter).await?.deleted_count)
    }

    /// The request-logs collection, for tests and the benchmark.
    pub fn request_logs(&self) -> &Collection<Document> {
        &self.requests
    }
}

/// The server's error code of a failed command, if it is one.
pub fn command_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        _ => None,
    }
}
