//! Reading learning state back, for a web app: the resume position of a
//! video and a learner's tutorial progress, as `visitlog-consumer` derives
//! them into MongoDB (`video_positions`, `tutorial_progress`).
//!
//! Needs the `reader` feature. Reads are plain indexed lookups by `_id` or
//! by learner, and never touch the request path of other pages. The
//! cross-language reads ([`ProgressReader::language_status`],
//! [`ProgressReader::progress_for_foss`]) read one learner's documents of a
//! tutorial or foss and leave the rules to `status.rs`.

use bson::{Document, doc};
use futures_util::TryStreamExt;
use mongodb::{Collection, Database};
use visitlog_schema::{Collection as Coll, Learner, progress_id, video_position_id};

use crate::{LanguageStatus, Progress, ReadError, TutorialLanguages, VideoPosition};

/// Reads `video_positions` and `tutorial_progress`; cheap to clone.
#[derive(Debug, Clone)]
pub struct ProgressReader {
    // Read as documents, then through the document types: one reader for
    // the consumer and the app (the driver's raw deserializer would read
    // some fields differently).
    positions: Collection<Document>,
    progress: Collection<Document>,
}

/// A lazily connected handle on `database` at `uri`, for an app's readers:
/// named `app_name` in the server's logs (unless the URI names one), and
/// giving up on an unreachable server after 2 s (unless the URI says).
pub async fn connect_database(
    uri: &str,
    database: &str,
    app_name: &str,
) -> Result<Database, ReadError> {
    let mut options = mongodb::options::ClientOptions::parse(uri).await?;
    options.app_name.get_or_insert_with(|| app_name.to_owned());
    options
        .server_selection_timeout
        .get_or_insert(std::time::Duration::from_secs(2));
    Ok(mongodb::Client::with_options(options)?.database(database))
}

impl ProgressReader {
    /// Connects (lazily) to `uri` and reads from `database`, the consumer's.
    pub async fn connect(uri: &str, database: &str) -> Result<Self, ReadError> {
        Ok(Self::new(
            &connect_database(uri, database, "visitlog-progress").await?,
        ))
    }

    /// Reads from `db`, a handle the app already has.
    pub fn new(db: &Database) -> Self {
        Self {
            positions: db.collection(Coll::VideoPositions.name()),
            progress: db.collection(Coll::TutorialProgress.name()),
        }
    }

    /// Where `learner` stopped in `video_id`, in seconds; `None` when they
    /// never played it. 0 after they watched it to the end.
    pub async fn resume_position(
        &self,
        learner: &Learner,
        video_id: &str,
    ) -> Result<Option<f64>, ReadError> {
        let id = video_position_id(&learner.key(), video_id);
        match self.positions.find_one(doc! { "_id": id }).await? {
            Some(d) => Ok(Some(VideoPosition::from_document(&d)?.position)),
            None => Ok(None),
        }
    }

    /// `learner`'s progress in one tutorial and language.
    pub async fn progress(
        &self,
        learner: &Learner,
        foss: &str,
        tutorial: &str,
        language: &str,
    ) -> Result<Option<Progress>, ReadError> {
        let id = progress_id(&learner.key(), foss, tutorial, language);
        match self.progress.find_one(doc! { "_id": id }).await? {
            Some(d) => Ok(Some(Progress::from_document(&d)?)),
            None => Ok(None),
        }
    }

    /// `learner` on one tutorial page, across languages: this language's
    /// progress, completion in any language, and where to continue (its own
    /// resume position, else another language's mapped by fraction of the
    /// duration). `duration` is this language's video duration when the
    /// caller knows it; see [`LanguageStatus::of`].
    pub async fn language_status(
        &self,
        learner: &Learner,
        foss: &str,
        tutorial: &str,
        language: &str,
        duration: Option<f64>,
    ) -> Result<LanguageStatus, ReadError> {
        // Both collections are indexed by learner first; a learner has few
        // documents per tutorial (one per language and video).
        let filter = doc! { "learner": learner.key(), "foss": foss, "tutorial": tutorial };
        let progress: Vec<Document> = self
            .progress
            .find(filter.clone())
            .await?
            .try_collect()
            .await?;
        let positions: Vec<Document> = self.positions.find(filter).await?.try_collect().await?;
        let progress = progress
            .iter()
            .map(Progress::from_document)
            .collect::<Result<Vec<_>, _>>()?;
        let positions = positions
            .iter()
            .map(VideoPosition::from_document)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LanguageStatus::of(language, duration, progress, &positions))
    }

    /// `learner`'s progress in every tutorial of `foss`: one entry per
    /// tutorial, its languages inside, sorted by tutorial and language.
    pub async fn progress_for_foss(
        &self,
        learner: &Learner,
        foss: &str,
    ) -> Result<Vec<TutorialLanguages>, ReadError> {
        let docs: Vec<Document> = self
            .progress
            .find(doc! { "learner": learner.key(), "foss": foss })
            .await?
            .try_collect()
            .await?;
        let read: Result<Vec<Progress>, _> = docs.iter().map(Progress::from_document).collect();
        Ok(TutorialLanguages::group(read?))
    }
}
