//! GeoIP lookups for visitlog: MaxMind GeoIP2/GeoLite2 City databases, a
//! bounded cache per IP, and hot reload when the file on disk is replaced.
//!
//! [`GeoDb::open`] checks the database before using it: it must open, be a
//! City (or Country) database, and answer a test lookup. A missing or corrupt
//! file is a clear [`GeoError`] at start-up, never a panic later. Private,
//! loopback and other non-routable addresses are not looked up.
//!
//! A weekly `geoipupdate` run replaces the file by renaming a new one over
//! it; [`GeoDb::reload_if_changed`] (or the task [`GeoDb::watch`] spawns)
//! notices, checks the new file the same way and swaps it in atomically. A
//! bad new file is refused and the old database stays in use.
//!
//! ```no_run
//! # async fn demo() -> Result<(), visitlog_geodb::GeoError> {
//! use std::time::Duration;
//! use visitlog_geodb::GeoDb;
//!
//! let db = GeoDb::open("/var/lib/GeoIP/GeoLite2-City.mmdb")?;
//! let _watcher = db.watch(Duration::from_secs(60));
//! if let Some(geo) = db.lookup("81.2.69.142".parse().unwrap()) {
//!     println!("{:?} {:?}", geo.country_code, geo.city);
//! }
//! # Ok(()) }
//! ```

mod error;
mod reader;
mod reload;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use quick_cache::sync::Cache;
pub use visitlog_schema::Geo;

pub use error::GeoError;
use reader::Database;
pub use reader::is_routable;
use reload::FileStamp;

/// How many IPs the cache keeps, unless configured.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// A GeoIP database with a bounded lookup cache, cheap to clone and share.
#[derive(Clone, Debug)]
pub struct GeoDb {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    cache_capacity: usize,
    /// The database and its cache are swapped together, so a cache never
    /// serves answers from an older file.
    current: ArcSwap<Loaded>,
}

struct Loaded {
    db: Database,
    stamp: FileStamp,
    cache: Cache<IpAddr, Option<Arc<Geo>>>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// What the loaded database says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbInfo {
    /// `database_type` from the metadata, e.g. `GeoLite2-City`.
    pub database_type: String,
    /// When MaxMind built the database, as seconds since the Unix epoch.
    pub build_epoch: u64,
}

impl GeoDb {
    /// Opens and checks the database at `path`, with the default cache size.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GeoError> {
        Self::with_cache_capacity(path, DEFAULT_CACHE_CAPACITY)
    }

    /// Opens and checks the database at `path`, caching up to `capacity` IPs.
    pub fn with_cache_capacity(path: impl AsRef<Path>, capacity: usize) -> Result<Self, GeoError> {
        let path = path.as_ref().to_path_buf();
        let loaded = load(&path, capacity)?;
        Ok(Self {
            inner: Arc::new(Shared {
                path,
                cache_capacity: capacity,
                current: ArcSwap::from_pointee(loaded),
            }),
        })
    }

    /// Where the client at `ip` is; `None` for private addresses, addresses
    /// the database does not know, and lookup errors.
    pub fn lookup(&self, ip: IpAddr) -> Option<Arc<Geo>> {
        let ip = ip.to_canonical();
        if !is_routable(ip) {
            return None;
        }
        let loaded = self.inner.current.load();
        if let Some(hit) = loaded.cache.get(&ip) {
            return hit;
        }
        let geo = match loaded.db.lookup(ip) {
            Ok(geo) => geo.map(Arc::new),
            Err(e) => {
                tracing::debug!(%ip, error = %e, "GeoIP lookup failed");
                None
            }
        };
        loaded.cache.insert(ip, geo.clone());
        geo
    }

    /// Type and build date of the database in use.
    pub fn info(&self) -> DbInfo {
        self.inner.current.load().db.info()
    }

    /// The file this database is loaded from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Reloads the file when it changed on disk since it was loaded.
    ///
    /// Returns `Ok(true)` when a new database was swapped in, `Ok(false)` when
    /// the file is unchanged, and an error (keeping the old database) when the
    /// new file is missing or fails the checks.
    pub fn reload_if_changed(&self) -> Result<bool, GeoError> {
        let stamp = FileStamp::of(&self.inner.path)?;
        if stamp == self.inner.current.load().stamp {
            return Ok(false);
        }
        let loaded = load(&self.inner.path, self.inner.cache_capacity)?;
        self.inner.current.store(Arc::new(loaded));
        Ok(true)
    }

    /// Spawns a task on the current Tokio runtime that calls
    /// [`reload_if_changed`](Self::reload_if_changed) every `interval`.
    ///
    /// Logs each reload, and each failure once until it changes. Abort the
    /// returned handle (or drop the runtime) to stop it.
    pub fn watch(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        reload::spawn_watcher(self.clone(), interval)
    }
}

fn load(path: &Path, cache_capacity: usize) -> Result<Loaded, GeoError> {
    // Stamp first: if the file is replaced while we read it, the next check
    // sees a different stamp and loads again.
    let stamp = FileStamp::of(path)?;
    let db = Database::open(path)?;
    Ok(Loaded {
        db,
        stamp,
        cache: Cache::new(cache_capacity.max(1)),
    })
}

#[cfg(test)]
mod tests;
