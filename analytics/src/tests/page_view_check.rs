//! [`PageView::check`] accepts exactly what the `page_views` JSON validator
//! accepts of the stored document: a valid page view, then broken (or not)
//! at each rule's edge, a few rules at once.

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use visitlog_schema::edges::{date, number, text};
use visitlog_schema::{Collection, RecordValidator, Tutorial};

use crate::PageView;

fn base() -> PageView {
    let start = DateTime::from_timestamp_millis(1_763_000_000_000).unwrap_or_default();
    PageView {
        id: uuid::Uuid::now_v7().to_string(),
        learner: Some("user:alice".into()),
        user: Some("alice".into()),
        visitor_id: Some(uuid::Uuid::now_v7().to_string()),
        visit_number: Some(1),
        path: "/watch/Python/Getting-started/English/".into(),
        route: Some("/watch/{foss}/{tutorial}/{language}/".into()),
        tutorial: Some(Tutorial {
            foss: "Python".into(),
            tutorial: "Getting-started".into(),
            language: "English".into(),
        }),
        start,
        last_seen: start,
        engaged_s: 12.5,
        time_on_page_s: Some(30.0),
        estimated: false,
        day: "2025-11-13".into(),
        pings: 3,
        new_visit: true,
        returning: Some(false),
        country: Some("GB".into()),
        browser: Some("Chrome".into()),
        os: Some("Linux".into()),
        referrer_domain: Some("example.org".into()),
        fence: 7,
        derived_at: start,
    }
}

/// UUID-like text: canonical, upper case, cut, or with a wrong separator.
fn uuid_like() -> impl Strategy<Value = String> {
    (any::<u128>(), 0..4_u8).prop_map(|(n, how)| {
        let s = uuid::Uuid::from_u128(n).to_string();
        match how {
            0 => s,
            1 => s.to_uppercase(),
            2 => s[..35].to_owned(),
            _ => s.replacen('-', "_", 1),
        }
    })
}

#[derive(Debug, Clone)]
enum Change {
    Id(String),
    Learner(Option<String>),
    User(Option<String>),
    Visitor(Option<String>),
    VisitNumber(Option<u32>),
    Path(String),
    Route(Option<String>),
    Foss(String),
    Start(DateTime<Utc>),
    LastSeen(DateTime<Utc>),
    DerivedAt(DateTime<Utc>),
    Engaged(f64),
    OnPage(Option<f64>),
    Day(String),
    Country(Option<String>),
    Os(Option<String>),
    Referrer(Option<String>),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        uuid_like().prop_map(Change::Id),
        proptest::option::of(text(272)).prop_map(Change::Learner),
        proptest::option::of(text(256)).prop_map(Change::User),
        proptest::option::of(uuid_like()).prop_map(Change::Visitor),
        proptest::option::of(0..=2_u32).prop_map(Change::VisitNumber),
        text(2048).prop_map(Change::Path),
        proptest::option::of(text(256)).prop_map(Change::Route),
        text(512).prop_map(Change::Foss),
        date().prop_map(Change::Start),
        date().prop_map(Change::LastSeen),
        date().prop_map(Change::DerivedAt),
        number(1e6).prop_map(Change::Engaged),
        proptest::option::of(number(1e6)).prop_map(Change::OnPage),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9-]{9,11}|[0-9]{4}/[0-9]{2}/[0-9]{2}".prop_map(Change::Day),
        proptest::option::of(text(256)).prop_map(Change::Country),
        proptest::option::of(text(256)).prop_map(Change::Os),
        proptest::option::of(text(2048)).prop_map(Change::Referrer),
    ]
}

impl Change {
    fn apply(self, p: &mut PageView) {
        match self {
            Change::Id(s) => p.id = s,
            Change::Learner(s) => p.learner = s,
            Change::User(s) => p.user = s,
            Change::Visitor(s) => p.visitor_id = s,
            Change::VisitNumber(n) => p.visit_number = n,
            Change::Path(s) => p.path = s,
            Change::Route(s) => p.route = s,
            Change::Foss(s) => {
                if let Some(t) = &mut p.tutorial {
                    t.foss = s;
                }
            }
            Change::Start(t) => p.start = t,
            Change::LastSeen(t) => p.last_seen = t,
            Change::DerivedAt(t) => p.derived_at = t,
            Change::Engaged(x) => p.engaged_s = x,
            Change::OnPage(x) => p.time_on_page_s = x,
            Change::Day(s) => p.day = s,
            Change::Country(s) => p.country = s,
            Change::Os(s) => p.os = s,
            Change::Referrer(s) => p.referrer_domain = s,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn the_check_accepts_exactly_what_the_validator_does(
        changes in proptest::collection::vec(change(), 0..=3),
    ) {
        let validator = RecordValidator::new(Collection::PageViews).unwrap();
        let mut p = base();
        for c in changes {
            c.apply(&mut p);
        }
        let doc = p.to_document().unwrap();
        let by_json = validator.validate(&visitlog_progress::json_for_validation(&doc));
        let typed = p.check();
        prop_assert_eq!(typed.is_ok(), by_json.is_ok(), "check: {:?}, validator: {:?}", typed, by_json);
    }
}
