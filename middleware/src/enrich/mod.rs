//! Enrichment: from what the request path captured ([`Captured`]) to the
//! stored [`RequestRecord`](visitlog_schema::RequestRecord), in the shipper
//! task, off the request path.
//!
//! [`Enricher`] does the per-record work (route and tutorial matching, GeoIP,
//! IP anonymisation, redaction, user-agent parsing, session hashing); each
//! kind has its own file. Two small pieces run on the request path because
//! they need the request's headers, which are not kept: resolving the client
//! address ([`client_ip`]) and copying the user-agent headers
//! ([`ua::UaInput`]). [`bots`] tells bots from browsers where woothee
//! cannot.
//!
//! [`redact`] strips deny-listed query values and user information from the
//! request's query and referer (the record's privacy rule); it is not the
//! credential masking for logs and errors, which is
//! `visitlog_schema::redact_url` and is used as it is.
//!
//! The visitor cookie ([`crate::visitor`]) is not here: it is request-path
//! state that writes a response header, not a derivation of the record.

mod bots;
pub(crate) mod client_ip;
pub(crate) mod redact;
pub(crate) mod route;
pub(crate) mod ua;

mod enriched;
mod record;

pub(crate) use record::{Captured, Enricher};
