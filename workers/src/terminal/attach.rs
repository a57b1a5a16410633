//! `attach(session_id, on_screen_update=None)` (apps-workers.md §4.2).
//!
//! Without a callback: `{success, session_id, initial_screen, terminal_size: {rows,
//! cols}}`, where `initial_screen` is the visible screen as escape sequences that redraw
//! it in a terminal emulator. With one: the callback gets `{type: "initial", content,
//! terminal_size}`, then `{type: "update", content, batched}` messages — the output of up
//! to [`BATCH_EVENTS`] chunks within [`BATCH_WINDOW`] each, `batched` true when several
//! were joined — until the program exits or the callback fails; the call then returns
//! `{success: true, detached: true}` (`detached_reason` says which). The call stays open
//! for as long as it streams; the caller's client keeps it alive through heartbeats.

use super::session::TermSession;
use super::Terminal;
use crate::args::Args;
use crate::config::Callback;
use rhizo_protocol::message::Call;
use rhizo_protocol::value::map;
use rmpv::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

/// How long output is gathered into one update.
const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// At most this many output chunks per update.
const BATCH_EVENTS: usize = 10;

pub(super) async fn attach(t: Arc<Terminal>, call: Call) -> Result<Value, String> {
    let args = Args::new("attach", &call);
    let s = t.live(&args)?;
    let session_id = args.str(0, "session_id")?;
    let (rows, cols) = s.size();
    let size = map([("rows", rows.into()), ("cols", cols.into())]);
    let Some(cb) = args
        .get(1, "on_screen_update")
        .and_then(|v| Callback::parse(v, &call.ws))
    else {
        return Ok(map([
            ("success", true.into()),
            ("session_id", session_id.into()),
            ("initial_screen", s.screen_formatted().into()),
            ("terminal_size", size),
        ]));
    };
    // Subscribed before the initial screen is taken, so nothing falls between the two.
    let mut rx = s.subscribe();
    let initial = map([
        ("type", "initial".into()),
        ("content", s.screen_formatted().into()),
        ("terminal_size", size),
    ]);
    if let Err(e) = cb.send(&t.client, initial).await {
        return Ok(map([
            ("success", false.into()),
            ("error", format!("on_screen_update failed: {e}").into()),
        ]));
    }
    let reason = stream_updates(&s, &mut rx, &cb, &t).await;
    Ok(map([
        ("success", true.into()),
        ("detached", true.into()),
        ("detached_reason", reason.into()),
    ]))
}

/// Sends batched updates until the program ends or the callback fails; returns why it
/// stopped.
async fn stream_updates(
    s: &TermSession,
    rx: &mut tokio::sync::broadcast::Receiver<Arc<str>>,
    cb: &Callback,
    t: &Terminal,
) -> &'static str {
    loop {
        let first = tokio::select! {
            r = rx.recv() => match r {
                Ok(chunk) => chunk,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return "session ended",
            },
            _ = s.ended() => return "session ended",
        };
        let mut content = first.to_string();
        let mut events = 1;
        let window = Instant::now() + BATCH_WINDOW;
        while events < BATCH_EVENTS {
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(chunk) => {
                        content.push_str(&chunk);
                        events += 1;
                    }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                },
                _ = tokio::time::sleep_until(window) => break,
            }
        }
        let update = map([
            ("type", "update".into()),
            ("content", content.into()),
            ("batched", (events > 1).into()),
        ]);
        if cb.send(&t.client, update).await.is_err() {
            return "callback failed";
        }
    }
}
