//! The WebSocket transport at `/ws` (protocol.md §1, §6.1–6.2).
//!
//! Per connection: the handshake (first text frame within `auth_timeout`, admission by the
//! control plane, `connection_info`), then a reader loop in the connection's task that
//! routes binary frames and answers control texts, and a writer task that drains the
//! egress queue in batches and flushes once per batch.

use crate::close::CloseReason;
use crate::egress::{Egress, Outbound};
use crate::hooks::ConnRef;
use crate::table::Conn;
use crate::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use futures_util::SinkExt;
use rhizo_protocol::handshake::{self, AuthRequest, Control, HandshakeError};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Query keys that mark a legacy (pre-0.20) client; such upgrades are refused (§1.1).
const LEGACY_KEYS: [&str; 4] = ["client_id", "workspace", "token", "reconnection_token"];

/// Control texts longer than this are ignored (reference behaviour, §2.7).
const MAX_CONTROL_TEXT: usize = 1000;

/// The `/ws` route, to be merged into the HTTP app.
pub fn routes(router: Router) -> axum::Router {
    axum::Router::new()
        .route("/ws", get(upgrade))
        .with_state(router)
}

async fn upgrade(
    State(router): State<Router>,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let legacy = query.is_some_and(|q| {
        q.split('&')
            .any(|kv| LEGACY_KEYS.contains(&kv.split('=').next().unwrap_or_default()))
    });
    let max = router.config().max_frame_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(router.config().read_buffer_bytes)
        .on_upgrade(move |socket| async move { router.serve_socket(socket, legacy).await })
}

