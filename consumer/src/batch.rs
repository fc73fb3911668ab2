//! From raw queue payloads to MongoDB documents, or to dead letters.
//!
//! Every payload is checked the way the collection's validator would check
//! it, before anything is sent: a server that does not enforce validators
//! gets the same documents as one that does, and one bad record never holds
//! up the rest of its batch.

use bson::{Document, RawDocumentBuf};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use visitlog_schema::{CatalogRecord, Collection, EventRecord, RecordValidator, RequestRecord};

use visitlog_progress::{Rules, page_view};

use crate::sink::{LearnerLink, catalog_document};

/// One batch, sorted.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Documents for `request_logs`, with the raw payload each came from.
    pub requests: Vec<(RawDocumentBuf, Vec<u8>)>,
    /// Documents for `events`: learning events off the queue, and the
    /// `page.view` events that tutorial-page requests make.
    pub events: Vec<PreparedEvent>,
    /// Payloads that cannot be stored, with the reason.
    pub dead: Vec<DeadLetter>,
    /// The learner links request records make, by their index in `requests`.
    pub links: Vec<(usize, LearnerLink)>,
    /// The analytics keys the request records touch (their events' are
    /// marked once they are stored).
    pub marks: Vec<crate::analytics::Mark>,
    /// Catalog publications, checked, with the payload each came from.
    pub catalogs: Vec<(CatalogRecord, Vec<u8>)>,
    /// The newest `ts` of the batch's records and events.
    pub newest: Option<DateTime<Utc>>,
}

/// One document for `events`, and what it contributes to derived state.
#[derive(Debug)]
pub struct PreparedEvent {
    /// The `events` document.
    pub doc: RawDocumentBuf,
    /// The payload it came from; `None` for a page view (its request record
    /// carries the payload).
    pub raw: Option<Vec<u8>>,
    /// Its part in the fold.
    pub fold: EventRecord,
}

/// A checked payload.
enum Parsed {
    Request(Box<RequestRecord>),
    Event(Box<EventRecord>),
    Catalog(Box<CatalogRecord>),
}

/// A payload that could not be stored, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The payload as it was on the queue.
    pub raw: Vec<u8>,
    /// Why it was refused, naming the field where there is one; at most
    /// [`MAX_REASON_BYTES`] when made by [`DeadLetter::new`].
    pub reason: String,
}

/// The longest reason kept, in bytes. Reasons name a field and a rule and
/// never quote the payload, but some come from elsewhere (MongoDB, serde):
/// a reason must never make a dead letter too big to write.
pub const MAX_REASON_BYTES: usize = 1024;

impl DeadLetter {
    /// A dead letter whose reason is cut to [`MAX_REASON_BYTES`].
    pub fn new(raw: Vec<u8>, reason: impl Into<String>) -> Self {
        Self {
            raw,
            reason: bounded_reason(reason.into()),
        }
    }
}

/// Cuts `reason` to at most [`MAX_REASON_BYTES`] bytes.
pub fn bounded_reason(reason: String) -> String {
    cut(reason, MAX_REASON_BYTES)
}

/// Cuts `text` to at most `max` bytes (at least 16), on a character
/// boundary, saying that it was cut.
fn cut(mut text: String, max: usize) -> String {
    const MARK: &str = "… (cut)";
    if text.len() <= max {
        return text;
    }
    let mut end = max.max(16) - MARK.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(MARK);
    text
}

/// A string from a payload, quoted in a reason only when it is short.
fn quoted(value: &str) -> String {
    if value.len() <= 40 && !value.chars().any(char::is_control) {
        format!("`{value}`")
    } else {
        format!("of {} bytes", value.len())
    }
}

/// Checks payloads against the validators; built once per process.
pub struct Preparer {
    requests: RecordValidator,
    events: RecordValidator,
    catalog: RecordValidator,
    rules: Rules,
}

impl Preparer {
    /// Compiles the validators; progress follows the default [`Rules`].
    pub fn new() -> Result<Self, visitlog_schema::SchemaError> {
        Self::with_rules(Rules::default())
    }

    /// Compiles the validators, with these progress rules.
    pub fn with_rules(rules: Rules) -> Result<Self, visitlog_schema::SchemaError> {
        Ok(Self {
            requests: RecordValidator::new(Collection::RequestLogs)?,
            events: RecordValidator::new(Collection::Events)?,
            catalog: RecordValidator::new(Collection::Catalog)?,
            rules,
        })
    }

