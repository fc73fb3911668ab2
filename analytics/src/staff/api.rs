//! The staff router: the JSON API (and its CSV), every request checked by
//! the app's [`Authorize`] hook first. Answers are never cached
//! (`Cache-Control: no-store`): they are private.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::privacy::{self, DEFAULT_FLOOR, Floor};
use super::table::{self, columns};
use super::{Access, AnalyticsReader, Authorize, Range, Scope, dashboard};

/// Longest video id or learner key taken from a path.
const MAX_KEY: usize = 512;

/// Answers read from the store at once, by default.
pub const DEFAULT_CONCURRENT_READS: usize = 4;

/// How long a request waits for a turn before it is told to come back.
const WAIT_FOR_TURN: Duration = Duration::from_secs(10);

/// The staff router: `router(reader, authorize)` with the defaults, or
/// built with a privacy floor of its own.
pub struct StaffRouter<A> {
    reader: AnalyticsReader,
    authorize: A,
    floor: u64,
    concurrent: usize,
}

/// The staff analytics, an axum `Router` to nest where the app likes
/// (the example nests it at `/staff/analytics`): the dashboard at `/` and
/// the JSON API under `/api/`, each request checked by `authorize` first.
pub fn router<A: Authorize>(reader: AnalyticsReader, authorize: A) -> Router {
    StaffRouter::new(reader, authorize).into_router()
}

impl<A: Authorize> StaffRouter<A> {
    /// Reads with `reader`, grants with `authorize`, hides figures over
    /// fewer than 5 learners below `Learners`.
    pub fn new(reader: AnalyticsReader, authorize: A) -> Self {
        Self {
            reader,
            authorize,
            floor: DEFAULT_FLOOR,
            concurrent: DEFAULT_CONCURRENT_READS,
        }
    }

    /// How many answers read from the store at once (default 4, at least
    /// 1). Others wait their turn up to 10 s, then get 503 with
    /// `Retry-After`: a burst of questions queues instead of piling onto
    /// MongoDB.
    #[must_use]
    pub fn concurrent_reads(mut self, n: usize) -> Self {
        self.concurrent = n.max(1);
        self
    }

    /// The privacy floor: figures over fewer than `learners` learners (but
    /// some) are hidden below `Learners`; 0 or 1 hides nothing.
    #[must_use]
    pub fn privacy_floor(mut self, learners: u64) -> Self {
        self.floor = learners;
        self
    }

    /// The router.
    pub fn into_router(self) -> Router {
        let shared = Arc::new(Shared {
            reader: self.reader,
            authorize: self.authorize,
            floor: Floor(self.floor),
            turns: Arc::new(Semaphore::new(self.concurrent)),
        });
        Router::new()
            .route("/", get(dashboard::page))
            .route("/api/overview", get(overview::<A>))
            .route("/api/tutorials", get(tutorials::<A>))
            .route("/api/videos/{video_id}", get(video::<A>))
            .route("/api/unwatched", get(unwatched::<A>))
            .route("/api/learners/{learner}", get(learner::<A>))
            .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "no such page") })
            .with_state(shared)
    }
}

pub(crate) struct Shared<A> {
    reader: AnalyticsReader,
    authorize: A,
    floor: Floor,
    turns: Arc<Semaphore>,
}

type St<A> = State<Arc<Shared<A>>>;

/// A request the hook let through: its access and scope.
pub(crate) struct Granted {
    learners: bool,
    scope: Scope,
}

/// A question's turn to read from the store, held until its answer is
/// built; taken after [`Granted`], so a refused request never waits.
pub(crate) struct Turn(#[allow(dead_code)] OwnedSemaphorePermit);

impl<A: Authorize> FromRequestParts<Arc<Shared<A>>> for Turn {
    type Rejection = Problem;

    async fn from_request_parts(
        _: &mut Parts,
        state: &Arc<Shared<A>>,
    ) -> Result<Self, Self::Rejection> {
        match tokio::time::timeout(WAIT_FOR_TURN, state.turns.clone().acquire_owned()).await {
            Ok(Ok(turn)) => Ok(Self(turn)),
            _ => Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many questions at once; try again shortly",
            )),
        }
    }
}

impl<A: Authorize> FromRequestParts<Arc<Shared<A>>> for Granted {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<Shared<A>>,
    ) -> Result<Self, Self::Rejection> {
        let (learners, scope) = match state.authorize.authorize(parts).await {
            Access::Unauthenticated => {
                return Err(Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "log in as staff to see this",
                ));
            }
            Access::Denied => return Err(Problem::new(StatusCode::FORBIDDEN, "staff only")),
            Access::Aggregates(scope) => (false, scope),
            Access::Learners(scope) => (true, scope),
        };
        Ok(Self { learners, scope })
    }
}

