//! Who the logged-in user is and which session this is: the app knows, so
//! the app says, through an [`Identify`] hook.
//!
//! The hook sees the request head before the app runs. When the app learns
//! the user while handling the request (a login, or a session read
//! asynchronously), it puts an [`Identity`] into the response extensions;
//! that one wins. [`FromExtension`] reads the app's own "current user"
//! type from either place.

use std::marker::PhantomData;

use http::Extensions;
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
/// `Fn(&Parts) -> Identity`, for `()` (everyone anonymous) and for
/// [`FromExtension`].
///
/// It runs on the request path: keep it to reading headers and extensions
/// (a session cookie, an auth extension), never I/O.
pub trait Identify: Send + Sync + 'static {
    /// The identity behind `request`.
    fn identify(&self, request: &Parts) -> Identity;

    /// The identity the app learnt while handling the request, read from the
    /// response's extensions; `None` keeps the one [`Identify::identify`]
    /// gave. By default an [`Identity`] put there by the handler.
    fn identify_response(&self, response: &Extensions) -> Option<Identity> {
        response.get::<Identity>().cloned()
    }
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

/// Reads the identity from a request or response extension of the app's own
/// type `T` (its "current user"), which converts with
/// `impl From<&T> for Identity`. Set with
/// [`crate::CaptureLayer::identify_from_extension`].
///
/// `T` is looked for in the request's extensions first (put there by an
/// authentication layer *outside* the capture layer), then, when the response
/// is ready, in the response's extensions (put there by a handler or a
/// middleware *inside* it, e.g. one that reads an async session). An
/// [`Identity`] in the response's extensions still wins.
pub struct FromExtension<T>(PhantomData<fn() -> T>);

impl<T> FromExtension<T> {
    /// The hook for `T`.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for FromExtension<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for FromExtension<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("FromExtension")
            .field(&std::any::type_name::<T>())
            .finish()
    }
}

impl<T> Identify for FromExtension<T>
where
    T: Send + Sync + 'static,
    for<'a> &'a T: Into<Identity>,
{
    fn identify(&self, request: &Parts) -> Identity {
        request
            .extensions
            .get::<Identity>()
            .cloned()
            .or_else(|| request.extensions.get::<T>().map(Into::into))
            .unwrap_or_default()
    }

    fn identify_response(&self, response: &Extensions) -> Option<Identity> {
        response
            .get::<Identity>()
            .cloned()
            .or_else(|| response.get::<T>().map(Into::into))
    }
}
