//! Collections with their validators (created, or updated with
//! `collMod`) and indexes. Idempotent: every start runs it.

use bson::{Document, doc};
use mongodb::IndexModel;
use mongodb::options::IndexOptions;
use visitlog_schema::Collection as Coll;

use super::{DEAD_LETTERS, Retention, Sink, VIDEO_POSITIONS, command_code};
use crate::error::Result;

/// MongoDB's "namespace exists" error on `create`.
const NAMESPACE_EXISTS: i32 = 48;

impl Sink {
    /// Creates the collections with their validators (or updates the
    /// validators with `collMod`) and the indexes. Idempotent.
    pub async fn setup(&self, retention: &Retention) -> Result<()> {
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
                Err(e) => return Err(e.into()),
            }
        }
        if let Err(e) = self.db.run_command(doc! { "create": DEAD_LETTERS }).await
            && command_code(&e) != Some(NAMESPACE_EXISTS)
        {
            return Err(e.into());
        }
        // The `ts` of request_logs and events, the `at` of dead_letters and
        // the `start` of page_views and sessions: indexes that are TTL
        // indexes when a retention is set.
        self.apply_retention(retention).await?;
        let by = |field: &str| {
            IndexModel::builder()
                .keys(doc! { field: 1, "ts": 1 })
                .build()
        };
        self.requests
            .create_indexes([by("visitor_id"), by("user"), by("tutorial.foss")])
            .await?;
        // A refold streams one learner's events for one tutorial in `_id`
        // order: with `_id` in the index, MongoDB reads them in that order
        // instead of sorting a long history. nx-27017, the wire-protocol
        // server the tests may use, accepts such an index and then refuses
        // every insert; it names itself in `buildInfo`, and gets the index
        // without `_id` (it sorts the history itself).
        let mut history = doc! { "learner": 1, "foss": 1, "tutorial": 1, "language": 1 };
        let build = self.db.run_command(doc! { "buildInfo": 1 }).await?;
        if build.get_str("process") != Ok("nx_27017") {
            history.insert("_id", 1);
        }
        self.events
            .create_index(IndexModel::builder().keys(history).build())
            .await?;
        // A client's retry of an event the server did get (same
        // `client_event_id`, new `_id`) is stored once; events without one
        // are never deduplicated by it. `store` also drops such retries
        // before inserting, so a server that ignores the partial filter or
        // the index behaves the same.
        self.events
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "learner": 1, "client_event_id": 1 })
                    .options(
                        IndexOptions::builder()
                            .unique(true)
                            .partial_filter_expression(
                                doc! { "client_event_id": { "$type": "string" } },
                            )
                            .build(),
                    )
                    .build(),
            )
            .await?;
        // A visitor's links (its events' refolds) and a user's (their history).
        self.links
            .create_indexes([
                IndexModel::builder().keys(doc! { "visitor_id": 1 }).build(),
                IndexModel::builder().keys(doc! { "user": 1 }).build(),
            ])
            .await?;
        self.progress
            .create_indexes([IndexModel::builder()
                .keys(doc! { "learner": 1, "foss": 1 })
                .build()])
            .await?;
        // A publication reads and retires its FOSS's documents; progress
        // looks up a tutorial's main video.
        self.catalog
            .create_indexes([
                IndexModel::builder()
                    .keys(doc! { "foss": 1, "version_ms": 1 })
                    .build(),
                IndexModel::builder()
                    .keys(doc! { "foss": 1, "tutorial": 1, "language": 1 })
                    .build(),
            ])
            .await?;
        // A catalog change folds again every learner's progress in a tutorial.
        self.progress
            .create_indexes([IndexModel::builder()
                .keys(doc! { "foss": 1, "tutorial": 1, "language": 1 })
                .build()])
            .await?;
        self.db
            .collection::<Document>(VIDEO_POSITIONS)
            .create_indexes([IndexModel::builder().keys(doc! { "learner": 1 }).build()])
            .await?;
        Ok(())
    }
}
