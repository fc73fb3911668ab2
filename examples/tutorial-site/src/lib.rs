//! A tutorial website wrapped with visitlog's [`CaptureLayer`]: the reference
//! integration the README walks through.
//!
//! Run with: `cargo run -p visitlog-example -- --listen 127.0.0.1:8080`
//!
//! Pages: `/` lists tutorials, `/watch/{foss}/{tutorial}/{language}/` shows
//! one with a `<video>` element, `POST /login` (form field `username`) starts
//! a session, `POST /logout` ends it, `GET /visitlog/stats` shows the layer's
//! counters as JSON.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use rand::RngCore;
use serde::Deserialize;
use visitlog_middleware::{CaptureLayer, Identity};

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

/// The site's router, wrapped with `capture`.
///
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so the
/// layer sees the peer address.
pub fn app(capture: CaptureLayer) -> Router {
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
        .route(
            "/visitlog/stats",
            get(move || {
                let s = stats_layer.stats();
                async move {
                    Json(serde_json::json!({
                        "captured": s.captured, "shipped": s.shipped, "dropped": s.dropped,
                        "buffered": s.buffered, "send_errors": s.send_errors,
                        "rejected_cookies": s.rejected_cookies,
                    }))
                }
            }),
        )
        .fallback(not_found)
        .with_state(sessions)
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
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
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
    State(sessions): State<Sessions>,
    Path((foss, tutorial, language)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let known = CATALOGUE
        .iter()
        .any(|(f, t, langs)| *f == foss && *t == tutorial && langs.contains(&language.as_str()));
    if !known {
        return not_found().await.into_response();
    }
    let video_id = format!("{foss}/{tutorial}/{language}");
    let body = format!(
        r#"<h1>{foss}: {tutorial}</h1><p>Language: {language}</p>
<video id="player" controls preload="metadata" width="640" data-video-id="{video_id}"></video>"#,
        foss = escape(&foss),
        tutorial = escape(&tutorial),
        language = escape(&language),
        video_id = escape(&video_id),
    );
    page(
        &tutorial,
        current_user(&sessions, &headers).as_deref(),
        &body,
    )
    .into_response()
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
