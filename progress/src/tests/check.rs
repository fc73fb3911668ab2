//! [`Progress::check`] accepts exactly what the `tutorial_progress` JSON
//! validator accepts of the stored document: documents folded from a
//! history, then broken (or not) at each rule's edge, a few rules at once.

use proptest::prelude::*;
use visitlog_schema::edges::{date, number, text};

use super::*;

/// Any UUID (of any version and variant), or a v7.
fn uuid() -> impl Strategy<Value = Uuid> {
    prop_oneof![
        any::<u128>().prop_map(Uuid::from_u128),
        Just(Uuid::now_v7())
    ]
}

/// One change of a document, at or past one rule's edge (or well inside).
#[derive(Debug, Clone)]
enum Change {
    Id(String),
    Learner(String),
    Foss(String),
    Tutorial(String),
    Language(String),
    VideoId(Option<String>),
    FirstVisit(DateTime<Utc>),
    CompletedAt(DateTime<Utc>),
    UpdatedAt(DateTime<Utc>),
    Watched(usize, u32),
    Duration(Option<f64>),
    Coverage(f64),
    Videos(usize),
    VideoId0(String),
    VideoDuration(Option<f64>),
    Seen(usize),
    Counted(Option<usize>),
    Played(f64),
    Wall(f64),
    Suspect(f64),
    VideoCoverage(Option<f64>),
    Views(usize),
    PageViews(usize),
    PageViewId(Uuid),
    PageViewAt(DateTime<Utc>),
    PageViewWall(f64),
    Streams(usize),
    Context(String),
    StreamVideo(String),
    Position(f64),
    Since(DateTime<Utc>),
    StreamWall(f64),
    ClientEvents(usize),
    Manual(Option<(DateTime<Utc>, Option<String>)>),
    RecentVisits(usize, u32),
    Through(Uuid),
    Folded(u64),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        prop_oneof![
            "[0-9a-f]{32}".prop_map(Change::Id),
            "[0-9a-fA-Fg]{31,33}".prop_map(Change::Id),
            text(272).prop_map(Change::Learner),
            text(512).prop_map(Change::Foss),
            text(512).prop_map(Change::Tutorial),
            text(512).prop_map(Change::Language),
            proptest::option::of(text(512)).prop_map(Change::VideoId),
            date().prop_map(Change::FirstVisit),
            date().prop_map(Change::CompletedAt),
            date().prop_map(Change::UpdatedAt),
        ],
        prop_oneof![
            (254..=258_usize, 86_398..=86_402_u32).prop_map(|(n, end)| Change::Watched(n, end)),
            proptest::option::of(number(86_400.0)).prop_map(Change::Duration),
            number(1.0).prop_map(Change::Coverage),
            (0..=18_usize).prop_map(Change::Videos),
            text(512).prop_map(Change::VideoId0),
            proptest::option::of(number(86_400.0)).prop_map(Change::VideoDuration),
            (10_797..=10_803_usize).prop_map(Change::Seen),
            proptest::option::of(10_797..=10_803_usize).prop_map(Change::Counted),
            number(1e6).prop_map(Change::Played),
            number(1e6).prop_map(Change::Wall),
        ],
        prop_oneof![
            number(1e6).prop_map(Change::Suspect),
            proptest::option::of(number(1.0)).prop_map(Change::VideoCoverage),
            (17_278..=17_282_usize).prop_map(Change::Views),
            (0..=34_usize).prop_map(Change::PageViews),
            uuid().prop_map(Change::PageViewId),
            date().prop_map(Change::PageViewAt),
            number(1e6).prop_map(Change::PageViewWall),
            (0..=66_usize).prop_map(Change::Streams),
            text(600).prop_map(Change::Context),
            text(512).prop_map(Change::StreamVideo),
        ],
        prop_oneof![
            number(86_400.0).prop_map(Change::Position),
            date().prop_map(Change::Since),
            number(1e6).prop_map(Change::StreamWall),
            (0..=258_usize).prop_map(Change::ClientEvents),
            proptest::option::of((date(), proptest::option::of(text(64)))).prop_map(Change::Manual),
            (0..=18_usize, 0..=2_u32).prop_map(|(n, v)| Change::RecentVisits(n, v)),
            uuid().prop_map(Change::Through),
            (0..=2_u64).prop_map(Change::Folded),
        ],
    ]
}

/// `n` copies of the first item of `v` (the base document has one of each).
fn resize<T: Clone>(v: &mut Vec<T>, n: usize) {
    if let Some(first) = v.first().cloned() {
        v.resize(n, first);
    }
}

