//! Issue 12's page side, end to end in headless Chromium: the page script
//! sends `page.ping` while the page is visible and the learner active, with
//! the page's `page_view` and the active milliseconds since the previous
//! report; `page.hide` once per hiding; nothing from an idle page; and any
//! page of the site pings, not only tutorial pages. What the script sends
//! is read where it lands: the Redis queue, through the example site, the
//! events endpoint and the shipper (the consumer plays no part in these
//! rules). The script's intervals are shortened with `?ping_ms=` and
//! `?active_window_ms=` so the tests take seconds.

// Test helpers panic on failure; that is how a test fails.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use uuid::Uuid;
use visitlog_schema::{EventRecord, EventType};
use visitlog_tests::browser::Browser;
use visitlog_tests::{Namespace, eventually};

use support::{CaptureConfig, Site, log_in};

const PAGE: &str = "/watch/Python/Getting-started/English/";
const WAIT: Duration = Duration::from_secs(30);

/// A browser logged in as `user` on a site of its own, or `None` without
/// Chromium (when the harness allows it).
async fn logged_in(user: &str) -> Option<(Browser, Site, Namespace)> {
    let mut browser = Browser::launch().await.unwrap()?;
    let ns = Namespace::new();
    let site = Site::start(ns.config()).await.unwrap();
    log_in(&mut browser, &site, user).await;
    Some((browser, site, ns))
}

/// The page view the script tag names: the id of this page's request record.
async fn page_view_of(browser: &mut Browser) -> Uuid {
    let id = browser
        .eval("document.querySelector('script[data-page-view]').dataset.pageView")
        .await
        .unwrap();
    id.as_str().unwrap().parse().unwrap()
}

/// The page activity of `page_view` on the queue, in order, once per
/// `client_event_id` as the consumer stores it (a page that closes saves
/// its last events for the next page, which may send them again).
async fn activity(ns: &Namespace, page_view: Uuid) -> Vec<EventRecord> {
    let mut seen = std::collections::HashSet::new();
    ns.records()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r["kind"] == "event")
        .map(|r| serde_json::from_value::<EventRecord>(r).unwrap())
        .filter(|e| e.event_type.is_page_activity() && e.page_view == Some(page_view))
        .filter(|e| seen.insert(e.client_event_id))
        .collect()
}

fn count(events: &[EventRecord], kind: EventType) -> usize {
    events.iter().filter(|e| e.event_type == kind).count()
}

/// Waits until `page_view`'s activity satisfies `check`.
async fn wait_activity(
    ns: &Namespace,
    page_view: Uuid,
    check: impl Fn(&[EventRecord]) -> bool,
) -> Vec<EventRecord> {
    eventually(WAIT, Duration::from_millis(100), async || {
        let events = activity(ns, page_view).await;
        match check(&events) {
            true => Ok(events),
            false => Err(format!("page activity never matched: {events:?}")),
        }
    })
    .await
    .unwrap()
}

/// Input the page sees as the learner's: a key press every `every` ms.
const TYPE_AWAY: &str = "window.typing = setInterval(() => document.dispatchEvent(new KeyboardEvent('keydown', { key: 'j' })), EVERY); true";

/// Pretends the page is hidden or visible again, as switching tabs does.
fn set_visibility(state: &str) -> String {
    format!(
        "Object.defineProperty(document, 'visibilityState', {{ value: '{state}', configurable: true }}); document.dispatchEvent(new Event('visibilitychange')); true"
    )
}

