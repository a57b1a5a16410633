//! The CLI's processes of an [`Agent`]: spawning one (the session's, or a turn's) in a
//! process group of its own with the worker's environment minus `HYPHA_*`/`RHIZO_*`, reading
//! its stdout and stderr, the transcript tailer (file-watch mode), and what its exit means
//! for the session.

use super::*;

impl Agent {
    pub(super) fn spawn_resumed(self: &Arc<Self>, turns_done: u64) -> Result<(), String> {
        self.spawn_with(None, turns_done)
    }

    pub(super) fn spawn(self: &Arc<Self>, message: Option<&str>) -> Result<(), String> {
        let turns_done = self.turns.borrow().done;
        self.spawn_with(message, turns_done)
    }

    /// Starts the CLI's process (the session's, or one turn's) and its readers.
    pub(super) fn spawn_with(
        self: &Arc<Self>,
        message: Option<&str>,
        turns_done: u64,
    ) -> Result<(), String> {
        let resume = self.cli_ref.lock().expect("ref lock").clone();
        let spec = self
            .adapter
            .command(&self.launch_args(turns_done, resume.as_deref()), message);
        let stdin_message = match (self.adapter.mode(), message) {
            (Mode::PerTurn, Some(m)) if self.adapter.message_on_stdin() => Some(m.to_owned()),
            _ => None,
        };
        let program = find_program(&spec.program)
            .ok_or_else(|| format!("{:?} not found on PATH", spec.program))?;
        let mut cmd = Command::new(program);
        cmd.args(&spec.args)
            .current_dir(&self.spec.dir)
            .stdin(
                if self.adapter.mode() == Mode::Persistent || stdin_message.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                },
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("HYPHA_") || k.starts_with("RHIZO_") {
                cmd.env_remove(&k);
            }
        }
        for (k, v) in self.spec.env.iter().chain(spec.env.iter()) {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the {} CLI: {e}", self.cli()))?;
        let pgid = child.id().map(|p| p as i32);
        let mut stdin = child.stdin.take();
        if let Some(m) = stdin_message {
            let Some(mut input) = stdin.take() else {
                return Err("the CLI's input could not be opened".into());
            };
            // The turn's message, then end of input.
            tokio::spawn(async move {
                let _ = input.write_all(m.as_bytes()).await;
                let _ = input.shutdown().await;
            });
        }
        {
            let mut st = self.inner.lock().expect("agent lock");
            st.pgid = pgid;
            st.stdin = stdin;
        }
        if let Some(err) = child.stderr.take() {
            let me = Arc::downgrade(self);
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let Some(me) = me.upgrade() else { return };
                    if !line.trim().is_empty() {
                        me.log("stderr", json!(line));
                    }
                }
            });
        }
        tokio::spawn(read_process(Arc::downgrade(self), child));
        Ok(())
    }

    /// Starts the next queued message's turn (per-turn CLIs), if any and none runs.
    pub(super) fn run_queued(self: &Arc<Self>) {
        let next = {
            let mut st = self.inner.lock().expect("agent lock");
            if st.busy || st.status != AgentStatus::Running {
                return;
            }
            let Some(next) = st.queued.pop_front() else {
                return;
            };
            st.busy = true;
            st.status = AgentStatus::Busy;
            next
        };
        self.interrupted.store(false, Relaxed);
        self.turn_failed.store(false, Relaxed);
        if let Err(e) = self.spawn(Some(&next)) {
            self.log("error", json!(e));
            self.end_turn(Some(e));
        }
    }

    /// Handles one line the CLI printed on stdout.
    pub(super) async fn on_stdout(&self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        match self.adapter.parse_output(line) {
            Ok(Parsed::Event(v)) => {
                if let Some(r) = self.adapter.session_ref(&v) {
                    self.cli_ref.lock().expect("ref lock").get_or_insert(r);
                }
                if self.output_mode == OutputMode::Stdout {
                    self.log("output", v);
                }
            }
            Ok(Parsed::EndOfTurn(v)) => {
                if let (Some(v), OutputMode::Stdout) = (v, self.output_mode) {
                    self.log("output", v);
                }
                self.flush_transcript().await;
                self.end_turn(None);
            }
            Ok(Parsed::TurnError(e)) => {
                self.flush_transcript().await;
                let e = if self.interrupted.load(Relaxed) {
                    "interrupted".to_owned()
                } else {
                    self.redact(&e)
                };
                self.log("error", json!(e));
                self.turn_failed.store(true, Relaxed);
                self.end_turn(Some(e));
            }
            Ok(Parsed::Skip) => {}
            Err(why) => {
                self.malformed.fetch_add(1, Relaxed);
                tracing::debug!(session = %self.spec.id, %why, "malformed CLI output line skipped");
            }
        }
    }

    /// Handles one transcript line (file-watch mode).
    pub(crate) fn on_transcript(&self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        match self.adapter.parse_log_line(line) {
            Ok(Parsed::Event(v)) | Ok(Parsed::EndOfTurn(Some(v))) => self.log("output", v),
            Ok(_) => {}
            Err(why) => {
                self.malformed.fetch_add(1, Relaxed);
                tracing::debug!(session = %self.spec.id, %why, "malformed transcript line skipped");
            }
        }
    }

    /// In file-watch mode, lets the tailer read what the CLI wrote before the turn ends.
    pub(super) async fn flush_transcript(&self) {
        let tx = self.flush.lock().expect("flush lock").clone();
        if let Some(tx) = tx {
            let (ack, done) = oneshot::channel();
            if tx.send(ack).await.is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(2), done).await;
            }
        }
    }

    pub(super) fn end_turn(&self, error: Option<String>) {
        {
            let mut st = self.inner.lock().expect("agent lock");
            st.busy = false;
            if st.status == AgentStatus::Busy {
                st.status = AgentStatus::Running;
            }
        }
        self.turns.send_modify(|t| {
            t.done += 1;
            t.last_error = error;
        });
    }

    /// The process ended with `code` (`None`: killed by a signal).
    pub(super) async fn on_exit(self: &Arc<Self>, code: Option<i32>) {
        {
            let mut st = self.inner.lock().expect("agent lock");
            st.pgid = None;
            st.stdin = None;
        }
        if self.stopping.load(Relaxed) {
            return;
        }
        let busy = self.inner.lock().expect("agent lock").busy;
        let interrupted = self.interrupted.swap(false, Relaxed);
        let reported = self.turn_failed.swap(false, Relaxed);
        let clean = code == Some(0);
        if self.adapter.mode() == Mode::PerTurn && (clean || interrupted || reported) {
            if busy {
                self.flush_transcript().await;
                self.end_turn(interrupted.then(|| "interrupted".to_owned()));
            }
            self.run_queued();
            return;
        }
        if interrupted {
            // A persistent CLI that exits on SIGINT: the next message starts it again.
            if busy {
                self.end_turn(Some("interrupted".into()));
            }
            return;
        }
        let why = match code {
            Some(c) => format!("the {} CLI exited with code {c}", self.cli()),
            None => format!("the {} CLI was killed by a signal", self.cli()),
        };
        self.log("error", json!(why));
        {
            let mut st = self.inner.lock().expect("agent lock");
            st.status = AgentStatus::Error;
            st.error = Some(why.clone());
        }
        if busy {
            self.end_turn(Some(why));
        }
    }
}

