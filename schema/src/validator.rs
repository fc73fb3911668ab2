//! The MongoDB `$jsonSchema` validators, and checking records against them.
//!
//! Each collection's validator is a JSON file under `schema/validators/`,
//! written in MongoDB's dialect (`bsonType`, no `$ref`, no `format`). The
//! consumer sends [`Collection::validator_document`] to MongoDB with
//! `create`/`collMod`, and checks every record with a [`RecordValidator`]
//! before sending it: the same rules, evaluated client-side by translating
//! `bsonType` into standard JSON Schema, so a server that does not enforce
//! validators still gets only valid documents.
//!
//! Records travel as JSON, where a BSON `date` is an RFC 3339 string; the
//! translation checks it as `format: date-time`.

use serde_json::{Map, Value};

/// A MongoDB collection guarded by a validator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Collection {
    /// One document per HTTP request.
    RequestLogs,
    /// One document per learning event.
    Events,
    /// One resume position per learner and video.
    VideoPositions,
    /// One progress document per learner, tutorial and language.
    TutorialProgress,
    /// One link per browser (visitor id) and user who logged in on it.
    LearnerLinks,
    /// One document per video the site offers.
    Catalog,
    /// One document per HTML page served to a person, with its time on page.
    PageViews,
    /// One document per learner session.
    Sessions,
    /// One document per video: its engagement.
    VideoStats,
    /// One document per tutorial, language and UTC day.
    TutorialDaily,
    /// One document per UTC day for the whole site.
    SiteDaily,
    /// One document per UTC day and per month: the staff answers' read model.
    Rollups,
}

impl Collection {
    /// Every collection that has a validator.
    pub const ALL: [Collection; 12] = [
        Collection::RequestLogs,
        Collection::Events,
        Collection::VideoPositions,
        Collection::TutorialProgress,
        Collection::LearnerLinks,
        Collection::Catalog,
        Collection::PageViews,
        Collection::Sessions,
        Collection::VideoStats,
        Collection::TutorialDaily,
        Collection::SiteDaily,
        Collection::Rollups,
    ];

    /// The collection's name in MongoDB.
    pub const fn name(self) -> &'static str {
        match self {
            Collection::RequestLogs => "request_logs",
            Collection::Events => "events",
            Collection::VideoPositions => "video_positions",
            Collection::TutorialProgress => "tutorial_progress",
            Collection::LearnerLinks => "learner_links",
            Collection::Catalog => "catalog",
            Collection::PageViews => "page_views",
            Collection::Sessions => "sessions",
            Collection::VideoStats => "video_stats",
            Collection::TutorialDaily => "tutorial_daily",
            Collection::SiteDaily => "site_daily",
            Collection::Rollups => "rollups",
        }
    }

    /// The validator file's text, as compiled into the crate.
    fn source(self) -> &'static str {
        match self {
            Collection::RequestLogs => include_str!("../validators/request_logs.json"),
            Collection::Events => include_str!("../validators/events.json"),
            Collection::VideoPositions => include_str!("../validators/video_positions.json"),
            Collection::TutorialProgress => include_str!("../validators/tutorial_progress.json"),
            Collection::LearnerLinks => include_str!("../validators/learner_links.json"),
            Collection::Catalog => include_str!("../validators/catalog.json"),
            Collection::PageViews => include_str!("../validators/page_views.json"),
            Collection::Sessions => include_str!("../validators/sessions.json"),
            Collection::VideoStats => include_str!("../validators/video_stats.json"),
            Collection::TutorialDaily => include_str!("../validators/tutorial_daily.json"),
            Collection::SiteDaily => include_str!("../validators/site_daily.json"),
            Collection::Rollups => include_str!("../validators/rollups.json"),
        }
    }

    /// The `{"$jsonSchema": ...}` document to pass as `validator` to MongoDB.
    pub fn validator_document(self) -> Result<Value, SchemaError> {
        serde_json::from_str(self.source()).map_err(|e| SchemaError::Parse {
            collection: self.name(),
            message: e.to_string(),
        })
    }
}

/// The validator files could not be loaded (a bug in this crate, caught by its tests).
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The file is not JSON.
    #[error("validator for `{collection}` is not valid JSON: {message}")]
    Parse {
        /// Collection name.
        collection: &'static str,
        /// Parser message.
        message: String,
    },
    /// The file is JSON but not a schema this crate can evaluate.
    #[error("validator for `{collection}` is not a usable schema: {message}")]
    Invalid {
        /// Collection name.
        collection: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Why a record failed its validator: the first offending field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ValidationFailure {
    /// JSON pointer to the offending value (`/ua/is_bot`), `/` for the whole record.
    pub path: String,
    /// What rule it broke, without the offending value.
    pub message: String,
}

/// Checks JSON records against a collection's validator, client-side.
#[derive(Debug)]
pub struct RecordValidator {
    collection: Collection,
    inner: jsonschema::Validator,
}

impl RecordValidator {
    /// Compiles the validator of `collection`.
    pub fn new(collection: Collection) -> Result<Self, SchemaError> {
        let doc = collection.validator_document()?;
        let invalid = |message: String| SchemaError::Invalid {
            collection: collection.name(),
            message,
        };
        let schema = doc
            .get("$jsonSchema")
            .ok_or_else(|| invalid("no top-level `$jsonSchema`".to_owned()))?;
        let translated = to_json_schema(schema).map_err(invalid)?;
        let inner = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .should_validate_formats(true)
            .build(&translated)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self { collection, inner })
    }

    /// The collection this validator guards.
    pub fn collection(&self) -> Collection {
        self.collection
    }

    /// `Ok` when `record` would be accepted by the collection's validator.
    pub fn validate(&self, record: &Value) -> Result<(), ValidationFailure> {
        match self.inner.iter_errors(record).next() {
            None => Ok(()),
            Some(error) => {
                let path = error.instance_path().to_string();
                Err(ValidationFailure {
                    path: if path.is_empty() {
                        "/".to_owned()
                    } else {
                        path
                    },
                    // The rule broken, never the offending value: that can
                    // be megabytes, and it ends up in logs and dead letters.
                    message: format!("{} ({})", error.masked(), error.kind().keyword()),
                })
            }
        }
    }
}

