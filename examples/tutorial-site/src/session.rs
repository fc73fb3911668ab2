//! Logged-in sessions, in memory as befits an example: the session cookie,
//! `POST /login` (which tells visitlog who the anonymous request turned out
//! to be) and `POST /logout`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::{SESSION_COOKIE, Staff};
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;
use serde::Deserialize;

/// Logged-in sessions: session id to user name. In memory, as it is an example.
#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<HashMap<String, String>>>);

impl Sessions {
    pub(crate) fn user(&self, session_id: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(session_id)
            .cloned()
    }

    fn insert(&self, session_id: String, user: String) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(session_id, user);
    }

    fn remove(&self, session_id: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(session_id);
    }
}

pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix("session="))
}

pub(crate) fn current_user(sessions: &Sessions, headers: &HeaderMap) -> Option<String> {
    session_cookie(headers).and_then(|id| sessions.user(id))
}

/// The login form.
#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
}

pub(crate) async fn login(
    State(sessions): State<Sessions>,
    State(staff): State<Staff>,
    Form(form): Form<LoginForm>,
) -> Response {
    let user = form.username.trim();
    let valid = !user.is_empty()
        && user.len() <= 64
        && user
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid {
        return (
            StatusCode::BAD_REQUEST,
            "username: 1 to 64 letters, digits, `_`, `-` or `.`",
        )
            .into_response();
    }
    let mut raw = [0u8; 16];
    rand::rng().fill_bytes(&mut raw);
    let session_id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    sessions.insert(session_id.clone(), user.to_owned());
    let mut response = Redirect::to("/").into_response();
    let cookie = format!("{SESSION_COOKIE}={session_id}; Path=/; HttpOnly; SameSite=Lax");
    if let Ok(value) = cookie.parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    // The request came in anonymous; tell visitlog who it turned out to be.
    response
        .extensions_mut()
        .insert(staff.identity(user).with_session(session_id));
    response
}

pub(crate) async fn logout(State(sessions): State<Sessions>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        sessions.remove(id);
    }
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) =
        format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax").parse()
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}
