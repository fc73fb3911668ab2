//! Learning progress read back with `visitlog-progress`: the tutorial page's
//! resume position and status (across languages), and
//! `GET /api/progress/{foss}/{tutorial}/{language}`.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use visitlog_middleware::Learner;
use visitlog_progress::LanguageStatus;

use crate::pages::in_catalogue;
use crate::session::current_user;
use crate::{AppState, SAMPLE_SECONDS};

/// How long a page waits for MongoDB before rendering without progress.
const PROGRESS_TIMEOUT: Duration = Duration::from_millis(800);

/// Reads `user`'s standing on one tutorial page, across its languages;
/// `Err` with the reason when MongoDB fails or does not answer `within`.
async fn read(
    reader: &visitlog_progress::ProgressReader,
    user: &str,
    (foss, tutorial, language): (&str, &str, &str),
    within: Duration,
) -> Result<LanguageStatus, String> {
    let learner = Learner::User(user.to_owned());
    // Every page plays the sample video, so the site knows this language's
    // duration before the browser does: a position from another language
    // maps to seconds here, not only to a fraction.
    let status = reader.language_status(&learner, foss, tutorial, language, Some(SAMPLE_SECONDS));
    match tokio::time::timeout(within, status).await {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("MongoDB did not answer in time".to_owned()),
    }
}

/// `user`'s standing on one tutorial page, or `None` when progress is not
/// configured or MongoDB does not answer in time (the page still renders).
pub(crate) async fn learner_state(
    state: &AppState,
    user: &str,
    page: (&str, &str, &str),
) -> Option<LanguageStatus> {
    let reader = state.progress.as_ref()?;
    match read(reader, user, page, PROGRESS_TIMEOUT).await {
        Ok(status) => Some(status),
        Err(error) => {
            tracing::warn!(%error, "cannot read learning progress");
            None
        }
    }
}

/// `GET /api/progress/{foss}/{tutorial}/{language}`: the logged-in learner's
/// `{"completed", "completed_rule", "resume_position", "coverage", "visits",
/// "completed_any_language", "completed_languages", "resume_from_language",
/// "resume_fraction"}` for that page's video.
///
/// `resume_position` is this language's own position, else another
/// language's mapped by fraction (`resume_from_language` names it, else
/// `null`), else 0.
pub(crate) async fn api_progress(
    State(state): State<AppState>,
    Path((foss, tutorial, language)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if !in_catalogue(&foss, &tutorial, &language) {
        return refuse(StatusCode::NOT_FOUND, "no such tutorial");
    }
    let Some(user) = current_user(&state.sessions, &headers) else {
        return refuse(StatusCode::UNAUTHORIZED, "log in first");
    };
    let Some(reader) = &state.progress else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "progress is not configured",
        );
    };
    let page = (foss.as_str(), tutorial.as_str(), language.as_str());
    match read(reader, &user, page, PROGRESS_TIMEOUT * 4).await {
        Ok(s) => {
            let p = s.progress.as_ref();
            Json(serde_json::json!({
                "completed": p.is_some_and(|p| p.completed),
                "completed_rule": p.and_then(|p| p.completed_rule),
                "resume_position": s.resume_position.unwrap_or(0.0),
                "coverage": p.map_or(0.0, |p| p.coverage),
                "visits": p.map_or(0, |p| p.visits),
                "completed_any_language": s.completed_any_language,
                "completed_languages": s.completed_languages,
                "resume_from_language": s.resume_from_language,
                "resume_fraction": s.resume_fraction,
            }))
            .into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read learning progress");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "progress store unavailable",
            )
        }
    }
}

/// An error answer: `{"error": message}`.
fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}
