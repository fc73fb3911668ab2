//! Viewings of edX videos, by edx-analytics-pipeline's rules
//! (`UserVideoViewingTask`): per learner, course and video, in time order,
//! a `play` starts a viewing and the next `pause`, `stop` or `seek` ends it
//! (a seek at its `old_time`); a `play` right after a seek starts at the
//! seek's target, since edX players often report the position from before
//! the seek; a viewing under 0.25 s, ending before it started, or ending
//! past the video's duration + 1 s is discarded whole; a second `play`
//! restarts the viewing. The import writes each viewing into the event that
//! ends it (`played_from`), so the progress fold credits exactly these.
//!
//! The state is bounded: logs are ordered by time, so each time the log's
//! clock passes [`IDLE_MS`] the streams idle that long are dropped (a
//! viewing left open that long has no end; the pipeline discards open
//! viewings too), and there are never more than [`MAX_STREAMS`]. Memory
//! therefore follows the streams active in six hours of the log, not the
//! log's size. An event earlier than its stream's latest is counted
//! ([`Viewings::out_of_order`]): its pairing with plays and pauses may be
//! wrong, as it is when per-server logs are imported one after the other.

use std::collections::HashMap;

use super::recent::trim;

/// Positions beyond this (10 hours) or below 0 are not believed: the event
/// is left out, as the pipeline leaves it out.
pub(crate) const MAX_TIME: f64 = 36_000.0;

/// A viewing shorter than this (seconds of media) is no viewing.
pub(crate) const MIN_VIEWING: f64 = 0.25;

/// Streams (learner, course, video) remembered at most.
pub(crate) const MAX_STREAMS: usize = 100_000;

/// Streams idle this long (ms) are dropped first when there are too many.
const IDLE_MS: i64 = 6 * 3600 * 1000;

/// Whose viewing: learner, course and video.
pub(crate) type StreamKey = (String, String, String);

#[derive(Debug, Clone)]
struct State {
    /// Where the open viewing started, and the fastest rate during it.
    viewing: Option<(f64, f64)>,
    /// The target of the seek that ended the latest viewing.
    after_seek: Option<f64>,
    /// Playback rate, from the latest speed change.
    rate: f64,
    /// Time of the latest event, ms.
    last_ms: i64,
}

impl Default for State {
    fn default() -> Self {
        Self {
            viewing: None,
            after_seek: None,
            rate: 1.0,
            last_ms: 0,
        }
    }
}

/// What an end of a viewing came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewing {
    /// No viewing was open (a pause while paused, or its play was lost).
    None,
    /// A viewing, credited.
    Credited,
    /// Shorter than [`MIN_VIEWING`], or ending before it started.
    TooShort,
    /// Ending past the duration + 1 s.
    PastTheEnd,
}

/// The event a video event becomes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Step {
    /// The position it reports.
    pub position: f64,
    /// Where the stretch it ends began; equal to `position` (nothing
    /// watched) when it ends no credited viewing.
    pub played_from: Option<f64>,
    /// The playback rate (the fastest during the viewing it ends).
    pub rate: f64,
    /// The viewing it ended, if any.
    pub viewing: Viewing,
}

/// The viewing state of every stream.
#[derive(Debug, Default)]
pub(crate) struct Viewings {
    streams: HashMap<StreamKey, State>,
    /// The log time (ms) idle streams were last dropped at.
    swept_ms: i64,
    /// Events earlier than their stream's latest.
    out_of_order: u64,
}

impl Viewings {
    fn state(&mut self, key: &StreamKey, at_ms: i64) -> &mut State {
        let full = self.streams.len() >= MAX_STREAMS && !self.streams.contains_key(key);
        if at_ms - self.swept_ms >= IDLE_MS || full {
            trim(&mut self.streams, at_ms, IDLE_MS, MAX_STREAMS, |s| {
                s.last_ms
            });
            self.swept_ms = at_ms;
        }
        if !self.streams.contains_key(key) {
            self.streams.insert(key.clone(), State::default());
        }
        let state = self
            .streams
            .get_mut(key)
            .unwrap_or_else(|| unreachable!("inserted above"));
        if at_ms < state.last_ms {
            self.out_of_order += 1;
        }
        state.last_ms = state.last_ms.max(at_ms);
        state
    }

    /// Events seen earlier than their stream's latest event.
    pub(crate) fn out_of_order(&self) -> u64 {
        self.out_of_order
    }

    /// How many streams are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.streams.len()
    }

    /// A `play` at `current`: the viewing starts there, or at the target of
    /// the seek just before.
    pub(crate) fn play(&mut self, key: &StreamKey, at_ms: i64, current: f64) -> Step {
        let state = self.state(key, at_ms);
        let start = state.after_seek.take().unwrap_or(current);
        state.viewing = Some((start, state.rate));
        Step {
            position: start,
            played_from: None,
            rate: state.rate,
            viewing: Viewing::None,
        }
    }

    /// A `pause` or `stop` at `end`.
    pub(crate) fn stop(
        &mut self,
        key: &StreamKey,
        at_ms: i64,
        end: f64,
        duration: Option<f64>,
    ) -> Step {
        let state = self.state(key, at_ms);
        state.after_seek = None;
        end_viewing(state, end, end, duration)
    }

    /// A `seek` from `old` to `new`: ends the viewing at `old`.
    pub(crate) fn seek(
        &mut self,
        key: &StreamKey,
        at_ms: i64,
        old: f64,
        new: f64,
        duration: Option<f64>,
    ) -> Step {
        let state = self.state(key, at_ms);
        let step = end_viewing(state, old, new, duration);
        state.after_seek = Some(new);
        step
    }

    /// A speed change: later stretches play at `rate` (0.25 to 4).
    pub(crate) fn speed(&mut self, key: &StreamKey, at_ms: i64, rate: f64) {
        let state = self.state(key, at_ms);
        state.rate = rate.clamp(0.25, 4.0);
        if let Some((_, fastest)) = &mut state.viewing {
            *fastest = fastest.max(state.rate);
        }
    }
}