/// Reads the process's stdout to its end, then waits for it and reports the exit.
async fn read_process(agent: std::sync::Weak<Agent>, mut child: Child) {
    if let Some(out) = child.stdout.take() {
        let mut lines = BufReader::new(out).lines();
        loop {
            match lines.next_line().await {
                Ok(Some(line)) => {
                    let Some(a) = agent.upgrade() else { return };
                    a.on_stdout(&line).await;
                }
                Ok(None) => break,
                Err(_) => {
                    // Not UTF-8: counted and skipped.
                    if let Some(a) = agent.upgrade() {
                        a.malformed.fetch_add(1, Relaxed);
                    }
                }
            }
        }
    }
    let code = child.wait().await.ok().and_then(|s| s.code());
    if let Some(a) = agent.upgrade() {
        a.on_exit(code).await;
    }
}

/// Tails the transcript at `path` for `agent` until the agent goes.
pub(super) async fn tail_transcript(
    agent: std::sync::Weak<Agent>,
    path: PathBuf,
    mut flush: mpsc::Receiver<oneshot::Sender<()>>,
) {
    let mut tail = Tail::new(path);
    loop {
        let ack = tokio::select! {
            _ = tail.changed() => None,
            f = flush.recv() => match f {
                Some(ack) => Some(ack),
                None => return,
            },
        };
        let Some(a) = agent.upgrade() else { return };
        for line in tail.read_lines() {
            a.on_transcript(&line);
        }
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
    }
}

pub(super) fn signal_group(pgid: i32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(pid, sig);
    }
}

pub(super) fn group_alive(pgid: i32) -> bool {
    rustix::process::Pid::from_raw(pgid)
        .is_some_and(|pid| rustix::process::test_kill_process_group(pid).is_ok())
}
