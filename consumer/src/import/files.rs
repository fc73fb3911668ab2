//! The files an import reads: paths expanded (a directory's files in name
//! order), each opened as plain text or gzip (by its first bytes, whatever
//! its name), and read line by line with a bound on a line's length, while
//! counting the bytes read from disk for the progress bar.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::read::MultiGzDecoder;

/// Longest line read; a longer one is skipped (to its end), never buffered.
pub const MAX_LINE: usize = 1024 * 1024;

/// Extensions a directory's files are imported by.
const EXTENSIONS: [&str; 3] = ["log", "json", "jsonl"];

/// One file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Its path.
    pub path: PathBuf,
    /// Its size on disk.
    pub size: u64,
}

/// The files `paths` name: files as given, directories' files with a
/// known extension (`.log`, `.json`, `.jsonl`, each optionally `.gz`) in
/// name order. A path that does not exist, or a directory with no such
/// file, is an error before anything is read.
pub fn sources(paths: &[PathBuf]) -> io::Result<Vec<Source>> {
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        if meta.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && importable(p))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "{}: no .log, .json or .jsonl file (optionally .gz) in this directory",
                        path.display()
                    ),
                ));
            }
            for file in files {
                let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
                out.push(Source { path: file, size });
            }
        } else {
            out.push(Source {
                path: path.clone(),
                size: meta.len(),
            });
        }
    }
    Ok(out)
}

/// `name.log`, `name.json.gz` and the like.
fn importable(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(name);
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Counts the bytes read through it.
struct Counted<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Opens `path`, decompressing it when it starts as gzip does; the bytes
/// read from disk are added to `read`.
pub(crate) fn open(path: &Path, read: Arc<AtomicU64>) -> io::Result<Box<dyn BufRead + Send>> {
    let file = File::open(path)?;
    let mut raw = BufReader::with_capacity(256 * 1024, Counted { inner: file, read });
    let gzip = raw.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(BufReader::with_capacity(
            256 * 1024,
            MultiGzDecoder::new(raw),
        ))
    } else {
        Box::new(raw)
    })
}

/// One line read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// In the buffer, without its line ending.
    Text,
    /// Longer than [`MAX_LINE`]: skipped to its end.
    TooLong,
}

/// Reads the next line into `buf` (cleared first); `None` at the end.
pub(crate) fn next_line(reader: &mut dyn BufRead, buf: &mut Vec<u8>) -> io::Result<Option<Line>> {
    buf.clear();
    let n = reader.take(MAX_LINE as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') || buf.len() <= MAX_LINE {
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        return Ok(Some(Line::Text));
    }
    // Too long: drop the rest of it without keeping it.
    buf.clear();
    loop {
        let (found, used) = {
            let available = reader.fill_buf()?;
            if available.is_empty() {
                break;
            }
            match available.iter().position(|&b| b == b'\n') {
                Some(i) => (true, i + 1),
                None => (false, available.len()),
            }
        };
        reader.consume(used);
        if found {
            break;
        }
    }
    Ok(Some(Line::TooLong))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn lines_are_bounded_and_endings_dropped() {
        let long = "x".repeat(MAX_LINE + 10);
        let text = format!("a\r\n{long}\nb\n\nc");
        let mut reader: Box<dyn BufRead> = Box::new(io::Cursor::new(text.into_bytes()));
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        while let Some(line) = next_line(&mut *reader, &mut buf).unwrap() {
            seen.push((line, String::from_utf8(buf.clone()).unwrap()));
        }
        assert_eq!(
            seen,
            vec![
                (Line::Text, "a".to_owned()),
                (Line::TooLong, String::new()),
                (Line::Text, "b".to_owned()),
                (Line::Text, String::new()),
                (Line::Text, "c".to_owned()),
            ]
        );
    }

    #[test]
    fn gzip_is_known_by_its_bytes_and_directories_read_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("b.log");
        std::fs::write(&plain, "one\ntwo\n").unwrap();
        let zipped = dir.path().join("a.json.gz");
        let mut gz = flate2::write::GzEncoder::new(
            File::create(&zipped).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(b"three\n").unwrap();
        gz.finish().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let found = sources(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|s| s.path.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["a.json.gz", "b.log"]);
        let read = Arc::new(AtomicU64::new(0));
        let mut reader = open(&zipped, read.clone()).unwrap();
        let mut buf = Vec::new();
        assert_eq!(next_line(&mut *reader, &mut buf).unwrap(), Some(Line::Text));
        assert_eq!(buf, b"three");
        assert_eq!(next_line(&mut *reader, &mut buf).unwrap(), None);
        assert_eq!(read.load(Ordering::Relaxed), found[0].size);
        // A path that is not there is an error naming it.
        let missing = sources(&[dir.path().join("nope.log")]).unwrap_err();
        assert!(missing.to_string().contains("nope.log"), "{missing}");
        let empty = tempfile::tempdir().unwrap();
        assert!(sources(&[empty.path().to_path_buf()]).is_err());
    }
}
