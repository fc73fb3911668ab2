//! A learner's standing in one tutorial across its languages: completed in
//! any language, which ones, and where to continue when this language was
//! never played but another was (the resume position mapped by fraction of
//! the duration). Pure functions of the stored documents, so the rules are
//! tested without MongoDB; [`ProgressReader`](crate::ProgressReader) reads
//! the documents and calls them.

use serde::Serialize;

use crate::{Progress, VideoPosition};

/// One tutorial with all its languages: what "x of N tutorials completed"
/// counts (a tutorial completed in two languages is one tutorial).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TutorialLanguages {
    /// Tutorial.
    pub foss: String,
    /// Tutorial.
    pub tutorial: String,
    /// Completed in at least one language.
    pub completed_any_language: bool,
    /// The languages it is completed in, sorted.
    pub completed_languages: Vec<String>,
    /// The progress of each language the learner has any, sorted by language.
    pub languages: Vec<Progress>,
}

impl TutorialLanguages {
    /// Groups progress documents (of one learner and foss, in any order) by
    /// tutorial; tutorials sorted by name.
    pub fn group(mut progress: Vec<Progress>) -> Vec<TutorialLanguages> {
        progress.sort_by(|a, b| {
            (&a.foss, &a.tutorial, &a.language).cmp(&(&b.foss, &b.tutorial, &b.language))
        });
        let mut out: Vec<TutorialLanguages> = Vec::new();
        for p in progress {
            match out.last_mut() {
                Some(t) if t.foss == p.foss && t.tutorial == p.tutorial => t.languages.push(p),
                _ => out.push(TutorialLanguages {
                    foss: p.foss.clone(),
                    tutorial: p.tutorial.clone(),
                    completed_any_language: false,
                    completed_languages: Vec::new(),
                    languages: vec![p],
                }),
            }
        }
        for t in &mut out {
            t.completed_languages = completed_languages(&t.languages);
            t.completed_any_language = !t.completed_languages.is_empty();
        }
        out
    }
}

/// A learner on one tutorial page (one language), seen across languages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LanguageStatus {
    /// The page's language.
    pub language: String,
    /// This language's progress, if any.
    pub progress: Option<Progress>,
    /// Completed in at least one language (this one included).
    pub completed_any_language: bool,
    /// The languages the tutorial is completed in, sorted.
    pub completed_languages: Vec<String>,
    /// Where to start this language's video, in its seconds: its own resume
    /// position, else another language's mapped by fraction of the duration
    /// (when this language's duration is known); `None` when there is none.
    pub resume_position: Option<f64>,
    /// The resume point as a fraction of the duration (0 to 1), when known:
    /// a page that learns its video's duration only from the media maps it
    /// itself.
    pub resume_fraction: Option<f64>,
    /// The language the resume point comes from, when not this one.
    pub resume_from_language: Option<String>,
}

impl LanguageStatus {
    /// The status of `language` from the learner's `progress` and resume
    /// `positions` in every language of one tutorial.
    ///
    /// `duration` is this language's video duration when the caller knows
    /// it (a catalogue); else this language's progress or position says it.
    /// Own position first, even 0 (watched to the end: nothing to continue);
    /// else the most recently updated other language with a position past 0
    /// and a known duration.
    pub fn of(
        language: &str,
        duration: Option<f64>,
        progress: Vec<Progress>,
        positions: &[VideoPosition],
    ) -> Self {
        let completed_languages = completed_languages(&progress);
        let own_progress = progress.iter().find(|p| p.language == language).cloned();
        let known = |d: Option<f64>| d.filter(|d| d.is_finite() && *d > 0.0);
        // Positions of one language, newest first.
        let mut newest: Vec<&VideoPosition> = positions.iter().collect();
        newest.sort_by_key(|p| std::cmp::Reverse((p.updated_at, p.last_event)));
        let duration_of = |p: &VideoPosition| {
            known(Some(p.duration)).or_else(|| {
                known(
                    progress
                        .iter()
                        .find(|q| q.language == p.language)
                        .and_then(|q| q.duration),
                )
            })
        };
        // This language's main video (the progress names it), else its newest.
        let main = own_progress.as_ref().and_then(|p| p.video_id.as_deref());
        let own = newest
            .iter()
            .filter(|p| p.language == language)
            .find(|p| main.is_none_or(|m| p.video_id == m))
            .or_else(|| newest.iter().find(|p| p.language == language));
        let this_duration = known(duration)
            .or_else(|| known(own_progress.as_ref().and_then(|p| p.duration)))
            .or_else(|| own.and_then(|p| duration_of(p)));

        let (resume_position, resume_fraction, resume_from_language) = match own {
            Some(p) => (
                Some(p.position),
                this_duration.map(|d| (p.position / d).clamp(0.0, 1.0)),
                None,
            ),
            None => {
                let other = newest
                    .iter()
                    .filter(|p| p.language != language && p.position > 0.0)
                    .find_map(|p| duration_of(p).map(|d| (p, (p.position / d).clamp(0.0, 1.0))));
                match other {
                    Some((p, fraction)) => (
                        this_duration.map(|d| fraction * d),
                        Some(fraction),
                        Some(p.language.clone()),
                    ),
                    None => (None, None, None),
                }
            }
        };
        Self {
            language: language.to_owned(),
            progress: own_progress,
            completed_any_language: !completed_languages.is_empty(),
            completed_languages,
            resume_position,
            resume_fraction,
            resume_from_language,
        }
    }
}

