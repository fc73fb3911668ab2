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
//! as JSON, and `GET /visitlog/stats` shows the layer's counters.
//!
//! The sample video (`assets/sample.webm`, 30 s, 24 KB) was made with
//! `ffmpeg -f lavfi -i testsrc=size=160x90:rate=2:duration=30 -c:v libvpx -crf 40 -b:v 12k -an sample.webm`.

mod assets;
mod pages;
mod progress;
mod session;

use axum::extract::FromRef;
use axum::routing::{get, post};
use axum::{Json, Router};
use visitlog_middleware::{CaptureLayer, Identity};
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
/// knows each language's duration (maps a position from another language).
pub const SAMPLE_SECONDS: f64 = 30.0;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    sessions: Sessions,
    progress: Option<ProgressReader>,
}

impl FromRef<AppState> for Sessions {
    fn from_ref(state: &AppState) -> Sessions {
        state.sessions.clone()
    }
}

/// The site's router, wrapped with `capture`, without learning progress.
///
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so the
/// layer sees the peer address.
pub fn app(capture: CaptureLayer) -> Router {
    app_with_progress(capture, None)
}

/// The site's router, reading resume positions and progress with `progress`.
pub fn app_with_progress(capture: CaptureLayer, progress: Option<ProgressReader>) -> Router {
    let sessions = Sessions::default();
    let lookup = sessions.clone();
    // The identity hook: reads the session cookie, no I/O.
    let capture = capture.identify(move |req: &axum::http::request::Parts| {
        match session::session_cookie(&req.headers) {
            Some(id) => match lookup.user(id) {
                Some(user) => Identity::user(user).with_session(id),
                None => Identity::anonymous(),
            },
            None => Identity::anonymous(),
        }
    });
    let stats_layer = capture.clone();
    Router::new()
        .route("/", get(pages::home))
        .route("/watch/{foss}/{tutorial}/{language}/", get(pages::watch))
        .route("/login", post(session::login))
        .route("/logout", post(session::logout))
        .route("/visitlog/events", capture.events())
        .route(
            "/api/progress/{foss}/{tutorial}/{language}",
            get(progress::api_progress),
        )
        .route("/static/sample.webm", get(assets::sample_video))
        .route("/static/progress.js", get(assets::progress_js))
        .route(
            "/visitlog/stats",
            get(move || {
                let s = stats_layer.stats();
                async move { Json(s) }
            }),
        )
        .fallback(pages::not_found)
        .with_state(AppState { sessions, progress })
        // `Router::layer` runs after routing, so the matched route is known.
        .layer(capture)
}
