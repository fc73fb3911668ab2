//! The reading side of an import, on a thread of its own: files to lines,
//! lines to records ([`Mapper`]), records checked and turned into documents
//! as the queue's records are ([`Preparer::add`]), sent in batches to the
//! storing side. The channel is bounded, so reading runs at most a few
//! batches ahead of MongoDB and memory stays flat whatever the files' size.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::files::{Line, Source, next_line, open};
use super::progress::Tally;
use super::summary::Summary;
use super::{Mapped, Mapper, Skip};
use crate::batch::{Prepared, Preparer};

/// Lines per batch.
pub(crate) const BATCH_LINES: usize = 1000;

/// Reads every source; returns what it counted (the stored counts are the
/// storing side's). Stops early when the storing side is gone.
pub(crate) fn read_all(
    sources: Vec<Source>,
    mut mapper: Mapper,
    preparer: Arc<Preparer>,
    tally: Arc<Tally>,
    tx: mpsc::Sender<Prepared>,
) -> Summary {
    let mut summary = Summary::default();
    let mut batch = Prepared::default();
    let mut in_batch = 0;
    let mut buf = Vec::with_capacity(64 * 1024);
    'files: for source in sources {
        let name = source
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut reader = match open(&source.path, tally.bytes.clone()) {
            Ok(reader) => reader,
            Err(e) => {
                summary
                    .errors
                    .push(format!("{}: {e}", source.path.display()));
                continue;
            }
        };
        summary.files += 1;
        let mut number = 0u64;
        loop {
            let line = match next_line(&mut *reader, &mut buf) {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(e) => {
                    summary.errors.push(format!(
                        "{}: after line {number}: {e}; the lines before it were read",
                        source.path.display()
                    ));
                    break;
                }
            };
            number += 1;
            summary.lines += 1;
            tally.lines.fetch_add(1, Ordering::Relaxed);
            let at = || format!("{name}:{number}");
            if line == Line::TooLong {
                summary.skip(&Skip::TooLong, at);
                continue;
            }
            if buf.trim_ascii().is_empty() {
                summary.skip(&Skip::Empty, at);
                continue;
            }
            match mapper.map(&buf) {
                Mapped::Record(payload, viewing) => {
                    let (requests, events, catalogs) = (
                        batch.requests.len(),
                        batch.events.len(),
                        batch.catalogs.len(),
                    );
                    match preparer.add(payload, &mut batch) {
                        Ok(()) => {
                            let kind = if batch.requests.len() > requests {
                                "request"
                            } else if batch.catalogs.len() > catalogs {
                                "catalog"
                            } else if batch.events.len() > events {
                                batch.events[events].fold.event_type.as_str()
                            } else {
                                "other"
                            };
                            summary.record(kind, viewing);
                        }
                        Err(letter) => summary.skip(&Skip::Refused(letter.reason), at),
                    }
                }
                Mapped::Used(used) => summary.used(used),
                Mapped::Other(event_type) => summary.other(event_type),
                Mapped::Skipped(reason) => summary.skip(&reason, at),
            }
            in_batch += 1;
            if in_batch >= BATCH_LINES {
                in_batch = 0;
                if tx.blocking_send(std::mem::take(&mut batch)).is_err() {
                    break 'files;
                }
            }
        }
    }
    if in_batch > 0 {
        let _ = tx.blocking_send(batch);
    }
    summary.bytes = tally.bytes.load(Ordering::Relaxed);
    if let Mapper::Edx(edx) = &mapper {
        summary.missing = edx.missing.clone();
        summary.out_of_order = edx.out_of_order();
    }
    summary
}
