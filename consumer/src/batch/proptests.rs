//! Property tests of record preparation: whatever comes off the queue, it
//! becomes documents or dead letters, never a panic, and every refusal says
//! what is wrong in a bounded reason that does not quote the payload. The
//! direct way (bytes straight into the typed record, checked there)
//! accepts exactly what the reference way (a JSON value, the JSON
//! validators, then the record) does, with the same record, and writes
//! the same document the reference way's conversion did.
//!
//! `prepare_proptest` runs 256 cases of each property in the normal test
//! run; `prepare_proptest_100k` (ignored) runs at least 100,000 of each, or
//! `PROPTEST_CASES` if that is more:
//! `cargo test -p visitlog-consumer --lib prepare_proptest_100k -- --ignored`.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use serde_json::{Map, Value};
use visitlog_schema::{EventRecord, RequestRecord};

use super::*;

/// How every refusal starts: the problem, named.
const KNOWN_REASONS: &[&str] = &[
    "empty payload",
    "not UTF-8: ",
    "not JSON: ",
    "fails the request_logs validator at /",
    "fails the events validator at /",
    "not a request record: ",
    "not an event record: ",
    "`page.view` events are derived, not accepted",
    "no `kind` field: not a visitlog record",
    "unknown record kind ",
    "cannot convert to BSON: ",
];

/// Field names records have, so random objects reach the validators.
const FIELDS: &[&str] = &[
    "kind",
    "id",
    "schema_version",
    "ts",
    "method",
    "path",
    "query",
    "status",
    "ua",
    "raw",
    "is_bot",
    "type",
    "learner",
    "user",
    "foss",
    "tutorial",
    "language",
    "video_id",
    "position",
    "duration",
    "visitor_id",
    "visit_number",
    "rate",
    "page_view",
    "client_event_id",
    "active_ms",
    "request_id",
    "sample_rate",
    "content_type",
    "staff",
    "extra",
];

/// Fields whose spelling the validators constrain beyond their type.
const SPELLED: &[&str] = &["_id", "visitor_id", "page_view", "client_event_id", "ts"];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u32>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::from),
        prop::sample::select(vec![
            "request",
            "event",
            "video.play",
            "page.view",
            "GET",
            ""
        ])
        .prop_map(Value::from),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(FIELDS).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

