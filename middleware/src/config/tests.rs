//! `Config` from variables: defaults, every variable, bad values, secrets.

use std::collections::HashMap;

use super::*;

fn from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_lookup(|k| vars.get(k).cloned())
}

#[test]
fn defaults_apply_without_variables() {
    let c = from(&[]).unwrap();
    assert_eq!(c.redis_url, "redis://127.0.0.1:6379");
    assert_eq!(c.queue, "visitlog:queue");
    assert_eq!(c.visit_timeout, Duration::from_secs(1800));
    assert_eq!(c.returning_window, Duration::from_secs(183 * 86400));
    assert!(!c.anonymize_ip);
    assert!(c.geodb.is_none());
    assert_eq!(c.forwarded_header, ForwardedHeader::XForwardedFor);
    assert_eq!((c.events_rate, c.events_burst), (20.0, 40));
}

#[test]
fn variables_override_defaults() {
    let c = from(&[
        ("VISITLOG_REDIS_URL", "redis://10.0.0.5:6380/2"),
        ("VISITLOG_QUEUE", "site:queue"),
        ("VISITLOG_GEODB", "/var/lib/GeoIP/GeoLite2-City.mmdb"),
        ("VISITLOG_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1 ,::1"),
        ("VISITLOG_COOKIE_KEY", "0123456789abcdef0123456789abcdef"),
        ("VISITLOG_VISIT_TIMEOUT", "10m"),
        ("VISITLOG_RETURNING_WINDOW", "30d"),
        ("VISITLOG_ANONYMIZE_IP", "yes"),
    ])
    .unwrap();
    assert_eq!(c.queue, "site:queue");
    assert_eq!(c.trusted_proxies.len(), 3);
    assert_eq!(c.trusted_proxies[1].to_string(), "127.0.0.1/32");
    assert_eq!(c.visit_timeout, Duration::from_secs(600));
    assert_eq!(c.returning_window, Duration::from_secs(30 * 86400));
    assert!(c.anonymize_ip);
    assert_eq!(c.cookie_key.as_deref().map(<[u8]>::len), Some(32));
}

#[test]
fn every_variable_is_read() {
    let c = from(&[
        ("VISITLOG_GEODB_RELOAD", "5m"),
        ("VISITLOG_COOKIE_NAME", "vid"),
        ("VISITLOG_COOKIE_SECURE", "true"),
        ("VISITLOG_RESPECT_DNT", "1"),
        ("VISITLOG_TUTORIAL_ROUTE", "/t/{foss}/{tutorial}/{language}"),
        ("VISITLOG_CAPTURE_HEADERS", "accept-language, x-client"),
        ("VISITLOG_DENY_PARAMS", "Secret,PIN"),
        ("VISITLOG_DENY_HEADERS", "X-Private"),
        ("VISITLOG_BUFFER_RECORDS", "10"),
        ("VISITLOG_EVENTS_ANONYMOUS", "yes"),
        ("VISITLOG_EVENTS_MAX_BYTES", "4096"),
        (
            "VISITLOG_EVENTS_ORIGINS",
            "https://www.Example.org/, http://localhost:3000",
        ),
        ("VISITLOG_BUFFER_BYTES", "2048"),
        ("VISITLOG_BATCH_RECORDS", "5"),
        ("VISITLOG_BATCH_BYTES", "1024"),
        ("VISITLOG_FLUSH_INTERVAL", "10ms"),
        ("VISITLOG_REDIS_TIMEOUT", "750ms"),
        ("VISITLOG_FORWARDED_HEADER", "Forwarded"),
        ("VISITLOG_EVENTS_RATE", "5/s"),
        ("VISITLOG_EVENTS_BURST", "7"),
    ])
    .unwrap();
    assert_eq!(c.geodb_reload, Duration::from_secs(300));
    assert_eq!(
        (c.cookie_name.as_str(), c.cookie_secure, c.respect_dnt),
        ("vid", true, true)
    );
    assert_eq!(c.tutorial_route, "/t/{foss}/{tutorial}/{language}");
    assert_eq!(
        c.capture_headers,
        vec![
            http::header::ACCEPT_LANGUAGE,
            HeaderName::from_static("x-client")
        ]
    );
    assert_eq!(c.deny_params, vec!["secret", "pin"]);
    assert_eq!(c.deny_headers, vec!["x-private"]);
    assert_eq!(
        (
            c.buffer_records,
            c.buffer_bytes,
            c.batch_records,
            c.batch_bytes
        ),
        (10, 2048, 5, 1024)
    );
    assert_eq!(c.flush_interval, Duration::from_millis(10));
    assert_eq!(c.redis_timeout, Duration::from_millis(750));
    assert!(c.events_anonymous);
    assert_eq!(c.events_max_bytes, 4096);
    assert_eq!(
        c.events_origins,
        vec!["https://www.example.org", "http://localhost:3000"]
    );
    assert_eq!(c.forwarded_header, ForwardedHeader::Forwarded);
    assert_eq!((c.events_rate, c.events_burst), (5.0, 7));
    let err = from(&[("VISITLOG_EVENTS_ORIGINS", "example.org")]).unwrap_err();
    assert!(err.to_string().contains("VISITLOG_EVENTS_ORIGINS"), "{err}");
}

