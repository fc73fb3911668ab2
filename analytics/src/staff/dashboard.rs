//! `GET /` of the staff router: one self-contained page (no CDN, no build
//! step) that reads the JSON API next to it. Its script and styles are
//! allowed by hash in a strict Content-Security-Policy, so nothing else can
//! run on it; it builds the page with `textContent` only.

use std::sync::LazyLock;

use axum::extract::OriginalUri;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::api::{Granted, Problem, private};

const TEMPLATE: &str = include_str!("dashboard.html");
const SCRIPT: &str = include_str!("dashboard.js");

/// The page, its script in place.
static PAGE: LazyLock<String> = LazyLock::new(|| TEMPLATE.replace("__SCRIPT__", SCRIPT));

/// Its Content-Security-Policy: the inline script and style by hash.
static POLICY: LazyLock<String> = LazyLock::new(|| {
    let script = hash(&format!("\n{SCRIPT}\n"));
    let style = TEMPLATE
        .split_once("<style>")
        .and_then(|(_, rest)| rest.split_once("</style>"))
        .map_or_else(String::new, |(css, _)| hash(css));
    format!(
        "default-src 'none'; script-src '{script}'; style-src '{style}'; \
         connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
});

fn hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The dashboard, to those granted; a short page saying why to others.
pub(crate) async fn page(
    OriginalUri(uri): OriginalUri,
    granted: Result<Granted, Problem>,
) -> Response {
    if let Err(p) = granted {
        return refusal(&p);
    }
    // Its API is read relative to the page: `…/analytics` must end in `/`.
    if !uri.path().ends_with('/') {
        let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        return Redirect::permanent(&format!("{}/{query}", uri.path())).into_response();
    }
    let mut r = Html(PAGE.as_str()).into_response();
    private(&mut r);
    if let Ok(v) = HeaderValue::from_str(&POLICY) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// A readable refusal for a person at a browser.
fn refusal(p: &Problem) -> Response {
    let (status, text) = match p.status() {
        StatusCode::UNAUTHORIZED => (
            p.status(),
            "Log in with a staff account to see the course analytics.",
        ),
        StatusCode::FORBIDDEN => (p.status(), "The course analytics are for staff only."),
        other => (other, "The course analytics cannot be shown right now."),
    };
    let body = format!(
        "<!doctype html><meta charset=\"utf-8\"><title>Course analytics</title>\
         <p style=\"font:16px system-ui,sans-serif;margin:3rem\">{text}</p>"
    );
    let mut r = (status, Html(body)).into_response();
    private(&mut r);
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_holds_its_script_and_the_policy_its_hashes() {
        assert!(PAGE.contains("function tutorialsBody()"));
        assert!(!PAGE.contains("__SCRIPT__"));
        assert!(!SCRIPT.contains("innerHTML"), "textContent only");
        assert!(POLICY.contains("script-src 'sha256-"));
        assert!(POLICY.contains("style-src 'sha256-"));
        assert!(
            !PAGE.contains(" style=\""),
            "inline style attributes would be blocked"
        );
    }
}