/// Any JSON value, a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// One change to a valid record.
#[derive(Debug, Clone)]
enum Mutation {
    /// Drop a field.
    Remove(Index),
    /// Set a field (one it has, or a known name) to any value.
    Set(Index, Value),
    /// Set a known field to any value.
    SetNamed(&'static str, Value),
    /// Make a string field long (a marker repeated), in a nested object too.
    Long(Index, usize),
    /// Spell an id or the time another way (upper case, no hyphens,
    /// braces; a space for `T`, an offset, a leap second, no fraction).
    Respell(&'static str, usize),
}

/// The `n`th other spelling of `text`, or `None` to leave it.
fn respell(t: &str, n: usize) -> Option<String> {
    match n % 10 {
        0 => Some(t.to_uppercase()),
        1 => Some(t.replace('-', "")),
        2 => Some(format!("{{{t}}}")),
        3 => Some(format!("urn:uuid:{t}")),
        4 => Some(t.replacen('T', " ", 1)),
        5 => Some(t.replacen('T', "t", 1).replacen('Z', "z", 1)),
        6 => t.strip_suffix('Z').map(|t| format!("{t}+05:30")),
        7 => t.get(..17).map(|d| format!("{d}60.000Z")),
        8 => t.split('.').next().map(|d| format!("{d}Z")),
        _ => t.get(..10).map(str::to_owned),
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Remove),
        (any::<Index>(), json()).prop_map(|(i, v)| Mutation::Set(i, v)),
        (prop::sample::select(FIELDS), json()).prop_map(|(k, v)| Mutation::SetNamed(k, v)),
        (any::<Index>(), 0..6_000usize).prop_map(|(i, n)| Mutation::Long(i, n)),
        (prop::sample::select(SPELLED), any::<usize>()).prop_map(|(k, n)| Mutation::Respell(k, n)),
    ]
}

/// The marker long strings are made of; a reason never contains a run of it.
const MARK: &str = "Zq";

fn apply(record: &mut Value, m: &Mutation) {
    let Value::Object(map) = record else { return };
    let keys: Vec<String> = map.keys().cloned().collect();
    if keys.is_empty() {
        return;
    }
    match m {
        Mutation::Remove(i) => {
            map.remove(&keys[i.index(keys.len())]);
        }
        Mutation::Set(i, v) => {
            map.insert(keys[i.index(keys.len())].clone(), v.clone());
        }
        Mutation::SetNamed(k, v) => {
            map.insert((*k).to_owned(), v.clone());
        }
        Mutation::Long(i, n) => {
            let long = Value::from(MARK.repeat(*n));
            let k = &keys[i.index(keys.len())];
            match map.get_mut(k) {
                // Into the nested object (`ua`, `geo`): its first field.
                Some(Value::Object(inner)) => {
                    if let Some(first) = inner.keys().next().cloned() {
                        inner.insert(first, long);
                    }
                }
                Some(slot) => *slot = long,
                None => {}
            }
        }
        Mutation::Respell(k, n) => {
            if let Some(Value::String(text)) = map.get_mut(*k)
                && let Some(other) = respell(text, *n)
            {
                *text = other;
            }
        }
    }
}

/// A valid record of either kind, changed a little, and maybe its bytes cut
/// or flipped.
fn mutated_record() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(mutation(), 0..4),
        prop::option::of((any::<Index>(), any::<u8>(), any::<bool>())),
    )
        .prop_map(|(event, tutorial_view, mutations, damage)| {
            let mut record = if event {
                serde_json::to_value(EventRecord::example()).unwrap_or_default()
            } else {
                let mut r = RequestRecord::example();
                r.ua.is_bot = !tutorial_view;
                serde_json::to_value(r).unwrap_or_default()
            };
            for m in &mutations {
                apply(&mut record, m);
            }
            let mut bytes = serde_json::to_vec(&record).unwrap_or_default();
            if let Some((at, byte, cut)) = damage
                && !bytes.is_empty()
            {
                let at = at.index(bytes.len());
                if cut {
                    bytes.truncate(at);
                } else {
                    bytes[at] = byte;
                }
            }
            bytes
        })
}

/// The direct way's raw document is the reference way's `Document`.
fn same_document(
    raw: Result<RawDocumentBuf, String>,
    reference: Result<Document, String>,
) -> Result<(), TestCaseError> {
    let raw = raw.map_err(TestCaseError::fail)?;
    let doc = raw
        .to_document()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(doc, reference.map_err(TestCaseError::fail)?);
    Ok(())
}

/// The direct way and the reference way agree on one payload: both take
/// it, as the same record written as the same document, or both refuse.
fn same_either_way(preparer: &Preparer, payload: &[u8]) -> Result<(), TestCaseError> {
    let direct = direct(payload);
    let reference = preparer.reference(payload);
    match (&direct, &reference) {
        (None, Err(_)) | (None, Ok(Parsed::Catalog(_))) => Ok(()),
        (Some(Parsed::Request(a)), Ok(Parsed::Request(b))) => {
            prop_assert_eq!(a, b);
            same_document(request_document(a), reference_document(b.as_ref(), b.ts))
        }
        (Some(Parsed::Event(a)), Ok(Parsed::Event(b))) => {
            prop_assert_eq!(a, b);
            same_document(event_document(a), reference_document(b.as_ref(), b.ts))
        }
        _ => Err(TestCaseError::fail(format!(
            "the ways disagree on {}: direct {}, reference {}",
            String::from_utf8_lossy(payload),
            if direct.is_some() {
                "takes it"
            } else {
                "refuses it"
            },
            match &reference {
                Ok(_) => "takes it".to_owned(),
                Err(reason) => format!("refuses it: {reason}"),
            }
        ))),
    }
}