async fn refuse(socket: &mut WebSocket, reason: CloseReason) {
    tracing::debug!(reason = reason.label(), message = %reason.message(), "handshake refused");
    let _ = socket
        .send(Message::Text(handshake::error(&reason.message()).into()))
        .await;
    let frame = CloseFrame {
        code: reason.code(),
        reason: reason.close_text().into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

// === impl Router (WebSocket) ===

impl Router {
    /// Runs one WebSocket connection to completion.
    pub async fn serve_socket(self, mut socket: WebSocket, legacy: bool) {
        if legacy {
            let msg = "Authentication error: query-parameter authentication is not supported; \
                       please upgrade to hypha-rpc 0.20 or later";
            return refuse(&mut socket, CloseReason::Policy(msg.into())).await;
        }
        let first = tokio::time::timeout(self.config().auth_timeout, socket.recv()).await;
        let text = match first {
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(_))) => {
                let r = CloseReason::BadAuthPayload(
                    "Invalid authentication payload: expected a JSON text frame".into(),
                );
                return refuse(&mut socket, r).await;
            }
            Err(_) => {
                let r = CloseReason::Policy(
                    "Authentication error: Authentication payload timeout".into(),
                );
                return refuse(&mut socket, r).await;
            }
            Ok(_) => return,
        };
        let req = match AuthRequest::parse(text.as_str()) {
            Ok(r) => r,
            Err(e @ HandshakeError::BadJson(_)) => {
                return refuse(&mut socket, CloseReason::BadAuthPayload(e.to_string())).await
            }
            Err(e @ HandshakeError::BadClientId(_)) => {
                return refuse(&mut socket, CloseReason::Policy(e.to_string())).await
            }
        };
        let id = self.inner.next_id.fetch_add(1, Relaxed);
        let admission = match self.hooks().admit(id, req).await {
            Ok(a) => a,
            Err(r) => {
                let reason = match r.code {
                    1008 => CloseReason::Policy(r.message),
                    1013 => CloseReason::Busy(r.message),
                    _ => CloseReason::SetupFailed(r.message),
                };
                return refuse(&mut socket, reason).await;
            }
        };
        let cfg = self.config();
        let (egress, rx) = Egress::new(cfg.egress_limit_bytes, cfg.slow_consumer_grace);
        // connection_info is the first item: the client starts calling the manager at once,
        // and replies routed to it meanwhile queue behind it (§1.6).
        egress.push_control(Outbound::Text(admission.connection_info.to_string()));
        let conn = Arc::new(Conn::new(
            id,
            &admission.workspace,
            &admission.client_id,
            admission.user.clone(),
            admission.can_write,
            egress,
        ));
        if let Some(old) = self.inner.table.insert(conn.clone()) {
            old.egress.close(CloseReason::Superseded);
        }
        self.counters().opened(true);
        tracing::debug!(client = %conn.addr, reconnecting = admission.reconnecting, "connected");

        let mut rx = rx;
        let mut batch = Vec::with_capacity(cfg.write_batch);
        let reason = self.drive(&mut socket, &conn, &mut rx, &mut batch).await;
        if let Some(r) = &reason {
            if *r == CloseReason::Shutdown {
                // What was queued before the shutdown still goes out first (replies to
                // calls in flight), bounded.
                while let Ok(item) = rx.try_recv() {
                    batch.push(item);
                }
                batch.retain(|i| !matches!(i, Outbound::Close(_)));
                let flush = write_batch(&mut socket, &mut batch, &conn);
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), flush).await;
            }
            // Best effort, bounded: a slow consumer's socket is full, so do not wait on it.
            if *r != CloseReason::SlowConsumer {
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(2), close(&mut socket, r))
                        .await;
            }
        }
        self.counters().closed(true);
        self.forget(&conn);
        // Replies queued but not written (the connection dropped, or they came while it
        // closed) wait for the client's reconnection (`held`).
        let unsent = batch
            .drain(..)
            .chain(std::iter::from_fn(|| rx.try_recv().ok()));
        self.hold_unsent(&conn.addr, unsent);
    }

    /// Runs an admitted connection in one task: routes what the client sends and writes
    /// what is queued for it, until the peer goes away (`None`) or the server decides to
    /// close (`Some`). One task per connection means no lock between a reading and a
    /// writing half; writes go out in batches of up to `write_batch` frames with one flush.
    async fn drive(
        &self,
        socket: &mut WebSocket,
        conn: &Arc<Conn>,
        rx: &mut mpsc::UnboundedReceiver<Outbound>,
        batch: &mut Vec<Outbound>,
    ) -> Option<CloseReason> {
        let cfg = self.config();
        let idle = cfg.idle_timeout;
        let mut shutdown = self.shutdown_signal();
        if *shutdown.borrow() {
            return Some(CloseReason::Shutdown);
        }
        // The futures that end the connection are made once, not per frame.
        let stop = shutdown.changed();
        tokio::pin!(stop);
        let close = conn.egress.close_decided();
        tokio::pin!(close);
        // Idle check without reading the clock per frame: a frame sets `seen`; each tick
        // without one adds a period of quiet. Closes after `idle` to `idle + period`.
        let period = (idle / 4).max(std::time::Duration::from_millis(50));
        let mut idle_check = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut seen, mut quiet) = (false, std::time::Duration::ZERO);
        let mut route_cache = crate::route::RouteCache::default();
        let mut budget = cfg
            .msg_rate
            .map(|r| crate::rate::TokenBucket::new(r, std::time::Instant::now()));
        loop {
            tokio::select! {
                biased;
                // A decided close also queues a Close item, so it wakes this branch; the
                // batch is then skipped, not flushed to a slow consumer.
                n = rx.recv_many(batch, cfg.write_batch) => {
                    if n == 0 {
                        return None;
                    }
                    if let Some(reason) = conn.egress.closing() {
                        return Some(reason);
                    }
                    // A write can block on a full socket; a decided close cuts it short.
                    tokio::select! {
                        r = write_batch(socket, batch, conn) => match r {
                            Ok(None) => {}
                            Ok(Some(reason)) => return Some(reason),
                            Err(()) => return None,
                        },
                        _ = &mut close => return conn.egress.closing(),
                    }
                }
                msg = socket.recv() => {
                    seen = true;
                    if let (Some(b), Some(Ok(Message::Binary(_) | Message::Text(_)))) = (&mut budget, &msg) {
                        if !b.take(std::time::Instant::now()) {
                            self.counters().rate_limited_closes.fetch_add(1, Relaxed);
                            return Some(CloseReason::Policy("Rate limit exceeded".into()));
                        }
                    }
                    match msg {
                        None | Some(Ok(Message::Close(_))) => return None,
                        Some(Err(e)) => {
                            if is_oversized(&e) {
                                return Some(CloseReason::FrameTooLarge(cfg.max_frame_bytes));
                            }
                            tracing::debug!(client = %conn.addr, error = %e, "read error");
                            return None;
                        }
                        Some(Ok(Message::Binary(frame))) => {
                            let _ = self.route_from_cached(conn, frame, &mut route_cache);
                        }
                        Some(Ok(Message::Text(text))) => self.control_text(conn, text.as_str()),
                        Some(Ok(_)) => {} // protocol pings are answered by the WebSocket layer
                    }
                }
                _ = idle_check.tick() => {
                    quiet = if std::mem::take(&mut seen) { std::time::Duration::ZERO } else { quiet + period };
                    if quiet >= idle {
                        return Some(CloseReason::IdleTimeout(idle.as_secs()));
                    }
                }
                _ = &mut stop => return Some(CloseReason::Shutdown),
            }
        }
    }

    /// Answers a control text frame (§6.1–6.2); others and long ones are ignored.
    fn control_text(&self, conn: &Arc<Conn>, text: &str) {
        if text.len() > MAX_CONTROL_TEXT {
            return;
        }
        match handshake::control(text) {
            Control::Ping => {
                let _ = self.push(conn, Outbound::Text(handshake::pong()));
            }
            Control::RefreshToken => {
                let r = ConnRef {
                    id: conn.id,
                    ws: &conn.ws,
                    cid: &conn.cid,
                };
                match self.hooks().refresh_token(r) {
                    Ok(token) => {
                        let _ =
                            self.push(conn, Outbound::Text(handshake::reconnection_token(&token)));
                    }
                    Err(refusal) => conn.egress.close(CloseReason::Policy(refusal.message)),
                }
            }
            Control::Other(_) | Control::Invalid => {}
        }
    }
}

