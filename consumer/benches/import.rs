//! How fast `visitlog-consumer import` reads Open edX tracking logs, and
//! that its memory stays flat whatever the file's size.
//!
//! Run with: `scripts/bench` (or `cargo bench -p visitlog-consumer --bench
//! import` with `scripts/services` running). Generates gzip logs of 20,000,
//! 100,000 and 1,000,000 lines (page views, video sessions with seeks and
//! speed changes, other events; 2,000 learners, 40 catalog videos and 10
//! not in it), then runs the real binary:
//! - `parse only` (`--dry-run`): read, decompress, parse, map and check
//!   every line of the two large files; lines/s, MB/s of the file and of
//!   its text, CPU, peak RSS (the same for both: memory is flat);
//! - `end to end` on the 20,000-line file into the services' MongoDB:
//!   stored, derived (progress and figures), and again (all duplicates).
//!
//! `VISITLOG_BENCH_IMPORT_LINES=N` sets the large file's lines,
//! `VISITLOG_BENCH_IMPORT_STORED_LINES=N` the stored one's.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use visitlog_tests::{Namespace, shared_mongodb_uri, test_database};

const BIN: &str = env!("CARGO_BIN_EXE_visitlog-consumer");
const COURSE: &str = "course-v1:Org+CS101+2014";

fn video_id(n: u32) -> String {
    format!("block-v1:Org+CS101+2014+type@video+block@{n:032x}")
}

/// Writes a gzip edX log of about `lines` lines; returns its text's size.
fn generate(path: &Path, lines: u64) -> u64 {
    let mut rng = StdRng::seed_from_u64(lines);
    let file = std::fs::File::create(path).unwrap();
    let gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::fast());
    let mut t = Utc.with_ymd_and_hms(2014, 10, 1, 0, 0, 0).unwrap();
    let mut out = Out {
        gz,
        written: 0,
        text: 0,
    };
    let agent = "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/38.0.2125.104 Safari/537.36";
    while out.written < lines {
        let user = format!("learner{}", rng.random_range(0..2000));
        let session = format!("{:032x}", rng.random::<u128>());
        let ip = format!("81.2.69.{}", rng.random_range(1..255));
        let video = video_id(rng.random_range(0..50));
        let base = |t: chrono::DateTime<Utc>, source: &str, kind: &str| {
            json!({
                "username": &user, "event_source": source, "name": kind, "event_type": kind,
                "time": t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string(),
                "agent": agent, "ip": &ip, "host": "lms.example.org", "session": &session,
                "referer": "https://lms.example.org/dashboard",
                "page": format!("https://lms.example.org/courses/{COURSE}/courseware/week1/unit/"),
                "context": { "user_id": 7, "org_id": "Org", "course_id": COURSE,
                             "path": format!("/courses/{COURSE}/courseware/week1/unit/") },
            })
        };
        let line =
            |t: chrono::DateTime<Utc>, source: &str, kind: &str, event: serde_json::Value| {
                let mut v = base(t, source, kind);
                v["event"] = if source == "browser" {
                    json!(event.to_string())
                } else {
                    event
                };
                v
            };
        out.emit(line(
            t,
            "server",
            &format!("/courses/{COURSE}/courseware/week1/unit/"),
            json!({"GET": {}, "POST": {}}),
        ));
        t += chrono::Duration::milliseconds(800);
        out.emit(line(
            t,
            "browser",
            "load_video",
            json!({"id": &video, "code": "html5"}),
        ));
        let mut position: f64 = 0.0;
        for _ in 0..rng.random_range(1..4) {
            t += chrono::Duration::milliseconds(500);
            out.emit(line(
                t,
                "browser",
                "play_video",
                json!({"id": &video, "code": "html5", "currentTime": position}),
            ));
            if rng.random_bool(0.2) {
                out.emit(
                    line(
                        t,
                        "browser",
                        "speed_change_video",
                        json!({"id": &video, "current_time": position, "old_speed": "1.0", "new_speed": "1.50"}),
                    ),
                );
            }
            let watched = rng.random_range(5.0..120.0);
            t += chrono::Duration::milliseconds((watched * 1000.0) as i64);
            position += watched;
            if rng.random_bool(0.3) {
                let to = position + rng.random_range(10.0..60.0);
                out.emit(
                    line(
                        t,
                        "browser",
                        "seek_video",
                        json!({"id": &video, "code": "html5", "old_time": position, "new_time": to, "type": "onSlideSeek"}),
                    ),
                );
                position = to;
            } else {
                out.emit(line(
                    t,
                    "browser",
                    "pause_video",
                    json!({"id": &video, "code": "html5", "currentTime": position}),
                ));
            }
        }
        t += chrono::Duration::milliseconds(300);
        out.emit(line(
            t,
            "server",
            "problem_check",
            json!({"answers": {"q1": "a"}, "success": "correct"}),
        ));
        out.emit(line(t, "browser", "page_close", json!("")));
        t += chrono::Duration::seconds(rng.random_range(1..30));
    }
    out.gz.finish().unwrap().flush().unwrap();
    out.text
}

