//! The HTML pages: the tutorial list, a tutorial's page with its `<video>`
//! (resumed where the learner stopped, in this language or another), and
//! "not found".

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use visitlog_middleware::RecordId;
use visitlog_progress::LanguageStatus;

use crate::progress::learner_state;
use crate::session::{Sessions, current_user};
use crate::{AppState, CATALOGUE};

pub(crate) fn page(title: &str, user: Option<&str>, body: &str) -> Html<String> {
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

pub(crate) async fn home(State(sessions): State<Sessions>, headers: HeaderMap) -> Html<String> {
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

/// `?preload=`: how much of the video the browser loads before play.
#[derive(Deserialize)]
pub(crate) struct WatchQuery {
    /// `none`, `metadata` (the default) or `auto`; `none` also shows how the
    /// page script copes with playback that starts before the metadata.
    preload: Option<String>,
}

pub(crate) async fn watch(
    State(state): State<AppState>,
    Path((foss, tutorial, language)): Path<(String, String, String)>,
    Query(query): Query<WatchQuery>,
    page_view: Option<Extension<RecordId>>,
    headers: HeaderMap,
) -> Response {
    if !in_catalogue(&foss, &tutorial, &language) {
        return not_found().await.into_response();
    }
    let user = current_user(&state.sessions, &headers);
    let video_id = format!("{foss}/{tutorial}/{language}");
    let learned = match &user {
        Some(user) => learner_state(&state, user, (&foss, &tutorial, &language)).await,
        None => None,
    };
    let progress = match (&user, &learned) {
        (Some(_), status) => learner_panel(&language, status.as_ref()),
        (None, _) => "<p>Log in to keep your place and track your progress.</p>".to_owned(),
    };
    let resume = learned.as_ref().and_then(|s| s.resume_position);
    // Only a fraction (another language's point, this duration unknown):
    // the script maps it once the video's metadata says the duration.
    let fraction = match (resume, learned.as_ref().and_then(|s| s.resume_fraction)) {
        (None, Some(f)) => format!(r#" data-resume-fraction="{f}""#),
        _ => String::new(),
    };
    // Only the three values HTML knows reach the page.
    let preload = ["none", "metadata", "auto"]
        .into_iter()
        .find(|p| query.preload.as_deref() == Some(*p))
        .unwrap_or("metadata");
    // The id of the request record of this very page: the script sends it
    // with every event, so the consumer can bound what one page view reports.
    let page_view = page_view.map_or_else(String::new, |Extension(RecordId(id))| {
        format!(r#" data-page-view="{id}""#)
    });
    let body = format!(
        r#"<h1>{foss}: {tutorial}</h1><p>Language: {language}</p>{progress}
<video id="player" controls preload="{preload}" width="640" src="/static/sample.webm" data-video-id="{video_id}" data-foss="{foss}" data-tutorial="{tutorial}" data-language="{language}" data-resume="{resume}"{fraction}{page_view} data-logged-in="{logged_in}"></video>
<script src="/static/progress.js"{owner}></script>"#,
        foss = escape(&foss),
        tutorial = escape(&tutorial),
        language = escape(&language),
        video_id = escape(&video_id),
        resume = resume.unwrap_or(0.0),
        logged_in = user.is_some(),
        owner = user.as_deref().map_or_else(String::new, |u| format!(
            r#" data-learner="{}""#,
            outbox_owner(u)
        )),
    );
    page(&tutorial, user.as_deref(), &body).into_response()
}

/// Names the page script's saved outbox after the learner, so that a user's
/// unsent events are never sent under another login on the same browser. A
/// hash, not the name: the key sits in the browser's storage.
fn outbox_owner(user: &str) -> String {
    let digest = Sha256::digest(format!("visitlog outbox\0{user}").as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The logged-in learner's part of a tutorial page: where to continue (here,
/// or mapped from another language), the status here, the languages it is
/// completed in elsewhere, and the manual marks.
fn learner_panel(language: &str, status: Option<&LanguageStatus>) -> String {
    let resume = status.and_then(|s| s.resume_position).unwrap_or(0.0);
    let from = status.and_then(|s| s.resume_from_language.as_deref());
    let resume_line = match from {
        Some(other) => format!(
            r#"<p id="resume">Continue from <span id="resume-at">{at}</span> ({other})</p>"#,
            at = clock(resume),
            other = escape(other),
        ),
        None => format!(
            r#"<p id="resume"{hidden}>Resume at <span id="resume-at">{at}</span></p>"#,
            hidden = if resume > 0.0 { "" } else { " hidden" },
            at = clock(resume),
        ),
    };
    let completed = status.is_some_and(|s| s.progress.as_ref().is_some_and(|p| p.completed));
    let elsewhere: Vec<String> = status
        .map(|s| s.completed_languages.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|l| l.as_str() != language)
        .map(|l| escape(l))
        .collect();
    let elsewhere = match elsewhere.is_empty() {
        true => String::new(),
        false => format!(
            r#"<p id="completed-in">Completed in {}</p>"#,
            elsewhere.join(", ")
        ),
    };
    format!(
        r#"{resume_line}{elsewhere}
<p>Status: <b id="status">{status}</b>
<button id="mark-complete">Mark complete</button> <button id="mark-incomplete">Mark incomplete</button></p>"#,
        status = if completed {
            "completed"
        } else {
            "not completed"
        },
    )
}

pub(crate) fn in_catalogue(foss: &str, tutorial: &str, language: &str) -> bool {
    CATALOGUE
        .iter()
        .any(|(f, t, langs)| *f == foss && *t == tutorial && langs.contains(&language))
}

/// Seconds as `m:ss` (or `h:mm:ss`).
pub(crate) fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).floor() as u64;
    match s / 3600 {
        0 => format!("{}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", (s / 60) % 60, s % 60),
    }
}

pub(crate) async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        page("Not found", None, "<h1>Not found</h1>"),
    )
}

pub(crate) fn escape(s: &str) -> String {
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
    fn clock_format() {
        assert_eq!(clock(222.4), "3:42");
        assert_eq!(clock(0.0), "0:00");
        assert_eq!(clock(3725.0), "1:02:05");
    }
}
