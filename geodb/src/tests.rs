use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::*;

/// MaxMind's test databases, fetched by `scripts/fetch-test-data`.
fn data_dir() -> PathBuf {
    let dir = std::env::var_os("VISITLOG_TEST_DATA").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../.cache/maxminddb-test-data/maxminddb-3.2.0/tests/data")
        },
        PathBuf::from,
    );
    assert!(
        dir.join("test-data/GeoIP2-City-Test.mmdb").exists(),
        "MaxMind test databases missing under {}: run scripts/fetch-test-data",
        dir.display()
    );
    dir
}

fn test_db(name: &str) -> PathBuf {
    data_dir().join("test-data").join(name)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn looks_up_city_region_country_coordinates_and_time_zone() {
    let db = GeoDb::open(test_db("GeoIP2-City-Test.mmdb")).unwrap();
    let geo = db
        .lookup(ip("81.2.69.142"))
        .expect("London is in the test database");
    assert_eq!(geo.country_code.as_deref(), Some("GB"));
    assert_eq!(geo.country.as_deref(), Some("United Kingdom"));
    assert_eq!(geo.region_code.as_deref(), Some("ENG"));
    assert_eq!(geo.region.as_deref(), Some("England"));
    assert_eq!(geo.city.as_deref(), Some("London"));
    assert_eq!(geo.time_zone.as_deref(), Some("Europe/London"));
    let (lat, lon) = (geo.latitude.unwrap(), geo.longitude.unwrap());
    assert!(
        (lat - 51.5142).abs() < 0.01 && (lon + 0.0931).abs() < 0.01,
        "{lat},{lon}"
    );
    assert_eq!(db.info().database_type, "GeoIP2-City");
    assert!(db.info().build_epoch > 1_000_000_000);
}

#[test]
fn looks_up_ipv6_and_ipv4_mapped_addresses() {
    let db = GeoDb::open(test_db("GeoLite2-City-Test.mmdb")).unwrap();
    let geo = db
        .lookup(ip("2001:218::"))
        .expect("2001:218:: is in the test database");
    assert_eq!(geo.country_code.as_deref(), Some("JP"));
    assert_eq!(geo.country.as_deref(), Some("Japan"));
    let mapped = db
        .lookup(ip("::ffff:81.2.69.142"))
        .expect("mapped v4 is looked up as v4");
    assert_eq!(mapped.city.as_deref(), Some("London"));
}

#[test]
fn private_loopback_and_unknown_addresses_give_none() {
    let db = GeoDb::open(test_db("GeoIP2-City-Test.mmdb")).unwrap();
    for addr in [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "172.16.5.4",
        "100.64.0.1",
        "169.254.1.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fd00::1",
        "::",
        "192.0.2.1",
        "2001:db8::1",
    ] {
        assert!(!is_routable(ip(addr)), "{addr}");
        assert_eq!(db.lookup(ip(addr)), None, "{addr}");
    }
    // Public, but not in MaxMind's small test database.
    assert_eq!(db.lookup(ip("8.8.8.8")), None);
}

#[test]
fn answers_come_from_the_cache_the_second_time() {
    let db = GeoDb::with_cache_capacity(test_db("GeoIP2-City-Test.mmdb"), 16).unwrap();
    let first = db.lookup(ip("81.2.69.142")).unwrap();
    let second = db.lookup(ip("81.2.69.142")).unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    // The cache stays bounded however many addresses come by.
    for n in 0..=255u8 {
        db.lookup(IpAddr::from([81, 2, 69, n]));
    }
    assert!(db.inner.current.load().cache.len() <= 16);
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let err = GeoDb::open("/nonexistent/GeoLite2-City.mmdb").unwrap_err();
    assert!(matches!(err, GeoError::Io { .. }));
    let message = err.to_string();
    assert!(
        message.contains("/nonexistent/GeoLite2-City.mmdb"),
        "{message}"
    );
}

#[test]
fn a_database_without_locations_is_refused() {
    let err = GeoDb::open(test_db("GeoLite2-ASN-Test.mmdb")).unwrap_err();
    assert!(matches!(err, GeoError::WrongType { .. }), "{err}");
    assert!(err.to_string().contains("GeoLite2-ASN"), "{err}");
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("GeoLite2-City.mmdb");
    std::fs::write(&path, b"<html>404 Not Found</html>").unwrap();
    let err = GeoDb::open(&path).unwrap_err();
    assert!(matches!(err, GeoError::Invalid { .. }), "{err}");
}

/// Every corrupt file MaxMind ships is refused at open, or, if its damage is
/// where the checks do not reach, answers lookups without panicking.
#[test]
fn corrupt_databases_never_panic() {
    let mut files: Vec<PathBuf> = vec![
        test_db("GeoIP2-City-Test-Broken-Double-Format.mmdb"),
        test_db("GeoIP2-City-Test-Invalid-Node-Count.mmdb"),
    ];
    for sub in std::fs::read_dir(data_dir().join("bad-data")).unwrap() {
        let sub = sub.unwrap().path();
        if sub.is_dir() {
            for file in std::fs::read_dir(sub).unwrap() {
                files.push(file.unwrap().path());
            }
        }
    }
    files.retain(|f| f.extension().is_some_and(|e| e == "mmdb"));
    assert!(
        files.len() >= 20,
        "expected MaxMind's bad-data files, found {}",
        files.len()
    );
    let mut refused = 0;
    for file in &files {
        match GeoDb::open(file) {
            Err(e) => {
                refused += 1;
                assert!(e.to_string().contains(&*file.to_string_lossy()), "{e}");
            }
            Ok(db) => {
                for n in (0..=255u8).step_by(5) {
                    db.lookup(IpAddr::from([n, 2, 69, 142]));
                    db.lookup(IpAddr::from([0x2001, 0x218, u16::from(n), 0, 0, 0, 0, 1]));
                }
            }
        }
    }
    assert!(
        refused * 2 > files.len(),
        "only {refused} of {} refused",
        files.len()
    );
}

fn replace_with(dest: &std::path::Path, src: &std::path::Path) {
    // As geoipupdate does: write a new file, rename it over the old one.
    let tmp = dest.with_extension("tmp");
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

#[test]
fn reloads_a_replaced_file_and_keeps_the_old_one_when_the_new_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("GeoLite2-City.mmdb");
    std::fs::copy(test_db("GeoIP2-City-Test.mmdb"), &path).unwrap();
    let db = GeoDb::open(&path).unwrap();
    assert!(!db.reload_if_changed().unwrap(), "unchanged file reloaded");

    let before = db.lookup(ip("81.2.69.142")).unwrap();
    replace_with(&path, &test_db("GeoLite2-City-Test.mmdb"));
    assert!(db.reload_if_changed().unwrap());
    assert_eq!(db.info().database_type, "GeoLite2-City");
    let after = db.lookup(ip("81.2.69.142")).unwrap();
    assert!(
        !Arc::ptr_eq(&before, &after),
        "cache must not survive a reload"
    );

    replace_with(&path, &test_db("GeoLite2-ASN-Test.mmdb"));
    assert!(matches!(
        db.reload_if_changed(),
        Err(GeoError::WrongType { .. })
    ));
    assert_eq!(db.info().database_type, "GeoLite2-City");
    assert_eq!(
        db.lookup(ip("81.2.69.142")).unwrap().city.as_deref(),
        Some("London")
    );

    std::fs::remove_file(&path).unwrap();
    assert!(matches!(db.reload_if_changed(), Err(GeoError::Io { .. })));
    assert!(db.lookup(ip("81.2.69.142")).is_some());
}

#[tokio::test]
async fn the_watcher_picks_up_a_replaced_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("GeoLite2-City.mmdb");
    std::fs::copy(test_db("GeoIP2-City-Test.mmdb"), &path).unwrap();
    let db = GeoDb::open(&path).unwrap();
    let watcher = db.watch(Duration::from_millis(20));
    replace_with(&path, &test_db("GeoLite2-City-Test.mmdb"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while db.info().database_type != "GeoLite2-City" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "watcher did not reload"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    watcher.abort();
}
