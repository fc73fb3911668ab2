//! The README's recipes for apps whose login lives in an async session:
//! `axum-login` (its layer outside the capture layer, read by a plain hook)
//! and `tower-sessions` (a small middleware inside the capture layer that
//! reads the session and hands the layer the app's own user type). Served
//! on a real port, shipped to a real Redis.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::middleware::{Next, from_fn};
use axum::response::Response;
use axum::routing::{get, post};
use axum_login::{AuthManagerLayerBuilder, AuthSession, AuthUser, AuthnBackend, UserId};
use serde_json::{Value, json};
use tower_sessions::{MemoryStore, Session, SessionManagerLayer};
use visitlog_middleware::{CaptureLayer, Identity};
use visitlog_tests::{Namespace, cookies, http};

mod support;
use support::CaptureConfig;

// --- axum-login --------------------------------------------------------

#[derive(Clone, Debug)]
struct User {
    id: i64,
    name: String,
}

impl AuthUser for User {
    type Id = i64;
    fn id(&self) -> i64 {
        self.id
    }
    fn session_auth_hash(&self) -> &[u8] {
        self.name.as_bytes()
    }
}

#[derive(Clone)]
struct Backend(HashMap<i64, User>);

impl AuthnBackend for Backend {
    type User = User;
    type Credentials = String;
    type Error = std::convert::Infallible;

    async fn authenticate(&self, name: String) -> Result<Option<User>, Self::Error> {
        Ok(self.0.values().find(|u| u.name == name).cloned())
    }

    async fn get_user(&self, id: &UserId<Self>) -> Result<Option<User>, Self::Error> {
        Ok(self.0.get(id).cloned())
    }
}

/// The README's axum-login recipe: the hook reads `AuthSession`, which
/// axum-login's layer, outside the capture layer, has already loaded.
fn axum_login_app(capture: CaptureLayer) -> Router {
    let capture = capture.identify(|req: &Parts| {
        req.extensions
            .get::<AuthSession<Backend>>()
            .and_then(|auth| auth.user.as_ref())
            .map_or_else(Identity::anonymous, |user| Identity::user(&user.name))
    });
    let backend = Backend(HashMap::from([(
        1,
        User {
            id: 1,
            name: "ada".to_owned(),
        },
    )]));
    let sessions = SessionManagerLayer::new(MemoryStore::default()).with_secure(false);
    let auth = AuthManagerLayerBuilder::new(backend, sessions).build();
    Router::new()
        .route("/", get(|| async { "home" }))
        .route(
            "/login",
            post(|mut auth: AuthSession<Backend>| async move {
                let user = auth.authenticate("ada".to_owned()).await.unwrap().unwrap();
                auth.login(&user).await.unwrap();
                "in"
            }),
        )
        .route("/visitlog/events", capture.events())
        .layer(capture) // inside …
        .layer(auth) // … axum-login's layer, which runs first
}

// --- tower-sessions ------------------------------------------------------

/// The app's own "current user", converted for the layer.
#[derive(Clone)]
struct CurrentUser(String);

impl From<&CurrentUser> for Identity {
    fn from(user: &CurrentUser) -> Self {
        Identity::user(&user.0)
    }
}

/// The README's tower-sessions recipe: reads the session (async, once; the
/// handler then reads the same loaded session) and puts the user in the
/// request's extensions (for handlers and the events endpoint) and the
/// response's (for the capture layer outside).
async fn current_user(session: Session, mut request: Request, next: Next) -> Response {
    let user = session
        .get::<String>("user")
        .await
        .ok()
        .flatten()
        .map(CurrentUser);
    if let Some(user) = &user {
        request.extensions_mut().insert(user.clone());
    }
    let mut response = next.run(request).await;
    if let Some(user) = user {
        response.extensions_mut().insert(user);
    }
    response
}

fn tower_sessions_app(capture: CaptureLayer) -> Router {
    let capture = capture.identify_from_extension::<CurrentUser>();
    Router::new()
        .route("/", get(|| async { "home" }))
        .route(
            "/login",
            post(|session: Session| async move {
                session.insert("user", "grace").await.unwrap();
                "in"
            }),
        )
        .route("/visitlog/events", capture.events())
        .layer(from_fn(current_user)) // inside the capture layer
        .layer(capture)
        .layer(SessionManagerLayer::new(MemoryStore::default()).with_secure(false)) // outside
}

// --- both, driven the same way ---------------------------------------------

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    format!("http://{addr}")
}

/// Logs in, views the home page and posts a learning event; returns the
/// records the layer shipped.
async fn log_in_and_browse(build: fn(CaptureLayer) -> Router, user: &str) -> Vec<Value> {
    let ns = Namespace::new();
    let (capture, shipper) = CaptureLayer::new(ns.config()).unwrap();
    let shipper = shipper.spawn();
    let base = serve(build(capture)).await;
    let client = http();
    let login = client.post(format!("{base}/login")).send().await.unwrap();
    assert_eq!(login.status(), 200);
    let jar = cookies(&login).join("; ");
    let home = client
        .get(format!("{base}/"))
        .header("cookie", &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), 200);
    let event = json!({"type": "tutorial.complete", "foss": "Python",
        "tutorial": "Getting-started", "language": "English"});
    let posted = client
        .post(format!("{base}/visitlog/events"))
        .header("cookie", &jar)
        .header("origin", &base)
        .header("content-type", "application/json")
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202, "{}", posted.text().await.unwrap());
    let stats = shipper.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats.skipped, 1, "the events POST is not a page view");
    assert_eq!(stats.dropped, 0, "{stats:?}");
    // Shut down: everything is on the list.
    let records = ns.records().await.unwrap();
    let home = records
        .iter()
        .find(|r| r["kind"] == "request" && r["path"] == "/")
        .unwrap();
    assert_eq!(home["user"], user, "{home}");
    let event = records.iter().find(|r| r["kind"] == "event").unwrap();
    assert_eq!(event["learner"], format!("user:{user}"), "{event}");
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_login_users_are_recorded() {
    log_in_and_browse(axum_login_app, "ada").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_sessions_users_are_recorded() {
    let records = log_in_and_browse(tower_sessions_app, "grace").await;
    // The login request itself: the session was written by the handler,
    // after the middleware read it, so it is anonymous.
    let login = records.iter().find(|r| r["path"] == "/login").unwrap();
    assert_eq!(login["user"], Value::Null);
}