/// A tutorial page left open with a learner at it: a ping each interval,
/// each with the page view, the tutorial, and the active time since the
/// previous one (more than 0, never more than elapsed); hidden, it sends
/// one `page.hide` and no pings; visible again, it pings again; closed, one
/// more `page.hide`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_page_with_an_active_learner_pings_and_each_hiding_sends_one_hide() {
    let Some((mut browser, site, ns)) = logged_in("ivan").await else {
        return;
    };
    let opened = Instant::now();
    browser
        .goto(&site.url(&format!("{PAGE}?ping_ms=1000&active_window_ms=1500")))
        .await
        .unwrap();
    let page_view = page_view_of(&mut browser).await;
    browser
        .eval(&TYPE_AWAY.replace("EVERY", "400"))
        .await
        .unwrap();

    let events = wait_activity(&ns, page_view, |e| count(e, EventType::PagePing) >= 3).await;
    let elapsed = opened.elapsed().as_millis() as u64;
    let pings: Vec<&EventRecord> = events
        .iter()
        .filter(|e| e.event_type == EventType::PagePing)
        .collect();
    for ping in &pings {
        let active = ping.active_ms.unwrap();
        // An interval is 1000 ms; timers may fire a little late.
        assert!(active > 0 && active <= 1500, "{ping:?}");
        assert_eq!(
            (
                ping.foss.as_str(),
                ping.tutorial.as_str(),
                ping.language.as_str()
            ),
            ("Python", "Getting-started", "English")
        );
        assert!(ping.client_event_id.is_some());
        assert_eq!(ping.learner, "user:ivan");
    }
    let total: u64 = pings.iter().map(|p| p.active_ms.unwrap()).sum();
    assert!(total <= elapsed, "active {total} ms of {elapsed} ms");
    for pair in pings.windows(2) {
        let gap = (pair[1].ts - pair[0].ts).num_milliseconds();
        assert!((500..=2500).contains(&gap), "pings {gap} ms apart");
    }

    // Hidden: one page.hide, then silence, though the learner still types.
    browser.eval(&set_visibility("hidden")).await.unwrap();
    let events = wait_activity(&ns, page_view, |e| count(e, EventType::PageHide) == 1).await;
    let pings_then = count(&events, EventType::PagePing);
    let hide = events
        .iter()
        .find(|e| e.event_type == EventType::PageHide)
        .unwrap();
    assert!(hide.active_ms.unwrap() <= 1500, "{hide:?}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let events = activity(&ns, page_view).await;
    assert_eq!(
        count(&events, EventType::PagePing),
        pings_then,
        "no ping while hidden"
    );
    assert_eq!(
        count(&events, EventType::PageHide),
        1,
        "one hide per hiding"
    );

    // Visible again: pinging starts over.
    browser.eval(&set_visibility("visible")).await.unwrap();
    wait_activity(&ns, page_view, |e| {
        count(e, EventType::PagePing) > pings_then
    })
    .await;

    // Closed (another page replaces it): pagehide and visibilitychange both
    // fire; one page.hide goes.
    browser
        .eval("delete document.visibilityState; true")
        .await
        .unwrap();
    browser.goto(&site.url("/")).await.unwrap();
    wait_activity(&ns, page_view, |e| count(e, EventType::PageHide) == 2).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let events = activity(&ns, page_view).await;
    assert_eq!(count(&events, EventType::PageHide), 2, "{events:?}");
    assert!(
        browser.console_errors.is_empty(),
        "{:?}",
        browser.console_errors
    );
    site.shutdown(Duration::from_secs(5)).await;
}

/// No input and the video paused: after the activity window the page
/// stops pinging; the learner's next key press brings the pings back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_page_stops_pinging_after_the_activity_window() {
    let Some((mut browser, site, ns)) = logged_in("judy").await else {
        return;
    };
    browser
        .goto(&site.url(&format!("{PAGE}?ping_ms=500&active_window_ms=1000")))
        .await
        .unwrap();
    let page_view = page_view_of(&mut browser).await;
    let paused = browser
        .eval("document.getElementById('player').paused")
        .await
        .unwrap();
    assert_eq!(paused, Value::Bool(true));
    // Arriving counts as input: a ping or two within the first second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let early = count(&activity(&ns, page_view).await, EventType::PagePing);
    assert!(early <= 3, "{early} pings");
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let later = count(&activity(&ns, page_view).await, EventType::PagePing);
    assert_eq!(later, early, "no ping after the activity window");

    // Back at the keyboard: pings again.
    browser
        .eval("document.dispatchEvent(new KeyboardEvent('keydown', { key: 'k' })); true")
        .await
        .unwrap();
    let events = wait_activity(&ns, page_view, |e| count(e, EventType::PagePing) > early).await;
    let ping = events
        .iter()
        .rfind(|e| e.event_type == EventType::PagePing)
        .unwrap();
    assert!(ping.active_ms.unwrap() > 0, "{ping:?}");
    site.shutdown(Duration::from_secs(5)).await;
}

/// Any page pings, not only tutorial pages (no video there: pings only,
/// without a tutorial); and a staff user's page and pings are marked
/// `staff` (`VISITLOG_EXAMPLE_STAFF`'s default, `admin`), the page's
/// record `text/html`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_page_pings_and_staff_are_marked() {
    let Some((mut browser, site, ns)) = logged_in("admin").await else {
        return;
    };
    browser.goto(&site.url("/?ping_ms=500")).await.unwrap();
    let page_view = page_view_of(&mut browser).await;
    let events = wait_activity(&ns, page_view, |e| count(e, EventType::PagePing) >= 1).await;
    let ping = &events[0];
    assert!(ping.staff, "{ping:?}");
    assert_eq!(
        (
            ping.foss.as_str(),
            ping.tutorial.as_str(),
            ping.language.as_str()
        ),
        ("", "", ""),
        "no tutorial on the home page"
    );
    let records = ns.records().await.unwrap();
    let page = records
        .iter()
        .find(|r| r["_id"] == page_view.to_string())
        .unwrap();
    assert_eq!(page["staff"], Value::Bool(true), "{page}");
    assert_eq!(page["content_type"], "text/html", "{page}");
    assert_eq!(page["user"], "admin");
    assert!(
        browser.console_errors.is_empty(),
        "{:?}",
        browser.console_errors
    );
    site.shutdown(Duration::from_secs(5)).await;
}