struct Out<W: Write> {
    gz: flate2::write::GzEncoder<W>,
    written: u64,
    text: u64,
}

impl<W: Write> Out<W> {
    fn emit(&mut self, value: serde_json::Value) {
        let line = value.to_string();
        self.text += line.len() as u64 + 1;
        self.gz.write_all(line.as_bytes()).unwrap();
        self.gz.write_all(b"\n").unwrap();
        self.written += 1;
    }
}

/// What one run of the binary took.
struct Run {
    secs: f64,
    cpu: f64,
    peak_rss_mib: f64,
    stdout: String,
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Runs `visitlog-consumer ARGS` on `db`, sampling its peak RSS and CPU.
fn run(uri: &str, db: &str, args: &[&str]) -> Run {
    let ns = Namespace::new();
    let started = Instant::now();
    let mut child = visitlog_tests::consumer::command(BIN.as_ref(), &ns, uri, db)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (mut peak, mut cpu) = (0, 0.0);
    loop {
        if let Some(kib) = status_kib(pid, "VmHWM:") {
            peak = peak.max(kib);
        }
        if let Some(c) = cpu_seconds(pid) {
            cpu = c;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{args:?}: {stdout}");
    Run {
        secs: started.elapsed().as_secs_f64(),
        cpu,
        peak_rss_mib: peak as f64 / 1024.0,
        stdout,
    }
}

fn load_catalog(uri: &str, db: &str, dir: &Path) {
    let items: Vec<serde_json::Value> = (0..40)
        .map(|n| {
            json!({
                "foss": "Course", "tutorial": format!("Unit {n}"), "language": "English",
                "video_id": video_id(n), "title": format!("Unit {n}"), "duration": 600.0,
                "order": n, "main": true,
            })
        })
        .collect();
    let path = dir.join("catalog.json");
    std::fs::write(&path, serde_json::to_vec(&items).unwrap()).unwrap();
    run(uri, db, &["catalog", "import", path.to_str().unwrap()]);
}

fn report(label: &str, lines: u64, file: u64, text: u64, r: &Run) {
    let mb = |b: u64| b as f64 / 1e6;
    println!(
        "{label:<28} {lines:>9} lines  {:>7.1} s  {:>9.0} lines/s  {:>6.1} MB/s gz  {:>6.1} MB/s text  CPU {:>6.1} s ({:.1} µs/line)  peak RSS {:>6.1} MiB",
        r.secs,
        lines as f64 / r.secs,
        mb(file) / r.secs,
        mb(text) / r.secs,
        r.cpu,
        r.cpu * 1e6 / lines as f64,
        r.peak_rss_mib,
    );
}

fn env_lines(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let uri = shared_mongodb_uri();
    let dir = tempfile::tempdir().unwrap();
    let big = env_lines("VISITLOG_BENCH_IMPORT_LINES", 1_000_000);
    let stored = env_lines("VISITLOG_BENCH_IMPORT_STORED_LINES", 20_000);
    let db = test_database();
    load_catalog(&uri, &db, dir.path());
    let mut files = Vec::new();
    for lines in [stored, 100_000, big] {
        let path = dir.path().join(format!("edx-{lines}.log.gz"));
        let text = generate(&path, lines);
        let size = std::fs::metadata(&path).unwrap().len();
        files.push((lines, path, size, text));
    }
    println!("import bench, MongoDB at {uri}");
    for (lines, path, size, text) in &files[1..] {
        let r = run(&uri, &db, &["import", "--dry-run", path.to_str().unwrap()]);
        report("parse only (--dry-run)", *lines, *size, *text, &r);
    }
    let (lines, path, size, text) = &files[0];
    let fresh = test_database();
    load_catalog(&uri, &fresh, dir.path());
    let first = run(&uri, &fresh, &["import", path.to_str().unwrap()]);
    report("end to end", *lines, *size, *text, &first);
    let again = run(&uri, &fresh, &["import", path.to_str().unwrap()]);
    report("end to end, again (dups)", *lines, *size, *text, &again);
    println!("{}", first.stdout);
}
