//! `execute_stream(session_id, script, config={timeout: 30, raw_output: false})`
//! (apps-workers.md §4.2): like `execute`, but a remote generator
//! ([`rhizo_client::Client::generator`]) that yields the output while it arrives:
//! `{type: "output", data}` per chunk (ANSI stripped unless `raw_output`), then
//! `{type: "complete", status: "ok"}` once the program shows a prompt again. When the
//! timeout passes first, or the program exits, `{type: "error", message}` comes before a
//! `complete` whose status is `"timeout"` or `"ended"`. The command runs in the session's
//! turn (one `execute`/`execute_stream` at a time); a caller that stops iterating ends the
//! stream (the command itself keeps running in the terminal).

use super::execute::{tail, Command, QUIET, TAIL};
use super::text::{prompt_reached, strip_ansi};
use super::Terminal;
use crate::args::Args;
use futures_util::StreamExt;
use rhizo_protocol::message::Call;
use rmpv::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio::time::Instant;

/// `config.timeout` when not given, seconds (the reference's default for streams).
pub(crate) const DEFAULT_TIMEOUT: f64 = 30.0;

/// Items buffered ahead of the caller's `next` calls; the reader waits beyond that.
const AHEAD: usize = 64;

fn event(kind: &str, fields: Vec<(&str, Value)>) -> Value {
    let mut all = vec![(Value::from("type"), Value::from(kind))];
    all.extend(fields.into_iter().map(|(k, v)| (Value::from(k), v)));
    Value::Map(all)
}

pub(super) async fn execute_stream(t: Arc<Terminal>, call: Call) -> Result<Value, String> {
    let args = Args::new("execute_stream", &call);
    let s = t.live(&args)?;
    let Command {
        script,
        timeout,
        raw_output,
    } = Command::parse(&args, DEFAULT_TIMEOUT)?;
    let client = t.client.upgrade().ok_or("the worker is shutting down")?;
    let (tx, rx) = mpsc::channel::<Value>(AHEAD);
    tokio::spawn(async move {
        if !s.is_alive() {
            let _ = tx
                .send(event(
                    "error",
                    vec![("message", "the terminal program has exited".into())],
                ))
                .await;
            let _ = tx
                .send(event("complete", vec![("status", "ended".into())]))
                .await;
            return;
        }
        let _turn = s.exec.lock().await;
        let mut rx = s.subscribe();
        let mut input = script;
        if !input.ends_with('\n') {
            input.push('\n');
        }
        if let Err(e) = s.write(input.as_bytes()).await {
            let msg = format!("cannot write to the terminal: {e}");
            let _ = tx.send(event("error", vec![("message", msg.into())])).await;
            let _ = tx
                .send(event("complete", vec![("status", "error".into())]))
                .await;
            return;
        }
        let deadline = Instant::now() + Duration::from_secs_f64(timeout);
        let mut seen = String::new();
        let mut quiet_until: Option<Instant> = None;
        let status = loop {
            let wake = quiet_until.map_or(deadline, |q| q.min(deadline));
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(chunk) => {
                        seen.push_str(&chunk);
                        if seen.len() > 2 * TAIL {
                            seen = tail(&seen).to_owned();
                        }
                        quiet_until = prompt_reached(tail(&seen)).then(|| Instant::now() + QUIET);
                        let data = if raw_output { chunk.to_string() } else { strip_ansi(&chunk) };
                        if !data.is_empty()
                            && tx.send(event("output", vec![("data", data.into())])).await.is_err()
                        {
                            return; // The caller stopped iterating.
                        }
                    }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break "ended",
                },
                _ = tokio::time::sleep_until(wake) => {
                    break if quiet_until.is_some() { "ok" } else { "timeout" };
                }
                _ = s.ended() => break "ended",
            }
        };
        let message = match status {
            "timeout" => Some(format!(
                "no prompt within {timeout} s; the command may still be running"
            )),
            "ended" => Some("the terminal program exited".to_owned()),
            _ => None,
        };
        if let Some(m) = message {
            let _ = tx.send(event("error", vec![("message", m.into())])).await;
        }
        let _ = tx
            .send(event("complete", vec![("status", status.into())]))
            .await;
    });
    let items =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
            .boxed();
    Ok(client.generator(&call.from, items))
}