    /// The progress rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Sorts `raw` payloads into documents and dead letters.
    pub fn prepare(&self, raw: Vec<Vec<u8>>) -> Prepared {
        let mut out = Prepared::default();
        for payload in raw {
            if let Err(letter) = self.add(payload, &mut out) {
                out.dead.push(letter);
            }
        }
        out
    }

    /// [`Preparer::prepare`] the way every payload went before the direct
    /// way: through a JSON value and the JSON validators, then the record,
    /// then `Document`. For the benchmark's before and after.
    #[doc(hidden)]
    pub fn prepare_by_reference(&self, raw: Vec<Vec<u8>>) -> Vec<Result<Document, String>> {
        raw.iter()
            .map(|payload| match self.reference(payload)? {
                Parsed::Request(r) => reference_document(r.as_ref(), r.ts),
                Parsed::Event(e) => reference_document(e.as_ref(), e.ts),
                Parsed::Catalog(_) => Ok(Document::new()),
            })
            .collect()
    }

    /// Adds one payload's documents to `out`; a payload that cannot be
    /// stored comes back as a dead letter, saying why.
    pub fn add(&self, payload: Vec<u8>, out: &mut Prepared) -> Result<(), DeadLetter> {
        let parsed = match self.parse(&payload) {
            Ok(Parsed::Catalog(record)) => {
                out.catalogs.push((*record, payload));
                return Ok(());
            }
            other => other,
        };
        let mut marks = None;
        let documents = parsed.and_then(|parsed| match parsed {
            Parsed::Request(record) => {
                let view = page_view(&record, &self.rules)
                    .map(|e| event_document(&e).map(|doc| (doc, e)))
                    .transpose()?;
                let link = LearnerLink::of(&record);
                marks = crate::analytics::batch::request_marks(&record);
                Ok((Some((request_document(&record)?, link, record.ts)), view))
            }
            Parsed::Event(event) => Ok((None, Some((event_document(&event)?, *event)))),
            Parsed::Catalog(_) => Ok((None, None)),
        });
        match documents {
            Ok((Some((request, link, ts)), view)) => {
                out.newest = out.newest.max(Some(ts));
                out.marks.extend(marks);
                if let Some((doc, fold)) = view {
                    out.events.push(PreparedEvent {
                        doc,
                        raw: None,
                        fold,
                    });
                }
                if let Some(link) = link {
                    out.links.push((out.requests.len(), link));
                }
                out.requests.push((request, payload));
                Ok(())
            }
            Ok((None, Some((doc, fold)))) => {
                out.newest = out.newest.max(Some(fold.ts));
                out.events.push(PreparedEvent {
                    doc,
                    raw: Some(payload),
                    fold,
                });
                Ok(())
            }
            Ok((None, None)) => Ok(()),
            Err(reason) => Err(DeadLetter::new(payload, reason)),
        }
    }

    /// The payload as a checked record. Straight from its bytes into the
    /// typed record, checked there ([`RequestRecord::check`]); whatever
    /// that refuses goes the reference way, through a JSON value and the
    /// validators, which says why (or takes the few spellings the direct
    /// way leaves to it: a repeated key, a catalog).
    fn parse(&self, payload: &[u8]) -> Result<Parsed, String> {
        match direct(payload) {
            Some(parsed) => Ok(parsed),
            None => self.reference(payload),
        }
    }

    /// Through a JSON value and the collections' JSON validators: what
    /// every payload went through before the direct way, kept for the
    /// reasons it gives and as the definition the direct way is tested
    /// against.
    fn reference(&self, payload: &[u8]) -> Result<Parsed, String> {
        if payload.is_empty() {
            return Err("empty payload".to_owned());
        }
        let text = std::str::from_utf8(payload).map_err(|e| format!("not UTF-8: {e}"))?;
        let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match kind {
            "request" => {
                self.requests.validate(&value).map_err(|f| {
                    format!(
                        "fails the request_logs validator at {}: {}",
                        f.path, f.message
                    )
                })?;
                let record: RequestRecord = serde_json::from_value(value)
                    .map_err(|e| format!("not a request record: {e}"))?;
                Ok(Parsed::Request(Box::new(record)))
            }
            "event" => {
                self.events.validate(&value).map_err(|f| {
                    format!("fails the events validator at {}: {}", f.path, f.message)
                })?;
                let event: EventRecord = serde_json::from_value(value)
                    .map_err(|e| format!("not an event record: {e}"))?;
                if event.event_type == visitlog_schema::EventType::PageView {
                    // Page views are derived here from request records, never sent.
                    return Err("`page.view` events are derived, not accepted".to_owned());
                }
                Ok(Parsed::Event(Box::new(event)))
            }
            "catalog" => {
                let record: CatalogRecord = serde_json::from_value(value)
                    .map_err(|e| format!("not a catalog record: {e}"))?;
                record
                    .check()
                    .map_err(|e| format!("catalog refused at {}: {}", e.field, e.message))?;
                // What will be stored, checked as the validator would.
                for (i, item) in record.items.iter().enumerate() {
                    let doc = catalog_document(&record, item);
                    self.catalog
                        .validate(&visitlog_progress::json_for_validation(&doc))
                        .map_err(|f| {
                            format!(
                                "items[{i}] fails the catalog validator at {}: {}",
                                f.path, f.message
                            )
                        })?;
                }
                Ok(Parsed::Catalog(Box::new(record)))
            }
            "" => Err("no `kind` field: not a visitlog record".to_owned()),
            other => Err(format!("unknown record kind {}", quoted(other))),
        }
    }
}

