//! Noticing that the database file was replaced, and reloading it.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::{GeoDb, GeoError};

/// What identifies one version of the file: a rename over it changes the
/// inode, an in-place rewrite the mtime or length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: (u64, u64),
}

impl FileStamp {
    pub(crate) fn of(path: &Path) -> Result<Self, GeoError> {
        let meta = std::fs::metadata(path).map_err(|source| GeoError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            modified: meta.modified().ok(),
            len: meta.len(),
            #[cfg(unix)]
            inode: {
                use std::os::unix::fs::MetadataExt;
                (meta.dev(), meta.ino())
            },
        })
    }
}

pub(crate) fn spawn_watcher(db: GeoDb, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        let mut last_error: Option<String> = None;
        loop {
            ticks.tick().await;
            // Reading and checking a 60 MB file is blocking work.
            let candidate = db.clone();
            let outcome = tokio::task::spawn_blocking(move || candidate.reload_if_changed()).await;
            match outcome {
                Ok(Ok(true)) => {
                    last_error = None;
                    let info = db.info();
                    tracing::info!(
                        path = %db.path().display(),
                        database_type = %info.database_type,
                        build_epoch = info.build_epoch,
                        "GeoIP database reloaded"
                    );
                }
                Ok(Ok(false)) => last_error = None,
                Ok(Err(e)) => {
                    let message = e.to_string();
                    if last_error.as_deref() != Some(message.as_str()) {
                        tracing::warn!(error = %message, "GeoIP database not reloaded; keeping the one in use");
                        last_error = Some(message);
                    }
                }
                Err(join) => tracing::error!(error = %join, "GeoIP reload task failed"),
            }
        }
    })
}
