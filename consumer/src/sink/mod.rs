//! The MongoDB side: collections with validators and indexes ([`setup`]),
//! bulk inserts that make replays harmless ([`store`]), the documents
//! derived from events ([`derive`]) and the histories they are folded
//! again from ([`history`]), which browser a user logged in on
//! ([`links`]), the catalog of tutorials and videos ([`catalog`]), and
//! dead letters ([`dead_letters`]).
//! This file holds the handles they share and the collection names, which
//! come from `visitlog_schema::Collection` (the validators' owner) but for
//! `dead_letters`, which has no validator.

use std::time::Duration;

use bson::{Bson, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection, Database};
use visitlog_progress::json_for_validation;
use visitlog_schema::Collection as Coll;
use visitlog_schema::RecordValidator;

use crate::error::Result;

mod catalog;
mod dead_letters;
mod derive;
mod history;
mod links;
mod reattribute;
mod retention;
mod setup;
mod store;
pub(crate) mod write_command;

pub use catalog::{CatalogEntry, CatalogMain, CatalogSummary, TutorialKey, catalog_document};
pub use derive::{Refolds, position_statement};
pub use links::LearnerLink;
pub use reattribute::Moved;
pub use retention::Retention;
pub use store::{Stored, ToDerive};

/// MongoDB's duplicate-key error: the record is already stored.
const DUPLICATE_KEY: i32 = 11000;

/// Request records.
pub const REQUEST_LOGS: &str = Coll::RequestLogs.name();
/// Where records that cannot be stored go.
pub const DEAD_LETTERS: &str = "dead_letters";
/// Learning events, and page views of tutorial pages.
pub const EVENTS: &str = Coll::Events.name();
/// Resume positions.
pub const VIDEO_POSITIONS: &str = Coll::VideoPositions.name();
/// Tutorial progress.
pub const TUTORIAL_PROGRESS: &str = Coll::TutorialProgress.name();
/// Which user logged in on which browser.
pub const LEARNER_LINKS: &str = Coll::LearnerLinks.name();
/// The tutorials and videos the site offers.
pub const CATALOG: &str = Coll::Catalog.name();

/// Handles to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Sink {
    client: Client,
    db: Database,
    requests: Collection<Document>,
    events: Collection<Document>,
    progress: Collection<Document>,
    links: Collection<Document>,
    catalog: Collection<Document>,
    dead: Collection<Document>,
    validators: std::sync::Arc<DerivedValidators>,
    /// Links read back lately (see `links`).
    known_links: links::KnownLinks,
}

/// Client-side checks of derived documents (a bug guard: they are built by
/// code); progress documents are checked typed
/// ([`visitlog_progress::Progress::check`]).
#[derive(Debug)]
struct DerivedValidators {
    positions: RecordValidator,
    links: RecordValidator,
    catalog: RecordValidator,
}

impl Sink {
    /// Prepares a client for the configured MongoDB, with its write
    /// concern; connects lazily.
    pub async fn open(config: &crate::config::Config) -> Result<Self> {
        let w = config.write_acknowledgment().map_err(|message| {
            crate::config::ConfigError::Invalid {
                key: "write-concern",
                message,
            }
        })?;
        Self::with_write_concern(&config.mongodb_uri, &config.database, w).await
    }

    /// Prepares a client with the URI's write concern (else `majority`);
    /// connects lazily.
    pub async fn new(uri: &str, database: &str) -> Result<Self> {
        Self::with_write_concern(uri, database, None).await
    }

    /// Prepares a client; connects lazily. Every write waits for `w` (else
    /// the URI's `w`, else a majority of the replica set: a record the
    /// queue forgets must not die with a primary). Every read goes to the
    /// primary whatever the URI says: the derivations read back what they
    /// just wrote, and a lagging secondary would make them count twice or
    /// miss a step.
    async fn with_write_concern(
        uri: &str,
        database: &str,
        w: Option<mongodb::options::Acknowledgment>,
    ) -> Result<Self> {
        Self::with_options(ClientOptions::parse(uri).await?, database, w)
    }

    /// [`Sink::new`] from client options already parsed, for tools and
    /// tests that set options of their own (a command monitor, say); the
    /// write concern, read preference and timeouts are set as there.
    pub fn with_options(
        mut options: ClientOptions,
        database: &str,
        w: Option<mongodb::options::Acknowledgment>,
    ) -> Result<Self> {
        let concern = options.write_concern.get_or_insert_with(Default::default);
        if let Some(w) = w {
            concern.w = Some(w);
        }
        concern
            .w
            .get_or_insert(mongodb::options::Acknowledgment::Majority);
        options.selection_criteria = Some(mongodb::options::SelectionCriteria::ReadPreference(
            mongodb::options::ReadPreference::Primary,
        ));
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
            events: db.collection(EVENTS),
            progress: db.collection(TUTORIAL_PROGRESS),
            links: db.collection(LEARNER_LINKS),
            catalog: db.collection(CATALOG),
            dead: db.collection(DEAD_LETTERS),
            validators: std::sync::Arc::new(DerivedValidators {
                positions: RecordValidator::new(Coll::VideoPositions)?,
                links: RecordValidator::new(Coll::LearnerLinks)?,
                catalog: RecordValidator::new(Coll::Catalog)?,
            }),
            known_links: links::KnownLinks::new(100_000),
            db,
            client,
        })
    }

    /// Closes the connections once nothing uses them any more: the last
    /// step of a stopping daemon, so no background task of the driver
    /// outlives the runtime.
    pub async fn close(&self) {
        self.client.clone().shutdown().immediate(true).await;
    }

    /// Answers when MongoDB does.
    pub async fn ping(&self) -> Result<()> {
        self.db.run_command(doc! { "ping": 1 }).await?;
        Ok(())
    }

    /// The events collection.
    pub fn events(&self) -> &Collection<Document> {
        &self.events
    }

    /// The tutorial-progress collection.
    pub fn tutorial_progress(&self) -> &Collection<Document> {
        &self.progress
    }

    /// The learner-links collection.
    pub fn learner_links(&self) -> &Collection<Document> {
        &self.links
    }

    /// The database, for what keeps its own collections (analytics marks).
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The analytics marks, for reading their backlog (the status page);
    /// the derivation loop makes its own with its settings.
    pub fn marks(&self) -> crate::analytics::Marks {
        crate::analytics::Marks::new(&self.db, Duration::ZERO, Duration::ZERO, "status")
    }

    /// The catalog collection.
    pub fn catalog(&self) -> &Collection<Document> {
        &self.catalog
    }

    /// The request-logs collection, for tests and the benchmark.
    pub fn request_logs(&self) -> &Collection<Document> {
        &self.requests
    }
}

/// Checks a derived document client-side (a guard against our own bugs: it
/// was built by code); logs and refuses one that fails.
pub(crate) fn valid(validator: &RecordValidator, doc: &Document, id: &str) -> bool {
    match validator.validate(&json_for_validation(doc)) {
        Ok(()) => true,
        Err(f) => {
            tracing::error!(collection = validator.collection().name(), %id, field = %f.path, error = %f.message, "derived document fails its validator; not written");
            false
        }
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

/// A count in a server reply (int32 or int64).
fn number_of(b: Option<&Bson>) -> u64 {
    match b {
        Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
        Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
        _ => 0,
    }
}