/// A record or event, parsed straight from its bytes and checked, or
/// `None` to go the reference way. Which type to try is told by the
/// `kind` the serializer writes third (a wrong guess only costs the
/// reference way).
fn direct(payload: &[u8]) -> Option<Parsed> {
    const EVENT: &[u8] = br#""kind":"event""#;
    // UTF-8 checked once for the whole payload: parsing from bytes checks
    // each string again as it goes, which cost a tenth of the parse.
    let text = std::str::from_utf8(payload).ok()?;
    let head = &payload[..payload.len().min(128)];
    if head.windows(EVENT.len()).any(|w| w == EVENT) {
        let event: EventRecord = serde_json::from_str(text).ok()?;
        // Page views are refused the reference way, which says why.
        (event.check().is_ok() && event.event_type != visitlog_schema::EventType::PageView)
            .then(|| Parsed::Event(Box::new(event)))
    } else {
        let record: RequestRecord = serde_json::from_str(text).ok()?;
        record
            .check()
            .is_ok()
            .then(|| Parsed::Request(Box::new(record)))
    }
}

/// The BSON document for a request record, written in one pass from the
/// typed record (`ts` a BSON date), as the driver sends it.
pub fn request_document(record: &RequestRecord) -> Result<RawDocumentBuf, String> {
    raw_document(record)
}

/// The BSON document for an event, the same way.
pub fn event_document(event: &EventRecord) -> Result<RawDocumentBuf, String> {
    raw_document(event)
}

fn raw_document<T: serde::Serialize>(record: &T) -> Result<RawDocumentBuf, String> {
    bson::to_raw_document_buf(record).map_err(|e| format!("cannot convert to BSON: {e}"))
}

/// The document the reference way made of a record: serde's `Document`,
/// `ts` then set to a BSON date. What the direct way's raw document must
/// equal (the property tests), and the benchmark's before.
#[doc(hidden)]
pub fn reference_document<T: serde::Serialize>(
    record: &T,
    ts: DateTime<Utc>,
) -> Result<Document, String> {
    let mut doc = bson::to_document(record).map_err(|e| format!("cannot convert to BSON: {e}"))?;
    doc.insert("ts", bson::DateTime::from_chrono(ts));
    Ok(doc)
}

/// A document of `dead_letters`, as written and as read back (by the
/// status page and the `dead-letters` commands): one type for both.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetterDocument {
    /// [`dead_letter_id`] of the payload.
    #[serde(rename = "_id")]
    pub id: String,
    /// Why it was refused.
    #[serde(default)]
    pub reason: String,
    /// When.
    #[serde(with = "bson::serde_helpers::chrono_datetime_as_bson_datetime")]
    pub at: DateTime<Utc>,
    /// The consumer that refused it.
    #[serde(default)]
    pub consumer: String,
    /// The queue it came from.
    #[serde(default)]
    pub queue: String,
    /// The payload's size in bytes (a server may hand a small one back as
    /// an int32; serde takes either).
    #[serde(default)]
    pub size: i64,
    /// A fresh id for each write of this dead letter (UUID v7), so that a
    /// requeue deletes only the write it read, never a renewal made since
    /// (times alone cannot tell: nx-27017 compares dates to the second).
    /// Absent in dead letters written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<String>,
    /// The payload kept is not all of it: never requeued.
    #[serde(default)]
    pub truncated: bool,
    /// The payload kept, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The payload kept, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_raw: Option<bson::Binary>,
    /// Why no payload was kept at all (MongoDB would not take it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_not_kept: Option<String>,
}

