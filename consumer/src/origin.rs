//! Where each setting came from: the default, the TOML file, a `VISITLOG_*`
//! variable or a flag. `check-config` prints it beside each value, and a
//! setting given both in the file and in the environment (a unit's
//! `Environment=` line, `consumer.env`) is warned about at start, since the
//! environment silently wins.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;

/// One setting's origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Not given anywhere.
    Default,
    /// The TOML file.
    File(PathBuf),
    /// This environment variable.
    Environment(String),
    /// This flag.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Environment(var) => write!(f, "environment {var}"),
            Self::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Every setting's origin, by TOML key.
#[derive(Debug, Default)]
pub(crate) struct Origins {
    by_key: BTreeMap<String, Origin>,
    /// Keys the file sets that a variable or flag overrides.
    overridden: Vec<(String, Origin)>,
}

impl Origins {
    /// From the arguments clap parsed (`matches`, described by `command`)
    /// and the keys the file set.
    pub(crate) fn new(
        command: &clap::Command,
        matches: &clap::ArgMatches,
        file: Option<(&Path, &[String])>,
    ) -> Self {
        let mut origins = Self::default();
        for arg in command.get_arguments() {
            let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else {
                continue;
            };
            let key = long.to_owned();
            let in_file = file.filter(|(_, keys)| keys.contains(&key));
            let origin = match matches.value_source(arg.get_id().as_str()) {
                Some(ValueSource::EnvVariable) => {
                    Origin::Environment(env.to_string_lossy().into_owned())
                }
                Some(ValueSource::CommandLine) => Origin::Flag(format!("--{long}")),
                _ => match in_file {
                    Some((path, _)) => Origin::File(path.to_owned()),
                    None => Origin::Default,
                },
            };
            if in_file.is_some() && !matches!(origin, Origin::File(_)) {
                origins.overridden.push((key.clone(), origin.clone()));
            }
            origins.by_key.insert(key, origin);
        }
        origins
    }

    /// Where the setting `key` came from.
    pub(crate) fn of(&self, key: &str) -> Option<&Origin> {
        self.by_key.get(key)
    }

    /// Settings the file gives that the environment or a flag overrides.
    pub(crate) fn overridden(&self) -> &[(String, Origin)] {
        &self.overridden
    }

    /// `toml` (one `key = value` per line, as `check-config` prints it) with
    /// each line's origin as a comment.
    pub(crate) fn annotate(&self, toml: &str) -> String {
        let mut out = String::with_capacity(toml.len() * 2);
        for line in toml.lines() {
            let key = line.split_once(" = ").map(|(k, _)| k.trim());
            match key.and_then(|k| self.by_key.get(k)) {
                Some(origin) => out.push_str(&format!("{line}  # {origin}\n")),
                None => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_says_where_it_came_from() {
        let mut origins = Origins::default();
        origins.by_key.insert(
            "queue".to_owned(),
            Origin::Environment("VISITLOG_QUEUE".to_owned()),
        );
        origins
            .by_key
            .insert("batch-size".to_owned(), Origin::Default);
        let shown = origins.annotate("queue = \"q\"\nbatch-size = 1000\nother = 1\n");
        assert_eq!(
            shown,
            "queue = \"q\"  # environment VISITLOG_QUEUE\nbatch-size = 1000  # default\nother = 1\n"
        );
    }
}
