//! One Redis server: `redis://` over TCP, `rediss://` over TLS (rustls)
//! checked against the system's roots, or against one private CA
//! (`VISITLOG_REDIS_CA_CERT`, a PEM file) instead.

/// A client for `url`. With `ca_cert` (PEM) a `rediss://` server's
/// certificate must chain to it; without, to the system's roots. The
/// error never repeats the URL (it may hold a password).
pub fn redis_client(url: &str, ca_cert: Option<&[u8]>) -> redis::RedisResult<redis::Client> {
    if url.starts_with("rediss://") {
        // rustls needs a process-wide crypto provider when an app links
        // more than one; ring, as MongoDB's driver uses. Only the first
        // install counts, so an app's own choice stands.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    match ca_cert {
        Some(pem) if url.starts_with("rediss://") => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            },
        ),
        _ => redis::Client::open(url),
    }
}

/// Reads a PEM file of CA certificates; the error says what is wrong
/// without the file's contents.
pub fn read_ca_cert(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&pem);
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(pem)
}
