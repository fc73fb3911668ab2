//! Determinism: the same documents in any order give the same derived
//! documents, as recomputing a key after a replay or a reorder must.

use proptest::prelude::*;
use visitlog_progress::Progress;

use super::*;

/// A learner's random activity over two browsers and a few visits: pages
/// (some at the same instant), pings of them (some of another learner,
/// some stored twice) and video stretches.
#[derive(Debug, Clone)]
struct History {
    pages: Vec<RequestRecord>,
    pings: Vec<EventRecord>,
    events: Vec<EventRecord>,
}

fn history() -> impl Strategy<Value = History> {
    let pages = (0u32..20_000, 0usize..2, 1u32..4, any::<bool>());
    let pings = (0usize..64, 0u32..3_000, 0u64..40_000, 0u8..10);
    let stretch = (0usize..64, 0u32..600, 0u32..100, 1u32..60);
    (
        prop::collection::vec(pages, 1..12),
        prop::collection::vec(pings, 0..24),
        prop::collection::vec(stretch, 0..10),
    )
        .prop_map(|(pages, pings, stretches)| {
            let browsers = [Uuid::now_v7(), Uuid::now_v7()];
            let pages: Vec<RequestRecord> = pages
                .into_iter()
                .map(|(t, b, visit, anonymous)| {
                    let mut r = page(f64::from(t), browsers[b], visit, Some("alice"));
                    if anonymous {
                        r.user = None;
                    }
                    r.new_visit = Some(visit == 1);
                    r
                })
                .collect();
            let mut ping_list = Vec::new();
            for (i, t, active, odd) in pings {
                let r = &pages[i % pages.len()];
                let mut e = ping(r, f64::from(t), active);
                if odd == 0 {
                    e.learner = "user:mallory".into();
                }
                if odd == 1 {
                    ping_list.push(e.clone());
                }
                ping_list.push(e);
            }
            let mut events = Vec::new();
            for (i, t, from, len) in stretches {
                let r = &pages[i % pages.len()];
                if r.user.is_some() {
                    let to = f64::from((from + len).min(100));
                    events.push(watched(r, f64::from(t), f64::from(from), to));
                }
            }
            History {
                pages,
                pings: ping_list,
                events,
            }
        })
}

/// Everything derived from a history, given its documents in one order.
fn derive(
    h: &History,
) -> (
    Vec<PageView>,
    Vec<Session>,
    SiteDaily,
    TutorialDaily,
    VideoStats,
) {
    let r = rules();
    let mut visits: Vec<String> = h.pages.iter().map(visit_key).collect();
    visits.sort();
    visits.dedup();
    let mut pages: Vec<PageView> = Vec::new();
    for v in &visits {
        let mine: Vec<RequestRecord> = h
            .pages
            .iter()
            .filter(|p| visit_key(p) == *v)
            .cloned()
            .collect();
        pages.extend(visit_page_views(&mine, &h.pings, &r));
    }
    // As the consumer reads them: pages by start then _id, events by _id.
    let mut sorted = pages.clone();
    sorted.sort_by(|a, b| (a.start, &a.id).cmp(&(b.start, &b.id)));
    let mut events: Vec<EventRecord> = h.pings.iter().chain(&h.events).cloned().collect();
    events.extend(h.pages.iter().filter(|p| p.user.is_some()).map(view_event));
    events.sort_by_key(|e| e.id);
    events.dedup_by_key(|e| e.id);
    let sessions = sessions("user:alice", &sorted, &events, &r);
    let learning: Vec<&EventRecord> = events
        .iter()
        .filter(|e| !e.event_type.is_page_activity() && e.learner == "user:alice")
        .collect();
    let progress = Progress::fold(None, learning, &r.progress);
    let mut site = SiteDay::new(&day_of(t0()), &r);
    let mut tday = TutorialDay::new(
        TutorialDayKey {
            foss: "Python".into(),
            tutorial: "Getting-started".into(),
            language: "English".into(),
            day: day_of(t0()),
        },
        &r,
    );
    // The daily figures take pages in the order the records came.
    let mut arrival = pages.clone();
    arrival.sort_by_key(|p| h.pages.iter().position(|r| r.id.to_string() == p.id));
    for p in &arrival {
        site.add_page(p);
        tday.add_page(p);
    }
    for s in sessions.iter().rev() {
        site.add_session(s);
        tday.add_session(s);
    }
    let mut video = VideoStatsFold::new("Getting-started/video", None, r);
    if let Some(p) = &progress {
        site.add_completion(p);
        tday.add_completion(p);
        video.add(p);
    }
    (
        pages,
        sessions,
        site.finish(),
        tday.finish(),
        video.finish(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_order_of_the_same_documents_gives_the_same_documents(
        h in history(),
        seed in any::<u64>(),
    ) {
        let (pages, sessions, site, tday, video) = derive(&h);
        let mut shuffled = h.clone();
        let mut rng = seed;
        let mut shuffle = |n: usize| {
            // A small xorshift: the permutation is proptest's to shrink via `seed`.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n.max(1) as u64) as usize
        };
        for list in [&mut shuffled.pings, &mut shuffled.events] {
            for i in (1..list.len()).rev() {
                list.swap(i, shuffle(i + 1));
            }
        }
        for i in (1..shuffled.pages.len()).rev() {
            shuffled.pages.swap(i, shuffle(i + 1));
        }
        let again = derive(&shuffled);
        prop_assert_eq!(&again.0, &pages);
        prop_assert_eq!(&again.1, &sessions);
        prop_assert_eq!(&again.2, &site);
        prop_assert_eq!(&again.3, &tday);
        prop_assert_eq!(&again.4, &video);
        // And the figures agree with each other.
        prop_assert_eq!(site.totals.page_views as usize, pages.len());
        prop_assert!(pages.iter().all(|p| p.time_on_page_s.is_none_or(|t| p.engaged_s <= t)));
        let alice = pages.iter().filter(|p| p.learner.as_deref() == Some("user:alice")).count();
        prop_assert_eq!(sessions.iter().map(|s| s.page_views as usize).sum::<usize>(), alice);
        prop_assert!(sessions.windows(2).all(|w| w[1].start - w[0].end > chrono::Duration::minutes(30)));
    }
}
