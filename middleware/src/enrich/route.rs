//! Route templates like `/watch/{foss}/{tutorial}/{language}/`, matched
//! against request paths to fill `view_args` and `tutorial`.
//!
//! The syntax is axum's: `{name}` matches one path segment, `{*name}` the
//! rest of the path. Matching the template against the path (rather than
//! reading a framework's private parameter store) works with any tower stack.

use std::collections::BTreeMap;

use percent_encoding::percent_decode_str;
use visitlog_schema::{limits, truncate_chars};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Rest(String),
}

/// A parsed route template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoutePattern {
    segments: Vec<Segment>,
}

impl RoutePattern {
    pub(crate) fn parse(template: &str) -> Result<Self, String> {
        let Some(rest) = template.strip_prefix('/') else {
            return Err("a route must start with `/`".to_owned());
        };
        let pieces: Vec<&str> = rest.split('/').collect();
        let last = pieces.len() - 1;
        let mut segments = Vec::with_capacity(pieces.len());
        for (i, piece) in pieces.into_iter().enumerate() {
            let segment = match piece.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) if name.starts_with('*') && i == last && name.len() > 1 => {
                    Segment::Rest(name[1..].to_owned())
                }
                Some(name) if is_name(name) => Segment::Param(name.to_owned()),
                Some(_) => return Err(format!("`{piece}` is not a valid route parameter")),
                None if piece.contains(['{', '}']) => {
                    return Err(format!(
                        "`{piece}`: a parameter must be a whole path segment"
                    ));
                }
                None => Segment::Literal(piece.to_owned()),
            };
            segments.push(segment);
        }
        Ok(Self { segments })
    }

    /// The parameters of `path` when it matches, decoded and size-limited.
    pub(crate) fn matches(&self, path: &str) -> Option<BTreeMap<String, String>> {
        let mut pieces = path.strip_prefix('/')?.split('/');
        let mut args = BTreeMap::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(lit) => {
                    if pieces.next()? != lit {
                        return None;
                    }
                }
                Segment::Param(name) => {
                    let piece = pieces.next().filter(|p| !p.is_empty())?;
                    args.insert(name.clone(), decode(piece));
                }
                Segment::Rest(name) => {
                    let rest: Vec<&str> = pieces.by_ref().collect();
                    args.insert(name.clone(), decode(&rest.join("/")));
                }
            }
        }
        if pieces.next().is_some() || args.len() > limits::MAX_ENTRIES {
            return None;
        }
        Some(args)
    }
}

fn is_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn decode(piece: &str) -> String {
    let decoded = percent_decode_str(piece).decode_utf8_lossy();
    truncate_chars(&decoded, limits::VALUE).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
        RoutePattern::parse(pattern)
            .unwrap()
            .matches(path)
            .map(|m| m.into_iter().collect())
    }

    #[test]
    fn matches_segments_and_decodes_them() {
        let got = args(
            "/watch/{foss}/{tutorial}/{language}/",
            "/watch/Python/Getting%20started/English/",
        );
        assert_eq!(
            got,
            Some(vec![
                ("foss".into(), "Python".into()),
                ("language".into(), "English".into()),
                ("tutorial".into(), "Getting started".into()),
            ])
        );
    }

    #[test]
    fn rejects_paths_of_another_shape() {
        let p = "/watch/{foss}/{tutorial}/{language}/";
        assert_eq!(
            args(p, "/watch/Python/Intro/English"),
            None,
            "missing trailing slash"
        );
        assert_eq!(args(p, "/watch/Python/Intro/"), None);
        assert_eq!(args(p, "/watch/Python/Intro/English/extra/"), None);
        assert_eq!(args(p, "/watch//Intro/English/"), None, "empty parameter");
        assert_eq!(args(p, "/other/Python/Intro/English/"), None);
        assert_eq!(args(p, ""), None);
    }

    #[test]
    fn wildcards_take_the_rest() {
        assert_eq!(
            args("/static/{*file}", "/static/css/site.css"),
            Some(vec![("file".into(), "css/site.css".into())])
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in [
            "watch/{x}",
            "/watch/{x",
            "/a/{*rest}/b",
            "/a/pre{x}",
            "/a/{x-y}",
        ] {
            assert!(RoutePattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn invalid_utf8_and_huge_values_are_contained() {
        let long = "a".repeat(5000);
        let got = args("/x/{v}", &format!("/x/%FF{long}")).unwrap();
        assert!(got[0].1.starts_with('\u{FFFD}'));
        assert_eq!(got[0].1.chars().count(), limits::VALUE);
    }
}
