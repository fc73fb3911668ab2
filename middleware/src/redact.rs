//! Keeping secrets out of records: query parameters on the deny list lose
//! their values, in the request's own query and in the referer.

use percent_encoding::percent_decode_str;
use visitlog_schema::{limits, truncate_chars};

const REDACTED: &str = "[redacted]";

/// The query string with denied parameters' values replaced, size-limited.
pub(crate) fn query(query: &str, deny: &[String]) -> String {
    let mut out = String::with_capacity(query.len().min(limits::URL));
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        let (key, value) = pair
            .split_once('=')
            .map_or((pair, None), |(k, v)| (k, Some(v)));
        out.push_str(key);
        if let Some(value) = value {
            out.push('=');
            out.push_str(if is_denied(key, deny) {
                REDACTED
            } else {
                value
            });
        }
        if out.len() > limits::URL * 4 {
            break;
        }
    }
    truncate_chars(&out, limits::URL).to_owned()
}

/// The referer with its fragment dropped and its query redacted.
pub(crate) fn url(url: &str, deny: &[String]) -> String {
    let url = url.split('#').next().unwrap_or_default();
    match url.split_once('?') {
        Some((base, q)) => {
            let mut out = truncate_chars(base, limits::URL).to_owned();
            out.push('?');
            out.push_str(&query(q, deny));
            truncate_chars(&out, limits::URL).to_owned()
        }
        None => truncate_chars(url, limits::URL).to_owned(),
    }
}

fn is_denied(key: &str, deny: &[String]) -> bool {
    let key = percent_decode_str(key)
        .decode_utf8_lossy()
        .replace('+', " ")
        .to_ascii_lowercase();
    deny.iter().any(|d| key.contains(d.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_DENY_PARAMS;

    fn deny() -> Vec<String> {
        DEFAULT_DENY_PARAMS
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }

    #[test]
    fn denied_values_are_redacted_and_others_kept() {
        assert_eq!(
            query(
                "page=2&password=hunter2&access_token=abc&q=rust&csrfmiddlewaretoken=x",
                &deny()
            ),
            "page=2&password=[redacted]&access_token=[redacted]&q=rust&csrfmiddlewaretoken=[redacted]"
        );
        assert_eq!(
            query("PassWord=1&flag", &deny()),
            "PassWord=[redacted]&flag"
        );
        assert_eq!(
            query("pass%77ord=1", &deny()),
            "pass%77ord=[redacted]",
            "encoded names too"
        );
    }

    #[test]
    fn referers_lose_fragments_and_secrets() {
        assert_eq!(
            url("https://site/cb?code=1&token=abc#access_token=xyz", &deny()),
            "https://site/cb?code=1&token=[redacted]"
        );
        assert_eq!(url("https://site/page", &deny()), "https://site/page");
    }

    #[test]
    fn output_is_bounded() {
        let huge = "a=1&".repeat(10_000);
        assert!(query(&huge, &deny()).chars().count() <= limits::URL);
        assert!(url(&format!("https://x/?{huge}"), &deny()).chars().count() <= limits::URL);
    }
}