/// Ends the open viewing at `end`; the event reports `position`.
fn end_viewing(state: &mut State, end: f64, position: f64, duration: Option<f64>) -> Step {
    let Some((start, rate)) = state.viewing.take() else {
        return Step {
            position,
            played_from: Some(end),
            rate: state.rate,
            viewing: Viewing::None,
        };
    };
    let viewing = if duration.is_some_and(|d| end > d + 1.0) {
        Viewing::PastTheEnd
    } else if end < start || end - start < MIN_VIEWING {
        Viewing::TooShort
    } else {
        Viewing::Credited
    };
    Step {
        position,
        played_from: Some(if viewing == Viewing::Credited {
            start
        } else {
            end
        }),
        rate,
        viewing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> StreamKey {
        ("alice".into(), "course".into(), "video".into())
    }

    #[test]
    fn play_then_pause_is_a_viewing() {
        let mut v = Viewings::default();
        let k = key();
        assert_eq!(v.play(&k, 0, 10.0).position, 10.0);
        let step = v.stop(&k, 50_000, 60.0, Some(120.0));
        assert_eq!(step.played_from, Some(10.0));
        assert_eq!(step.viewing, Viewing::Credited);
        // A pause with no viewing open credits nothing.
        let again = v.stop(&k, 51_000, 60.0, Some(120.0));
        assert_eq!(again.played_from, Some(60.0));
        assert_eq!(again.viewing, Viewing::None);
    }

    #[test]
    fn a_play_after_a_seek_starts_at_the_seek_target() {
        let mut v = Viewings::default();
        let k = key();
        v.play(&k, 0, 0.0);
        let seek = v.seek(&k, 30_000, 30.0, 90.0, None);
        assert_eq!((seek.played_from, seek.position), (Some(0.0), 90.0));
        // The player reports the old position; the seek's target wins.
        assert_eq!(v.play(&k, 30_100, 30.0).position, 90.0);
        assert_eq!(v.stop(&k, 40_000, 100.0, None).played_from, Some(90.0));
        // Only right after the seek.
        v.play(&k, 50_000, 100.0);
        assert_eq!(v.stop(&k, 60_000, 110.0, None).played_from, Some(100.0));
    }

    #[test]
    fn short_backwards_and_overlong_viewings_are_discarded() {
        let mut v = Viewings::default();
        let k = key();
        v.play(&k, 0, 10.0);
        assert_eq!(v.stop(&k, 100, 10.2, None).viewing, Viewing::TooShort);
        v.play(&k, 1000, 10.0);
        assert_eq!(v.stop(&k, 2000, 5.0, None).viewing, Viewing::TooShort);
        v.play(&k, 3000, 10.0);
        let past = v.stop(&k, 9000, 70.0, Some(60.0));
        assert_eq!(
            (past.viewing, past.played_from),
            (Viewing::PastTheEnd, Some(70.0))
        );
        // Within the one second of slack, credited.
        v.play(&k, 10_000, 10.0);
        assert_eq!(
            v.stop(&k, 60_000, 60.9, Some(60.0)).viewing,
            Viewing::Credited
        );
    }

    #[test]
    fn speed_changes_raise_the_viewing_rate() {
        let mut v = Viewings::default();
        let k = key();
        v.play(&k, 0, 0.0);
        v.speed(&k, 1000, 2.0);
        v.speed(&k, 2000, 1.5);
        let step = v.stop(&k, 30_000, 50.0, None);
        assert_eq!(step.rate, 2.0);
        assert_eq!(v.play(&k, 31_000, 50.0).rate, 1.5);
        v.speed(&k, 32_000, 40.0);
        assert_eq!(v.play(&k, 33_000, 50.0).rate, 4.0);
    }

    #[test]
    fn streams_are_bounded() {
        let mut v = Viewings::default();
        for i in 0..(MAX_STREAMS + 10) {
            let k = (format!("u{i}"), "c".to_owned(), "v".to_owned());
            v.play(&k, i as i64, 0.0);
        }
        assert!(v.len() <= MAX_STREAMS);
        assert!(v.len() >= MAX_STREAMS / 2);
    }

    #[test]
    fn idle_streams_are_dropped_as_the_log_moves_on() {
        let mut v = Viewings::default();
        let hour = 3600 * 1000;
        for i in 0..1000 {
            let k = (format!("u{i}"), "c".to_owned(), "v".to_owned());
            v.play(&k, i64::from(i) * 60_000, 0.0);
        }
        // 1,000 minutes of log: only streams of the last six hours or so.
        assert!(v.len() <= 12 * 60, "{}", v.len());
        let k = key();
        v.play(&k, 100 * hour, 0.0);
        assert_eq!(v.len(), 1, "a new day drops all idle streams");
        // A viewing left open past the idle time has no end.
        let step = v.stop(&k, 107 * hour, 30.0, None);
        assert_eq!(step.viewing, Viewing::None);
        assert_eq!(v.out_of_order(), 0);
        v.stop(&k, 106 * hour, 30.0, None);
        assert_eq!(
            v.out_of_order(),
            1,
            "an event earlier than its stream's latest"
        );
    }
}
