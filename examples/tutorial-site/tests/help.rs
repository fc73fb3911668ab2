//! The site's `--help` through the real binary.

#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn help_never_shows_a_password_from_the_environment() {
    let output = Command::new(env!("CARGO_BIN_EXE_tutorial-site"))
        .arg("--help")
        .env(
            "VISITLOG_MONGODB_URI",
            "mongodb://site:hunter2@db.internal/",
        )
        .env("VISITLOG_REDIS_URL", "redis://:hunter3@cache.internal/")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("VISITLOG_MONGODB_URI"), "{help}");
    for secret in ["hunter2", "hunter3"] {
        assert!(!help.contains(secret), "{help}");
    }
}

#[test]
fn help_names_the_staff_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_tutorial-site"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("VISITLOG_EXAMPLE_STAFF"), "{help}");
    assert!(help.contains("[default: admin]"), "{help}");
}