/// The properties, for one batch of payloads.
fn check(preparer: &Preparer, payloads: Vec<Vec<u8>>) -> Result<(), TestCaseError> {
    for payload in &payloads {
        same_either_way(preparer, payload)?;
    }
    let n = payloads.len();
    let originals = payloads.clone();
    let prepared = preparer.prepare(payloads);
    // Every payload ends up in exactly one place.
    let from_queue = prepared.requests.len()
        + prepared.events.iter().filter(|e| e.raw.is_some()).count()
        + prepared.dead.len();
    prop_assert_eq!(from_queue, n, "a payload was lost or doubled");
    for (doc, raw) in &prepared.requests {
        prop_assert!(originals.contains(raw));
        prop_assert!(doc.get_datetime("ts").is_ok());
        prop_assert!(doc.get_str("_id").is_ok());
        prop_assert!(
            doc.as_bytes().len() < 1024 * 1024,
            "a valid record is small"
        );
    }
    for event in &prepared.events {
        prop_assert!(event.doc.get_datetime("ts").is_ok());
        let id = event.fold.id.to_string();
        prop_assert_eq!(event.doc.get_str("_id").ok(), Some(id.as_str()));
    }
    for dead in &prepared.dead {
        let reason = &dead.reason;
        prop_assert!(originals.contains(&dead.raw));
        prop_assert!(
            KNOWN_REASONS.iter().any(|k| reason.starts_with(k)),
            "unclear reason: {}",
            reason
        );
        prop_assert!(
            reason.len() <= MAX_REASON_BYTES,
            "reason of {} bytes",
            reason.len()
        );
        // Validator failures name the field and the rule.
        if reason.starts_with("fails the") {
            prop_assert!(reason.ends_with(')'), "no rule named: {}", reason);
        }
        prop_assert!(
            !reason.contains(&MARK.repeat(40)),
            "the reason quotes the value: {}",
            reason
        );
        // The dead-letter document is bounded too, and keeps the payload
        // up to the limit.
        let doc = dead.document(Utc::now(), "c", "q", 4096);
        prop_assert!(
            doc.get_str("reason")
                .is_ok_and(|r| r.len() <= MAX_REASON_BYTES)
        );
        prop_assert_eq!(doc.get_i64("size").ok(), i64::try_from(dead.raw.len()).ok());
    }
    Ok(())
}

/// Fails the test with the property's name and the smallest failing case.
fn outcome<T: std::fmt::Debug>(name: &str, result: Result<(), TestError<T>>) {
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

fn run_all(cases: u32) {
    let preparer = Preparer::new().unwrap_or_else(|e| panic!("validators: {e}"));
    let config = Config {
        cases,
        // Failures are shown, not written next to the sources.
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config.clone());
    outcome(
        "arbitrary bytes",
        runner.run(&prop::collection::vec(any::<u8>(), 0..512), |bytes| {
            check(&preparer, vec![bytes])
        }),
    );
    let mut runner = TestRunner::new(config.clone());
    outcome(
        "arbitrary JSON",
        runner.run(&json(), |value| {
            let bytes =
                serde_json::to_vec(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
            check(&preparer, vec![bytes])
        }),
    );
    let mut runner = TestRunner::new(config);
    outcome(
        "mutated records, in batches",
        runner.run(&prop::collection::vec(mutated_record(), 1..6), |batch| {
            check(&preparer, batch)
        }),
    );
}

#[test]
fn prepare_proptest() {
    run_all(256);
}

/// The long run, for `scripts/bench`.
#[test]
#[ignore = "100,000 cases of each property: run with --ignored"]
fn prepare_proptest_100k() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
        .max(100_000);
    run_all(cases);
}
