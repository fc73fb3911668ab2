use serde_json::{Value, json};

use super::*;
use crate::{RequestRecord, limits};

fn validator() -> RecordValidator {
    RecordValidator::new(Collection::RequestLogs).expect("validator compiles")
}

fn example() -> Value {
    serde_json::to_value(RequestRecord::example()).expect("serialises")
}

fn failure(record: &Value) -> ValidationFailure {
    validator()
        .validate(record)
        .expect_err("record should have been rejected")
}

#[test]
fn every_validator_file_is_valid_mongodb_dialect() {
    for collection in Collection::ALL {
        let doc = collection.validator_document().unwrap();
        let schema = &doc["$jsonSchema"];
        assert_eq!(schema["bsonType"], "object", "{}", collection.name());
        to_json_schema(schema).unwrap();
        RecordValidator::new(collection).unwrap();
    }
}

#[test]
fn keywords_mongodb_does_not_know_are_refused() {
    let err = to_json_schema(&json!({"bsonType": "string", "format": "email"})).unwrap_err();
    assert!(err.contains("format"), "{err}");
    let err = to_json_schema(&json!({"bsonType": "timestamp"})).unwrap_err();
    assert!(err.contains("timestamp"), "{err}");
}

/// MongoDB's `$jsonSchema` is draft 4: an exclusive bound is a boolean
/// beside `minimum`, and a number there is refused by the server.
#[test]
fn exclusive_bounds_are_draft_4_booleans() {
    let err = to_json_schema(&json!({"bsonType": "double", "exclusiveMinimum": 0})).unwrap_err();
    assert!(err.contains("boolean"), "{err}");
    let err = to_json_schema(&json!({"bsonType": "double", "exclusiveMinimum": true})).unwrap_err();
    assert!(err.contains("minimum"), "{err}");
    let schema = to_json_schema(&json!({
        "bsonType": "double", "minimum": 0, "exclusiveMinimum": true, "maximum": 1
    }))
    .unwrap();
    assert_eq!(schema["exclusiveMinimum"], 0);
    assert!(schema.get("minimum").is_none(), "{schema}");

    let mut record = example();
    for (rate, ok) in [(0.25, true), (1.0, true), (0.0, false), (1.5, false)] {
        record["sample_rate"] = json!(rate);
        assert_eq!(validator().validate(&record).is_ok(), ok, "{rate}");
    }
}

#[test]
fn bson_types_translate_to_json_types() {
    let t = to_json_schema(&json!({"bsonType": ["int", "null"], "minimum": 1})).unwrap();
    assert_eq!(
        t,
        json!({"type": ["integer", "null"], "minimum": 1, "maximum": i32::MAX})
    );
    let t = to_json_schema(&json!({"bsonType": "date"})).unwrap();
    assert_eq!(t, json!({"type": "string", "format": "date-time"}));
    let t = to_json_schema(&json!({"bsonType": ["int", "long"]})).unwrap();
    assert_eq!(t, json!({"type": "integer"}));
}

#[test]
fn the_example_record_passes() {
    validator().validate(&example()).unwrap();
}

#[test]
fn a_record_with_every_optional_field_empty_passes() {
    let mut record = example();
    for key in [
        "query",
        "route",
        "referer",
        "ip",
        "geo",
        "visitor_id",
        "visit_number",
        "new_visit",
        "returning",
        "user",
        "session_id",
        "tutorial",
    ] {
        record[key] = Value::Null;
    }
    record["view_args"] = json!({});
    record["headers"] = json!({});
    record["ua"] = json!({
        "raw": "", "name": null, "category": null, "os": null, "os_version": null,
        "version": null, "vendor": null, "is_bot": false
    });
    validator().validate(&record).unwrap();
}

