//! Opening and checking a MaxMind DB file, and turning its records into [`Geo`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use maxminddb::{MaxMindDbError, Reader, geoip2};
use visitlog_schema::{Geo, limits, truncate_chars};

use crate::{DbInfo, GeoError};

/// Addresses looked up once on load: a corrupt search tree or data section
/// shows up here rather than on the first real request.
const TEST_IPS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(81, 2, 69, 142)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x218, 0, 0, 0, 0, 0, 0)),
];

/// A checked MaxMind DB held in memory.
pub(crate) struct Database {
    reader: Reader<Vec<u8>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("info", &self.info())
            .finish()
    }
}

impl Database {
    pub(crate) fn open(path: &Path) -> Result<Self, GeoError> {
        let invalid = |source| GeoError::Invalid {
            path: path.to_path_buf(),
            source,
        };
        let reader = Reader::open_readfile(path).map_err(|e| match e {
            MaxMindDbError::Io(source) => GeoError::Io {
                path: path.to_path_buf(),
                source,
            },
            other => invalid(other),
        })?;
        let database_type = reader.metadata().database_type.clone();
        if !has_locations(&database_type) {
            return Err(GeoError::WrongType {
                path: path.to_path_buf(),
                database_type,
            });
        }
        let db = Self { reader };
        for ip in TEST_IPS {
            // An IPv4-only database cannot answer the IPv6 probe; that is fine.
            if ip.is_ipv6() && db.reader.metadata().ip_version == 4 {
                continue;
            }
            db.lookup(ip).map_err(|source| GeoError::TestLookup {
                path: PathBuf::from(path),
                ip,
                source,
            })?;
        }
        Ok(db)
    }

    pub(crate) fn info(&self) -> DbInfo {
        let meta = self.reader.metadata();
        DbInfo {
            database_type: meta.database_type.clone(),
            build_epoch: meta.build_epoch,
        }
    }

    /// Looks `ip` up; `Ok(None)` when the database has no location for it.
    pub(crate) fn lookup(&self, ip: IpAddr) -> Result<Option<Geo>, MaxMindDbError> {
        let result = self.reader.lookup(ip)?;
        let Some(city) = result.decode::<geoip2::City<'_>>()? else {
            return Ok(None);
        };
        let geo = to_geo(&city);
        Ok((geo != Geo::default()).then_some(geo))
    }
}

fn has_locations(database_type: &str) -> bool {
    ["City", "Country", "Enterprise"]
        .iter()
        .any(|kind| database_type.contains(kind))
        && !database_type.contains("Shield")
}

fn to_geo(city: &geoip2::City<'_>) -> Geo {
    let text = |s: Option<&str>| s.map(|s| truncate_chars(s, limits::SHORT).to_owned());
    let region = city.subdivisions.first();
    Geo {
        country_code: text(city.country.iso_code),
        country: text(city.country.names.english),
        region_code: text(region.and_then(|r| r.iso_code)),
        region: text(region.and_then(|r| r.names.english)),
        city: text(city.city.names.english),
        latitude: city
            .location
            .latitude
            .filter(|l| (-90.0..=90.0).contains(l)),
        longitude: city
            .location
            .longitude
            .filter(|l| (-180.0..=180.0).contains(l)),
        time_zone: text(city.location.time_zone),
    }
}

/// Whether `ip` is a public address worth looking up.
///
/// Loopback, private (RFC 1918, unique local), link-local, shared (CGNAT),
/// multicast, documentation and unspecified addresses are not.
pub fn is_routable(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && v6.segments()[1] == 0x0db8))
        }
    }
}
