//! The web side of the cross-crate tests: the example site served in
//! process, the capture configuration of a test namespace, logging in with
//! a real browser, and the consumer binary. Kept out of the harness library
//! so that the consumer's tests never build the site.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use visitlog_middleware::{CaptureLayer, Config, ShipperHandle, Stats};
use visitlog_tests::Namespace;
use visitlog_tests::browser::Browser;

/// The capture configuration of a test namespace.
pub trait CaptureConfig {
    /// Captures into this namespace's queue, flushing quickly.
    fn config(&self) -> Config;
}

impl CaptureConfig for Namespace {
    fn config(&self) -> Config {
        Config::default()
            .redis_url(self.redis_url().to_owned())
            .queue(self.queue().to_owned())
            .cookie_key("integration-test-key-0123456789abcdef")
            .flush_interval(Duration::from_millis(20))
            .redis_timeout(Duration::from_millis(500))
    }
}

/// A hello-world app behind the layer built from `config`, its shipper
/// running.
pub fn hello_app(config: Config) -> (axum::Router, ShipperHandle) {
    let (capture, shipper) = CaptureLayer::new(config).unwrap();
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "hello" }))
        .layer(capture);
    (app, shipper.spawn())
}

/// Sends `GET /?n=…` for each `n` of `from..to` through `app`, from a
/// browser at 127.0.0.1, reading each answer.
pub async fn hello_requests(app: &axum::Router, from: usize, to: usize) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    for n in from..to {
        let request = axum::http::Request::get(format!("/?n={n}"))
            .header("user-agent", visitlog_tests::BROWSER_UA)
            .extension(axum::extract::ConnectInfo(SocketAddr::from((
                [127, 0, 0, 1],
                4000,
            ))))
            .body(axum::body::Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        response.into_body().collect().await.unwrap();
    }
}

/// The example site, served on a free loopback port for one test.
pub struct Site {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The layer, for its counters.
    pub capture: CaptureLayer,
    shipper: Option<ShipperHandle>,
    server: tokio::task::JoinHandle<()>,
}

impl Site {
    /// Builds the layer from `config`, spawns its shipper and serves the site.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        Self::serve(config, None).await
    }

    /// Like [`Site::start`], reading learning progress from `database` at `mongodb_uri`.
    pub async fn start_with_progress(
        config: Config,
        mongodb_uri: &str,
        database: &str,
    ) -> anyhow::Result<Self> {
        let store = visitlog_example::Store::connect(mongodb_uri, database).await?;
        Self::serve(config, Some(store)).await
    }

    async fn serve(config: Config, store: Option<visitlog_example::Store>) -> anyhow::Result<Self> {
        let (capture, shipper) = CaptureLayer::new(config)?;
        let shipper = shipper.spawn();
        let app = visitlog_example::app_with_store(capture.clone(), store);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
        Ok(Self {
            base,
            capture,
            shipper: Some(shipper),
            server,
        })
    }

    /// Publishes the example site's catalog, as its `main` does at start-up.
    pub fn publish_catalog(&self) -> anyhow::Result<usize> {
        Ok(self
            .capture
            .catalog()
            .publish(visitlog_example::catalog())?)
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops serving and flushes the shipper within `deadline`.
    pub async fn shutdown(mut self, deadline: Duration) -> Stats {
        self.server.abort();
        match self.shipper.take() {
            Some(shipper) => shipper.shutdown(deadline).await,
            None => self.capture.stats(),
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Logs `user` in on the site's front page, as a person would.
pub async fn log_in(browser: &mut Browser, site: &Site, user: &str) {
    browser.goto(&site.url("/")).await.unwrap();
    browser
        .eval(&format!("document.querySelector('input[name=username]').value = '{user}'; document.querySelector('form').submit(); true"))
        .await
        .unwrap();
    browser
        .wait_for("document.getElementById('user') !== null")
        .await
        .unwrap();
}

/// The `visitlog-consumer` binary, built by cargo if it is missing or
/// stale. Another package's binary has no `CARGO_BIN_EXE_*`; it sits beside
/// this test's own directory in the target directory.
pub fn consumer_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            // target/<profile>/deps/<this test>
            let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
            let profile = match dir.file_name().and_then(|n| n.to_str()) {
                Some("debug") | None => "dev",
                Some(other) => other,
            };
            let status = Command::new(env!("CARGO"))
                .args(["build", "--quiet", "--profile", profile])
                .args(["-p", "visitlog-consumer", "--bin", "visitlog-consumer"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .unwrap();
            assert!(status.success(), "cannot build visitlog-consumer");
            dir.join(format!("visitlog-consumer{}", std::env::consts::EXE_SUFFIX))
        })
        .clone()
}

/// A browser without a browser: an HTTP client that keeps its cookies (the
/// visitor cookie, the session) and posts learning events as a page does.
pub struct Client {
    pub client: reqwest::Client,
    pub cookies: Vec<String>,
    pub origin: String,
}

impl Client {
    /// A new browser for `site`: no cookies yet.
    pub fn new(site: &Site) -> Self {
        Self {
            client: visitlog_tests::http(),
            cookies: Vec::new(),
            origin: site.base.clone(),
        }
    }

    /// Keeps the cookies `response` sets, replacing those of the same name.
    pub fn keep(&mut self, response: &reqwest::Response) {
        for cookie in visitlog_tests::cookies(response) {
            let name = cookie.split('=').next().unwrap_or_default().to_owned();
            self.cookies.retain(|c| !c.starts_with(&format!("{name}=")));
            self.cookies.push(cookie);
        }
    }

    /// `GET url` with the cookies.
    pub async fn get(&mut self, url: String) -> reqwest::Response {
        let response = self
            .client
            .get(url)
            .header("cookie", self.cookies.join("; "))
            .send()
            .await
            .unwrap();
        self.keep(&response);
        response
    }

    /// Logs in as `user` through the site's form.
    pub async fn login(&mut self, site: &Site, user: &str) {
        let response = self
            .client
            .post(site.url("/login"))
            .header("cookie", self.cookies.join("; "))
            .form(&[("username", user)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303);
        self.keep(&response);
    }

    /// Posts learning events as the page's script does; the status and answer.
    pub async fn post_events(
        &mut self,
        site: &Site,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let response = self
            .client
            .post(site.url("/visitlog/events"))
            .header("cookie", self.cookies.join("; "))
            .header("origin", &self.origin)
            .json(body)
            .send()
            .await
            .unwrap();
        self.keep(&response);
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }
}
