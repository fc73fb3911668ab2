//! A tutorial website wrapped with visitlog's [`CaptureLayer`]: the reference
//! integration the README walks through.
//!
//! Run with: `cargo run -p visitlog-example -- --listen 127.0.0.1:8080`
//!
//! Pages: `/` lists tutorials, `/watch/{foss}/{tutorial}/{language}/` shows
//! one with a `<video>` element (resumed where the learner stopped, with
//! "Mark complete" / "Mark incomplete"), `POST /login` (form field
//! `username`) starts a session, `POST /logout` ends it. `POST
//! /visitlog/events` takes the page script's learning events, `GET
//! /api/progress/{foss}/{tutorial}/{language}` answers the learner's progress
//! as JSON, and `GET /visitlog/stats` shows the layer's counters.
//!
//! The sample video (`assets/sample.webm`, 30 s, 24 KB) was made with
//! `ffmpeg -f lavfi -i testsrc=size=160x90:rate=2:duration=30 -c:v libvpx -crf 40 -b:v 12k -an sample.webm`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{FromRef, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use rand::RngCore;
use serde::Deserialize;
use visitlog_middleware::{CaptureLayer, Identity, Learner};
use visitlog_progress::{ProgressReader, ReadError};

/// The sample video every tutorial page plays.
const SAMPLE_VIDEO: &[u8] = include_bytes!("../assets/sample.webm");
/// The page script that reports learning events.
const PROGRESS_JS: &str = include_str!("../assets/progress.js");
/// How long a page waits for MongoDB before rendering without progress.
const PROGRESS_TIMEOUT: Duration = Duration::from_millis(800);

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

/// Logged-in sessions: session id to user name. In memory, as it is an example.
#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<HashMap<String, String>>>);

impl Sessions {
    fn user(&self, session_id: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(session_id)
            .cloned()
    }

    fn insert(&self, session_id: String, user: String) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(session_id, user);
    }

    fn remove(&self, session_id: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(session_id);
    }
}

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
        match session_cookie(&req.headers) {
            Some(id) => match lookup.user(id) {
                Some(user) => Identity::user(user).with_session(id),
                None => Identity::anonymous(),
            },
            None => Identity::anonymous(),
        }
    });
    let stats_layer = capture.clone();
    Router::new()
        .route("/", get(home))
        .route("/watch/{foss}/{tutorial}/{language}/", get(watch))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/visitlog/events", capture.events())
        .route(
            "/api/progress/{foss}/{tutorial}/{language}",
            get(api_progress),
        )
        .route("/static/sample.webm", get(sample_video))
        .route(
            "/static/progress.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    PROGRESS_JS,
                )
            }),
        )
        .route(
            "/visitlog/stats",
            get(move || {
                let s = stats_layer.stats();
                async move {
                    Json(serde_json::json!({
                        "captured": s.captured, "shipped": s.shipped, "dropped": s.dropped,
                        "buffered": s.buffered, "send_errors": s.send_errors,
                        "rejected_cookies": s.rejected_cookies, "events": s.events,
                    }))
                }
            }),
        )
        .fallback(not_found)
        .with_state(AppState { sessions, progress })
        // `Router::layer` runs after routing, so the matched route is known.
        .layer(capture)
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix("session="))
}

fn current_user(sessions: &Sessions, headers: &HeaderMap) -> Option<String> {
    session_cookie(headers).and_then(|id| sessions.user(id))
}

fn page(title: &str, user: Option<&str>, body: &str) -> Html<String> {
    let account = match user {
        Some(user) => format!(
            r#"Logged in as <b id="user">{}</b> <form method="post" action="/logout" style="display:inline"><button>Log out</button></form>"#,
            escape(user)
        ),
        None => r#"<form method="post" action="/login"><input name="username" placeholder="username" required maxlength="64"><button>Log in</button></form>"#.to_owned(),
    };
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>{title}</title></head>
<body><header><a href="/">Tutorials</a> · {account}</header><main>{body}</main></body></html>"#,
        title = escape(title)
    ))
}