#[test]
fn typical_bad_records_fail_naming_the_field() {
    type Breaker = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Breaker)> = vec![
        ("/status", Box::new(|r| r["status"] = json!("200"))),
        ("/status", Box::new(|r| r["status"] = json!(42))),
        ("/_id", Box::new(|r| r["_id"] = json!("not-a-uuid"))),
        // A UUID v4 is not time-ordered; records must carry v7.
        (
            "/_id",
            Box::new(|r| r["_id"] = json!("6f1c2d4e-5a6b-4c8d-9e0f-1a2b3c4d5e6f")),
        ),
        ("/ts", Box::new(|r| r["ts"] = json!("yesterday"))),
        ("/kind", Box::new(|r| r["kind"] = json!("event"))),
        (
            "/path",
            Box::new(|r| r["path"] = json!("x".repeat(limits::URL + 1))),
        ),
        ("/latency_ms", Box::new(|r| r["latency_ms"] = json!(-1.0))),
        ("/ua/is_bot", Box::new(|r| r["ua"]["is_bot"] = json!("no"))),
        (
            "/ua/category",
            Box::new(|r| r["ua"]["category"] = json!("toaster")),
        ),
        (
            "/geo/latitude",
            Box::new(|r| r["geo"]["latitude"] = json!(91.0)),
        ),
        (
            "/tutorial",
            Box::new(|r| r["tutorial"] = json!({"foss": "Python"})),
        ),
        ("/view_args/x", Box::new(|r| r["view_args"]["x"] = json!(1))),
        (
            "/schema_version",
            Box::new(|r| r["schema_version"] = json!(99)),
        ),
    ];
    for (path, break_it) in cases {
        let mut record = example();
        break_it(&mut record);
        let failure = failure(&record);
        assert_eq!(failure.path, path, "{failure}");
    }
}

#[test]
fn missing_and_unknown_fields_fail() {
    let mut record = example();
    record.as_object_mut().unwrap().remove("user");
    assert!(failure(&record).message.contains("user"));

    let mut record = example();
    record["password"] = json!("hunter2");
    assert!(failure(&record).message.contains("password"));

    assert_eq!(failure(&json!("a string")).path, "/");
}

/// The truncation limits of the middleware are the validator's limits.
#[test]
fn limits_match_the_validator() {
    let doc = Collection::RequestLogs.validator_document().unwrap();
    let props = &doc["$jsonSchema"]["properties"];
    let max = |v: &Value| v["maxLength"].as_u64().map(|n| n as usize);
    assert_eq!(max(&props["method"]), Some(limits::METHOD));
    for key in ["path", "query", "referer"] {
        assert_eq!(max(&props[key]), Some(limits::URL), "{key}");
    }
    assert_eq!(max(&props["route"]), Some(limits::ROUTE));
    assert_eq!(max(&props["content_type"]), Some(limits::CONTENT_TYPE));
    assert_eq!(max(&props["request_id"]), Some(limits::REQUEST_ID));
    assert_eq!(
        max(&props["ua"]["properties"]["raw"]),
        Some(limits::USER_AGENT)
    );
    for key in ["user", "session_id"] {
        assert_eq!(max(&props[key]), Some(limits::SHORT), "{key}");
    }
    for key in ["name", "os", "os_version", "version", "vendor"] {
        assert_eq!(
            max(&props["ua"]["properties"][key]),
            Some(limits::SHORT),
            "{key}"
        );
    }
    for key in ["view_args", "headers"] {
        assert_eq!(
            max(&props[key]["additionalProperties"]),
            Some(limits::VALUE)
        );
        assert_eq!(
            props[key]["maxProperties"].as_u64().map(|n| n as usize),
            Some(limits::MAX_ENTRIES)
        );
    }
    for key in ["foss", "tutorial", "language"] {
        assert_eq!(
            max(&props["tutorial"]["properties"][key]),
            Some(limits::VALUE)
        );
    }
}

#[test]
fn the_example_event_passes_and_bad_events_fail() {
    let events = RecordValidator::new(Collection::Events).unwrap();
    let good = serde_json::to_value(crate::EventRecord::example()).unwrap();
    events.validate(&good).unwrap();
    let cases: Vec<(&str, Value)> = vec![
        ("/type", json!("video.rewind")),
        ("/position", json!(-1.0)),
        ("/duration", json!(1e9)),
        ("/foss", json!("x".repeat(513))),
        ("/active_ms", json!(-5)),
        ("/learner", json!("x".repeat(300))),
    ];
    for (path, value) in cases {
        let mut event = good.clone();
        event[&path[1..]] = value;
        assert_eq!(events.validate(&event).unwrap_err().path, path);
    }
}
