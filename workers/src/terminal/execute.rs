//! `execute(session_id, script, config={timeout: 5.0, raw_output: false},
//! progress_callback=None, output_callback=None)` (apps-workers.md §4.2): writes the
//! script and a newline to the program and collects its output until it shows a prompt
//! again ([`text::prompt_reached`], confirmed by [`QUIET`] without further output) or the
//! timeout passes.
//!
//! Returns the Jupyter-like result of §3.2: `{status: "ok", outputs: [{type: "stream",
//! name: "stdout", text}, {type: "screen", name: "screen_diff", text}]}` where the stream
//! text is the cleaned output (echo and prompts removed, ANSI stripped; raw with
//! `raw_output`) and `screen_diff` is everything the command added to the screen, ANSI
//! stripped. Failures are returned, not raised, as `{status: "error", outputs, error:
//! {ename, evalue, traceback}}`: `TimeoutError` (no prompt in time — the command may
//! still run), `SessionEnded` (the program exited), `WriteError`. An unknown session or
//! a stranger's call raises. Output chunks go to `output_callback` as `{type: "stream",
//! name: "stdout", text}` while they arrive. Executes of one session run one at a time.

use super::text::{clean_output, normalize, prompt_reached};
use super::Terminal;
use crate::args::{number, Args};
use crate::config::{progress, CallbackStream};
use rhizo_protocol::message::Call;
use rhizo_protocol::value::{get, map};
use rmpv::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

/// `config.timeout` when not given, seconds.
pub(crate) const DEFAULT_TIMEOUT: f64 = 5.0;

/// How long the output must stay quiet after a prompt for the command to count as done
/// (a multi-line script shows a prompt between its lines).
pub(super) const QUIET: Duration = Duration::from_millis(150);

/// The prompt heuristic looks at this much of the output's end.
pub(super) const TAIL: usize = 4096;

enum Outcome {
    Prompt,
    TimedOut,
    Ended,
}

/// What `execute` and `execute_stream` run: `script` and the `config` keys `timeout`
/// (seconds, at most a day) and `raw_output`.
pub(super) struct Command {
    pub(super) script: String,
    pub(super) timeout: f64,
    pub(super) raw_output: bool,
}

impl Command {
    /// Reads `(session_id, script, config)`; `default_timeout` when `config.timeout` is
    /// missing or not positive.
    ///
    /// Errors: a missing or non-string script.
    pub(super) fn parse(args: &Args<'_>, default_timeout: f64) -> Result<Command, String> {
        let script = args.str(1, "script")?.to_owned();
        let config = args.get(2, "config");
        let opt = |k| config.and_then(|c| get(c, k));
        let timeout = opt("timeout")
            .and_then(number)
            .filter(|t| *t > 0.0)
            .unwrap_or(default_timeout)
            .min(86_400.0);
        let raw_output = opt("raw_output").and_then(Value::as_bool).unwrap_or(false);
        Ok(Command {
            script,
            timeout,
            raw_output,
        })
    }
}

pub(super) async fn execute(t: Arc<Terminal>, call: Call) -> Result<Value, String> {
    let args = Args::new("execute", &call);
    let s = t.live(&args)?;
    let Command {
        script,
        timeout,
        raw_output,
    } = Command::parse(&args, DEFAULT_TIMEOUT)?;
    let (progress_cb, output_cb) = args.execute_callbacks();
    if !s.is_alive() {
        return Ok(error_result(
            "SessionEnded",
            "the terminal program has exited",
            "",
        ));
    }
    let _turn = s.exec.lock().await;
    progress(
        progress_cb.as_ref(),
        &t.client,
        "info",
        "Executing command…",
    )
    .await;
    let mut rx = s.subscribe();
    let mut input = script.clone();
    if !input.ends_with('\n') {
        input.push('\n');
    }
    if let Err(e) = s.write(input.as_bytes()).await {
        return Ok(error_result(
            "WriteError",
            &format!("cannot write to the terminal: {e}"),
            "",
        ));
    }
    let stream = output_cb.map(|cb| CallbackStream::start(cb, t.client.clone()));
    let deadline = Instant::now() + Duration::from_secs_f64(timeout);
    let mut raw = String::new();
    let mut quiet_until: Option<Instant> = None;
    let outcome = loop {
        let wake = quiet_until.map_or(deadline, |q| q.min(deadline));
        tokio::select! {
            r = rx.recv() => match r {
                Ok(chunk) => {
                    raw.push_str(&chunk);
                    if let Some(st) = &stream {
                        st.push(map([
                            ("type", "stream".into()),
                            ("name", "stdout".into()),
                            ("text", (&*chunk).into()),
                        ]));
                    }
                    quiet_until = prompt_reached(tail(&raw)).then(|| Instant::now() + QUIET);
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break Outcome::Ended,
            },
            _ = tokio::time::sleep_until(wake) => {
                break if quiet_until.is_some() { Outcome::Prompt } else { Outcome::TimedOut };
            }
            _ = s.ended() => {
                // Take what the reader still delivers before calling it ended.
                tokio::time::sleep(Duration::from_millis(50)).await;
                while let Ok(chunk) = rx.try_recv() {
                    raw.push_str(&chunk);
                }
                break Outcome::Ended;
            }
        }
    };
    if let Some(st) = stream {
        st.finish().await;
    }
    let text = if raw_output {
        raw.clone()
    } else {
        clean_output(&raw, &script)
    };
    let screen = normalize(&raw);
    let result = match outcome {
        Outcome::Prompt => map([
            ("status", "ok".into()),
            ("outputs", outputs(&text, &screen)),
        ]),
        Outcome::TimedOut => {
            let evalue = format!(
                "no prompt within {timeout} s; the command may still be running \
                 (read_terminal / get_screen_content show what follows)"
            );
            with_outputs(error_result("TimeoutError", &evalue, ""), &text, &screen)
        }
        Outcome::Ended => with_outputs(
            error_result("SessionEnded", "the terminal program exited", ""),
            &text,
            &screen,
        ),
    };
    progress(progress_cb.as_ref(), &t.client, "info", "Command finished").await;
    Ok(result)
}

/// The last [`TAIL`] bytes of `s` (at a character boundary).
pub(super) fn tail(s: &str) -> &str {
    let mut i = s.len().saturating_sub(TAIL);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

fn outputs(text: &str, screen: &str) -> Value {
    Value::Array(vec![
        map([
            ("type", "stream".into()),
            ("name", "stdout".into()),
            ("text", text.into()),
        ]),
        map([
            ("type", "screen".into()),
            ("name", "screen_diff".into()),
            ("text", screen.into()),
        ]),
    ])
}

fn with_outputs(mut v: Value, text: &str, screen: &str) -> Value {
    rhizo_protocol::value::set(&mut v, "outputs", outputs(text, screen));
    v
}

/// `{status: "error", outputs: [], error: {ename, evalue, traceback: [..]}}`.
fn error_result(ename: &str, evalue: &str, trace: &str) -> Value {
    let traceback = if trace.is_empty() {
        vec![]
    } else {
        vec![trace.into()]
    };
    map([
        ("status", "error".into()),
        ("outputs", Value::Array(vec![])),
        (
            "error",
            map([
                ("ename", ename.into()),
                ("evalue", evalue.into()),
                ("traceback", Value::Array(traceback)),
            ]),
        ),
    ])
}