async fn home(State(sessions): State<Sessions>, headers: HeaderMap) -> Html<String> {
    let mut list = String::from("<h1>Tutorials</h1><ul>");
    for (foss, tutorial, languages) in CATALOGUE {
        for language in *languages {
            list.push_str(&format!(
                r#"<li><a href="/watch/{foss}/{tutorial}/{language}/">{foss}: {tutorial} ({language})</a></li>"#
            ));
        }
    }
    list.push_str("</ul>");
    page(
        "Tutorials",
        current_user(&sessions, &headers).as_deref(),
        &list,
    )
}

async fn watch(
    State(state): State<AppState>,
    Path((foss, tutorial, language)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if !in_catalogue(&foss, &tutorial, &language) {
        return not_found().await.into_response();
    }
    let user = current_user(&state.sessions, &headers);
    let video_id = format!("{foss}/{tutorial}/{language}");
    let learned = match &user {
        Some(user) => learner_state(&state, user, &foss, &tutorial, &language, &video_id).await,
        None => None,
    };
    let (resume, completed) = learned.unwrap_or((0.0, false));
    let progress = match &user {
        Some(_) => format!(
            r#"<p id="resume"{hidden}>Resume at <span id="resume-at">{at}</span></p>
<p>Status: <b id="status">{status}</b>
<button id="mark-complete">Mark complete</button> <button id="mark-incomplete">Mark incomplete</button></p>"#,
            hidden = if resume > 0.0 { "" } else { " hidden" },
            at = clock(resume),
            status = if completed {
                "completed"
            } else {
                "not completed"
            },
        ),
        None => "<p>Log in to keep your place and track your progress.</p>".to_owned(),
    };
    let body = format!(
        r#"<h1>{foss}: {tutorial}</h1><p>Language: {language}</p>{progress}
<video id="player" controls preload="metadata" width="640" src="/static/sample.webm" data-video-id="{video_id}" data-foss="{foss}" data-tutorial="{tutorial}" data-language="{language}" data-resume="{resume}" data-logged-in="{logged_in}"></video>
<script src="/static/progress.js"></script>"#,
        foss = escape(&foss),
        tutorial = escape(&tutorial),
        language = escape(&language),
        video_id = escape(&video_id),
        logged_in = user.is_some(),
    );
    page(&tutorial, user.as_deref(), &body).into_response()
}

fn in_catalogue(foss: &str, tutorial: &str, language: &str) -> bool {
    CATALOGUE
        .iter()
        .any(|(f, t, langs)| *f == foss && *t == tutorial && langs.contains(&language))
}

/// The resume position and completion of `user`, or `None` when progress is
/// not configured or MongoDB does not answer in time (the page still renders).
async fn learner_state(
    state: &AppState,
    user: &str,
    foss: &str,
    tutorial: &str,
    language: &str,
    video_id: &str,
) -> Option<(f64, bool)> {
    let reader = state.progress.as_ref()?;
    let learner = Learner::User(user.to_owned());
    let both = async {
        let resume = reader.resume_position(&learner, video_id).await?;
        let progress = reader.progress(&learner, foss, tutorial, language).await?;
        Ok::<_, ReadError>((resume, progress))
    };
    match tokio::time::timeout(PROGRESS_TIMEOUT, both).await {
        Ok(Ok((resume, progress))) => {
            Some((resume.unwrap_or(0.0), progress.is_some_and(|p| p.completed)))
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read learning progress");
            None
        }
        Err(_) => {
            tracing::warn!("learning progress: MongoDB did not answer in time");
            None
        }
    }
}

/// `GET /api/progress/{foss}/{tutorial}/{language}`: the logged-in learner's
/// `{"completed", "resume_position", "coverage", "visits"}` for that page's video.
async fn api_progress(
    State(state): State<AppState>,
    Path((foss, tutorial, language)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if !in_catalogue(&foss, &tutorial, &language) {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "no such tutorial"})),
        )
            .into_response();
    }
    let Some(user) = current_user(&state.sessions, &headers) else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"error": "log in first"})),
        )
            .into_response();
    };
    let Some(reader) = &state.progress else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "progress is not configured"})),
        )
            .into_response();
    };
    let learner = Learner::User(user);
    let video_id = format!("{foss}/{tutorial}/{language}");
    let both = async {
        let resume = reader.resume_position(&learner, &video_id).await?;
        let progress = reader
            .progress(&learner, &foss, &tutorial, &language)
            .await?;
        Ok::<_, ReadError>((resume, progress))
    };
    match tokio::time::timeout(PROGRESS_TIMEOUT * 4, both).await {
        Ok(Ok((resume, progress))) => Json(serde_json::json!({
            "completed": progress.as_ref().is_some_and(|p| p.completed),
            "resume_position": resume.unwrap_or(0.0),
            "coverage": progress.as_ref().map_or(0.0, |p| p.coverage),
            "visits": progress.as_ref().map_or(0, |p| p.visits),
        }))
        .into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "progress store unavailable"})),
        )
            .into_response(),
    }
}