/// The query string every endpoint takes.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Ask {
    from: Option<String>,
    to: Option<String>,
    foss: Option<String>,
    format: Option<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Json,
    Csv,
}

impl Granted {
    /// The range asked, narrowed to the scope, and the answer's format.
    fn question(
        &self,
        ask: Result<Query<Ask>, QueryRejection>,
    ) -> Result<(Range, Format), Problem> {
        let Query(ask) = ask.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
        let format = match ask.format.as_deref() {
            None | Some("" | "json") => Format::Json,
            Some("csv") => Format::Csv,
            Some(other) => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    format!("`format` is json or csv, not {other:?}"),
                ));
            }
        };
        let today = Utc::now().date_naive();
        let bad = |e: super::RangeError| Problem::new(StatusCode::BAD_REQUEST, e.to_string());
        let range = Range::parse(
            ask.from.as_deref(),
            ask.to.as_deref(),
            ask.foss.as_deref(),
            today,
        )
        .map_err(bad)?;
        let foss = self
            .scope
            .narrow(range.foss())
            .map_err(|e| Problem::new(StatusCode::FORBIDDEN, e))?;
        Ok((range.with_foss(foss).map_err(bad)?, format))
    }

    /// The privacy floor that applies: none with `Learners`.
    fn floor(&self, floor: Floor) -> Floor {
        match self.learners {
            true => Floor(0),
            false => floor,
        }
    }
}

async fn overview<A: Authorize>(
    State(s): St<A>,
    g: Granted,
    _turn: Turn,
    ask: Result<Query<Ask>, QueryRejection>,
) -> Result<Response, Problem> {
    let (range, format) = g.question(ask)?;
    let mut o = match s.reader.overview(&range).await {
        Ok(o) => o,
        Err(e) => return Err(unavailable(&e)),
    };
    let floor = g.floor(s.floor);
    for list in [
        &mut o.countries,
        &mut o.browsers,
        &mut o.os,
        &mut o.referrers,
    ] {
        *list = floor.top(list);
    }
    let mut v = to_value(&o);
    privacy::rows(floor, &mut v["series"], "learners", &["day"]);
    floor.row(&mut v, "learners", &["from", "to", "foss"]);
    answer(format, v, "series", columns::SERIES, &range, "overview")
}

async fn tutorials<A: Authorize>(
    State(s): St<A>,
    g: Granted,
    _turn: Turn,
    ask: Result<Query<Ask>, QueryRejection>,
) -> Result<Response, Problem> {
    let (range, format) = g.question(ask)?;
    let rows = match s.reader.tutorials(&range).await {
        Ok(rows) => rows,
        Err(e) => return Err(unavailable(&e)),
    };
    let mut v = json!({
        "from": range.from().to_string(),
        "to": range.to().to_string(),
        "foss": range.foss(),
        "tutorials": to_value(&rows),
    });
    let keep = ["foss", "tutorial", "language", "title", "video_id"];
    privacy::rows(g.floor(s.floor), &mut v["tutorials"], "learners", &keep);
    answer(
        format,
        v,
        "tutorials",
        columns::TUTORIALS,
        &range,
        "tutorials",
    )
}

async fn video<A: Authorize>(
    State(s): St<A>,
    g: Granted,
    _turn: Turn,
    Path(video_id): Path<String>,
    ask: Result<Query<Ask>, QueryRejection>,
) -> Result<Response, Problem> {
    let (range, format) = g.question(ask)?;
    if video_id.is_empty() || video_id.len() > MAX_KEY {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "a video id has 1 to 512 bytes",
        ));
    }
    let v = match s.reader.video(&video_id).await {
        Ok(Some(v)) => v,
        Ok(None) => return Err(Problem::new(StatusCode::NOT_FOUND, "no such video")),
        Err(e) => return Err(unavailable(&e)),
    };
    let in_scope = match &v.foss {
        Some(foss) => g.scope.covers(foss),
        None => !g.scope.is_partial(),
    };
    if !in_scope {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "this video is not in your scope",
        ));
    }
    let mut value = to_value(&v);
    let keep = [
        "video_id",
        "title",
        "foss",
        "tutorial",
        "language",
        "duration",
        "segment_s",
    ];
    g.floor(s.floor).row(&mut value, "viewers", &keep);
    answer(
        format,
        value,
        "segments",
        columns::SEGMENTS,
        &range,
        "video",
    )
}

