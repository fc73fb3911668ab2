//! Derived documents as the client-side validator sees them, so they can be
//! checked against the `$jsonSchema` of `visitlog-schema` before writing.

use bson::{Bson, Document};
use serde_json::Value;

/// A document as JSON for the client-side validator: dates become RFC 3339
/// strings, as they travel in records.
pub fn json_for_validation(doc: &Document) -> Value {
    fn convert(b: &Bson) -> Value {
        match b {
            Bson::DateTime(t) => Value::from(
                t.to_chrono()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ),
            Bson::Document(d) => json_for_validation(d),
            Bson::Array(items) => Value::Array(items.iter().map(convert).collect()),
            Bson::Double(v) => Value::from(*v),
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
