//! Derived documents as the client-side validator sees them, so they can be
//! checked against the `$jsonSchema` of `visitlog-schema` before writing.

use bson::{Bson, Document};
use serde_json::Value;

/// A document as JSON for the client-side validator: dates become RFC 3339
/// strings, as they travel in records, and numbers JSON cannot write
/// (NaN, infinities) text, which no numeric rule takes.
pub fn json_for_validation(doc: &Document) -> Value {
    fn convert(b: &Bson) -> Value {
        match b {
            Bson::DateTime(t) => Value::from(
                t.to_chrono()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ),
            Bson::Document(d) => json_for_validation(d),
            Bson::Array(items) => Value::Array(items.iter().map(convert).collect()),
            Bson::Double(v) if v.is_finite() => Value::from(*v),
            // JSON has no NaN or infinity (`Value::from` would make them
            // null, which a `["double", "null"]` field takes); MongoDB
            // stores them, and its `minimum` refuses NaN. As text they
            // fail the `double` they claim to be.
            Bson::Double(v) => Value::from(v.to_string()),
            Bson::Int32(v) => Value::from(*v),
            Bson::Int64(v) => Value::from(*v),
            Bson::String(s) => Value::from(s.as_str()),
            Bson::Boolean(v) => Value::from(*v),
            Bson::Null => Value::Null,
            // binData is checked for its type only: never its bytes.
            Bson::Binary(b) => Value::from(format!("<{} bytes>", b.bytes.len())),
            other => Value::from(other.to_string()),
        }
    }
    Value::Object(doc.iter().map(|(k, v)| (k.clone(), convert(v))).collect())
}
