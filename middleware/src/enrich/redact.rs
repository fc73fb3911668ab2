//! Keeping secrets out of records: query parameters on the deny list lose
//! their values, in the request's own query and in the referer.

use percent_encoding::percent_decode_str;
use visitlog_schema::{limits, truncate_chars};

const REDACTED: &str = "[redacted]";

/// Deny-list entries shorter than this match whole words only.
const SUBSTRING_FROM: usize = 5;

/// The query string with denied parameters' values replaced, size-limited.
/// Pairs are separated by `&` or `;` (both are in use), kept as they were.
pub(crate) fn query(query: &str, deny: &[String]) -> String {
    let mut out = String::with_capacity(query.len().min(limits::URL));
    for piece in query.split_inclusive(['&', ';']) {
        let (pair, sep) = match piece.strip_suffix(['&', ';']) {
            Some(pair) => (pair, &piece[pair.len()..]),
            None => (piece, ""),
        };
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
        out.push_str(sep);
        if out.len() > limits::URL * 4 {
            break;
        }
    }
    truncate_chars(&out, limits::URL).to_owned()
}

/// The referer with its fragment and any `user:password@` dropped and its
/// query redacted.
pub(crate) fn url(url: &str, deny: &[String]) -> String {
    let url = url.split('#').next().unwrap_or_default();
    let url = without_userinfo(url);
    match url.split_once('?') {
        Some((base, q)) => {
            let mut out = truncate_chars(base, limits::URL).to_owned();
            out.push('?');
            out.push_str(&query(q, deny));
            truncate_chars(&out, limits::URL).to_owned()
        }
        None => truncate_chars(&url, limits::URL).to_owned(),
    }
}

/// `scheme://user:pw@host/...` without `user:pw@`.
fn without_userinfo(url: &str) -> std::borrow::Cow<'_, str> {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.into();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..scheme_end], &rest[at + 1..]).into(),
        None => url.into(),
    }
}

fn is_denied(key: &str, deny: &[String]) -> bool {
    let key = percent_decode_str(key)
        .decode_utf8_lossy()
        .replace('+', " ");
    let lower = key.to_ascii_lowercase();
    let mut words: Option<Vec<&str>> = None;
    deny.iter().any(|d| {
        if d.len() >= SUBSTRING_FROM {
            lower.contains(d.as_str())
        } else {
            words
                .get_or_insert_with(|| words_of(&key))
                .iter()
                .any(|w| w.eq_ignore_ascii_case(d))
        }
    })
}

