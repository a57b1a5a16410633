//! Tailing a JSONL transcript a CLI appends to (file-watch mode, apps-workers.md §6.1):
//! [`Tail`] reads the lines added since its last read, from a file that may not exist yet
//! (created late), may be truncated or replaced (read again from the start), and may end in
//! a partial line (kept until its newline arrives). A replaced file is recognised by its
//! device and inode, by its birth time where the file system keeps one, and by its first
//! bytes (a new file often gets the inode just freed by the old one). Changes are noticed through the `notify`
//! crate (inotify on Linux), with a periodic re-check as a fallback for file systems
//! without change events.

use notify::{RecursiveMode, Watcher};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

/// How often the file is re-checked without a change event.
pub const POLL: Duration = Duration::from_millis(500);

/// Longest line kept; a longer one is dropped (and its remainder skipped up to its newline).
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// How many leading bytes of the file are kept to recognise it.
const HEAD: usize = 256;

type Identity = (u64, u64, Option<std::time::SystemTime>);

/// A tailer of one file. See the module docs.
pub struct Tail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    skipping: bool,
    /// The identity of the file read (device, inode, birth time), to notice a replaced file.
    identity: Option<Identity>,
    /// The first bytes read (up to [`HEAD`]), compared on each read to notice a file
    /// replaced under a reused inode.
    head: Vec<u8>,
    events: mpsc::UnboundedReceiver<()>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl std::fmt::Debug for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tail")
            .field("path", &self.path)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl Tail {
    /// Tails `path` from its start. Its directory is created if missing so that it can
    /// be watched before the CLI creates the file.
    pub fn new(path: PathBuf) -> Tail {
        let (tx, events) = mpsc::unbounded_channel();
        let watcher = path.parent().and_then(|dir| {
            std::fs::create_dir_all(dir).ok()?;
            let mut w = notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
                let _ = tx.send(());
            })
            .ok()?;
            w.watch(dir, RecursiveMode::NonRecursive).ok()?;
            Some(w)
        });
        Tail {
            path,
            offset: 0,
            partial: Vec::new(),
            skipping: false,
            identity: None,
            head: Vec::new(),
            events,
            _watcher: watcher,
        }
    }

    /// Waits for a change event or [`POLL`], whichever comes first.
    pub async fn changed(&mut self) {
        let _ = tokio::time::timeout(POLL, self.events.recv()).await;
        while self.events.try_recv().is_ok() {}
    }

    /// The complete lines appended since the last call (without their newlines; invalid
    /// UTF-8 replaced). Nothing when the file does not exist (yet).
    pub fn read_lines(&mut self) -> Vec<String> {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let Ok(meta) = file.metadata() else {
            return Vec::new();
        };
        let identity = file_identity(&meta);
        if self.identity.is_some_and(|id| Some(id) != identity)
            || meta.len() < self.offset
            || !self.same_head(&mut file)
        {
            // Replaced or truncated: read it again from the start.
            self.offset = 0;
            self.partial.clear();
            self.skipping = false;
            self.head.clear();
        }
        self.identity = identity;
        if meta.len() == self.offset || file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        if file.read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        if self.head.len() < HEAD && self.offset as usize == self.head.len() {
            let take = (HEAD - self.head.len()).min(buf.len());
            self.head.extend_from_slice(&buf[..take]);
        }
        self.offset += buf.len() as u64;
        let mut lines = Vec::new();
        for chunk in buf.split_inclusive(|b| *b == b'\n') {
            let complete = chunk.last() == Some(&b'\n');
            if self.skipping {
                self.skipping = !complete;
                continue;
            }
            self.partial.extend_from_slice(chunk);
            if self.partial.len() > MAX_LINE {
                self.partial.clear();
                self.skipping = !complete;
                continue;
            }
            if complete {
                let line = String::from_utf8_lossy(&self.partial[..self.partial.len() - 1])
                    .trim_end_matches('\r')
                    .to_owned();
                self.partial.clear();
                lines.push(line);
            }
        }
        lines
    }
}

impl Tail {
    /// Whether the file still starts with the bytes read from it before.
    fn same_head(&self, file: &mut std::fs::File) -> bool {
        if self.head.is_empty() {
            return true;
        }
        let mut now = vec![0; self.head.len()];
        file.seek(SeekFrom::Start(0)).is_ok()
            && file.read_exact(&mut now).is_ok()
            && now == self.head
    }
}

#[cfg(unix)]
fn file_identity(meta: &std::fs::Metadata) -> Option<Identity> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino(), meta.created().ok()))
}

#[cfg(not(unix))]
fn file_identity(_meta: &std::fs::Metadata) -> Option<Identity> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn lines_arrive_whole_across_late_creation_partial_writes_and_truncation() {
        let dir = std::env::temp_dir().join(format!("rhizo-tail-{}", uuid::Uuid::new_v4()));
        let path = dir.join("sub").join("t.jsonl");
        let mut t = Tail::new(path.clone());
        assert!(t.read_lines().is_empty(), "no file yet");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(b"{\"a\":1}\n{\"b\":").unwrap();
        assert_eq!(t.read_lines(), vec!["{\"a\":1}"]);
        assert!(t.read_lines().is_empty(), "the partial line waits");
        f.write_all(b"2}\r\n\n").unwrap();
        assert_eq!(t.read_lines(), vec!["{\"b\":2}", ""]);
        // Truncated and rewritten: read from the start again.
        drop(f);
        std::fs::write(&path, b"{\"c\":3}\n").unwrap();
        assert_eq!(t.read_lines(), vec!["{\"c\":3}"]);
        // Replaced by another file of a greater length.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"{\"d\":4}\n{\"e\":5}\n").unwrap();
        assert_eq!(t.read_lines(), vec!["{\"d\":4}", "{\"e\":5}"]);
        // Rewritten in place (same inode) with other leading bytes and a greater length.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"f\":6}\n{\"g\":7}\n{\"h\":8}\n")
            .unwrap();
        assert_eq!(t.read_lines(), vec!["{\"f\":6}", "{\"g\":7}", "{\"h\":8}"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
