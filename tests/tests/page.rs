//! The tutorial page's script in headless Chromium, against the layer's
//! limits: what the endpoint refuses with 429 is sent again, once, in order.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

mod support;

use visitlog_tests::browser::Browser;
use visitlog_tests::{Namespace, eventually};

use support::{CaptureConfig, Site, log_in};

const PAGE: &str = "/watch/Python/Getting-started/English/";

/// An impatient learner clicks along the timeline eight times in a row with
/// a limit of one request a second (burst 2): most seeks are refused with
/// 429 and `Retry-After`, the page holds them (and what follows) and sends
/// them again, and each reaches Redis exactly once, in the order clicked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_events_are_sent_again_once_and_in_order() {
    let Some(mut browser) = Browser::launch().await.unwrap() else {
        return;
    };
    let ns = Namespace::new();
    let site = Site::start(ns.config().events_rate(1.0).events_burst(2))
        .await
        .unwrap();
    log_in(&mut browser, &site, "dave").await;
    browser.goto(&site.url(PAGE)).await.unwrap();
    browser
        .eval(
            "(async () => {
                const v = document.getElementById('player');
                if (v.readyState < 1) await new Promise(r => v.addEventListener('loadedmetadata', r, { once: true }));
                for (let t = 1; t <= 8; t++) {
                    const seeked = new Promise(r => v.addEventListener('seeked', r, { once: true }));
                    v.currentTime = t * 3;
                    await seeked;
                }
                return true;
            })()",
        )
        .await
        .unwrap();

    let seeks = |records: Vec<serde_json::Value>| -> Vec<f64> {
        records
            .iter()
            .filter(|r| r["kind"] == "event" && r["type"] == "video.seek")
            .map(|r| r["to"].as_f64().unwrap())
            .collect()
    };
    // Eight seeks, or what there is after the wait: the assertion tells.
    let waited = eventually(
        Duration::from_secs(30),
        Duration::from_millis(200),
        async || {
            let found = seeks(ns.records().await.unwrap());
            if found.len() >= 8 {
                Ok(found)
            } else {
                Err("fewer than 8 seeks")
            }
        },
    )
    .await;
    let seeks = match waited {
        Ok(found) => found,
        Err(_) => seeks(ns.records().await.unwrap()),
    };
    let expected: Vec<f64> = (1..=8).map(|t| f64::from(t) * 3.0).collect();
    assert_eq!(seeks, expected, "each seek once, in the order clicked");
    let stats = site.shutdown(Duration::from_secs(5)).await;
    assert!(stats.events_refused > 0, "the limit was reached: {stats:?}");
}
