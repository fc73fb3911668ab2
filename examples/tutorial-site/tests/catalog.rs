//! The site's catalog is one the publisher accepts: a publication per FOSS,
//! a main video per page, the sample's duration.

#![allow(clippy::unwrap_used)]

use visitlog_middleware::{CaptureLayer, Config};

#[test]
fn the_catalog_is_valid_and_covers_every_page() {
    let items = visitlog_example::catalog();
    let pages: usize = visitlog_example::CATALOGUE
        .iter()
        .map(|(_, _, languages)| languages.len())
        .sum();
    assert_eq!(items.len(), pages);
    assert!(items.iter().all(|i| i.main && i.duration == Some(30.0)));
    let functions = items
        .iter()
        .find(|i| i.video_id == "Python/Functions/Marathi")
        .unwrap();
    assert_eq!(
        (functions.order, functions.level.as_deref()),
        (2, Some("intermediate"))
    );

    let config = Config::default()
        .cookie_key("0123456789abcdef0123456789abcdef")
        .redis_url("redis://127.0.0.1:1".to_owned());
    let (capture, _shipper) = CaptureLayer::new(config).unwrap();
    // Python, LibreOffice-Writer, Scilab.
    assert_eq!(capture.catalog().publish(items), Ok(3));
}
