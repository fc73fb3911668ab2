//! One test per rule of issue 11, each failing on the fold before it.

use super::*;

/// A 600 s video.
fn lecture() -> Script {
    let mut s = Script::new();
    s.duration = Some(600.0);
    s
}

// Rule 1: automatic completion needs real watching.

#[test]
fn r1_clicking_the_timeline_near_the_end_does_not_complete() {
    let mut s = lecture();
    s.view().play(0.0).watched(0.0, 60.0);
    s.wait(1.0)
        .seek(60.0, 510.0)
        .watched(510.0, 520.0)
        .pause(520.0);
    let p = s.fold();
    assert!(!p.completed, "{p:?}");
    assert!((p.coverage - 70.0 / 600.0).abs() < 1e-9);
}

#[test]
fn r1_two_clicks_on_the_timeline_do_not_complete() {
    let mut s = lecture();
    s.view().play(0.0);
    // The page reports each click with the (empty) stretch played before it.
    s.seek(0.0, 500.0).last().played_from = Some(0.0);
    s.seek(500.0, 590.0).last().played_from = Some(500.0);
    let p = s.fold();
    assert!(!p.completed, "{p:?}");
    assert_eq!(p.coverage, 0.0);
}

#[test]
fn r1_ended_after_a_seek_to_the_end_does_not_complete() {
    let mut s = lecture();
    s.view().play(0.0).seek(0.0, 599.0).ended(599.0);
    let p = s.fold();
    assert!(!p.completed);
    assert_eq!(p.completed_rule, None);
}

#[test]
fn r1_half_watched_and_the_end_completes_by_the_end_rule() {
    let mut s = lecture();
    s.view().play(0.0).watched(0.0, 250.0);
    s.seek(250.0, 560.0).ended(560.0);
    let p = s.fold();
    assert!(!p.completed, "290 s of 600 is under half, end or not");
    s.seek(600.0, 250.0).watched(250.0, 270.0);
    let p = s.fold();
    assert_eq!(
        (p.completed, p.completed_by, p.completed_rule),
        (true, Some(CompletedBy::Auto), Some(CompletedRule::End))
    );
    // A stretch that starts after the end point does not reach it.
    let mut s = lecture();
    s.view().play(0.0).watched(0.0, 400.0);
    s.seek(400.0, 571.0).ended(571.0);
    assert!(!s.fold().completed, "571..600 misses the point 570");
}

#[test]
fn r1_coverage_at_the_threshold_completes_by_the_coverage_rule() {
    let mut s = lecture();
    s.view().play(0.0).watched(0.0, 479.0);
    assert!(!s.fold().completed);
    s.watched(479.0, 480.0);
    let p = s.fold();
    assert_eq!(p.completed_rule, Some(CompletedRule::Coverage));
}

// Rule 2: a manual "incomplete" holds whatever the visit, device or time.

/// Watched to the end, completed, then marked incomplete.
fn completed_then_marked_incomplete(s: &mut Script) {
    s.view().play(0.0).watched(0.0, 600.0);
    assert!(s.fold().completed);
    s.mark(false);
    assert!(!s.fold().completed);
}

#[test]
fn r2_incomplete_holds_without_a_visitor_id() {
    let mut s = lecture();
    s.visitor = None; // Do Not Track: no visitor cookie.
    completed_then_marked_incomplete(&mut s);
    s.play(570.0).ended(570.0);
    assert!(!s.fold().completed);
}

#[test]
fn r2_incomplete_holds_after_a_long_pause_on_the_same_page() {
    let mut s = lecture();
    completed_then_marked_incomplete(&mut s);
    s.wait(1800.0).next_visit(); // the visit timed out
    s.play(570.0).ended(570.0);
    assert!(!s.fold().completed);
}

#[test]
fn r2_incomplete_holds_on_another_device() {
    let mut s = lecture();
    completed_then_marked_incomplete(&mut s);
    s.visitor = Some(Uuid::now_v7());
    s.visit = 1;
    s.view().play(500.0).ended(500.0);
    assert!(!s.fold().completed, "100 s after the mark");
}

#[test]
fn r2_incomplete_holds_the_next_day_after_a_second_at_the_end() {
    let mut s = lecture();
    completed_then_marked_incomplete(&mut s);
    s.wait(86_400.0).next_visit().view();
    s.play(570.0).watched(570.0, 571.0).pause(571.0);
    let p = s.fold();
    assert!(!p.completed);
    // Watching it after the mark does complete.
    s.play(0.0).watched(0.0, 480.0);
    assert_eq!(s.fold().completed_rule, Some(CompletedRule::Coverage));
}