/// The `$jsonSchema` keywords MongoDB accepts (its docs, "$jsonSchema: Available Keywords").
pub const MONGODB_KEYWORDS: &[&str] = &[
    "additionalItems",
    "additionalProperties",
    "allOf",
    "anyOf",
    "bsonType",
    "dependencies",
    "description",
    "enum",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "items",
    "maxItems",
    "maxLength",
    "maxProperties",
    "maximum",
    "minItems",
    "minLength",
    "minProperties",
    "minimum",
    "multipleOf",
    "not",
    "oneOf",
    "pattern",
    "patternProperties",
    "properties",
    "required",
    "title",
    "type",
    "uniqueItems",
];

/// Translates a MongoDB `$jsonSchema` into standard JSON Schema (draft 7).
///
/// `bsonType` becomes `type`; `int` gains the 32-bit bounds; `date` becomes a
/// `date-time` string, as dates travel in JSON records. Keywords MongoDB does
/// not know are refused, so a validator file cannot pass here and fail on the
/// server.
pub fn to_json_schema(schema: &Value) -> Result<Value, String> {
    let Value::Object(map) = schema else {
        // `additionalProperties: false` and similar boolean schemas.
        return Ok(schema.clone());
    };
    let mut out = Map::new();
    let mut types: Vec<&str> = Vec::new();
    let mut int32 = false;
    for (key, value) in map {
        if !MONGODB_KEYWORDS.contains(&key.as_str()) {
            return Err(format!(
                "keyword `{key}` is not supported by MongoDB's $jsonSchema"
            ));
        }
        match key.as_str() {
            "bsonType" => {
                let names = match value {
                    Value::String(s) => vec![s.as_str()],
                    Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                    _ => return Err("`bsonType` must be a string or an array".to_owned()),
                };
                for name in &names {
                    types.push(json_type(name)?);
                    if *name == "date" {
                        out.insert("format".to_owned(), Value::from("date-time"));
                    }
                }
                let only_int32 =
                    names.contains(&"int") && names.iter().all(|n| matches!(*n, "int" | "null"));
                int32 |= only_int32;
            }
            "properties" | "patternProperties" => {
                let Value::Object(props) = value else {
                    return Err(format!("`{key}` must be an object"));
                };
                let mut translated = Map::new();
                for (name, sub) in props {
                    translated.insert(name.clone(), to_json_schema(sub)?);
                }
                out.insert(key.clone(), Value::Object(translated));
            }
            "items" | "additionalProperties" | "additionalItems" | "not" => {
                out.insert(key.clone(), to_json_schema(value)?);
            }
            "allOf" | "anyOf" | "oneOf" => {
                let Value::Array(subs) = value else {
                    return Err(format!("`{key}` must be an array"));
                };
                let translated = subs.iter().map(to_json_schema).collect::<Result<_, _>>()?;
                out.insert(key.clone(), Value::Array(translated));
            }
            // MongoDB's `$jsonSchema` is draft 4: `exclusiveMinimum: true`
            // makes `minimum` exclusive (a number there is refused by the
            // server); draft 7 spells that `exclusiveMinimum: <bound>`.
            "exclusiveMinimum" | "exclusiveMaximum" => {
                let Value::Bool(exclusive) = value else {
                    return Err(format!(
                        "`{key}` must be a boolean in MongoDB's $jsonSchema (draft 4)"
                    ));
                };
                let bound = if key == "exclusiveMinimum" {
                    "minimum"
                } else {
                    "maximum"
                };
                let Some(limit) = map.get(bound) else {
                    return Err(format!("`{key}` needs `{bound}` beside it"));
                };
                if *exclusive {
                    out.insert(key.clone(), limit.clone());
                }
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    // An exclusive bound replaces the inclusive one.
    for (exclusive, bound) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        if out.contains_key(exclusive) {
            out.remove(bound);
        }
    }
    if int32 {
        // Explicit bounds in the file win over the int32 range.
        out.entry("maximum").or_insert(Value::from(i32::MAX));
        out.entry("minimum").or_insert(Value::from(i32::MIN));
    }
    types.dedup();
    match types.as_slice() {
        [] => {}
        [one] => {
            out.insert("type".to_owned(), Value::from(*one));
        }
        many => {
            out.insert("type".to_owned(), Value::from(many.to_vec()));
        }
    }
    Ok(Value::Object(out))
}

fn json_type(bson_type: &str) -> Result<&'static str, String> {
    Ok(match bson_type {
        // Dates travel as RFC 3339 text, binData as a placeholder string:
        // the client-side check sees its type, never its bytes.
        "string" | "objectId" | "date" | "binData" => "string",
        "int" | "long" => "integer",
        "double" | "decimal" | "number" => "number",
        "bool" => "boolean",
        "object" => "object",
        "array" => "array",
        "null" => "null",
        other => return Err(format!("bsonType `{other}` has no JSON equivalent")),
    })
}

#[cfg(test)]
mod tests;
