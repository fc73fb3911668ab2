//! [`Buffer`]: records waiting to be sent, bounded in count and bytes, and
//! the rule for when the next batch is due (count, bytes or time, whichever
//! comes first). Pure bookkeeping, no I/O, so it is tested on its own.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Config;

/// The bounds the buffer keeps to, from [`Config`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) buffer_records: usize,
    pub(super) buffer_bytes: usize,
    pub(super) batch_records: usize,
    pub(super) batch_bytes: usize,
    pub(super) flush_interval: Duration,
}

impl Limits {
    pub(super) fn of(config: &Config) -> Self {
        Self {
            buffer_records: config.buffer_records,
            buffer_bytes: config.buffer_bytes,
            batch_records: config.batch_records,
            batch_bytes: config.batch_bytes,
            flush_interval: config.flush_interval,
        }
    }
}

/// Records waiting to be sent, bounded in count and bytes.
#[derive(Debug)]
pub(super) struct Buffer {
    limits: Limits,
    records: VecDeque<Vec<u8>>,
    bytes: usize,
    /// Records and bytes of the batch being sent; they count against the bound.
    in_flight: (usize, usize),
    /// When the oldest record of the current run started waiting.
    since: Option<Instant>,
}

impl Buffer {
    pub(super) fn new(limits: Limits) -> Self {
        Self {
            limits,
            records: VecDeque::new(),
            bytes: 0,
            in_flight: (0, 0),
            since: None,
        }
    }

    /// Records waiting (not counting a batch in flight).
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Appends one serialised record; the caller checked [`Self::is_full`].
    pub(super) fn push(&mut self, record: Vec<u8>) {
        self.bytes += record.len();
        self.records.push_back(record);
        self.since.get_or_insert_with(Instant::now);
    }

    /// Takes the next batch off the front, within the batch bounds (always at
    /// least one record, however large); it stays counted until
    /// [`Self::sent`] or [`Self::restore`].
    pub(super) fn take_batch(&mut self) -> Vec<Vec<u8>> {
        let limits = self.limits;
        let mut batch = Vec::with_capacity(limits.batch_records.min(self.records.len()));
        let mut bytes = 0;
        while let Some(front) = self.records.front() {
            if !batch.is_empty()
                && (batch.len() >= limits.batch_records || bytes + front.len() > limits.batch_bytes)
            {
                break;
            }
            bytes += front.len();
            batch.extend(self.records.pop_front());
        }
        self.bytes -= bytes;
        self.in_flight = (batch.len(), bytes);
        self.since = (!self.records.is_empty()).then(Instant::now);
        batch
    }

    /// The batch in flight reached Redis: it no longer counts.
    pub(super) fn sent(&mut self) {
        self.in_flight = (0, 0);
    }

    /// Puts a failed batch back at the front, in order.
    pub(super) fn restore(&mut self, batch: Vec<Vec<u8>>) {
        self.in_flight = (0, 0);
        self.bytes += batch.iter().map(Vec::len).sum::<usize>();
        for record in batch.into_iter().rev() {
            self.records.push_front(record);
        }
        self.since.get_or_insert_with(Instant::now);
    }

    /// No room for another record (a batch in flight counts).
    pub(super) fn is_full(&self) -> bool {
        self.records.len() + self.in_flight.0 >= self.limits.buffer_records
            || self.bytes + self.in_flight.1 >= self.limits.buffer_bytes
    }

    fn is_full_batch(&self) -> bool {
        self.records.len() >= self.limits.batch_records || self.bytes >= self.limits.batch_bytes
    }

    /// When the next batch should go: now if a full one is waiting, else when
    /// the oldest record has waited the flush interval; never before a retry
    /// is allowed. `None` when the buffer is empty.
    pub(super) fn due_at(&self, retry_at: Option<Instant>) -> Option<Instant> {
        let since = self.since?;
        let at = if self.is_full_batch() {
            since
        } else {
            since + self.limits.flush_interval
        };
        Some(retry_at.map_or(at, |r| r.max(at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            buffer_records: 5,
            buffer_bytes: 100,
            batch_records: 2,
            batch_bytes: 10,
            flush_interval: Duration::from_millis(100),
        }
    }

    fn record(n: usize) -> Vec<u8> {
        vec![b'x'; n]
    }

    #[test]
    fn an_empty_buffer_is_never_due() {
        let buffer = Buffer::new(limits());
        assert!(buffer.is_empty());
        assert_eq!(buffer.due_at(None), None);
    }

    #[test]
    fn a_partial_batch_waits_the_flush_interval() {
        let mut buffer = Buffer::new(limits());
        let start = Instant::now();
        buffer.push(record(1));
        let interval = Duration::from_millis(100);
        let due = buffer.due_at(None).expect("a record is waiting");
        assert!(start + interval <= due && due <= Instant::now() + interval);
        // A retry later than that wins; an earlier one does not.
        let later = start + Duration::from_secs(10);
        assert_eq!(buffer.due_at(Some(later)), Some(later));
        assert_eq!(buffer.due_at(Some(start)), Some(due));
    }

    #[test]
    fn a_full_batch_is_due_at_once() {
        let mut by_count = Buffer::new(limits());
        by_count.push(record(1));
        by_count.push(record(1));
        let mut by_bytes = Buffer::new(limits());
        by_bytes.push(record(10));
        let now = Instant::now();
        for buffer in [by_count, by_bytes] {
            assert!(buffer.due_at(None).is_some_and(|at| at <= now));
        }
    }

    #[test]
    fn batches_keep_to_count_and_bytes_but_take_at_least_one() {
        let mut buffer = Buffer::new(limits());
        for n in [3, 3, 3, 20, 1] {
            buffer.push(record(n));
        }
        assert_eq!(buffer.take_batch().len(), 2, "count bound");
        buffer.sent();
        assert_eq!(buffer.take_batch(), vec![record(3)], "bytes bound");
        buffer.sent();
        assert_eq!(
            buffer.take_batch(),
            vec![record(20)],
            "one oversized record"
        );
        buffer.sent();
        assert_eq!(buffer.take_batch(), vec![record(1)]);
        buffer.sent();
        assert!(buffer.is_empty());
        assert_eq!(buffer.due_at(None), None);
    }

    #[test]
    fn a_failed_batch_goes_back_in_order_and_in_flight_counts_as_full() {
        let mut buffer = Buffer::new(limits());
        for n in 1..=5 {
            buffer.push(vec![n]);
        }
        assert!(buffer.is_full(), "count bound");
        let batch = buffer.take_batch();
        assert_eq!(buffer.len(), 3);
        assert!(buffer.is_full(), "the batch in flight still counts");
        buffer.restore(batch);
        assert_eq!(buffer.take_batch(), vec![vec![1], vec![2]]);
        buffer.sent();
        assert!(!buffer.is_full());
        let mut heavy = Buffer::new(limits());
        heavy.push(record(100));
        assert!(heavy.is_full(), "bytes bound");
    }
}
