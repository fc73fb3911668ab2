//! Static assets: the sample video (with byte ranges, so the browser can
//! seek) and the page script that reports learning events.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The sample video every tutorial page plays.
const SAMPLE_VIDEO: &[u8] = include_bytes!("../assets/sample.webm");
/// The page script that reports learning events.
const PROGRESS_JS: &str = include_str!("../assets/progress.js");

/// `GET /static/progress.js`.
pub(crate) async fn progress_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        PROGRESS_JS,
    )
}

/// The sample video, with byte ranges so the browser can seek.
pub(crate) async fn sample_video(headers: HeaderMap) -> Response {
    let total = SAMPLE_VIDEO.len();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| byte_range(r, total));
    let base = [
        (header::CONTENT_TYPE, "video/webm".to_owned()),
        (header::ACCEPT_RANGES, "bytes".to_owned()),
        (header::CACHE_CONTROL, "public, max-age=3600".to_owned()),
    ];
    match range {
        Some((start, end)) => (
            StatusCode::PARTIAL_CONTENT,
            base,
            [(
                header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{total}"),
            )],
            &SAMPLE_VIDEO[start..=end],
        )
            .into_response(),
        None => (base, SAMPLE_VIDEO).into_response(),
    }
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n`, clamped; `None` for anything else.
pub(crate) fn byte_range(header: &str, total: usize) -> Option<(usize, usize)> {
    let spec = header.strip_prefix("bytes=")?.trim();
    let (a, b) = spec.split_once('-')?;
    let last = total.checked_sub(1)?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: usize = n.parse().ok()?;
            (total.checked_sub(n.min(total))?, last)
        }
        (a, "") => (a.parse().ok()?, last),
        (a, b) => (a.parse().ok()?, b.parse::<usize>().ok()?.min(last)),
    };
    (start <= end && end < total).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges() {
        assert_eq!(byte_range("bytes=0-", 10), Some((0, 9)));
        assert_eq!(byte_range("bytes=2-4", 10), Some((2, 4)));
        assert_eq!(byte_range("bytes=5-100", 10), Some((5, 9)));
        assert_eq!(byte_range("bytes=-3", 10), Some((7, 9)));
        assert_eq!(byte_range("bytes=9-2", 10), None);
        assert_eq!(byte_range("bytes=10-", 10), None);
        assert_eq!(byte_range("items=0-1", 10), None);
    }
}
