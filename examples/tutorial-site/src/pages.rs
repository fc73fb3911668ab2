//! The HTML pages: the tutorial list, a tutorial's page with its `<video>`
//! (resumed where the learner stopped, in this language or another), and
//! "not found". Every one loads the page script with the id of its own
//! request record, so any page reports time on page.

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

/// `?ping_ms=` and `?active_window_ms=`: shorter page-script intervals, so
/// that tests take seconds, not minutes (the script's defaults are 15 s and
/// 30 s).
#[derive(Deserialize, Default)]
pub(crate) struct ScriptQuery {
    ping_ms: Option<String>,
    active_window_ms: Option<String>,
}

/// What the page script needs from every page.
#[derive(Default)]
pub(crate) struct PageScript<'a> {
    /// The id of this page's request record (`data-page-view`).
    page_view: Option<RecordId>,
    /// Test overrides of the script's intervals.
    timing: Option<&'a ScriptQuery>,
}

impl<'a> PageScript<'a> {
    pub(crate) fn new(page_view: Option<Extension<RecordId>>, timing: &'a ScriptQuery) -> Self {
        Self {
            page_view: page_view.map(|Extension(id)| id),
            timing: Some(timing),
        }
    }

    /// The `<script>` tag: the page view, who is logged in (the outbox's
    /// owner), and the intervals when given as whole milliseconds from
    /// 100 to an hour (anything else is ignored, never echoed).
    fn tag(&self, user: Option<&str>) -> String {
        let mut tag = String::from(r#"<script src="/static/progress.js""#);
        if let Some(RecordId(id)) = self.page_view {
            tag.push_str(&format!(r#" data-page-view="{id}""#));
        }
        tag.push_str(&format!(r#" data-logged-in="{}""#, user.is_some()));
        if let Some(user) = user {
            tag.push_str(&format!(r#" data-learner="{}""#, outbox_owner(user)));
        }
        let timing = self.timing.into_iter();
        for (attribute, value) in timing.flat_map(|t| {
            [
                ("data-ping-ms", &t.ping_ms),
                ("data-active-window-ms", &t.active_window_ms),
            ]
        }) {
            let ms = value.as_deref().and_then(|v| v.parse::<u32>().ok());
            if let Some(ms) = ms.filter(|ms| (100..=3_600_000).contains(ms)) {
                tag.push_str(&format!(r#" {attribute}="{ms}""#));
            }
        }
        tag.push_str("></script>");
        tag
    }
}

pub(crate) fn page(
    title: &str,
    user: Option<&str>,
    body: &str,
    script: &PageScript<'_>,
) -> Html<String> {
    let account = match user {
        Some(user) => format!(
            r#"Logged in as <b id="user">{}</b> <form method="post" action="/logout" style="display:inline"><button>Log out</button></form>"#,
            escape(user)
        ),
        None => r#"<form method="post" action="/login"><input name="username" placeholder="username" required maxlength="64"><button>Log in</button></form>"#.to_owned(),
    };
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>{title}</title></head>
<body><header><a href="/">Tutorials</a> · {account}</header><main>{body}</main>{script}</body></html>"#,
        title = escape(title),
        script = script.tag(user),
    ))
}

pub(crate) async fn home(
    State(sessions): State<Sessions>,
    Query(timing): Query<ScriptQuery>,
    page_view: Option<Extension<RecordId>>,
    headers: HeaderMap,
) -> Html<String> {
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
        &PageScript::new(page_view, &timing),
    )
}

/// `?preload=`: how much of the video the browser loads before play.
#[derive(Deserialize)]
pub(crate) struct WatchQuery {
    /// `none`, `metadata` (the default) or `auto`; `none` also shows how the
    /// page script copes with playback that starts before the metadata.
    preload: Option<String>,
    #[serde(flatten)]
    timing: ScriptQuery,
}

pub(crate) async fn watch(
    State(state): State<AppState>,
    Path((foss, tutorial, language)): Path<(String, String, String)>,
    Query(query): Query<WatchQuery>,
    page_view: Option<Extension<RecordId>>,
    headers: HeaderMap,
) -> Response {
    let script = PageScript::new(page_view, &query.timing);
    if !in_catalogue(&foss, &tutorial, &language) {
        return not_found_page(&script).into_response();
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
    // (The script tag carries it too; the player keeps it for older scripts.)
    let page_view = script.page_view.map_or_else(String::new, |RecordId(id)| {
        format!(r#" data-page-view="{id}""#)
    });
    let body = format!(
        r#"<h1>{foss}: {tutorial}</h1><p>Language: {language}</p>{progress}
<video id="player" controls preload="{preload}" width="640" src="/static/sample.webm" data-video-id="{video_id}" data-foss="{foss}" data-tutorial="{tutorial}" data-language="{language}" data-resume="{resume}"{fraction}{page_view} data-logged-in="{logged_in}"></video>"#,
        foss = escape(&foss),
        tutorial = escape(&tutorial),
        language = escape(&language),
        video_id = escape(&video_id),
        resume = resume.unwrap_or(0.0),
        logged_in = user.is_some(),
    );
    page(&tutorial, user.as_deref(), &body, &script).into_response()
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

/// The fallback: "not found", still with the page script (a page is a page).
pub(crate) async fn not_found(page_view: Option<Extension<RecordId>>) -> impl IntoResponse {
    not_found_page(&PageScript::new(page_view, &ScriptQuery::default()))
}

fn not_found_page(script: &PageScript<'_>) -> impl IntoResponse + use<> {
    (
        StatusCode::NOT_FOUND,
        page("Not found", None, "<h1>Not found</h1>", script),
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
