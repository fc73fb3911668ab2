//! Keeping credentials out of logs, errors and status output.

/// `scheme://user:secret@host/...` becomes `scheme://user:***@host/...`;
/// URLs without credentials are returned as they are.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(redact_url("redis://:pw@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(
            redact_url("mongodb://u:pw@h/?authSource=admin"),
            "mongodb://u:***@h/?authSource=admin"
        );
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
    }
}
