//! Keeping credentials out of logs, errors, `--help` and status output.
//!
//! One masking function for every crate: [`redact_url`] for a URL on its
//! own, [`redact_urls_in`] for URLs inside a message (an error's text).

/// What replaces a secret.
const MASK: &str = "***";

/// Query parameters whose value is a secret (compared without case):
/// `redis+unix:///run/redis.sock?pass=...`, `...?password=...`.
const SECRET_PARAMS: &[&str] = &[
    "pass",
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "auth",
    "access_token",
    "api_key",
    "apikey",
];

/// `scheme://user:secret@host/...` becomes `scheme://user:***@host/...`,
/// and the value of a `pass`/`password` (etc.) query parameter becomes
/// `***`; URLs without credentials are returned as they are.
///
/// A password may hold `@` (it is the *last* `@` that ends the user
/// information): the whole password is masked, never its tail. A
/// comma-separated list of URLs has each masked on its own.
pub fn redact_url(url: &str) -> String {
    // A list of URLs (sentinels, cluster seeds): each masked on its own, so
    // that one's user information or query never swallows the next.
    let pieces = split_urls(url);
    if pieces.len() > 1 {
        return pieces
            .into_iter()
            .map(redact_one)
            .collect::<Vec<_>>()
            .join(",");
    }
    redact_one(url)
}

/// `urls` cut at each `,` that a `scheme://` follows (after spaces), the
/// pieces as they are: joined with `,` they are `urls` again.
pub(crate) fn split_urls(urls: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, _) in urls.match_indices(',') {
        if starts_with_scheme(urls[i + 1..].trim_start()) {
            pieces.push(&urls[start..i]);
            start = i + 1;
        }
    }
    pieces.push(&urls[start..]);
    pieces
}

/// Whether `s` begins with `scheme://` (RFC 3986: a letter, then letters,
/// digits, `+`, `-` or `.`).
fn starts_with_scheme(s: &str) -> bool {
    s.split_once("://").is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

/// [`redact_url`] of one URL.
fn redact_one(url: &str) -> String {
    match url.find("://") {
        Some(i) => {
            let (head, rest) = url.split_at(i + 3);
            let mut out = String::with_capacity(url.len());
            out.push_str(head);
            redact_after_scheme(rest, &mut out);
            out
        }
        None => url.to_owned(),
    }
}

/// Masks every URL (`scheme://...`, up to whitespace or a quote) inside a
/// message, as [`redact_url`] does.
pub fn redact_urls_in(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(tail.len());
        redact_after_scheme(&tail[..end], &mut out);
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// `rest` is what follows `scheme://`.
fn redact_after_scheme(rest: &str, out: &mut String) {
    // The last `@` ends the user information: a password may contain `@`
    // (an `@` later in the URL makes this mask too much, never too little).
    let after_userinfo = match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push(':');
                    out.push_str(MASK);
                }
                None => out.push_str(userinfo),
            }
            &rest[at..]
        }
        None => rest,
    };
    let Some(q) = after_userinfo.find('?') else {
        out.push_str(after_userinfo);
        return;
    };
    out.push_str(&after_userinfo[..=q]);
    let (query, fragment) = match after_userinfo[q + 1..].find('#') {
        Some(h) => after_userinfo[q + 1..].split_at(h),
        None => (&after_userinfo[q + 1..], ""),
    };
    for (n, pair) in query.split('&').enumerate() {
        if n > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, _)) if is_secret_param(name) => {
                out.push_str(name);
                out.push('=');
                out.push_str(MASK);
            }
            _ => out.push_str(pair),
        }
    }
    out.push_str(fragment);
}

fn is_secret_param(name: &str) -> bool {
    SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// URLs with secrets: what must show, and the secret that must not.
    const TABLE: &[(&str, &str, &str)] = &[
        ("redis://:pw@h:1/0", "redis://:***@h:1/0", "pw"),
        (
            "mongodb://u:pw@h/?authSource=admin",
            "mongodb://u:***@h/?authSource=admin",
            "pw",
        ),
        (
            "redis://user:p@ss@host:6379/0",
            "redis://user:***@host:6379/0",
            "ss@host:6379",
        ),
        (
            "mongodb://app:s3cr@t@w0rd@db1:27017,db2:27017/?replicaSet=rs",
            "mongodb://app:***@db1:27017,db2:27017/?replicaSet=rs",
            "w0rd",
        ),
        (
            "redis+unix:///tmp/r.sock?db=0&pass=secret",
            "redis+unix:///tmp/r.sock?db=0&pass=***",
            "secret",
        ),
        (
            "unix:///tmp/r.sock?pass=secret&db=1",
            "unix:///tmp/r.sock?pass=***&db=1",
            "secret",
        ),
        (
            "rediss://default:t0psecret@cache.example:6380/#insecure",
            "rediss://default:***@cache.example:6380/#insecure",
            "t0psecret",
        ),
        (
            "mongodb+srv://ops:Hunter2@cluster0.example.net/visitlog?retryWrites=true",
            "mongodb+srv://ops:***@cluster0.example.net/visitlog?retryWrites=true",
            "Hunter2",
        ),
        (
            "mongodb://db:27017/?user=u&Password=hunter2&tls=true",
            "mongodb://db:27017/?user=u&Password=***&tls=true",
            "hunter2",
        ),
        (
            "redis://h:6379/0?password=hunter2#frag",
            "redis://h:6379/0?password=***#frag",
            "hunter2",
        ),
    ];

    #[test]
    fn urls_lose_their_passwords() {
        for (url, masked, secret) in TABLE {
            let shown = redact_url(url);
            assert_eq!(&shown, masked, "{url}");
            assert!(!shown.contains(secret), "{url} shows {shown}");
            let in_message = redact_urls_in(&format!("cannot reach {url} (refused)"));
            assert_eq!(in_message, format!("cannot reach {masked} (refused)"));
        }
    }

    #[test]
    fn urls_without_credentials_stay_as_they_are() {
        for url in [
            "redis://h:6379",
            "redis://user@h:6379",
            "mongodb://db:27017/?authSource=admin",
            "redis+unix:///tmp/r.sock?db=0",
            "not a url",
        ] {
            assert_eq!(redact_url(url), url);
        }
        assert_eq!(
            redact_urls_in("a redis://:pw@h and \"mongodb://u:pw@db/x\" and http://host/path"),
            "a redis://:***@h and \"mongodb://u:***@db/x\" and http://host/path"
        );
    }

    #[test]
    fn each_url_of_a_list_is_masked_on_its_own() {
        for (list, shown, secret) in [
            (
                "redis://:s3cret@a:1,redis://:s3cret@b:2",
                "redis://:***@a:1,redis://:***@b:2",
                "s3cret",
            ),
            (
                "redis://s1:26379/0,redis://:pw@s2:26379/5",
                "redis://s1:26379/0,redis://:***@s2:26379/5",
                "pw",
            ),
            (
                "redis://a:1?db=0,redis://b:2?password=s3cret",
                "redis://a:1?db=0,redis://b:2?password=***",
                "s3cret",
            ),
            ("redis://:pa,ss@h:1", "redis://:***@h:1", "pa,ss"),
        ] {
            let masked = redact_url(list);
            assert_eq!(masked, shown);
            assert!(!masked.contains(secret), "{masked}");
        }
    }
}