impl DeadLetterDocument {
    /// The document as BSON.
    pub fn to_document(&self) -> Document {
        bson::to_document(self).unwrap_or_default()
    }

    /// The payload kept, as bytes (empty when none was kept).
    pub fn payload_bytes(&self) -> Vec<u8> {
        match (&self.payload, &self.payload_raw) {
            (Some(text), _) => text.as_bytes().to_vec(),
            (None, Some(raw)) => raw.bytes.clone(),
            (None, None) => Vec::new(),
        }
    }
}

impl DeadLetter {
    /// What every `dead_letters` document of this letter says, without
    /// its payload: id, reason, time, consumer, queue, size.
    fn head(&self, at: DateTime<Utc>, consumer: &str, queue: &str) -> DeadLetterDocument {
        DeadLetterDocument {
            id: dead_letter_id(&self.raw),
            reason: bounded_reason(self.reason.clone()),
            at,
            consumer: consumer.to_owned(),
            queue: queue.to_owned(),
            size: i64::try_from(self.raw.len()).unwrap_or(i64::MAX),
            // Set by the write.
            written: None,
            truncated: false,
            payload: None,
            payload_raw: None,
            payload_not_kept: None,
        }
    }

    /// The `dead_letters` document: the payload (cut at `max_bytes`), reason,
    /// time and consumer. The id is a hash of the payload, so a replayed
    /// batch does not add the same dead letter twice.
    pub fn document(
        &self,
        at: DateTime<Utc>,
        consumer: &str,
        queue: &str,
        max_bytes: usize,
    ) -> Document {
        let kept = &self.raw[..self.raw.len().min(max_bytes)];
        let mut letter = DeadLetterDocument {
            truncated: kept.len() < self.raw.len(),
            ..self.head(at, consumer, queue)
        };
        match std::str::from_utf8(kept) {
            Ok(text) => letter.payload = Some(text.to_owned()),
            Err(_) => {
                letter.payload_raw = Some(bson::Binary {
                    subtype: bson::spec::BinarySubtype::Generic,
                    bytes: kept.to_vec(),
                });
            }
        }
        letter.to_document()
    }

    /// The `dead_letters` document without the payload, for when the whole
    /// one cannot be written (`why`): id, reason, size, time and consumer.
    /// Marked truncated, so it is never requeued.
    pub fn minimal_document(
        &self,
        at: DateTime<Utc>,
        consumer: &str,
        queue: &str,
        why: &str,
    ) -> Document {
        DeadLetterDocument {
            truncated: true,
            payload_not_kept: Some(cut(why.to_owned(), 256)),
            ..self.head(at, consumer, queue)
        }
        .to_document()
    }
}

