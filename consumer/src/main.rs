//! `visitlog-consumer`: moves records from Redis into MongoDB.
//!
//! Not implemented yet (issue #3); the crate exists so the workspace has its
//! final shape.

fn main() -> std::process::ExitCode {
    eprintln!(
        "visitlog-consumer {}: not implemented yet",
        env!("CARGO_PKG_VERSION")
    );
    std::process::ExitCode::from(2)
}
