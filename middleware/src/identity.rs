//! Who the logged-in user is and which session this is: the app knows, so
//! the app says, through an [`Identify`] hook.
//!
//! The hook sees the request head before the app runs. When the app learns
//! the user while handling the request (a login, say), it can also put an
//! [`Identity`] into the response extensions; that one wins.

use http::request::Parts;

/// The user and session of one request, as the app names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The logged-in user; `None` when anonymous.
    pub user: Option<String>,
    /// The app's session id. Records only ever carry a keyed hash of it.
    pub session_id: Option<String>,
    /// The user is staff (course team, admins): their requests and events
    /// are stored, marked `staff`, and left out of every analytics figure.
    pub staff: bool,
}

impl Identity {
    /// An anonymous request.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// A logged-in user without a session id.
    pub fn user(user: impl Into<String>) -> Self {
        Self {
            user: Some(user.into()),
            session_id: None,
            staff: false,
        }
    }

    /// Marks the user as staff: stored, never counted in figures.
    pub fn staff(mut self) -> Self {
        self.staff = true;
        self
    }

    /// Adds the session id.
    pub fn with_session(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }
}

/// Tells the layer who made a request. Implemented for closures
/// `Fn(&Parts) -> Identity` and for `()` (everyone anonymous).
///
/// It runs on the request path: keep it to reading headers and extensions
/// (a session cookie, an auth extension), never I/O.
pub trait Identify: Send + Sync + 'static {
    /// The identity behind `request`.
    fn identify(&self, request: &Parts) -> Identity;
}

impl<F> Identify for F
where
    F: Fn(&Parts) -> Identity + Send + Sync + 'static,
{
    fn identify(&self, request: &Parts) -> Identity {
        self(request)
    }
}

impl Identify for () {
    fn identify(&self, _: &Parts) -> Identity {
        Identity::anonymous()
    }
}