/// The completed languages among `progress`, sorted, once each.
fn completed_languages(progress: &[Progress]) -> Vec<String> {
    let mut languages: Vec<String> = progress
        .iter()
        .filter(|p| p.completed)
        .map(|p| p.language.clone())
        .collect();
    languages.sort();
    languages.dedup();
    languages
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};
    use uuid::Uuid;

    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_763_000_000, 0).unwrap_or_default()
    }

    fn progress(
        tutorial: &str,
        language: &str,
        completed: bool,
        duration: Option<f64>,
    ) -> Progress {
        let mut p = Progress::new("user:alice", "Python", tutorial, language, t0());
        p.completed = completed;
        p.duration = duration;
        p
    }

    fn position(language: &str, at: f64, duration: f64, minutes: i64) -> VideoPosition {
        let video_id = format!("Python/Getting-started/{language}");
        VideoPosition {
            id: visitlog_schema::video_position_id("user:alice", &video_id),
            learner: "user:alice".into(),
            video_id,
            foss: "Python".into(),
            tutorial: "Getting-started".into(),
            language: language.into(),
            position: at,
            duration,
            updated_at: t0() + Duration::minutes(minutes),
            last_event: Uuid::now_v7(),
        }
    }

    #[test]
    fn another_languages_position_is_mapped_by_fraction() {
        // English stopped at 220 of 600 s; the Hindi video is 660 s long.
        let s = LanguageStatus::of(
            "Hindi",
            Some(660.0),
            vec![progress("Getting-started", "English", false, Some(600.0))],
            &[position("English", 220.0, 600.0, 0)],
        );
        assert_eq!(s.resume_from_language.as_deref(), Some("English"));
        assert!(
            (s.resume_position.unwrap_or_default() - 242.0).abs() < 1e-9,
            "{s:?}"
        );
        assert!((s.resume_fraction.unwrap_or_default() - 220.0 / 600.0).abs() < 1e-12);
        assert!(!s.completed_any_language);
        assert!(s.progress.is_none());
    }

    #[test]
    fn own_position_wins_even_at_zero() {
        let s = LanguageStatus::of(
            "Hindi",
            Some(660.0),
            vec![],
            &[
                position("English", 220.0, 600.0, 5),
                position("Hindi", 0.0, 660.0, 0),
            ],
        );
        assert_eq!(s.resume_position, Some(0.0));
        assert_eq!(s.resume_from_language, None);
    }

    #[test]
    fn the_newest_other_language_with_a_duration_is_taken() {
        let s = LanguageStatus::of(
            "Tamil",
            None,
            vec![progress("Getting-started", "Tamil", false, Some(100.0))],
            &[
                position("English", 300.0, 600.0, 0),
                position("Hindi", 60.0, 600.0, 9),
                // Newest, but its duration is unknown anywhere: skipped.
                position("Marathi", 30.0, 0.0, 20),
                // At 0: nothing to continue.
                position("Bengali", 0.0, 600.0, 30),
            ],
        );
        assert_eq!(s.resume_from_language.as_deref(), Some("Hindi"));
        assert_eq!(
            s.resume_position,
            Some(10.0),
            "Tamil's duration from its progress"
        );
    }

    #[test]
    fn without_this_languages_duration_only_the_fraction_is_known() {
        let s = LanguageStatus::of(
            "Hindi",
            None,
            vec![],
            &[position("English", 150.0, 600.0, 0)],
        );
        assert_eq!(s.resume_position, None);
        assert_eq!(s.resume_fraction, Some(0.25));
        assert_eq!(s.resume_from_language.as_deref(), Some("English"));
    }

    #[test]
    fn completion_in_any_language_is_reported() {
        let s = LanguageStatus::of(
            "Hindi",
            Some(600.0),
            vec![
                progress("Getting-started", "Tamil", true, Some(600.0)),
                progress("Getting-started", "English", true, Some(600.0)),
                progress("Getting-started", "Hindi", false, Some(600.0)),
            ],
            &[],
        );
        assert!(s.completed_any_language);
        assert_eq!(s.completed_languages, ["English", "Tamil"]);
        assert_eq!(s.progress.map(|p| p.completed), Some(false));
        assert_eq!((s.resume_position, s.resume_from_language), (None, None));
    }

    #[test]
    fn tutorials_are_counted_once_whatever_their_languages() {
        let grouped = TutorialLanguages::group(vec![
            progress("Functions", "Marathi", false, None),
            progress("Getting-started", "Hindi", true, None),
            progress("Functions", "English", false, None),
            progress("Getting-started", "English", true, None),
        ]);
        assert_eq!(grouped.len(), 2, "two tutorials, four languages");
        let completed = grouped.iter().filter(|t| t.completed_any_language).count();
        assert_eq!(completed, 1);
        assert_eq!(grouped[0].tutorial, "Functions");
        let languages: Vec<_> = grouped[0].languages.iter().map(|p| &p.language).collect();
        assert_eq!(languages, ["English", "Marathi"]);
        assert_eq!(grouped[1].completed_languages, ["English", "Hindi"]);
    }
}