/// The sample video, with byte ranges so the browser can seek.
async fn sample_video(headers: HeaderMap) -> Response {
    let total = SAMPLE_VIDEO.len();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| byte_range(r, total));
    let base = [
        (header::CONTENT_TYPE, "video/webm".to_owned()),
        (header::ACCEPT_RANGES, "bytes".to_owned()),
        (header::CACHE_CONTROL, "public, max-age=3600".to_owned()),
    ];
    match range {
        Some((start, end)) => (
            StatusCode::PARTIAL_CONTENT,
            base,
            [(
                header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{total}"),
            )],
            &SAMPLE_VIDEO[start..=end],
        )
            .into_response(),
        None => (base, SAMPLE_VIDEO).into_response(),
    }
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n`, clamped; `None` for anything else.
fn byte_range(header: &str, total: usize) -> Option<(usize, usize)> {
    let spec = header.strip_prefix("bytes=")?.trim();
    let (a, b) = spec.split_once('-')?;
    let last = total.checked_sub(1)?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: usize = n.parse().ok()?;
            (total.checked_sub(n.min(total))?, last)
        }
        (a, "") => (a.parse().ok()?, last),
        (a, b) => (a.parse().ok()?, b.parse::<usize>().ok()?.min(last)),
    };
    (start <= end && end < total).then_some((start, end))
}

/// Seconds as `m:ss` (or `h:mm:ss`).
fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).floor() as u64;
    match s / 3600 {
        0 => format!("{}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", (s / 60) % 60, s % 60),
    }
}

/// The login form.
#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
}

async fn login(State(sessions): State<Sessions>, Form(form): Form<LoginForm>) -> Response {
    let user = form.username.trim();
    let valid = !user.is_empty()
        && user.len() <= 64
        && user
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid {
        return (
            StatusCode::BAD_REQUEST,
            "username: 1 to 64 letters, digits, `_`, `-` or `.`",
        )
            .into_response();
    }
    let mut raw = [0u8; 16];
    rand::rng().fill_bytes(&mut raw);
    let session_id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    sessions.insert(session_id.clone(), user.to_owned());
    let mut response = Redirect::to("/").into_response();
    let cookie = format!("{SESSION_COOKIE}={session_id}; Path=/; HttpOnly; SameSite=Lax");
    if let Ok(value) = cookie.parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    // The request came in anonymous; tell visitlog who it turned out to be.
    response
        .extensions_mut()
        .insert(Identity::user(user).with_session(session_id));
    response
}

async fn logout(State(sessions): State<Sessions>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        sessions.remove(id);
    }
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) =
        format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax").parse()
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        page("Not found", None, "<h1>Not found</h1>"),
    )
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges() {
        assert_eq!(byte_range("bytes=0-", 10), Some((0, 9)));
        assert_eq!(byte_range("bytes=2-4", 10), Some((2, 4)));
        assert_eq!(byte_range("bytes=5-100", 10), Some((5, 9)));
        assert_eq!(byte_range("bytes=-3", 10), Some((7, 9)));
        assert_eq!(byte_range("bytes=9-2", 10), None);
        assert_eq!(byte_range("bytes=10-", 10), None);
        assert_eq!(byte_range("items=0-1", 10), None);
    }

    #[test]
    fn clock_format() {
        assert_eq!(clock(222.4), "3:42");
        assert_eq!(clock(0.0), "0:00");
        assert_eq!(clock(3725.0), "1:02:05");
    }
}
