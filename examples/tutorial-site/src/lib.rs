//! A tutorial website wrapped with visitlog's [`CaptureLayer`]: the reference
//! integration the README walks through.
//!
//! Run with: `cargo run -p visitlog-example -- --listen 127.0.0.1:8080`
//!
//! Pages: `/` lists tutorials, `/watch/{foss}/{tutorial}/{language}/` shows
//! one with a `<video>` element (resumed where the learner stopped, or where
//! they stopped in another language, "Completed in English", with "Mark
//! complete" / "Mark incomplete"; `?preload=none` serves the video with
//! `preload="none"`), `POST /login` (form field
//! `username`) starts a session, `POST /logout` ends it. `POST
//! /visitlog/events` takes the page script's learning events, `GET
//! /api/progress/{foss}/{tutorial}/{language}` answers the learner's progress
//! as JSON, and `GET /visitlog/stats` shows the layer's counters. With a
//! MongoDB ([`Store`]), `/staff/analytics/` serves the staff analytics
//! (dashboard and `/staff/analytics/api/…`) to the users named staff; any
//! other user gets 403, nobody logged in 401.
//!
//! Every HTML page loads the page script with its `data-page-view`, so any
//! page reports time on page (`page.ping`, `page.hide`); `?ping_ms=` and
//! `?active_window_ms=` shorten the script's intervals for tests. The site
//! publishes its catalog ([`catalog`]) at start-up, and users named in
//! `VISITLOG_EXAMPLE_STAFF` (default `admin`) are marked staff.
//!
//! The sample video (`assets/sample.webm`, 30 s, 24 KB) was made with
//! `ffmpeg -f lavfi -i testsrc=size=160x90:rate=2:duration=30 -c:v libvpx -crf 40 -b:v 12k -an sample.webm`.

use std::collections::HashSet;
use std::sync::Arc;

pub mod assets;
mod pages;
mod progress;
mod session;

use axum::extract::FromRef;
use axum::routing::{get, post};
use axum::{Json, Router};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use visitlog_analytics::staff::{Access, AnalyticsReader, Scope};
use visitlog_middleware::{CaptureLayer, CatalogItem, Identity};
use visitlog_progress::ProgressReader;

pub use session::{LoginForm, Sessions};

/// Name of the example's session cookie.
pub const SESSION_COOKIE: &str = "session";

/// The tutorials the site offers: (foss, tutorial, languages).
pub const CATALOGUE: &[(&str, &str, &[&str])] = &[
    ("Python", "Getting-started", &["English", "Hindi", "Tamil"]),
    ("Python", "Functions", &["English", "Marathi"]),
    (
        "LibreOffice-Writer",
        "Introduction",
        &["English", "Bengali"],
    ),
    ("Scilab", "Vectors", &["English"]),
];

/// The sample video's duration in seconds: every page plays it, so the site
/// knows each language's duration (maps a position from another language),
/// and its catalog says so. Measured once: the WebM's Segment Info
/// `Duration` element (EBML id `0x4489`) holds 30000.0 at a `TimecodeScale`
/// of 1 ms (`0x2AD7B1` = 1000000 ns), and Chromium reports
/// `video.duration` 30 (the page-script tests assert it).
pub const SAMPLE_SECONDS: f64 = 30.0;

/// Levels of the tutorials that have one (the catalog's `level` is optional).
const LEVELS: &[(&str, &str, &str)] = &[
    ("Python", "Getting-started", "beginner"),
    ("Python", "Functions", "intermediate"),
    ("LibreOffice-Writer", "Introduction", "beginner"),
];

/// The users marked staff when `VISITLOG_EXAMPLE_STAFF` is not set.
pub const DEFAULT_STAFF: &str = "admin";

/// The site's catalog, as it publishes it at start-up: one video per
/// tutorial and language (the page's `data-video-id`,
/// `{foss}/{tutorial}/{language}`), each the main video of its page, 30 s
/// (the sample), `order` the tutorial's position in its FOSS's series.
pub fn catalog() -> Vec<CatalogItem> {
    let mut items = Vec::new();
    let mut position: Vec<(&str, u32)> = Vec::new();
    for (foss, tutorial, languages) in CATALOGUE {
        let order = match position.iter_mut().find(|(f, _)| f == foss) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                position.push((foss, 1));
                1
            }
        };
        let level = LEVELS
            .iter()
            .find(|(f, t, _)| f == foss && t == tutorial)
            .map(|(_, _, level)| (*level).to_owned());
        for language in *languages {
            items.push(CatalogItem {
                foss: (*foss).to_owned(),
                tutorial: (*tutorial).to_owned(),
                language: (*language).to_owned(),
                video_id: format!("{foss}/{tutorial}/{language}"),
                title: format!("{foss}: {} ({language})", tutorial.replace('-', " ")),
                duration: Some(SAMPLE_SECONDS),
                order,
                main: true,
                level: level.clone(),
            });
        }
    }
    items
}

/// The users whose requests and events are marked staff: stored, but left
/// out of every analytics figure.
#[derive(Clone, Default)]
pub struct Staff(Arc<HashSet<String>>);