impl Change {
    fn apply(self, p: &mut Progress) {
        match self {
            Change::Id(s) => p.id = s,
            Change::Learner(s) => p.learner = s,
            Change::Foss(s) => p.foss = s,
            Change::Tutorial(s) => p.tutorial = s,
            Change::Language(s) => p.language = s,
            Change::VideoId(s) => p.video_id = s,
            Change::FirstVisit(t) => p.first_visit = Some(t),
            Change::CompletedAt(t) => p.completed_at = Some(t),
            Change::UpdatedAt(t) => p.updated_at = t,
            Change::Watched(n, end) => {
                p.watched = (0..n as u32).map(|k| [k, k + 1]).collect();
                if let Some(last) = p.watched.last_mut() {
                    last[1] = end;
                }
            }
            Change::Duration(d) => p.duration = d,
            Change::Coverage(c) => p.coverage = c,
            Change::Videos(n) => resize(&mut p.videos, n),
            Change::PageViews(n) => resize(&mut p.page_views, n),
            Change::Streams(n) => resize(&mut p.streams, n),
            Change::ClientEvents(n) => p.client_events = (0..n).map(|_| Uuid::new_v4()).collect(),
            Change::Manual(m) => {
                p.manual = m.map(|(at, visit)| Manual {
                    completed: false,
                    at,
                    visit,
                })
            }
            Change::RecentVisits(n, visit) => {
                p.recent_visits = (0..n)
                    .map(|_| RecentVisit {
                        visitor: Uuid::new_v4(),
                        visit,
                    })
                    .collect();
            }
            Change::Through(id) => p.through = id,
            Change::Folded(n) => p.folded = n,
            video_change => {
                for v in &mut p.videos {
                    video_change.clone().apply_video(v);
                }
                for s in &mut p.streams {
                    video_change.clone().apply_stream(s);
                }
                for pv in &mut p.page_views {
                    video_change.clone().apply_page_view(pv);
                }
            }
        }
    }

    fn apply_video(self, v: &mut VideoProgress) {
        match self {
            Change::VideoId0(s) => v.video_id = s,
            Change::VideoDuration(d) => v.duration = d,
            Change::Seen(n) => v.seen = Seconds::from_raw(vec![1; n]),
            Change::Counted(n) => v.counted = n.map(|n| Seconds::from_raw(vec![1; n])),
            Change::Played(x) => v.played_s = x,
            Change::Wall(x) => v.wall_s = x,
            Change::Suspect(x) => v.suspect_s = x,
            Change::VideoCoverage(c) => v.coverage = c,
            Change::Views(n) => v.views = vec![1; n],
            _ => {}
        }
    }

    fn apply_stream(self, s: &mut Stream) {
        match self {
            Change::Context(c) => s.context = c,
            Change::StreamVideo(c) => s.video_id = c,
            Change::Position(x) => s.position = x,
            Change::Since(t) => s.since = t,
            Change::StreamWall(x) => s.wall_s = x,
            _ => {}
        }
    }

    fn apply_page_view(self, p: &mut PageView) {
        match self {
            Change::PageViewId(id) => p.id = id,
            Change::PageViewAt(t) => p.at = t,
            Change::PageViewWall(x) => p.wall_s = x,
            _ => {}
        }
    }
}

/// A folded document with one of everything the check looks at.
fn base() -> Progress {
    let p = two_visits().fold();
    assert!(
        !p.videos.is_empty() && !p.page_views.is_empty() && !p.streams.is_empty(),
        "{p:?}"
    );
    p
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn the_check_accepts_exactly_what_the_validator_does(
        changes in proptest::collection::vec(change(), 0..=3),
    ) {
        let validator = RecordValidator::new(Collection::TutorialProgress).unwrap();
        let mut p = base();
        for c in changes {
            c.apply(&mut p);
        }
        let doc = p.to_document().unwrap();
        // What the consumer writes is the same document, byte for byte.
        let raw = p.to_raw_document().unwrap();
        let bytes = bson::to_vec(&doc).unwrap();
        prop_assert_eq!(raw.as_bytes(), bytes.as_slice());
        let by_json = validator.validate(&json_for_validation(&doc));
        let typed = p.check();
        prop_assert_eq!(typed.is_ok(), by_json.is_ok(), "check: {:?}, validator: {:?}", typed, by_json);
    }
}

#[test]
fn folded_documents_pass_and_each_refusal_names_its_field() {
    let p = base();
    assert_eq!(p.check(), Ok(()));
    let mut bad = p.clone();
    bad.videos[0].played_s = f64::NAN;
    assert_eq!(bad.check().unwrap_err().path, "/videos/0/played_s");
    let mut bad = p.clone();
    bad.through = Uuid::new_v4();
    assert_eq!(bad.check().unwrap_err().path, "/through");
    let mut bad = p;
    bad.streams[0].since = DateTime::from_timestamp_millis(253_402_300_800_000).unwrap();
    assert_eq!(bad.check().unwrap_err().path, "/streams/0/since");
}