// Rule 3: watched seconds exactly.

#[test]
fn r3_a_skimmed_lecture_counts_the_seconds_watched_exactly() {
    let mut s = Script::new();
    s.duration = Some(7200.0);
    s.view().play(0.0);
    // 4 s on, 6 s off (the capped intervals made 5 on / 5 off 5,920 s).
    for i in 0..720 {
        let at = f64::from(i) * 10.0;
        s.wait(6.0).watched(at, at + 4.0);
    }
    let p = s.fold();
    assert!(!p.completed, "40 % watched, end or not");
    assert!((p.coverage - 0.4).abs() < 1e-9, "{}", p.coverage);
    let v = &p.videos[0];
    assert_eq!(v.seen.len(), 2880);
    assert!((v.played_s - 2880.0).abs() < 1e-9);
    assert_eq!(p.watched.len(), MAX_WATCHED_INTERVALS, "shown bounded");
    let doc = p.to_document().unwrap();
    let seen = doc.get_array("videos").unwrap()[0]
        .as_document()
        .unwrap()
        .get_str("seen")
        .unwrap()
        .len();
    assert_eq!(seen, 1200, "one bit per second: 900 bytes as base64");
}

// Rule 4: one timeline per video; completion follows the main video.

#[test]
fn r4_an_intro_watched_does_not_complete_once_the_lecture_shows_up() {
    let mut s = Script::new();
    s.video = "intro".into();
    s.duration = Some(60.0);
    s.view().play(0.0).watched(0.0, 50.0);
    let p = s.fold();
    assert!(p.completed, "the only video so far");
    s.video = VIDEO.into();
    s.duration = Some(600.0);
    s.play(0.0);
    let p = s.fold();
    assert!(!p.completed, "the lecture is the main video");
    assert_eq!(p.video_id.as_deref(), Some(VIDEO));
    assert_eq!((p.duration, p.coverage), (Some(600.0), 0.0));
    assert_eq!(p.videos.len(), 2);
    assert!((p.videos[0].coverage.unwrap() - 50.0 / 60.0).abs() < 1e-9);
    // The catalog may name the main video and its duration.
    let main = MainVideo {
        video_id: "intro",
        duration: Some(50.0),
    };
    let p = Progress::fold_with(None, &s.events, &Rules::default(), Some(main)).unwrap();
    assert_eq!(p.video_id.as_deref(), Some("intro"));
    assert_eq!(
        (p.duration, p.coverage, p.completed),
        (Some(50.0), 1.0, true)
    );
}

#[test]
fn r4_videos_past_the_sixteenth_are_ignored() {
    let mut s = Script::new();
    for i in 0..20 {
        s.video = format!("v{i}");
        s.play(0.0);
    }
    let p = s.fold();
    assert_eq!((p.videos.len(), p.ignored), (MAX_VIDEOS, 4));
}

// Rule 5: the latest duration, coverage recomputed.

#[test]
fn r5_the_latest_duration_counts_and_coverage_follows_it() {
    let mut s = lecture();
    s.view().play(0.0).watched(0.0, 300.0);
    s.duration = Some(6000.0); // one bad report
    s.pause(300.0);
    let p = s.fold();
    assert_eq!(p.duration, Some(6000.0));
    assert!((p.coverage - 0.05).abs() < 1e-9);
    s.duration = Some(600.0);
    s.play(300.0);
    let p = s.fold();
    assert_eq!(p.duration, Some(600.0));
    assert!((p.coverage - 0.5).abs() < 1e-9);
    // Seconds past a known duration are not set.
    s.duration = Some(100.0);
    s.play(0.0).watched(90.0, 110.0);
    let p = s.fold();
    assert_eq!(
        p.videos[0].seen.count_below(86_400),
        300,
        "only up to 100 s: none new"
    );
    assert_eq!(p.coverage, 1.0);
}

// Rule 6: sub-second stretches.