impl Staff {
    /// Staff named in a comma-separated list (blanks ignored), as
    /// `VISITLOG_EXAMPLE_STAFF` gives it.
    pub fn from_list(list: &str) -> Self {
        Self(Arc::new(
            list.split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect(),
        ))
    }

    /// Whether `user` is staff.
    pub fn contains(&self, user: &str) -> bool {
        self.0.contains(user)
    }

    /// `user`'s identity for visitlog: staff or not.
    pub(crate) fn identity(&self, user: &str) -> Identity {
        let identity = Identity::user(user);
        match self.0.contains(user) {
            true => identity.staff(),
            false => identity,
        }
    }
}

/// What the site reads from the consumer's MongoDB: learners' progress
/// and resume positions, and the staff analytics.
#[derive(Clone)]
pub struct Store {
    progress: ProgressReader,
    analytics: AnalyticsReader,
}

impl Store {
    /// Reads from `db`, the consumer's database.
    pub fn new(db: &mongodb::Database) -> Self {
        Self {
            progress: ProgressReader::new(db),
            analytics: AnalyticsReader::new(db),
        }
    }

    /// Connects (lazily) to `uri` and reads from `database`.
    pub async fn connect(uri: &str, database: &str) -> Result<Self, visitlog_progress::ReadError> {
        let db = visitlog_progress::connect_database(uri, database, "tutorial-site").await?;
        Ok(Self::new(&db))
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    sessions: Sessions,
    progress: Option<ProgressReader>,
    staff: Staff,
}

impl FromRef<AppState> for Sessions {
    fn from_ref(state: &AppState) -> Sessions {
        state.sessions.clone()
    }
}

impl FromRef<AppState> for Staff {
    fn from_ref(state: &AppState) -> Staff {
        state.staff.clone()
    }
}

/// The site's router, wrapped with `capture`, without a store (no
/// progress, no staff analytics).
///
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so the
/// layer sees the peer address.
pub fn app(capture: CaptureLayer) -> Router {
    app_with_store(capture, None)
}

/// The site's router, reading progress and analytics from `store`; the
/// staff are [`DEFAULT_STAFF`].
pub fn app_with_store(capture: CaptureLayer, store: Option<Store>) -> Router {
    app_with(capture, store, Staff::from_list(DEFAULT_STAFF))
}

/// The site's router, reading from `store`, with `staff` as its staff.
pub fn app_with(capture: CaptureLayer, store: Option<Store>, staff: Staff) -> Router {
    let sessions = Sessions::default();
    let lookup = sessions.clone();
    let marks = staff.clone();
    // The identity hook: reads the session cookie, no I/O; staff are
    // marked so that figures leave them out.
    let capture = capture.identify(move |req: &axum::http::request::Parts| {
        match session::session_cookie(&req.headers) {
            Some(id) => match lookup.user(id) {
                Some(user) => marks.identity(&user).with_session(id),
                None => Identity::anonymous(),
            },
            None => Identity::anonymous(),
        }
    });
    // Assets and the counters page are not page traffic.
    let capture = capture.skip_when(|req: &axum::http::request::Parts| {
        let path = req.uri.path();
        path.starts_with("/static/") || path == "/visitlog/stats"
    });
    let stats_layer = capture.clone();
    let progress = store.as_ref().map(|s| s.progress.clone());
    let mut router = Router::new();
    if let Some(store) = &store {
        // The staff check: the session's user, staff or not.
        let (users, staff) = (sessions.clone(), staff.clone());
        let analytics = visitlog_analytics::staff::router(
            store.analytics.clone(),
            move |req: &axum::http::request::Parts| match session::session_cookie(&req.headers)
                .and_then(|id| users.user(id))
            {
                None => Access::Unauthenticated,
                Some(user) if staff.contains(&user) => Access::Learners(Scope::all().viewer(user)),
                Some(_) => Access::Denied,
            },
        );
        router = router.nest_service("/staff/analytics", analytics);
    }
    router
        .route("/", get(pages::home))
        .route("/watch/{foss}/{tutorial}/{language}/", get(pages::watch))
        .route("/login", post(session::login))
        .route("/logout", post(session::logout))
        .route("/visitlog/events", capture.events())
        .route(
            "/api/progress/{foss}/{tutorial}/{language}",
            get(progress::api_progress),
        )
        .nest_service("/static", assets::static_files())
        .route(
            "/visitlog/stats",
            get(move || {
                let s = stats_layer.stats();
                async move { Json(s) }
            }),
        )
        .fallback(pages::not_found)
        .with_state(AppState {
            sessions,
            progress,
            staff,
        })
        // Inside the capture layer, so that records show their 408 and 413.
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        // `Router::layer` runs after routing, so the matched route is known.
        .layer(capture)
        .layer(TraceLayer::new_for_http())
}

/// The largest request body the site reads (the login form, learning
/// events; the events endpoint has its own, smaller limit).
const MAX_BODY: usize = 64 * 1024;

/// The longest a handler may take to answer.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
