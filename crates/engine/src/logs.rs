//! Container logs in docker's json-file format: one JSON object a line,
//! `{"log":"text\n","stream":"stdout","time":"…"}`, in
//! `containers/<id>/<id>-json.log`; with `--log-opt max-size`, the file
//! is rotated into `.1`, `.2`, … and at most `max-file` files are kept.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::EngineError;

/// docker's json-file splits lines longer than this into several entries.
pub const MAX_ENTRY: usize = 16 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub max_size: Option<u64>,
    /// Files kept, the current one included (docker's default: 1).
    pub max_file: u32,
}

impl LogOptions {
    /// Parses `--log-opt KEY=VALUE`s.
    pub fn parse(opts: &[String]) -> Result<Self, EngineError> {
        let mut out = LogOptions {
            max_size: None,
            max_file: 1,
        };
        for o in opts {
            let bad = |reason: &str| EngineError::RunFlag {
                flag: "--log-opt".into(),
                value: o.clone(),
                reason: reason.into(),
            };
            match o.split_once('=') {
                Some(("max-size", v)) => {
                    out.max_size = Some(
                        crate::units::parse_bytes(v)
                            .ok()
                            .and_then(|n| u64::try_from(n).ok())
                            .filter(|n| *n > 0)
                            .ok_or_else(|| bad("expected a size such as 10m"))?,
                    )
                }
                Some(("max-file", v)) => {
                    out.max_file = v
                        .parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| bad("expected a count of 1 or more"))?
                }
                _ => return Err(bad("berth's json-file logs take max-size and max-file")),
            }
        }
        Ok(out)
    }
}

pub fn log_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}-json.log"))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LogEntry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// The monitor's side: appends entries, rotating as the options say.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    opts: LogOptions,
}

impl LogWriter {
    pub fn open(path: PathBuf, opts: LogOptions) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path,
            file,
            size,
            opts,
        })
    }

    /// Writes `text` (a line with its newline, or a last partial line) as
    /// entries of at most [`MAX_ENTRY`] bytes.
    pub fn write(&mut self, stream: &str, text: &[u8]) -> io::Result<()> {
        for chunk in text.chunks(MAX_ENTRY) {
            let entry = LogEntry {
                log: String::from_utf8_lossy(chunk).into_owned(),
                stream: stream.to_string(),
                time: crate::register::now(),
            };
            let mut line = serde_json::to_vec(&entry).expect("an entry serialises");
            line.push(b'\n');
            if self
                .opts
                .max_size
                .is_some_and(|max| self.size > 0 && self.size + line.len() as u64 > max)
            {
                self.rotate()?;
            }
            self.file.write_all(&line)?;
            self.size += line.len() as u64;
        }
        Ok(())
    }

    /// `log` -> `log.1` -> `log.2` …, dropping what is past `max-file`.
    fn rotate(&mut self) -> io::Result<()> {
        let kept = self.opts.max_file.saturating_sub(1);
        if kept == 0 {
            self.file.set_len(0)?;
            self.file.seek(SeekFrom::Start(0))?;
            self.size = 0;
            return Ok(());
        }
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        let _ = fs::remove_file(numbered(kept));
        for n in (1..kept).rev() {
            let _ = fs::rename(numbered(n), numbered(n + 1));
        }
        fs::rename(&self.path, numbered(1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Reads a container's log files, oldest first, and follows the current
/// one as it grows (`logs -f`).
pub struct LogReader {
    path: PathBuf,
    /// Where reading of the current file stopped.
    offset: u64,
}

impl LogReader {
    pub fn new(path: PathBuf) -> Self {
        LogReader { path, offset: 0 }
    }

    /// Every entry so far: the rotated files, then the current one.
    pub fn read_all(&mut self) -> Result<Vec<LogEntry>, EngineError> {
        let mut out = Vec::new();
        let mut n = 1;
        let mut rotated = Vec::new();
        loop {
            let p = PathBuf::from(format!("{}.{n}", self.path.display()));
            if !p.exists() {
                break;
            }
            rotated.push(p);
            n += 1;
        }
        for p in rotated.iter().rev() {
            read_entries(p, 0, &mut out)?;
        }
        self.offset = read_entries(&self.path, 0, &mut out)?;
        Ok(out)
    }

    /// The entries written since the last read; a rotation starts the new
    /// file from its beginning.
    pub fn read_new(&mut self) -> Result<Vec<LogEntry>, EngineError> {
        let len = fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            self.offset = 0;
        }
        let mut out = Vec::new();
        self.offset = read_entries(&self.path, self.offset, &mut out)?;
        Ok(out)
    }
}

/// Appends the whole lines of `path` from `from`; returns the offset after
/// the last whole line.
fn read_entries(path: &Path, from: u64, out: &mut Vec<LogEntry>) -> Result<u64, EngineError> {
    let io_err = |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(from),
        Err(e) => return Err(io_err(e)),
    };
    file.seek(SeekFrom::Start(from)).map_err(io_err)?;
    let mut reader = BufReader::new(file);
    let mut offset = from;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io_err)?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok(offset);
        }
        offset += n as u64;
        if let Ok(entry) = serde_json::from_slice::<LogEntry>(&line) {
            out.push(entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_and_reads_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let opts = LogOptions::parse(&["max-size=200".into(), "max-file=3".into()]).unwrap();
        let mut w = LogWriter::open(path.clone(), opts).unwrap();
        for i in 0..20 {
            w.write("stdout", format!("line {i}\n").as_bytes()).unwrap();
        }
        assert!(dir.path().join("c-json.log.2").exists());
        assert!(
            !dir.path().join("c-json.log.3").exists(),
            "max-file=3 keeps 3 files"
        );
        for p in ["c-json.log", "c-json.log.1", "c-json.log.2"] {
            assert!(
                fs::metadata(dir.path().join(p)).unwrap().len() <= 200,
                "{p}"
            );
        }
        let all = LogReader::new(path).read_all().unwrap();
        let lines: Vec<&str> = all.iter().map(|e| e.log.as_str()).collect();
        assert_eq!(lines.last(), Some(&"line 19\n"));
        let first: usize = lines[0]["line ".len()..].trim().parse().unwrap();
        assert_eq!(lines.len(), 20 - first, "a contiguous tail");
    }

    #[test]
    fn long_lines_are_split_as_docker_splits_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut w = LogWriter::open(path.clone(), LogOptions::default()).unwrap();
        w.write("stderr", &vec![b'x'; MAX_ENTRY + 10]).unwrap();
        let all = LogReader::new(path).read_all().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].stream, "stderr");
        assert_eq!(all[1].log.len(), 10);
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(LogOptions::parse(&["max-size=abc".into()]).is_err());
        assert!(LogOptions::parse(&["max-file=0".into()]).is_err());
        assert!(LogOptions::parse(&["mode=non-blocking".into()]).is_err());
        assert_eq!(
            LogOptions::parse(&["max-size=10k".into()])
                .unwrap()
                .max_size,
            Some(10 * 1024)
        );
    }
}
