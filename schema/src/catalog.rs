//! The catalog: what a site offers (its tutorials and their videos), so
//! that figures can show what nobody watched, and progress can use the
//! catalog's durations and main videos.
//!
//! An app publishes one FOSS's catalog at a time as a [`CatalogRecord`]
//! (`kind: "catalog"`), through the same queue as every other record; an
//! operator can import the same items from a file. Either way the consumer
//! keeps one `catalog` document per `video_id`, and a newer publication of
//! a FOSS wins over an older one whatever order they arrive in.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::record::{Kind, SCHEMA_VERSION, limits, ts_millis};

/// Most items in one publication (one FOSS's videos).
pub const MAX_CATALOG_ITEMS: usize = 5_000;

/// Longest video, in seconds (a day): the events endpoint's limit too.
pub const MAX_DURATION: f64 = 86_400.0;

/// One video the site offers, in one tutorial and language.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogItem {
    /// The software the tutorial series is about.
    pub foss: String,
    /// The tutorial.
    pub tutorial: String,
    /// The language of this version of the tutorial.
    pub language: String,
    /// The video, as the page's events name it.
    pub video_id: String,
    /// Its title, for people.
    pub title: String,
    /// Its duration in seconds; `None` when not known (progress then uses
    /// the durations pages report).
    #[serde(default)]
    pub duration: Option<f64>,
    /// Where it comes in its FOSS's series (for sorting).
    #[serde(default)]
    pub order: u32,
    /// The tutorial's main video: the one completion is judged on.
    #[serde(default)]
    pub main: bool,
    /// Beginner, intermediate, ... as the site names its levels.
    #[serde(default)]
    pub level: Option<String>,
}

/// One publication of one FOSS's catalog, as shipped on the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogRecord {
    /// UUID v7 of this publication.
    #[serde(rename = "_id")]
    pub id: Uuid,
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Always [`Kind::Catalog`].
    pub kind: Kind,
    /// When it was published: a newer publication of the FOSS wins.
    #[serde(with = "ts_millis")]
    pub version: DateTime<Utc>,
    /// The FOSS whose whole catalog this is: its videos not listed here
    /// become inactive.
    pub foss: String,
    /// Its videos.
    pub items: Vec<CatalogItem>,
}

/// Why a catalog (an item, or a whole publication) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CatalogError {
    /// The field, e.g. `items[3].duration`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl CatalogError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl CatalogItem {
    /// Checks one item: names present and short enough, a positive finite
    /// duration of at most a day.
    pub fn check(&self) -> Result<(), CatalogError> {
        for (field, value, max) in [
            ("foss", self.foss.as_str(), limits::VALUE),
            ("tutorial", &self.tutorial, limits::VALUE),
            ("language", &self.language, limits::VALUE),
            ("video_id", &self.video_id, limits::VALUE),
            ("title", &self.title, limits::VALUE),
        ] {
            if value.trim().is_empty() {
                return Err(CatalogError::new(field, "empty"));
            }
            if value.chars().count() > max {
                return Err(CatalogError::new(
                    field,
                    format!("longer than {max} characters"),
                ));
            }
        }
        if let Some(level) = &self.level
            && level.chars().count() > limits::SHORT
        {
            return Err(CatalogError::new(
                "level",
                format!("longer than {} characters", limits::SHORT),
            ));
        }
        if let Some(d) = self.duration
            && !(d.is_finite() && d > 0.0 && d <= MAX_DURATION)
        {
            return Err(CatalogError::new(
                "duration",
                format!("must be a number of seconds over 0 and at most {MAX_DURATION}"),
            ));
        }
        Ok(())
    }
}

impl CatalogRecord {
    /// A publication of `foss`'s catalog made now.
    pub fn new(foss: &str, items: Vec<CatalogItem>) -> Self {
        Self::at(foss, items, Utc::now())
    }

