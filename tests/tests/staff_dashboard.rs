//! The staff dashboard in headless Chromium, on the example site with a
//! consumer: a learner gets 403, staff see the figures of the traffic this
//! test sent. The screenshot is `docs/analytics.png`.

#![allow(clippy::unwrap_used)]

#[path = "../../consumer/tests/common/mod.rs"]
mod common;
mod support;

use std::time::Duration;

use bson::{Document, doc};
use serde_json::json;
use visitlog_tests::{Namespace, cookies, eventually, http, shared_mongodb_uri, test_database};

use common::{InProcess, config};
use support::{CaptureConfig, Site, log_in};

const WAIT: Duration = Duration::from_secs(90);

/// A learner's browser without JavaScript: logs in, opens a tutorial page.
async fn learner_views(site: &Site, user: &str, page: &str) {
    let client = http();
    let login = client
        .post(site.url("/login"))
        .form(&[("username", user)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let jar = cookies(&login).join("; ");
    let response = client
        .get(site.url(page))
        .header("cookie", jar)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_see_the_dashboard_with_real_figures_and_a_learner_gets_403() {
    let Some(mut browser) = visitlog_tests::browser::Browser::launch().await.unwrap() else {
        return;
    };
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let consumer = InProcess::start(visitlog_consumer::config::Config {
        derive_interval: Duration::from_millis(300),
        ..config(&ns, &uri, &db, "dashboard")
    });
    let site = Site::start_with_progress(ns.config(), &uri, &db)
        .await
        .unwrap();
    site.publish_catalog().unwrap();
    for i in 1..=6 {
        learner_views(
            &site,
            &format!("learner{i}"),
            "/watch/Python/Getting-started/English/",
        )
        .await;
    }
    for i in 1..=2 {
        learner_views(
            &site,
            &format!("scilab{i}"),
            "/watch/Scilab/Vectors/English/",
        )
        .await;
    }
    let daily = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap()
        .database(&db)
        .collection::<Document>("tutorial_daily");
    eventually(WAIT, Duration::from_millis(250), async || {
        let views = |tutorial: &'static str| {
            let daily = daily.clone();
            async move {
                daily
                    .find_one(doc! { "tutorial": tutorial })
                    .await
                    .unwrap()
                    .and_then(|d| {
                        d.get_i64("page_views")
                            .ok()
                            .or(d.get_i32("page_views").ok().map(i64::from))
                    })
            }
        };
        match (views("Getting-started").await, views("Vectors").await) {
            (Some(6), Some(2)) => Ok(()),
            other => Err(format!("tutorial page views so far: {other:?}")),
        }
    })
    .await
    .unwrap();

    // A learner: 403 for the page and the API, and no figure on the page.
    log_in(&mut browser, &site, "carol").await;
    browser.goto(&site.url("/staff/analytics/")).await.unwrap();
    let text = browser.eval("document.body.innerText").await.unwrap();
    assert!(text.as_str().unwrap().contains("for staff only"), "{text}");
    // (The refusal page allows no fetch at all: ask from the home page.)
    browser.goto(&site.url("/")).await.unwrap();
    let status = browser
        .eval("fetch('/staff/analytics/api/tutorials').then(r => r.status)")
        .await
        .unwrap();
    assert_eq!(status, json!(403));

    // Staff (`admin`, the example's default): the dashboard with the figures.
    browser
        .eval("fetch('/logout', { method: 'POST' }).then(() => true)")
        .await
        .unwrap();
    log_in(&mut browser, &site, "admin").await;
    // The learner's 403s are expected; from here on, no console error.
    browser.console_errors.clear();
    browser
        .call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1280, "height": 1640, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await
        .unwrap();
    browser.goto(&site.url("/staff/analytics")).await.unwrap();
    browser
        .wait_for("document.body.dataset.loaded === 'true'")
        .await
        .unwrap();
    let url = browser.eval("location.pathname").await.unwrap();
    assert_eq!(
        url,
        json!("/staff/analytics/"),
        "redirected to the page's own directory"
    );
    let rows = browser
        .eval(
            "[...document.querySelectorAll('#tutorials tbody tr')].map(tr => [...tr.cells].map(td => td.textContent))",
        )
        .await
        .unwrap();
    let rows = rows.as_array().unwrap();
    let row = |tutorial: &str| {
        rows.iter()
            .find(|r| r[1] == json!(tutorial) && r[2] == json!("English"))
            .unwrap_or_else(|| panic!("no {tutorial} in {rows:?}"))
            .clone()
    };
    // Columns: FOSS, Tutorial, Language, Views, Visitors, Learners, …
    let started = row("Getting-started");
    assert_eq!(
        (&started[3], &started[5]),
        (&json!("6"), &json!("6")),
        "{started}"
    );
    let vectors = row("Vectors");
    assert_eq!(
        (&vectors[3], &vectors[5]),
        (&json!("2"), &json!("2")),
        "{vectors}"
    );
    assert_eq!(rows[0][1], json!("Getting-started"), "most viewed first");
    let catalog = visitlog_example::catalog().len();
    assert_eq!(
        rows.len(),
        catalog,
        "every catalog tutorial and language has a row"
    );
    let learners = browser
        .eval("[...document.querySelectorAll('.card')].find(c => c.querySelector('.k').textContent === 'Learners').querySelector('.v').textContent")
        .await
        .unwrap();
    let learners: u64 = learners.as_str().unwrap().parse().unwrap();
    assert!(
        learners >= 8,
        "the eight learners, and carol on the home page: {learners}"
    );
    let unwatched = browser
        .eval("document.querySelectorAll('#unwatched tbody tr').length")
        .await
        .unwrap();
    assert_eq!(unwatched, json!(catalog), "nobody played a video");
    // Sort by views, ascending: a click on the header.
    browser
        .eval("[...document.querySelectorAll('#tutorials th')].find(th => th.textContent === 'Views').click(); true")
        .await
        .unwrap();
    let first = browser
        .eval("document.querySelector('#tutorials tbody tr').cells[3].textContent")
        .await
        .unwrap();
    assert_eq!(first, json!("0"), "least viewed first after the click");
    browser
        .eval("[...document.querySelectorAll('#tutorials th')].find(th => th.textContent === 'Views').click(); true")
        .await
        .unwrap();

    let path = visitlog_tests::browser::artifacts_dir().join("analytics.png");
    browser.screenshot(&path).await.unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > 10_000);
    assert!(
        browser.console_errors.is_empty(),
        "console errors (a CSP violation shows here): {:?}",
        browser.console_errors
    );
    site.shutdown(Duration::from_secs(5)).await;
    consumer.stop().await;
}
