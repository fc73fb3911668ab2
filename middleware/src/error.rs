//! Errors of this crate: only configuration can fail; logging never fails a request.

/// A configuration value is wrong; the message starts with the variable's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}{}: {reason}", value.as_ref().map(|v| format!("=`{v}`")).unwrap_or_default())]
pub struct ConfigError {
    /// The `VISITLOG_*` variable (or the setting it stands for).
    pub variable: &'static str,
    /// The offending value, unless it is a secret.
    pub value: Option<String>,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(
        variable: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            variable,
            value: Some(value.into()),
            reason: reason.into(),
        }
    }

    /// For values that must not be echoed (keys, URLs with passwords).
    pub(crate) fn secret(variable: &'static str, reason: impl Into<String>) -> Self {
        Self {
            variable,
            value: None,
            reason: reason.into(),
        }
    }
}
