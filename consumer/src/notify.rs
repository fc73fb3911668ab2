//! systemd notifications: `READY=1` once Redis and MongoDB answered,
//! `WATCHDOG=1` while the loop runs, `STOPPING=1` on the way out. Outside
//! systemd (no `NOTIFY_SOCKET`) these do nothing.

use std::time::Duration;

use sd_notify::NotifyState;

pub(crate) fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("consuming")]);
}

/// What the daemon is doing, for `systemctl status`.
pub(crate) fn status(what: &str) {
    send(&[NotifyState::Status(what)]);
}

/// Asks systemd for `by` more time to start: sent while setup makes
/// progress (index builds on big collections), never while waiting for a
/// dependency, so a typo still ends in `TimeoutStartSec`.
pub(crate) fn extend_start(by: Duration) {
    let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
    send(&[NotifyState::ExtendTimeoutUsec(usec)]);
}

pub(crate) fn stopping() {
    send(&[NotifyState::Stopping]);
}

pub(crate) fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// Half the watchdog period, when systemd asked for one.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|period| period / 2)
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}
