//! Headless Chromium (Debian's `chromium`) driven over the DevTools
//! protocol: just enough to open pages, run script, collect console errors
//! and take screenshots. Nothing is downloaded; the system browser is used.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The browser binary: `VISITLOG_TEST_CHROMIUM`, else `chromium` on PATH.
pub fn chromium_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("VISITLOG_TEST_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// Where tests put screenshots: `tests/artifacts/`.
pub fn artifacts_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("artifacts");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// What the browser says it is: a desktop Chrome.
const CHROME_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36";

/// One headless Chromium with one page.
pub struct Browser {
    child: Child,
    socket: Socket,
    session: String,
    next_id: u64,
    /// Console errors and uncaught exceptions seen so far.
    pub console_errors: Vec<String>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium, or `None` when it is not installed and
    /// `VISITLOG_TEST_REQUIRE_BROWSER` is unset (scripts/test sets it).
    pub async fn launch() -> anyhow::Result<Option<Self>> {
        let Some(binary) = chromium_path() else {
            if std::env::var_os("VISITLOG_TEST_REQUIRE_BROWSER").is_some() {
                bail!("chromium not found, and VISITLOG_TEST_REQUIRE_BROWSER is set");
            }
            eprintln!("skipping: chromium not installed");
            return Ok(None);
        };
        let profile = tempfile::tempdir()?;
        let mut child = Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required",
                "--window-size=1000,800",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            // The tests play a learner: headless Chromium says
            // `HeadlessChrome`, which the layer rightly counts as a bot.
            .arg(format!("--user-agent={CHROME_UA}"))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stderr = child.stderr.take().context("chromium stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return Ok(url.trim().to_owned());
                }
            }
            Err(anyhow!("chromium exited before listening"))
        })
        .await
        .context("chromium did not start within 30 s")??;
        // Keep draining stderr so Chromium never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
        let mut browser = Self {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            console_errors: Vec::new(),
            _profile: profile,
        };
        let target = browser
            .call("Target.createTarget", json!({ "url": "about:blank" }))
            .await?;
        let target_id = target["targetId"].as_str().context("targetId")?.to_owned();
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await?;
        browser.session = attached["sessionId"]
            .as_str()
            .context("sessionId")?
            .to_owned();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(domain, json!({})).await?;
        }
        Ok(Some(browser))
    }

    /// Sends one DevTools command and waits for its answer, noting console
    /// errors that arrive meanwhile.
    pub async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = Value::from(self.session.clone());
        }
        self.socket.send(Message::text(message.to_string())).await?;
        let answer = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(frame) = self.socket.next().await {
                let Message::Text(text) = frame? else {
                    continue;
                };
                let value: Value = serde_json::from_str(&text)?;
                if value["id"] == id {
                    return Ok(value);
                }
                self.note(&value);
            }
            Err(anyhow!("DevTools connection closed"))
        })
        .await
        .with_context(|| format!("{method}: no answer within 60 s"))??;
        if let Some(error) = answer.get("error") {
            bail!("{method}: {error}");
        }
        Ok(answer["result"].clone())
    }

    fn note(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => self
                .console_errors
                .push(params["exceptionDetails"].to_string()),
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => {
                self.console_errors.push(params["args"].to_string());
            }
            Some("Log.entryAdded") if params["entry"]["level"] == "error" => {
                self.console_errors
                    .push(params["entry"]["text"].to_string());
            }
            _ => {}
        }
    }

    /// Evaluates `expression` in the page (promises awaited) and returns its value.
    pub async fn eval(&mut self, expression: &str) -> anyhow::Result<Value> {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "awaitPromise": true, "returnByValue": true, "userGesture": true }),
            )
            .await?;
        if let Some(details) = result.get("exceptionDetails") {
            bail!("script failed: {details}");
        }
        Ok(result["result"]["value"].clone())
    }

    /// Opens `url` and waits until the page has loaded.
    pub async fn goto(&mut self, url: &str) -> anyhow::Result<()> {
        self.call("Page.navigate", json!({ "url": url })).await?;
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'")
            .await
    }

    /// Polls `condition` (a JS expression) until it is true, for up to 30 s.
    pub async fn wait_for(&mut self, condition: &str) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if self.eval(condition).await.ok() == Some(Value::Bool(true)) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("timed out waiting for `{condition}`");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG of the page to `path`.
    pub async fn screenshot(&mut self, path: &Path) -> anyhow::Result<()> {
        let shot = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await?;
        let data = shot["data"].as_str().context("screenshot data")?;
        let png = base64::engine::general_purpose::STANDARD.decode(data)?;
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