#[test]
fn r6_sub_second_stretches_count_the_seconds_covered() {
    let rules = Rules::default();
    assert_eq!(credit(10.4, 10.6, &rules), Credit::Nothing);
    let at = |a: f64, b: f64| match credit(a, b, &rules) {
        Credit::Viewing { seconds, .. } => seconds,
        Credit::Nothing => panic!("{a}..{b} is a viewing"),
    };
    assert_eq!(at(20.6, 21.4), 21..22);
    assert_eq!(at(30.2, 30.6), 0..0, "0.4 s: a viewing, no second");
    assert_eq!(at(10.4, 12.6), 10..13);
    assert_eq!(at(0.0, 0.5), 0..1);

    let mut s = Script::new();
    s.view().play(10.0).watched(10.4, 10.6).watched(20.6, 21.4);
    let p = s.fold();
    assert_eq!(p.watched, vec![[21, 22]]);
    assert!(
        (p.videos[0].played_s - 0.8).abs() < 1e-9,
        "0.2 s is no viewing"
    );
}

// Rule 7: what a page could have played.

#[test]
fn r7_more_than_the_page_could_play_is_suspect() {
    let mut s = lecture();
    s.on_page().view().play(0.0);
    // One POST claiming the whole video, 10 s after the page was served.
    s.push(EventType::VideoPause, |e| {
        e.played_from = Some(0.0);
        e.position = Some(600.0);
    });
    let p = s.fold();
    assert!(!p.completed);
    let v = &p.videos[0];
    assert_eq!((v.suspect, v.suspect_s, v.played_s), (1, 600.0, 0.0));
    assert_eq!(p.coverage, 0.0);
    // At double speed, 60 s of media in 30 s is fine; wall time is 30 s.
    s.wait(20.0).watched(0.0, 60.0).last().rate = Some(2.0);
    let p = s.fold();
    let v = &p.videos[0];
    assert_eq!((v.played_s, v.wall_s), (60.0, 30.0));
    assert!((p.coverage - 0.1).abs() < 1e-9);
}

#[test]
fn plays_and_segment_views_count_credited_stretches_only() {
    let mut s = lecture();
    s.on_page().view().play(0.0);
    // Suspect: the whole video 10 s after the page was served.
    s.push(EventType::VideoPause, |e| {
        e.played_from = Some(0.0);
        e.position = Some(600.0);
    });
    let p = s.fold();
    assert_eq!((p.videos[0].plays, p.videos[0].views.len()), (0, 0));
    // Two honest stretches overlapping in 10..12, and one too short to be
    // a viewing at all.
    s.wait(20.0).watched(0.0, 12.0);
    s.watched(10.0, 21.0);
    s.push(EventType::VideoPause, |e| {
        e.played_from = Some(40.0);
        e.position = Some(40.1);
    });
    let v = &s.fold().videos[0];
    assert_eq!(v.plays, 2);
    // Seconds 0..12 touch segments 0..=2; seconds 10..21 touch 2..=4.
    assert_eq!(v.views, vec![1, 1, 2, 1, 1]);
    assert_eq!(v.suspect, 1);
}

#[test]
fn one_staff_event_marks_the_document_as_staff() {
    let mut s = lecture();
    s.view().play(0.0).watched(0.0, 30.0);
    assert!(!s.fold().staff);
    s.last().staff = true;
    let p = s.fold();
    assert!(p.staff);
    let doc = p.to_document().unwrap();
    assert_eq!(Progress::from_document(&doc).unwrap(), p);
}

#[test]
fn r7_a_forged_page_view_is_held_to_the_visit() {
    let mut s = lecture();
    s.view().play(0.0);
    s.page = Some(Uuid::now_v7()); // never served
    s.on_page();
    s.push(EventType::VideoProgress, |e| {
        e.played_from = Some(0.0);
        e.position = Some(300.0);
    });
    let p = s.fold();
    assert_eq!(
        p.videos[0].suspect, 1,
        "measured from the visit's first event"
    );
    assert_eq!(p.coverage, 0.0);
    // Without page_view, the same.
    let mut s = lecture();
    s.push(EventType::VideoPause, |e| {
        e.played_from = Some(0.0);
        e.position = Some(600.0);
    });
    assert_eq!(s.fold().videos[0].suspect, 1);
}

// Rule 8: stretches inferred for events without `played_from`.

#[test]
fn r8_play_then_pause_without_played_from_counts_the_stretch() {
    let mut s = lecture();
    s.view().play(0.0).wait(50.0).pause(60.0);
    let p = s.fold();
    assert_eq!(p.watched, vec![[0, 60]]);
    // A seek while playing ends a stretch and playing goes on from `to`;
    // a pause while paused adds nothing.
    s.play(60.0).wait(20.0);
    s.push(EventType::VideoSeek, |e| {
        e.from = Some(90.0);
        e.to = Some(300.0);
        e.position = Some(300.0);
    });
    s.wait(20.0).pause(330.0).pause(330.0);
    let p = s.fold();
    assert_eq!(p.watched, vec![[0, 90], [300, 330]]);
    // Heartbeats continue a stretch, ended closes it.
    s.play(330.0).wait(20.0);
    s.push(EventType::VideoProgress, |e| e.position = Some(360.0));
    s.wait(240.0)
        .push(EventType::VideoEnded, |e| e.position = None);
    let p = s.fold();
    assert_eq!(p.watched, vec![[0, 90], [300, 600]]);
    assert_eq!(p.completed_rule, Some(CompletedRule::End));
}

