//! Why a GeoIP database could not be used.

use std::path::PathBuf;

/// A GeoIP database could not be opened, or failed the checks before use.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file is missing or unreadable.
    #[error("cannot read GeoIP database {}: {source}", path.display())]
    Io {
        /// The database path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a MaxMind DB, or is corrupt.
    #[error("GeoIP database {} is not a valid MaxMind DB file: {source}", path.display())]
    Invalid {
        /// The database path.
        path: PathBuf,
        /// What the reader found.
        source: maxminddb::MaxMindDbError,
    },
    /// A MaxMind DB, but not one with locations (an ASN database, say).
    #[error(
        "GeoIP database {} is of type `{database_type}`; visitlog needs a City or Country database \
         (GeoLite2-City, GeoIP2-City, GeoIP2-Enterprise, GeoLite2-Country, GeoIP2-Country)",
        path.display()
    )]
    WrongType {
        /// The database path.
        path: PathBuf,
        /// The type its metadata declares.
        database_type: String,
    },
    /// The file opened but a test lookup failed: it is corrupt.
    #[error("GeoIP database {} failed its test lookup of {ip}: {source}", path.display())]
    TestLookup {
        /// The database path.
        path: PathBuf,
        /// The address looked up.
        ip: std::net::IpAddr,
        /// What the reader found.
        source: maxminddb::MaxMindDbError,
    },
}
