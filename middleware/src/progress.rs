//! Reading learning state back: the resume position of a video and a
//! learner's tutorial progress, as `visitlog-consumer` derives them into
//! MongoDB (`video_positions`, `tutorial_progress`).
//!
//! Needs the `progress` feature. Reads are plain indexed lookups by `_id`
//! or by learner, and never touch the request path of other pages.

use bson::{Bson, Document, doc};
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use mongodb::{Collection, Database};
use visitlog_schema::{Learner, progress_id, video_position_id};

/// A learner's progress in one tutorial and language.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TutorialProgress {
    /// The tutorial's software.
    pub foss: String,
    /// The tutorial.
    pub tutorial: String,
    /// The tutorial's language.
    pub language: String,
    /// Its video, once an event named it.
    pub video_id: Option<String>,
    /// Completed, automatically or by hand.
    pub completed: bool,
    /// When.
    pub completed_at: Option<DateTime<Utc>>,
    /// `auto` or `manual`.
    pub completed_by: Option<String>,
    /// Watched fraction of the video, 0 to 1.
    pub coverage: f64,
    /// Merged watched intervals, whole seconds.
    pub watched: Vec<[u32; 2]>,
    /// The video's duration in seconds, once known.
    pub duration: Option<f64>,
    /// Distinct visits to the tutorial page.
    pub visits: u32,
    /// First visit.
    pub first_visit: Option<DateTime<Utc>>,
    /// Latest visit.
    pub last_visit: Option<DateTime<Utc>>,
}

/// Reads `video_positions` and `tutorial_progress`; cheap to clone.
#[derive(Debug, Clone)]
pub struct ProgressReader {
    positions: Collection<Document>,
    progress: Collection<Document>,
}

impl ProgressReader {
    /// Connects (lazily) to `uri` and reads from `database`, the consumer's.
    pub async fn connect(uri: &str, database: &str) -> mongodb::error::Result<Self> {
        let mut options = mongodb::options::ClientOptions::parse(uri).await?;
        options
            .app_name
            .get_or_insert_with(|| "visitlog-progress".to_owned());
        options
            .server_selection_timeout
            .get_or_insert(std::time::Duration::from_secs(2));
        Ok(Self::new(
            &mongodb::Client::with_options(options)?.database(database),
        ))
    }

    /// Reads from `db`, a handle the app already has.
    pub fn new(db: &Database) -> Self {
        Self {
            positions: db.collection("video_positions"),
            progress: db.collection("tutorial_progress"),
        }
    }

    /// Where `learner` stopped in `video_id`, in seconds; `None` when they
    /// never played it. 0 after they watched it to the end.
    pub async fn resume_position(
        &self,
        learner: &Learner,
        video_id: &str,
    ) -> mongodb::error::Result<Option<f64>> {
        let id = video_position_id(&learner.key(), video_id);
        let found = self.positions.find_one(doc! { "_id": id }).await?;
        Ok(found.and_then(|d| number(d.get("position"))))
    }

    /// `learner`'s progress in one tutorial and language.
    pub async fn progress(
        &self,
        learner: &Learner,
        foss: &str,
        tutorial: &str,
        language: &str,
    ) -> mongodb::error::Result<Option<TutorialProgress>> {
        let id = progress_id(&learner.key(), foss, tutorial, language);
        let found = self.progress.find_one(doc! { "_id": id }).await?;
        Ok(found.as_ref().map(TutorialProgress::from_document))
    }

    /// `learner`'s progress in every tutorial and language of `foss`.
    pub async fn progress_for_foss(
        &self,
        learner: &Learner,
        foss: &str,
    ) -> mongodb::error::Result<Vec<TutorialProgress>> {
        let docs: Vec<Document> = self
            .progress
            .find(doc! { "learner": learner.key(), "foss": foss })
            .sort(doc! { "tutorial": 1, "language": 1 })
            .await?
            .try_collect()
            .await?;
        Ok(docs.iter().map(TutorialProgress::from_document).collect())
    }
}

impl TutorialProgress {
    fn from_document(d: &Document) -> Self {
        let text = |k: &str| d.get_str(k).map(str::to_owned).unwrap_or_default();
        let date = |k: &str| d.get_datetime(k).ok().map(|t| t.to_chrono());
        Self {
            foss: text("foss"),
            tutorial: text("tutorial"),
            language: text("language"),
            video_id: d.get_str("video_id").ok().map(str::to_owned),
            completed: d.get_bool("completed").unwrap_or(false),
            completed_at: date("completed_at"),
            completed_by: d.get_str("completed_by").ok().map(str::to_owned),
            coverage: number(d.get("coverage")).unwrap_or(0.0),
            watched: d
                .get_array("watched")
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|pair| match pair {
                            Bson::Array(p) => {
                                Some([number(p.first())? as u32, number(p.get(1))? as u32])
                            }
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            duration: number(d.get("duration")),
            visits: number(d.get("visits")).unwrap_or(0.0) as u32,
            first_visit: date("first_visit"),
            last_visit: date("last_visit"),
        }
    }
}

fn number(b: Option<&Bson>) -> Option<f64> {
    match b? {
        Bson::Double(v) => Some(*v),
        Bson::Int32(v) => Some(f64::from(*v)),
        Bson::Int64(v) => Some(*v as f64),
        _ => None,
    }
}