#[test]
fn bad_values_name_the_variable() {
    for (var, value, expect) in [
        ("VISITLOG_VISIT_TIMEOUT", "soon", "duration"),
        ("VISITLOG_RETURNING_WINDOW", "1m", "shorter"),
        (
            "VISITLOG_TRUSTED_PROXIES",
            "10.0.0.0/8,proxy.local",
            "proxy.local",
        ),
        ("VISITLOG_ANONYMIZE_IP", "maybe", "true or false"),
        ("VISITLOG_BUFFER_RECORDS", "0", "at least 1"),
        ("VISITLOG_REDIS_URL", "http://nope", "Redis URL"),
        ("VISITLOG_CAPTURE_HEADERS", "authorization", "deny list"),
        ("VISITLOG_TUTORIAL_ROUTE", "watch/{foss", "route"),
        ("VISITLOG_COOKIE_NAME", "a b", "letters"),
        (
            "VISITLOG_FORWARDED_HEADER",
            "x-client-ip",
            "x-forwarded-for",
        ),
        ("VISITLOG_EVENTS_RATE", "-1", "per second"),
        ("VISITLOG_EVENTS_RATE", "fast", "per second"),
        ("VISITLOG_EVENTS_BURST", "0", "at least 1"),
    ] {
        let err = from(&[(var, value)]).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with(var), "{message}");
        assert!(message.contains(expect), "{message}");
    }
}

#[test]
fn each_redis_mode_takes_its_own_settings() {
    let urls = "redis://:hunter2@10.0.0.1:7000,redis://:hunter2@10.0.0.2:7000";
    let c = from(&[
        ("VISITLOG_REDIS_MODE", "cluster"),
        ("VISITLOG_REDIS_URL", urls),
        ("VISITLOG_QUEUE_SHARDS", "6"),
    ])
    .unwrap();
    assert_eq!((c.redis_mode, c.queue_shards), (RedisMode::Cluster, 6));
    assert_eq!(c.queue_keys().shards().len(), 6);
    let c = from(&[
        ("VISITLOG_REDIS_MODE", "sentinel"),
        ("VISITLOG_REDIS_URL", urls),
        ("VISITLOG_REDIS_SENTINEL_MASTER", "mymaster"),
    ])
    .unwrap();
    assert_eq!(c.redis_sentinel_master.as_deref(), Some("mymaster"));
    for (vars, var, expect) in [
        (
            vec![("VISITLOG_REDIS_URL", urls)],
            "VISITLOG_REDIS_URL",
            "standalone mode takes one",
        ),
        (
            vec![("VISITLOG_REDIS_MODE", "sentinel")],
            "VISITLOG_REDIS_SENTINEL_MASTER",
            "required",
        ),
        (
            vec![("VISITLOG_REDIS_SENTINEL_MASTER", "mymaster")],
            "VISITLOG_REDIS_SENTINEL_MASTER",
            "sentinel mode only",
        ),
        (
            vec![("VISITLOG_REDIS_MODE", "replicated")],
            "VISITLOG_REDIS_MODE",
            "standalone, sentinel or cluster",
        ),
        (
            vec![("VISITLOG_QUEUE_SHARDS", "257")],
            "VISITLOG_QUEUE_SHARDS",
            "between 1 and 256",
        ),
        (
            vec![
                ("VISITLOG_QUEUE_SHARDS", "2"),
                ("VISITLOG_QUEUE", "site{1}"),
            ],
            "VISITLOG_QUEUE",
            "hash tags",
        ),
        (
            vec![
                ("VISITLOG_REDIS_MODE", "cluster"),
                (
                    "VISITLOG_REDIS_URL",
                    "redis://10.0.0.1:7000,http://:hunter2@x",
                ),
            ],
            "VISITLOG_REDIS_URL",
            "address 2 of 2",
        ),
    ] {
        let message = from(&vars).unwrap_err().to_string();
        assert!(message.starts_with(var), "{message}");
        assert!(message.contains(expect), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
}

#[test]
fn secrets_are_not_echoed_in_errors() {
    let err = from(&[("VISITLOG_COOKIE_KEY", "short-secret")]).unwrap_err();
    assert!(!err.to_string().contains("short-secret"), "{err}");
    let err = from(&[("VISITLOG_REDIS_URL", "rediss//:hunter2@host")]).unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let debug = format!(
        "{:?}",
        Config::default().redis_url("redis://u:hunter2@h/".into())
    );
    assert!(!debug.contains("hunter2"), "{debug}");
}

#[test]
fn the_readme_documents_every_variable() {
    let readme = include_str!("../../../README.md");
    for var in super::env::VARS {
        let row = format!("| `{}` |", var.name);
        assert!(
            readme.contains(&row),
            "README.md has no row for {}",
            var.name
        );
    }
}
