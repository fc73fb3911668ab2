//! Who may post: a JSON body, from this site (or a configured origin), so
//! another site cannot post events for a logged-in user.

use http::request::Parts;
use http::{HeaderMap, header};

pub(super) fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Another site must not be able to post events for a logged-in user:
/// `Sec-Fetch-Site` when the browser sends it, else the `Origin`, else the
/// `Referer` must be this site (its `Host`) or a configured origin.
pub(crate) fn same_origin(parts: &Parts, allowed: &[String]) -> Result<(), String> {
    let headers = &parts.headers;
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let origin = text(header::ORIGIN).filter(|o| *o != "null");
    let allowed_origin = origin.is_some_and(|o| {
        let o = o.trim_end_matches('/').to_ascii_lowercase();
        allowed.contains(&o)
    });
    if allowed_origin {
        return Ok(());
    }
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        return match site {
            "same-origin" => Ok(()),
            other => Err(format!("cross-origin request (Sec-Fetch-Site: {other})")),
        };
    }
    let host = text(header::HOST)
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .ok_or("no Host header")?;
    let (what, url) = match (origin, text(header::REFERER)) {
        (Some(origin), _) => ("Origin", origin),
        (None, Some(referer)) => ("Referer", referer),
        (None, None) => return Err("no Origin or Referer header: cannot tell who sent this".into()),
    };
    let authority = url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or_default())
        .unwrap_or_default();
    if !authority.is_empty() && authority.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(format!("cross-origin request ({what} is not this site)"))
    }
}