/// Writes a batch without flushing in between, then flushes once. `Ok(Some(reason))` when
/// the batch held a close; `Err` when the socket failed.
async fn write_batch(
    socket: &mut WebSocket,
    batch: &mut Vec<Outbound>,
    conn: &Conn,
) -> Result<Option<CloseReason>, ()> {
    let mut bytes = 0;
    for item in batch.drain(..) {
        bytes += item.len();
        let msg = match item {
            Outbound::Binary(b) => Message::Binary(b),
            Outbound::Text(t) => Message::Text(t.into()),
            Outbound::Close(reason) => return Ok(Some(reason)),
        };
        socket.feed(msg).await.map_err(|_| ())?;
    }
    socket.flush().await.map_err(|_| ())?;
    conn.egress.sent(bytes);
    Ok(None)
}

async fn close(sink: &mut WebSocket, reason: &CloseReason) {
    tracing::debug!(reason = reason.label(), "closing connection");
    if reason.sends_error() {
        let _ = sink
            .feed(Message::Text(handshake::error(&reason.message()).into()))
            .await;
    }
    let frame = CloseFrame {
        code: reason.code(),
        reason: reason.close_text().into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
}

/// Whether a read error from the socket means the client sent a message or frame over the
/// configured limit (`max_message_size` / `max_frame_size`, from
/// [`RouterConfig::max_frame_bytes`](crate::RouterConfig)), which closes the connection
/// with 1009 (protocol.md §2.4 "Size").
///
/// Decided by type, not text: tungstenite reports both limits as
/// `Error::Capacity(CapacityError::MessageTooLong { .. })`, which axum wraps in its own
/// `axum::Error`; the error's `source` chain is walked until that variant (or a bare
/// `CapacityError::MessageTooLong`) turns up.
pub(crate) fn is_oversized(err: &(dyn std::error::Error + 'static)) -> bool {
    use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(WsError::Capacity(c)) = e.downcast_ref::<WsError>() {
            return matches!(c, CapacityError::MessageTooLong { .. });
        }
        if let Some(c) = e.downcast_ref::<CapacityError>() {
            return matches!(c, CapacityError::MessageTooLong { .. });
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests;
