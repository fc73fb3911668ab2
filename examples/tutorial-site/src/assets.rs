//! Static assets under `/static/`: the sample video every tutorial page
//! plays and the page script that reports learning events, served from
//! `assets/` by tower-http's `ServeDir` (byte ranges, so the browser can
//! seek; `Last-Modified` and conditional requests; the media type from the
//! file name).

use tower_http::services::ServeDir;

/// The directory the assets are served from: the crate's `assets/`, as
/// the site runs from a checkout (`cargo run -p visitlog-example`).
pub const ASSETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets");

/// The service mounted at `/static`.
pub(crate) fn static_files() -> ServeDir {
    ServeDir::new(ASSETS)
}
