//! One running terminal session: the PTY's write half, the screen model, the logs, and
//! the two tasks that keep them — the reader (64 KiB reads from the PTY into the screen,
//! `logs.stdout`, the unread buffer of `read_terminal` and the update broadcast that
//! `execute` and `attach` listen to) and the waiter (reaps the program, records its exit).

use super::pty::{self, Spawned};
use super::text::{filter_controls, Utf8Stream};
use crate::logs::Logs;
use crate::session::{SessionInfo, SessionStatus};
use rhizo_protocol::value::{map, set};
use rmpv::Value;
use std::num::NonZeroU16;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// Bytes per PTY read.
const READ_SIZE: usize = 64 * 1024;
/// `logs.stdout` keeps this many output chunks.
const STDOUT_CHUNKS: usize = 100;
/// Lines of scrollback in the screen model.
const SCROLLBACK: usize = 2000;
/// `read_terminal`'s unread buffer keeps at most this many bytes (oldest dropped).
const UNREAD_LIMIT: usize = 1 << 20;
/// Output chunks a slow listener may fall behind by before it misses some.
const UPDATES_CAPACITY: usize = 1024;

/// A live terminal session. Shared by the worker's table and its own tasks.
pub(crate) struct TermSession {
    pub(crate) info: Mutex<SessionInfo>,
    pub(crate) startup_command: Vec<String>,
    /// The session directory (removed by [`TermSession::stop`]).
    pub(crate) dir: PathBuf,
    /// The program's pid = its process group and session id.
    pub(crate) pid: u32,
    writer: tokio::sync::Mutex<pty_process::OwnedWritePty>,
    out: Mutex<Output>,
    updates: broadcast::Sender<Arc<str>>,
    alive: watch::Receiver<bool>,
    /// Held by an `execute` for its whole run, so that two never interleave.
    pub(crate) exec: tokio::sync::Mutex<()>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

struct Output {
    screen: vt100::Parser,
    logs: Logs,
    unread: String,
    seen_output: bool,
}

impl TermSession {
    /// Wraps a spawned program and starts its reader and waiter tasks.
    pub(crate) fn launch(
        info: SessionInfo,
        startup_command: Vec<String>,
        dir: PathBuf,
        spawned: Spawned,
        size: (u16, u16),
    ) -> Arc<Self> {
        let Spawned {
            child,
            pid,
            reader,
            writer,
        } = spawned;
        let (alive_tx, alive) = watch::channel(true);
        let session = Arc::new(TermSession {
            info: Mutex::new(info),
            startup_command,
            dir,
            pid,
            writer: tokio::sync::Mutex::new(writer),
            out: Mutex::new(Output {
                screen: vt100::Parser::new(nonzero(size.0), nonzero(size.1), SCROLLBACK),
                logs: Logs::default(),
                unread: String::new(),
                seen_output: false,
            }),
            updates: broadcast::channel(UPDATES_CAPACITY).0,
            alive,
            exec: tokio::sync::Mutex::new(()),
            reader: Mutex::new(None),
        });
        session.set_status(SessionStatus::Running);
        let r = tokio::spawn(read_loop(session.clone(), reader));
        *session.reader.lock().expect("reader lock") = Some(r);
        tokio::spawn(wait_loop(session.clone(), child, alive_tx));
        session
    }

    fn output(&self) -> std::sync::MutexGuard<'_, Output> {
        self.out.lock().expect("output lock")
    }

    fn ingest(&self, bytes: &[u8], utf8: &mut Utf8Stream) {
        let text = filter_controls(&utf8.decode(bytes));
        {
            let mut o = self.output();
            o.screen.process(bytes);
            o.seen_output = true;
            if !text.is_empty() {
                o.logs.push_capped("stdout", text.as_str(), STDOUT_CHUNKS);
                o.unread.push_str(&text);
                if o.unread.len() > UNREAD_LIMIT {
                    let mut cut = o.unread.len() - UNREAD_LIMIT;
                    while !o.unread.is_char_boundary(cut) {
                        cut += 1;
                    }
                    o.unread.drain(..cut);
                }
            }
        }
        if !text.is_empty() {
            let _ = self.updates.send(Arc::from(text));
        }
    }

    pub(crate) fn set_status(&self, status: SessionStatus) {
        self.info.lock().expect("info lock").status = status;
    }

    /// The session's workspace.
    pub(crate) fn workspace(&self) -> String {
        self.info.lock().expect("info lock").workspace.clone()
    }

    /// Whether the program still runs.
    pub(crate) fn is_alive(&self) -> bool {
        *self.alive.borrow()
    }

    /// Resolves once the program has exited.
    pub(crate) async fn ended(&self) {
        let mut rx = self.alive.clone();
        let _ = rx.wait_for(|a| !*a).await;
    }

    /// Whether the program has printed anything yet.
    pub(crate) fn has_output(&self) -> bool {
        self.output().seen_output
    }

