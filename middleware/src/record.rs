//! What travels from the request path to the shipper: [`Item`], a finished
//! request ([`Captured`]: owned, cheap handles) or a stamped learning event.
//!
//! The request path only copies handles; [`crate::enrich::Enricher`] turns
//! them into the stored records in the shipper task, off the request path.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{HeaderName, HeaderValue, Method, Uri};
use uuid::Uuid;
use visitlog_schema::EventRecord;

use crate::enrich::ua::UaInput;
use crate::identity::Identity;
use crate::visitor::Visit;

/// What the request path hands to the shipper: owned, cheap to clone handles.
#[derive(Debug)]
pub(crate) struct Captured {
    pub(crate) id: Uuid,
    pub(crate) ts: DateTime<Utc>,
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) route: Option<String>,
    pub(crate) status: u16,
    pub(crate) latency: Duration,
    pub(crate) bytes_sent: u64,
    pub(crate) referer: Option<HeaderValue>,
    pub(crate) ua: UaInput,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) client_ip: Option<IpAddr>,
    pub(crate) visit: Option<Visit>,
    pub(crate) identity: Identity,
}

/// What travels from the request path to the shipper.
///
/// Requests travel unboxed: they are the hot path, and the channel's slots
/// were sized for them before events shared it.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Item {
    /// A finished request.
    Request(Captured),
    /// A learning event, stamped; the raw session id is hashed by the shipper.
    Event {
        record: Box<EventRecord>,
        session: Option<String>,
    },
}
