//! Learning progress read back with `visitlog-progress`: the tutorial page's
//! resume position and status, and `GET /api/progress/{foss}/{tutorial}/{language}`.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use visitlog_middleware::Learner;
use visitlog_progress::ReadError;

use crate::AppState;
use crate::pages::in_catalogue;
use crate::session::current_user;

/// How long a page waits for MongoDB before rendering without progress.
const PROGRESS_TIMEOUT: Duration = Duration::from_millis(800);

/// What the page shows of a learner: the resume position and the progress.
type Learned = (Option<f64>, Option<visitlog_progress::Progress>);

/// Reads `user`'s resume position and progress on one tutorial page; `Err`
/// with the reason when MongoDB fails or does not answer `within`.
async fn read(
    reader: &visitlog_progress::ProgressReader,
    user: &str,
    (foss, tutorial, language): (&str, &str, &str),
    within: Duration,
) -> Result<Learned, String> {
    let learner = Learner::User(user.to_owned());
    let video_id = format!("{foss}/{tutorial}/{language}");
    let both = async {
        let resume = reader.resume_position(&learner, &video_id).await?;
        let progress = reader.progress(&learner, foss, tutorial, language).await?;
        Ok::<_, ReadError>((resume, progress))
    };
    match tokio::time::timeout(within, both).await {
        Ok(Ok(learned)) => Ok(learned),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("MongoDB did not answer in time".to_owned()),
    }
}

/// The resume position and completion of `user`, or `None` when progress is
/// not configured or MongoDB does not answer in time (the page still renders).
pub(crate) async fn learner_state(
    state: &AppState,
    user: &str,
    page: (&str, &str, &str),
) -> Option<(f64, bool)> {
    let reader = state.progress.as_ref()?;
    match read(reader, user, page, PROGRESS_TIMEOUT).await {
        Ok((resume, progress)) => {
            Some((resume.unwrap_or(0.0), progress.is_some_and(|p| p.completed)))
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read learning progress");
            None
        }
    }
}

/// `GET /api/progress/{foss}/{tutorial}/{language}`: the logged-in learner's
/// `{"completed", "resume_position", "coverage", "visits"}` for that page's video.
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
        Ok((resume, progress)) => Json(serde_json::json!({
            "completed": progress.as_ref().is_some_and(|p| p.completed),
            "resume_position": resume.unwrap_or(0.0),
            "coverage": progress.as_ref().map_or(0.0, |p| p.coverage),
            "visits": progress.as_ref().map_or(0, |p| p.visits),
        }))
        .into_response(),
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