    /// Output from now on, chunk by chunk (control characters filtered).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.updates.subscribe()
    }

    /// Writes raw bytes (keystrokes) to the program; returns how many.
    ///
    /// Errors: the PTY is closed (the program has exited).
    pub(crate) async fn write(&self, data: &[u8]) -> std::io::Result<usize> {
        let mut w = self.writer.lock().await;
        w.write_all(data).await?;
        w.flush().await?;
        Ok(data.len())
    }

    /// Resizes the PTY (the program gets SIGWINCH) and the screen model.
    ///
    /// Errors: the PTY refused the size.
    pub(crate) async fn resize(&self, rows: u16, cols: u16) -> Result<(), String> {
        self.writer
            .lock()
            .await
            .resize(pty_process::Size::new(rows, cols))
            .map_err(|e| e.to_string())?;
        self.output().screen.set_size(nonzero(rows), nonzero(cols));
        Ok(())
    }

    /// (rows, cols) of the screen model.
    pub(crate) fn size(&self) -> (u16, u16) {
        let (r, c) = self.output().screen.screen().size();
        (r.get(), c.get())
    }

    /// The visible screen as plain text, trailing blank lines removed.
    pub(crate) fn screen_text(&self) -> String {
        self.output()
            .screen
            .screen()
            .contents()
            .trim_end()
            .to_owned()
    }

    /// The visible screen as escape sequences that redraw it (for a terminal emulator
    /// such as xterm.js attaching late).
    pub(crate) fn screen_formatted(&self) -> String {
        self.output().screen.screen().contents_formatted()
    }

    /// Output not yet returned by an earlier call, emptied.
    pub(crate) fn take_unread(&self) -> String {
        std::mem::take(&mut self.output().unread)
    }

    /// The `get_logs` page (apps-workers.md §3.2).
    pub(crate) fn logs_page(
        &self,
        kind: Option<&str>,
        offset: usize,
        limit: Option<usize>,
    ) -> Value {
        self.output().logs.page(kind, offset, limit)
    }

    fn log(&self, kind: &str, content: String) {
        self.output().logs.push(kind, content);
    }

    /// SessionInfo plus `startup_command`, `is_alive`, `pid` and `working_dir`.
    pub(crate) fn describe(&self) -> Value {
        let mut v = self.info.lock().expect("info lock").to_value();
        let argv = self
            .startup_command
            .iter()
            .map(|a| a.as_str().into())
            .collect();
        set(&mut v, "startup_command", Value::Array(argv));
        set(&mut v, "is_alive", self.is_alive().into());
        set(&mut v, "pid", self.pid.into());
        set(&mut v, "working_dir", self.dir.display().to_string().into());
        let (rows, cols) = self.size();
        set(
            &mut v,
            "terminal_size",
            map([("rows", rows.into()), ("cols", cols.into())]),
        );
        v
    }

    /// Ends the program and everything it started, then removes the session directory:
    /// SIGTERM + SIGHUP to the process group, up to [`pty::STOP_GRACE`] to exit, then
    /// SIGKILL to the group and the rest of its session.
    pub(crate) async fn stop(&self) {
        self.set_status(SessionStatus::Stopping);
        if self.is_alive() {
            pty::terminate(self.pid);
            let _ = tokio::time::timeout(pty::STOP_GRACE, self.ended()).await;
        }
        pty::kill_session(self.pid);
        let _ = tokio::time::timeout(pty::STOP_GRACE, self.ended()).await;
        if let Some(r) = self.reader.lock().expect("reader lock").take() {
            r.abort();
        }
        self.set_status(SessionStatus::Stopped);
        if let Err(e) = tokio::fs::remove_dir_all(&self.dir).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove a session directory");
            }
        }
    }
}

fn nonzero(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN)
}

async fn read_loop(s: Arc<TermSession>, mut reader: pty_process::OwnedReadPty) {
    let mut buf = vec![0u8; READ_SIZE];
    let mut utf8 = Utf8Stream::default();
    loop {
        match reader.read(&mut buf).await {
            // EIO once every holder of the terminal's other side is gone.
            Ok(0) | Err(_) => break,
            Ok(n) => s.ingest(&buf[..n], &mut utf8),
        }
    }
}

async fn wait_loop(
    s: Arc<TermSession>,
    mut child: tokio::process::Child,
    alive: watch::Sender<bool>,
) {
    use std::os::unix::process::ExitStatusExt;
    let code = match child.wait().await {
        Ok(st) => st.code().or(st.signal().map(|sig| -sig)).unwrap_or(-1),
        Err(_) => -1,
    };
    s.log("info", format!("Process exited with return code: {code}"));
    {
        let mut info = s.info.lock().expect("info lock");
        info.status = match info.status {
            st @ (SessionStatus::Stopping | SessionStatus::Stopped) => st,
            _ if code == 0 => SessionStatus::Completed,
            _ => SessionStatus::Failed,
        };
    }
    let _ = alive.send(false);
}