    /// A publication of `foss`'s catalog made at `version`
    /// (to the millisecond, as records carry times).
    pub fn at(foss: &str, items: Vec<CatalogItem>, version: DateTime<Utc>) -> Self {
        let version =
            DateTime::from_timestamp_millis(version.timestamp_millis()).unwrap_or(version);
        let id = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            u64::try_from(version.timestamp()).unwrap_or_default(),
            version.timestamp_subsec_nanos(),
        ));
        Self {
            id,
            schema_version: SCHEMA_VERSION,
            kind: Kind::Catalog,
            version,
            foss: foss.to_owned(),
            items,
        }
    }

    /// Checks the publication: every item valid and of this FOSS, at most
    /// [`MAX_CATALOG_ITEMS`], each `video_id` once, at most one main video
    /// per tutorial and language.
    pub fn check(&self) -> Result<(), CatalogError> {
        if self.kind != Kind::Catalog {
            return Err(CatalogError::new("kind", "must be `catalog`"));
        }
        if self.foss.trim().is_empty() || self.foss.chars().count() > limits::VALUE {
            return Err(CatalogError::new(
                "foss",
                format!("must be 1 to {} characters", limits::VALUE),
            ));
        }
        if self.items.len() > MAX_CATALOG_ITEMS {
            return Err(CatalogError::new(
                "items",
                format!("more than {MAX_CATALOG_ITEMS} items"),
            ));
        }
        let mut videos = std::collections::HashSet::new();
        let mut mains = std::collections::HashSet::new();
        for (i, item) in self.items.iter().enumerate() {
            item.check()
                .map_err(|e| CatalogError::new(format!("items[{i}].{}", e.field), e.message))?;
            if item.foss != self.foss {
                return Err(CatalogError::new(
                    format!("items[{i}].foss"),
                    "not the FOSS this publication is for",
                ));
            }
            if !videos.insert(item.video_id.as_str()) {
                return Err(CatalogError::new(
                    format!("items[{i}].video_id"),
                    "listed twice",
                ));
            }
            if item.main && !mains.insert((item.tutorial.as_str(), item.language.as_str())) {
                return Err(CatalogError::new(
                    format!("items[{i}].main"),
                    "a second main video for the same tutorial and language",
                ));
            }
        }
        Ok(())
    }

    /// Splits items of any FOSS into one publication per FOSS, all made
    /// at `version`, in the order each FOSS first appears.
    pub fn per_foss(items: Vec<CatalogItem>, version: DateTime<Utc>) -> Vec<CatalogRecord> {
        let mut out: Vec<CatalogRecord> = Vec::new();
        for item in items {
            match out.iter_mut().find(|r| r.foss == item.foss) {
                Some(r) => r.items.push(item),
                None => out.push(Self::at(&item.foss.clone(), vec![item], version)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(tutorial: &str, video: &str, main: bool) -> CatalogItem {
        CatalogItem {
            foss: "Python".into(),
            tutorial: tutorial.into(),
            language: "English".into(),
            video_id: video.into(),
            title: format!("{tutorial} video"),
            duration: Some(600.0),
            order: 1,
            main,
            level: Some("beginner".into()),
        }
    }

    #[test]
    fn a_good_publication_round_trips() {
        let r = CatalogRecord::new(
            "Python",
            vec![item("Intro", "v1", true), item("Intro", "v2", false)],
        );
        r.check().unwrap();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["kind"], "catalog");
        assert_eq!(serde_json::from_value::<CatalogRecord>(json).unwrap(), r);
        assert_eq!(r.id.get_version_num(), 7);
    }

    #[test]
    fn bad_publications_are_refused_naming_the_field() {
        let mut r = CatalogRecord::new(
            "Python",
            vec![item("Intro", "v1", true), item("Intro", "v1", false)],
        );
        assert_eq!(r.check().unwrap_err().field, "items[1].video_id");
        r.items[1].video_id = "v2".into();
        r.items[1].main = true;
        assert_eq!(r.check().unwrap_err().field, "items[1].main");
        r.items[1].main = false;
        r.items[1].duration = Some(f64::NAN);
        assert_eq!(r.check().unwrap_err().field, "items[1].duration");
        r.items[1].duration = Some(0.0);
        assert_eq!(r.check().unwrap_err().field, "items[1].duration");
        r.items[1].duration = None;
        r.check().unwrap();
        r.items[1].foss = "Java".into();
        assert_eq!(r.check().unwrap_err().field, "items[1].foss");
        r.items[1].foss = "Python".into();
        r.items[0].title = " ".into();
        assert_eq!(r.check().unwrap_err().field, "items[0].title");
    }

    #[test]
    fn items_split_per_foss_at_one_version() {
        let mut java = item("Hello", "j1", true);
        java.foss = "Java".into();
        let at = Utc::now();
        let split =
            CatalogRecord::per_foss(vec![item("A", "p1", true), java, item("B", "p2", true)], at);
        assert_eq!(split.len(), 2);
        assert_eq!(split[0].foss, "Python");
        assert_eq!(split[0].items.len(), 2);
        assert_eq!(split[1].items[0].video_id, "j1");
        assert!(
            split
                .iter()
                .all(|r| r.version.timestamp_millis() == at.timestamp_millis() && r.check().is_ok())
        );
    }
}
