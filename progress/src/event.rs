//! The `events` document, the fold's input: an [`EventRecord`] as stored,
//! with `ts` as a BSON date rather than the RFC 3339 string it travels as.

use bson::{Bson, Document};
use chrono::SecondsFormat;
use visitlog_schema::EventRecord;

use crate::DocumentError;

/// The BSON document for an event: `ts` becomes a BSON date.
pub fn event_document(event: &EventRecord) -> Result<Document, DocumentError> {
    let mut doc = bson::to_document(event)?;
    doc.insert("ts", Bson::DateTime(bson::DateTime::from_chrono(event.ts)));
    Ok(doc)
}

/// Reads a stored `events` document back (a refold reads the history).
pub fn event_from_document(mut doc: Document) -> Result<EventRecord, DocumentError> {
    // The record type reads `ts` as it travels, RFC 3339 with milliseconds
    // (what a BSON date holds); anything else is left for serde to refuse.
    if let Some(Bson::DateTime(ts)) = doc.get("ts") {
        let text = ts.to_chrono().to_rfc3339_opts(SecondsFormat::Millis, true);
        doc.insert("ts", text);
    }
    // Fields the record requires that events stored before they existed
    // lack: null, as they would have been.
    for field in ["rate", "page_view", "client_event_id"] {
        if !doc.contains_key(field) {
            doc.insert(field, Bson::Null);
        }
    }
    Ok(bson::from_document(doc)?)
}