// Rule 11: the page's own resume seek.

#[test]
fn r11_a_seek_from_a_position_to_itself_moves_nothing() {
    let mut s = lecture();
    s.view().play(0.0).wait(20.0);
    s.push(EventType::VideoSeek, |e| {
        e.from = Some(290.0);
        e.to = Some(290.0);
        e.position = Some(290.0);
    });
    assert!(VideoPosition::of(&s.events[2]).is_none());
    s.pause(30.0);
    let p = s.fold();
    assert_eq!(p.watched, vec![[0, 30]], "playing from 0 went on");
}

// Rule 12: a client event stored twice counts once.

#[test]
fn r12_a_retried_client_event_counts_once() {
    let mut s = lecture();
    let id = Uuid::now_v7();
    s.view().mark(false);
    s.last().client_event_id = Some(id);
    s.play(0.0).watched(0.0, 500.0);
    assert!(s.fold().completed);
    // The retry of the old mark, stored again with a newer _id.
    s.mark(false);
    s.last().client_event_id = Some(id);
    let p = s.fold();
    assert!(p.completed, "the retry is the same mark, already folded");
    assert_eq!(p.client_events, vec![id]);
    assert_eq!(p.folded, s.events.len() as u64);
}

// Rule 13: unknown duration.

#[test]
fn r13_watching_counts_while_the_duration_is_unknown() {
    let mut s = Script::new();
    s.duration = None;
    s.view().play(0.0).watched(0.0, 60.0);
    let p = s.fold();
    assert_eq!((p.duration, p.coverage, p.completed), (None, 0.0, false));
    assert_eq!(p.videos[0].coverage, None);
    assert_eq!(p.watched, vec![[0, 60]]);
    s.duration = Some(70.0);
    s.play(60.0);
    let p = s.fold();
    assert!((p.coverage - 60.0 / 70.0).abs() < 1e-9);
    assert_eq!(p.completed_rule, Some(CompletedRule::Coverage));
}

// Found attacking the rules: a budget counted in playing time, and a mark
// that cuts the stretch an edX-style stream implies.

#[test]
fn r7_slowing_down_after_watching_fast_stays_plausible() {
    let mut s = Script::new();
    s.duration = Some(1200.0);
    s.on_page().view().play(0.0);
    // 0..600 at 2×: 20 s of media per heartbeat, 10 s apart.
    for k in 0..30 {
        let from = f64::from(k) * 20.0;
        s.push(EventType::VideoProgress, |e| {
            e.played_from = Some(from);
            e.position = Some(from + 20.0);
            e.rate = Some(2.0);
        });
    }
    // Then 1×: 10 s of media per heartbeat. Held to 1× for the whole page
    // view, this would be 610 media seconds in 330 s: suspect.
    for k in 0..30 {
        let from = 600.0 + f64::from(k) * 10.0;
        s.push(EventType::VideoProgress, |e| {
            e.played_from = Some(from);
            e.position = Some(from + 10.0);
            e.rate = Some(1.0);
        });
    }
    let p = s.fold();
    let v = &p.videos[0];
    assert_eq!((v.suspect, v.suspect_s), (0, 0.0), "{v:?}");
    assert_eq!((v.played_s, v.wall_s), (900.0, 600.0));
    assert!((p.coverage - 0.75).abs() < 1e-9);
}

#[test]
fn r2_playing_that_began_before_the_mark_does_not_count_after_it() {
    let mut s = lecture();
    // edX-style: play, then (after the mark) a pause with no stretch said.
    s.view().play(0.0).mark(false);
    s.wait(600.0).pause(570.0);
    let p = s.fold();
    assert!(!p.completed, "{p:?}");
    assert_eq!(p.videos[0].counted_coverage(), Some(0.0));
    // Playing after the mark does count.
    s.play(0.0).wait(480.0).pause(480.0);
    assert_eq!(s.fold().completed_rule, Some(CompletedRule::Coverage));
}
