//! What the fold costs the consumer: per event of an ordinary page view,
//! per event on top of a long skimmed lecture (the `watched` list past its
//! 256 intervals), and writing the document. `cargo bench -p
//! visitlog-progress --bench fold`; the figures are in the README.

use std::hint::black_box;

use chrono::{DateTime, Duration, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use uuid::Uuid;
use visitlog_progress::{Progress, Rules};
use visitlog_schema::{EventRecord, EventType};

/// Events of one learner on one page, stamped as the server would.
struct Page {
    events: Vec<EventRecord>,
    now: DateTime<Utc>,
    page: Uuid,
    duration: f64,
}

impl Page {
    fn new(duration: f64) -> Self {
        let now = DateTime::from_timestamp(1_763_000_000, 0).unwrap_or_default();
        let mut page = Self {
            events: Vec::new(),
            now,
            page: Uuid::nil(),
            duration,
        };
        page.push(EventType::PageView, 0.0, |_| {});
        page.page = page.events[0].id;
        page
    }

    /// An event `after` seconds after the previous one.
    fn push(&mut self, kind: EventType, after: f64, f: impl FnOnce(&mut EventRecord)) {
        self.now += Duration::milliseconds((after * 1000.0) as i64);
        let ts = self.now;
        let mut e = EventRecord::example();
        e.id = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            ts.timestamp() as u64,
            ts.timestamp_subsec_nanos(),
        ));
        e.ts = ts;
        e.event_type = kind;
        let video = kind.is_video();
        if !video {
            (e.video_id, e.position, e.duration, e.played_from, e.rate) =
                (None, None, None, None, None);
        } else {
            e.duration = Some(self.duration);
            e.page_view = Some(self.page);
            e.client_event_id = Some(Uuid::new_v4());
            e.played_from = None;
        }
        f(&mut e);
        self.events.push(e);
    }

    /// A heartbeat: `from..to` watched, that much time later.
    fn watched(&mut self, from: f64, to: f64) {
        self.push(EventType::VideoProgress, to - from, |e| {
            e.played_from = Some(from);
            e.position = Some(to);
        });
    }
}

/// Ten minutes watched through, a heartbeat every 10 s: 63 events.
fn ten_minutes() -> Vec<EventRecord> {
    let mut p = Page::new(600.0);
    p.push(EventType::VideoPlay, 1.0, |e| e.position = Some(0.0));
    for k in 0..60 {
        p.watched(f64::from(k) * 10.0, f64::from(k + 1) * 10.0);
    }
    p.events
}

/// A two-hour lecture skimmed 4 s on, 6 s off: 720 intervals.
fn skimmed() -> Vec<EventRecord> {
    let mut p = Page::new(7200.0);
    p.push(EventType::VideoPlay, 1.0, |e| e.position = Some(0.0));
    for k in 0..720 {
        let at = f64::from(k) * 10.0;
        p.now += Duration::seconds(6);
        p.watched(at, at + 4.0);
    }
    p.events
}

fn bench(c: &mut Criterion) {
    let rules = Rules::default();
    let mut g = c.benchmark_group("fold");

    let page = ten_minutes();
    g.throughput(Throughput::Elements(page.len() as u64));
    g.bench_function("ten_minute_page_view", |b| {
        b.iter(|| Progress::fold(None, black_box(&page), &rules))
    });

    let mut lecture = skimmed();
    let Some(last) = lecture.pop() else {
        return;
    };
    let state = Progress::fold(None, &lecture, &rules);
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_event_on_a_skimmed_two_hour_lecture", |b| {
        b.iter_batched(
            || state.clone(),
            |s| Progress::fold_one(s, black_box(&last), &rules),
            BatchSize::SmallInput,
        )
    });
    let Some(done) = Progress::fold(state, [&last], &rules) else {
        return;
    };
    g.bench_function("document_of_a_skimmed_two_hour_lecture", |b| {
        b.iter(|| black_box(&done).to_document())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
