//! Who may see what: the app's staff check answers [`Access`] for each
//! request, the router enforces it (401, 403, the FOSS in scope, the
//! privacy floor below [`Access::Learners`]).

use std::collections::BTreeSet;
use std::future::Future;

use axum::http::request::Parts;

/// What the app's check grants one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Nobody is logged in: 401.
    Unauthenticated,
    /// Logged in, not staff (a learner): 403 on everything.
    Denied,
    /// Aggregate figures of the FOSS in scope; figures over fewer learners
    /// than the privacy floor are hidden, and no learner can be looked up.
    Aggregates(Scope),
    /// Everything in scope, one learner's data included (each such read is
    /// logged with the viewer's name).
    Learners(Scope),
}

/// Which FOSS a grant covers, and who holds it (named in the audit log).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    foss: Option<BTreeSet<String>>,
    viewer: Option<String>,
}

impl Scope {
    /// Every FOSS, the whole site's figures included.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only `foss`: the site's totals, sessions and top lists are not
    /// shown, and any filter outside these is refused (403).
    pub fn foss<I, S>(foss: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            foss: Some(foss.into_iter().map(Into::into).collect()),
            viewer: None,
        }
    }

    /// Names the person granted, for the audit log of learner reads.
    #[must_use]
    pub fn viewer(mut self, name: impl Into<String>) -> Self {
        self.viewer = Some(name.into());
        self
    }

    /// The viewer's name, if the app gave one.
    pub fn viewer_name(&self) -> Option<&str> {
        self.viewer.as_deref()
    }

    /// Whether `foss` is in scope.
    pub fn covers(&self, foss: &str) -> bool {
        self.foss.as_ref().is_none_or(|set| set.contains(foss))
    }

    /// The FOSS a question may name: those asked (all must be in scope),
    /// or, when none are asked, every FOSS in scope (`Ok(vec![])`: all).
    pub fn narrow(&self, asked: &[String]) -> Result<Vec<String>, String> {
        if let Some(out) = asked.iter().find(|f| !self.covers(f)) {
            return Err(format!("{out:?} is not in your scope"));
        }
        match (&self.foss, asked.is_empty()) {
            (Some(set), true) => Ok(set.iter().cloned().collect()),
            _ => Ok(asked.to_vec()),
        }
    }

    /// Whether the grant is for a part of the site only.
    pub fn is_partial(&self) -> bool {
        self.foss.is_some()
    }
}

/// The app's staff check, called with the request head of every request
/// to the router. A plain `Fn(&Parts) -> Access` is one; implement it for
/// a type of your own when the check must await (a session store).
pub trait Authorize: Clone + Send + Sync + 'static {
    /// What this request is granted.
    fn authorize(&self, parts: &Parts) -> impl Future<Output = Access> + Send;
}

impl<F> Authorize for F
where
    F: Fn(&Parts) -> Access + Clone + Send + Sync + 'static,
{
    fn authorize(&self, parts: &Parts) -> impl Future<Output = Access> + Send {
        std::future::ready(self(parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_scope_narrows_an_open_question_and_refuses_a_foreign_one() {
        let s = Scope::foss(["Python", "Scilab"]);
        assert_eq!(s.narrow(&[]).unwrap(), ["Python", "Scilab"]);
        assert_eq!(s.narrow(&["Scilab".into()]).unwrap(), ["Scilab"]);
        let e = s.narrow(&["Scilab".into(), "Blender".into()]).unwrap_err();
        assert!(e.contains("\"Blender\" is not in your scope"), "{e}");
        assert!(Scope::all().narrow(&[]).unwrap().is_empty());
        assert!(!Scope::all().is_partial() && s.is_partial());
    }
}
