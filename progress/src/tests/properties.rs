//! Properties of the fold over random histories: bounded, in range, and
//! the same whatever the batches, duplicates or client retries.

use rand::Rng;

use super::*;

/// A random history: page views, honest and dishonest stretches, events
/// with and without `played_from`, marks, client ids (some retried).
fn random_history(rng: &mut impl Rng) -> Script {
    let mut s = Script::new();
    s.duration = Some(f64::from(rng.random_range(30..300)));
    let mut ids: Vec<Uuid> = Vec::new();
    for _ in 0..rng.random_range(5..40) {
        s.wait(f64::from(rng.random_range(0..60)));
        let d = s.duration.unwrap_or(100.0);
        let a = rng.random_range(0.0..d);
        let b = rng.random_range(a..=d);
        match rng.random_range(0..10) {
            0 => {
                s.view();
            }
            1 => {
                s.next_visit().on_page().view();
            }
            2 => {
                s.play(a);
            }
            3 => {
                s.pause(b);
            }
            4 => {
                s.seek(a, b);
            }
            5 => {
                s.mark(rng.random_bool(0.5));
            }
            6 => {
                s.duration = Some(f64::from(rng.random_range(30..300)));
                s.play(0.0);
            }
            _ => {
                s.watched(a, b);
            }
        }
        if rng.random_bool(0.3) {
            let id = match ids.len() {
                n if n > 0 && rng.random_bool(0.3) => ids[rng.random_range(0..n)],
                _ => Uuid::now_v7(),
            };
            ids.push(id);
            s.last().client_event_id = Some(id);
        }
    }
    s
}

#[test]
fn the_fold_stays_bounded_and_in_range() {
    let mut rng = rand::rng();
    let validator = RecordValidator::new(Collection::TutorialProgress).unwrap();
    for _ in 0..300 {
        let s = random_history(&mut rng);
        let p = s.fold();
        let mut durations: Vec<f64> = s.events.iter().filter_map(|e| e.duration).collect();
        durations.dedup();
        assert!((0.0..=1.0).contains(&p.coverage), "{}", p.coverage);
        for v in &p.videos {
            if let Some(d) = v.duration {
                let c = v.coverage.unwrap();
                assert!((0.0..=1.0).contains(&c));
                if durations.len() == 1 {
                    // Seconds past a known duration are never set.
                    assert_eq!(v.seen.count_below(d.ceil() as u32), v.seen.len());
                }
            }
            if let Some(counted) = &v.counted {
                assert!(
                    counted
                        .intervals()
                        .iter()
                        .all(|[a, b]| { (*a..*b).all(|k| v.seen.contains(k)) }),
                    "counted ⊆ seen"
                );
            }
        }
        assert!(p.watched.len() <= MAX_WATCHED_INTERVALS);
        assert_eq!(p.completed, p.completed_rule.is_some());
        assert_eq!(p.completed, p.completed_by.is_some());
        let doc = p.to_document().unwrap();
        validator.validate(&json_for_validation(&doc)).unwrap();
        assert_eq!(Progress::from_document(&doc).unwrap(), p);
    }
}

#[test]
fn any_split_duplicate_or_retry_gives_the_same_document() {
    let mut rng = rand::rng();
    for _ in 0..100 {
        let s = random_history(&mut rng);
        let expected = s.fold();
        let mut events = s.events.clone();
        events.shuffle(&mut rng);
        let mut batches: Vec<Vec<EventRecord>> = Vec::new();
        let mut rest = events.as_slice();
        while !rest.is_empty() {
            let n = rng.random_range(1..=rest.len().min(6));
            batches.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        for _ in 0..3 {
            let i = rng.random_range(0..batches.len());
            let again = batches[i].clone();
            let at = rng.random_range(i..=batches.len());
            batches.insert(at, again);
        }
        assert_eq!(deliver(&batches), expected);
    }
}