async fn unwatched<A: Authorize>(
    State(s): St<A>,
    g: Granted,
    _turn: Turn,
    ask: Result<Query<Ask>, QueryRejection>,
) -> Result<Response, Problem> {
    let (range, format) = g.question(ask)?;
    let list = match s.reader.unwatched(&range).await {
        Ok(list) => list,
        Err(e) => return Err(unavailable(&e)),
    };
    let mut v = json!({
        "from": range.from().to_string(),
        "to": range.to().to_string(),
        "foss": range.foss(),
        "videos": to_value(&list),
    });
    let keep = [
        "video_id", "foss", "tutorial", "language", "title", "duration", "order", "main",
    ];
    privacy::rows(g.floor(s.floor), &mut v["videos"], "viewers_ever", &keep);
    answer(format, v, "videos", columns::UNWATCHED, &range, "unwatched")
}

async fn learner<A: Authorize>(
    State(s): St<A>,
    g: Granted,
    _turn: Turn,
    Path(learner): Path<String>,
    ask: Result<Query<Ask>, QueryRejection>,
) -> Result<Response, Problem> {
    if !g.learners {
        let why = "a learner's data needs learner access";
        return Err(Problem::new(StatusCode::FORBIDDEN, why));
    }
    let (range, format) = g.question(ask)?;
    if learner.is_empty() || learner.len() > MAX_KEY {
        let why = "a learner has 1 to 512 bytes";
        return Err(Problem::new(StatusCode::BAD_REQUEST, why));
    }
    // `alice` is the user alice; a full key (`user:alice`, `visitor:…`) is taken as it is.
    let key = match learner.contains(':') {
        true => learner,
        false => format!("user:{learner}"),
    };
    tracing::info!(
        target: "visitlog::audit",
        viewer = g.scope.viewer_name().unwrap_or("(unnamed)"),
        learner = %key,
        from = %range.from(),
        to = %range.to(),
        "a learner's data was read"
    );
    let view = s
        .reader
        .learner(&key, &range)
        .await
        .map_err(|e| unavailable(&e))?;
    let v = to_value(&view);
    answer(format, v, "tutorials", columns::LEARNER, &range, "learner")
}

/// The answer as JSON, or its `list` as CSV named after `name` and the range.
fn answer(
    format: Format,
    v: Value,
    list: &str,
    columns: &[&str],
    range: &Range,
    name: &str,
) -> Result<Response, Problem> {
    let mut r = match format {
        Format::Json => Json(v).into_response(),
        Format::Csv => match table::csv(&v[list], columns) {
            Ok(text) => {
                let file = format!(
                    "attachment; filename=\"{name}-{}-{}.csv\"",
                    range.from(),
                    range.to()
                );
                let mut r = text.into_response();
                let h = r.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/csv; charset=utf-8"),
                );
                if let Ok(v) = HeaderValue::from_str(&file) {
                    h.insert(header::CONTENT_DISPOSITION, v);
                }
                r
            }
            Err(e) => {
                tracing::error!(error = %e, "a CSV answer could not be written");
                return Err(Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the CSV could not be written",
                ));
            }
        },
    };
    private(&mut r);
    Ok(r)
}

fn to_value<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

/// A refusal or failure, answered as `{"error": message}` (a 401 also
/// says `WWW-Authenticate`).
#[derive(Debug)]
pub(crate) struct Problem {
    status: StatusCode,
    message: String,
}

impl Problem {
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Session"),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        private(&mut r);
        r
    }
}

fn unavailable(e: &visitlog_progress::ReadError) -> Problem {
    tracing::warn!(error = %e, "staff analytics: the store did not answer");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the analytics store did not answer; try again shortly",
    )
}

/// Marks a response private: never cached, never sniffed.
pub(crate) fn private(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn text(r: Response) -> String {
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn a_question_beyond_the_concurrent_reads_waits_its_turn_then_gets_503() {
        // A store nobody answers at: the first question holds the only turn
        // until the driver gives up on it.
        let uri = "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=60000";
        let client = mongodb::Client::with_uri_str(uri).await.unwrap();
        let reader = AnalyticsReader::new(&client.database("nowhere"));
        let staff = |_: &Parts| Access::Aggregates(Scope::all());
        let app = StaffRouter::new(reader, staff)
            .concurrent_reads(1)
            .into_router();
        let ask = || Request::get("/api/overview").body(Body::empty()).unwrap();
        let first = tokio::spawn(app.clone().oneshot(ask()));
        tokio::task::yield_now().await;
        let started = tokio::time::Instant::now();
        let second = app.clone().oneshot(ask()).await.unwrap();
        assert_eq!(started.elapsed(), WAIT_FOR_TURN, "it waited its turn first");
        assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(second.headers()[header::RETRY_AFTER], "5");
        assert!(text(second).await.contains("too many questions"));
        assert!(!first.is_finished(), "the first still holds the turn");
        // The dashboard page itself never needs a turn.
        let page = app.oneshot(Request::get("/").body(Body::empty()).unwrap());
        assert_eq!(page.await.unwrap().status(), StatusCode::OK);
        first.abort();
    }
}
