//! What preparing a record costs the consumer's CPU: from the queue's bytes
//! to the checked record and its BSON document, the part of a drain that
//! is the consumer's own (the rest is Redis, the driver and the server;
//! `drain` measures it all).
//!
//! Run with: `scripts/bench` (or `cargo bench -p visitlog-consumer --bench prepare`).
//! Each group prepares 1,000 payloads; the throughput is per record:
//! - `plain request`: a request record of a page that is no tutorial;
//! - `tutorial page view`: one of a tutorial page, which also becomes a
//!   `page.view` event, a learner link and analytics marks;
//! - `learning event`: a `video.progress` event.
//!
//! Each is measured the direct way (`prepare`: bytes straight into the
//! typed record, checked there, written as a raw BSON document) and the
//! reference way the consumer went before (`reference`: a JSON value, the
//! JSON validator, the record, a `Document`).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use visitlog_consumer::batch::Preparer;
use visitlog_schema::{EventRecord, RequestRecord};

fn tutorial(n: usize) -> Vec<u8> {
    let mut r = RequestRecord::example();
    r.id = uuid::Uuid::now_v7();
    r.query = Some(format!("n={n}"));
    serde_json::to_vec(&r).unwrap()
}

fn event(n: usize) -> Vec<u8> {
    let mut e = EventRecord::example();
    e.id = uuid::Uuid::now_v7();
    e.position = Some((n % 600) as f64);
    serde_json::to_vec(&e).unwrap()
}

/// Makes the `n`th payload of a kind.
type Payload = fn(usize) -> Vec<u8>;

fn bench(c: &mut Criterion) {
    let preparer = Preparer::new().unwrap();
    let kinds: [(&str, Payload); 3] = [
        ("plain request", visitlog_tests::plain_request_payload),
        ("tutorial page view", tutorial),
        ("learning event", event),
    ];
    for (name, make) in kinds {
        let payloads: Vec<Vec<u8>> = (0..1000).map(make).collect();
        let prepared = preparer.prepare(payloads.clone());
        assert!(prepared.dead.is_empty(), "{:?}", prepared.dead);
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(payloads.len() as u64));
        group.bench_function("prepare", |b| {
            b.iter_batched(
                || payloads.clone(),
                |raw| preparer.prepare(raw),
                BatchSize::LargeInput,
            )
        });
        group.bench_function("reference", |b| {
            b.iter_batched(
                || payloads.clone(),
                |raw| preparer.prepare_by_reference(raw),
                BatchSize::LargeInput,
            )
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