/// `oauth_code`, `apiKey`, `AWSAccessKeyId`, `otp2` split into words:
/// at anything not a letter or digit, at lower-to-upper case changes, before
/// the last capital of a run followed by a lower-case letter, and between
/// letters and digits.
fn words_of(name: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let chars: Vec<(usize, char)> = name.char_indices().collect();
    let mut start: Option<usize> = None;
    for (i, &(at, c)) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if let Some(s) = start.take() {
                words.push(&name[s..at]);
            }
            continue;
        }
        if let Some(s) = start
            && i > 0
        {
            let prev = chars[i - 1].1;
            let next = chars.get(i + 1).map(|&(_, n)| n);
            let boundary = (prev.is_lowercase() && c.is_uppercase())
                || (prev.is_uppercase()
                    && c.is_uppercase()
                    && next.is_some_and(char::is_lowercase))
                || (prev.is_ascii_digit() != c.is_ascii_digit());
            if boundary {
                words.push(&name[s..at]);
                start = Some(at);
            }
        }
        start.get_or_insert(at);
    }
    if let Some(s) = start {
        words.push(&name[s..]);
    }
    words
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
            url("https://site/cb?page=1&token=abc#access_token=xyz", &deny()),
            "https://site/cb?page=1&token=[redacted]"
        );
        assert_eq!(url("https://site/page", &deny()), "https://site/page");
    }

    /// URLs whose secrets must never reach a record: (query, what must not survive).
    const SECRETS: &[(&str, &str)] = &[
        ("code=4/0AX4XfWh&state=xyz", "4/0AX4XfWh"),
        ("oauth_code=abc123", "abc123"),
        ("key=AIzaSyD-secret", "AIzaSyD-secret"),
        ("api_key=sk_live_1", "sk_live_1"),
        ("apiKey=sk_live_2", "sk_live_2"),
        ("x-api-key=sk_live_3", "sk_live_3"),
        (
            "AWSAccessKeyId=AKIAEXAMPLE&Signature=c2ln&Expires=1",
            "AKIAEXAMPLE",
        ),
        (
            "AWSAccessKeyId=AKIAEXAMPLE&Signature=c2ln&Expires=1",
            "c2ln",
        ),
        (
            "X-Amz-Signature=deadbeef&X-Amz-Credential=AKIA%2F2026",
            "deadbeef",
        ),
        ("X-Amz-Credential=AKIA%2F2026", "AKIA%2F2026"),
        ("X-Amz-Security-Token=FwoGZX", "FwoGZX"),
        ("sig=abcdef", "abcdef"),
        ("pass=hunter2", "hunter2"),
        ("user_pass=hunter2", "hunter2"),
        ("passphrase=correct-horse", "correct-horse"),
        ("jwt=eyJhbGciOi", "eyJhbGciOi"),
        ("id_token=eyJhbGciOi", "eyJhbGciOi"),
        ("otp=123456", "123456"),
        ("totp=123456", "123456"),
        ("ticket=ST-1-cas", "ST-1-cas"),
        ("SAMLResponse=PHNhbWw", "PHNhbWw"),
        ("client_secret=s3cr3t", "s3cr3t"),
        ("refresh_token=r1", "r1"),
        ("sessionid=abc", "abc"),
        ("page=1;password=hunter2", "hunter2"),
        ("a=1;token=t0k;b=2", "t0k"),
        ("PASSWORD=Hunter2", "Hunter2"),
        ("pass%77ord=enc", "enc"),
        ("auth=basic-xyz", "basic-xyz"),
        ("nonce=n0nce", "n0nce"),
    ];

    #[test]
    fn no_secret_from_the_table_reaches_a_record() {
        for (q, secret) in SECRETS {
            let redacted = query(q, &deny());
            assert!(!redacted.contains(secret), "{q} gave {redacted}");
            let referer = url(&format!("https://site/p?{q}#frag"), &deny());
            assert!(!referer.contains(secret), "{q} gave {referer}");
        }
    }

    #[test]
    fn short_entries_match_whole_words_only() {
        assert_eq!(
            query(
                "keyword=rust&zipcode=10115&design=flat&otpimal=1&passage=2",
                &deny()
            ),
            "keyword=rust&zipcode=10115&design=flat&otpimal=1&passage=2"
        );
        assert_eq!(words_of("AWSAccessKeyId"), ["AWS", "Access", "Key", "Id"]);
        assert_eq!(words_of("oauth_code[0]"), ["oauth", "code", "0"]);
        assert_eq!(words_of("otp2"), ["otp", "2"]);
    }

    #[test]
    fn semicolons_separate_pairs_and_are_kept() {
        assert_eq!(query("a=1;pwd=x&b=2;", &deny()), "a=1;pwd=[redacted]&b=2;");
    }

    #[test]
    fn referers_lose_their_userinfo() {
        assert_eq!(
            url("https://bob:hunter2@site/p?x=1", &deny()),
            "https://site/p?x=1"
        );
        assert_eq!(url("https://site/a@b", &deny()), "https://site/a@b");
    }

    #[test]
    fn output_is_bounded() {
        let huge = "a=1&".repeat(10_000);
        assert!(query(&huge, &deny()).chars().count() <= limits::URL);
        assert!(url(&format!("https://x/?{huge}"), &deny()).chars().count() <= limits::URL);
    }
}