/// Hex SHA-256 of the payload, shortened to 32 characters.
pub fn dead_letter_id(raw: &[u8]) -> String {
    Sha256::digest(raw)[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;
    use bson::Bson;

    fn good() -> Vec<u8> {
        serde_json::to_vec(&RequestRecord::example()).unwrap()
    }

    #[test]
    fn good_records_become_documents_with_a_date() {
        let prepared = Preparer::new().unwrap().prepare(vec![good()]);
        assert!(prepared.dead.is_empty(), "{:?}", prepared.dead);
        let doc = prepared.requests[0].0.to_document().unwrap();
        assert!(matches!(doc.get("ts"), Some(Bson::DateTime(_))));
        assert!(matches!(doc.get("_id"), Some(Bson::String(_))));
        assert!(matches!(doc.get("status"), Some(Bson::Int32(200))));
    }

    #[test]
    fn events_and_tutorial_page_views_become_event_documents() {
        let event = serde_json::to_vec(&EventRecord::example()).unwrap();
        let mut request = RequestRecord::example();
        request.ua.is_bot = false;
        let mut bot = request.clone();
        bot.ua.is_bot = true;
        bot.id = uuid::Uuid::now_v7();
        let raw = vec![
            event,
            serde_json::to_vec(&request).unwrap(),
            serde_json::to_vec(&bot).unwrap(),
        ];
        let prepared = Preparer::new().unwrap().prepare(raw);
        assert!(prepared.dead.is_empty(), "{:?}", prepared.dead);
        assert_eq!(prepared.requests.len(), 2);
        assert_eq!(
            prepared.events.len(),
            2,
            "the event, and one page view (not the bot's)"
        );
        let view = &prepared.events[1];
        assert_eq!(view.doc.get_str("type").unwrap(), "page.view");
        assert_eq!(view.doc.get_str("_id").unwrap(), request.id.to_string());
        assert!(view.raw.is_none());
        assert!(prepared.events[0].doc.get_datetime("ts").is_ok());
        // Clients cannot send page views.
        let mut forged = EventRecord::example();
        forged.event_type = visitlog_schema::EventType::PageView;
        let prepared = Preparer::new()
            .unwrap()
            .prepare(vec![serde_json::to_vec(&forged).unwrap()]);
        assert!(prepared.dead[0].reason.contains("derived"));
    }

    #[test]
    fn poison_payloads_become_dead_letters_with_a_reason() {
        let mut wrong_type = RequestRecord::example();
        wrong_type.path = String::new();
        let mut json: Value = serde_json::to_value(RequestRecord::example()).unwrap();
        json["status"] = Value::from("200");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json at all".to_vec(), "not JSON"),
            (Vec::new(), "empty"),
            (vec![0xff, 0xfe, b'{', b'}'], "not UTF-8"),
            (serde_json::to_vec(&json).unwrap(), "/status"),
            (serde_json::to_vec(&wrong_type).unwrap(), "/path"),
            (
                format!(
                    "{{\"kind\":\"request\",\"path\":\"{}\"}}",
                    "x".repeat(2_000_000)
                )
                .into_bytes(),
                "validator",
            ),
            (br#"{"kind":"gossip"}"#.to_vec(), "unknown record kind"),
            (br#"[1,2,3]"#.to_vec(), "no `kind`"),
        ];
        let n = cases.len();
        let mut raw: Vec<Vec<u8>> = cases.iter().map(|(p, _)| p.clone()).collect();
        raw.push(good());
        let prepared = Preparer::new().unwrap().prepare(raw);
        assert_eq!(
            prepared.requests.len(),
            1,
            "the good record survives its batch"
        );
        assert_eq!(prepared.dead.len(), n);
        for (dead, (_, expect)) in prepared.dead.iter().zip(&cases) {
            assert!(
                dead.reason.contains(expect),
                "{} should mention {expect}",
                dead.reason
            );
        }
    }

    #[test]
    fn catalog_publications_are_kept_or_refused_naming_the_field() {
        let item = |video: &str| visitlog_schema::CatalogItem {
            foss: "Python".into(),
            tutorial: "Intro".into(),
            language: "English".into(),
            video_id: video.into(),
            title: "Intro".into(),
            duration: Some(600.0),
            order: 1,
            main: true,
            level: None,
        };
        let good = CatalogRecord::new("Python", vec![item("p1")]);
        let two_mains = CatalogRecord::new("Python", vec![item("p1"), item("p2")]);
        let mut unknown = serde_json::to_value(&good).unwrap();
        unknown["items"][0]["colour"] = Value::from("red");
        let prepared = Preparer::new().unwrap().prepare(vec![
            serde_json::to_vec(&good).unwrap(),
            serde_json::to_vec(&two_mains).unwrap(),
            serde_json::to_vec(&unknown).unwrap(),
        ]);
        assert_eq!(prepared.catalogs.len(), 1);
        assert_eq!(prepared.catalogs[0].0, good);
        assert!(prepared.requests.is_empty() && prepared.events.is_empty());
        assert_eq!(prepared.dead.len(), 2);
        assert!(
            prepared.dead[0].reason.contains("items[1].main"),
            "{}",
            prepared.dead[0].reason
        );
        assert!(
            prepared.dead[1].reason.contains("colour"),
            "{}",
            prepared.dead[1].reason
        );
    }

    #[test]
    fn dead_letter_documents_keep_the_payload_within_bounds() {
        let big = DeadLetter {
            raw: vec![b'x'; 10_000],
            reason: "r".into(),
        };
        let doc = big.document(Utc::now(), "c1", "q", 4096);
        assert_eq!(doc.get_str("payload").unwrap().len(), 4096);
        assert!(doc.get_bool("truncated").unwrap());
        assert_eq!(doc.get_i64("size").unwrap(), 10_000);
        let binary = DeadLetter {
            raw: vec![0xff, 0x00, 0x80],
            reason: "r".into(),
        };
        let doc = binary.document(Utc::now(), "c1", "q", 4096);
        assert!(doc.get_binary_generic("payload_raw").is_ok());
        assert_eq!(
            doc.get_str("_id").unwrap(),
            dead_letter_id(&[0xff, 0x00, 0x80])
        );
    }
}
