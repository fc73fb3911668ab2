//! Is this user agent a bot? woothee's `crawler` category knows the classic
//! search engines; crawlers that look like browsers (Applebot, Bytespider,
//! HeadlessChrome, Lighthouse), AI crawlers, monitoring services and plain
//! HTTP libraries are caught by the pattern of the npm package `isbot`
//! (5.2.3, public domain: <https://github.com/omrilotan/isbot>), kept as two
//! data files beside this one. A request without a `User-Agent` is a bot
//! too: every browser sends one.
//!
//! The pattern is split at its top-level alternatives: those the `regex`
//! crate can run (`bots/fast.pattern`) and six that need look-around
//! (`bots/lookaround.pattern`, run with `fancy-regex` only when one of their
//! words occurs). JavaScript's `[\w\d-.]` is written `[\w\d.\-]`. To refresh:
//! take `isbot`'s `pattern` export, split it the same way, and run the tests,
//! which check a labelled set of 140 current agents
//! (`middleware/testdata/user-agents.tsv`).

use std::sync::LazyLock;

/// The alternatives the `regex` crate runs.
const FAST: &str = include_str!("bots/fast.pattern");
/// The alternatives that need look-around.
const LOOKAROUND: &str = include_str!("bots/lookaround.pattern");
/// Every look-around alternative needs one of these words to match.
const LOOKAROUND_GATE: &str = "news|google|bot|scan|http|java";

struct Pattern {
    fast: regex::Regex,
    gate: regex::Regex,
    lookaround: fancy_regex::Regex,
}

static PATTERN: LazyLock<Option<Pattern>> = LazyLock::new(|| {
    let build = |source: &str| {
        regex::RegexBuilder::new(source.trim())
            .case_insensitive(true)
            .size_limit(64 << 20)
            .build()
    };
    let compiled = (|| {
        Some(Pattern {
            fast: build(FAST).ok()?,
            gate: build(LOOKAROUND_GATE).ok()?,
            lookaround: fancy_regex::RegexBuilder::new(LOOKAROUND.trim())
                .case_insensitive(true)
                .build()
                .ok()?,
        })
    })();
    if compiled.is_none() {
        // The files are part of the crate and tested; this cannot happen
        // in a release, but a bad refresh must not take requests down.
        tracing::error!("visitlog: the bot pattern does not compile; only woothee detects bots");
    }
    compiled
});

/// The pattern says `user_agent` is a bot (an empty one is).
pub(crate) fn looks_like_a_bot(user_agent: &str) -> bool {
    let user_agent = user_agent.trim();
    if user_agent.is_empty() {
        return true;
    }
    let Some(p) = PATTERN.as_ref() else {
        return false;
    };
    p.fast.is_match(user_agent)
        || (p.gate.is_match(user_agent) && p.lookaround.is_match(user_agent).unwrap_or(false))
}

/// Compiles the pattern now, so the first request does not pay for it.
pub(crate) fn warm_up() {
    LazyLock::force(&PATTERN);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_compiles() {
        assert!(PATTERN.is_some());
    }

    #[test]
    fn browsers_are_not_bots_and_headless_ones_are() {
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36";
        assert!(!looks_like_a_bot(chrome));
        assert!(looks_like_a_bot(
            &chrome.replace("Chrome/", "HeadlessChrome/")
        ));
        assert!(looks_like_a_bot(""));
        assert!(looks_like_a_bot("   "));
        assert!(looks_like_a_bot("curl/8.5.0"));
    }
}
