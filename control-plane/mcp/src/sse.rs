//! The legacy MCP SSE transport (protocol 2024-11-05) under `/{ws}/mcp/{service_id}/sse`
//! (workspace-api.md §8.1): `GET …/sse` opens an event stream whose first event is
//! `endpoint` with the URL to post to (`…/sse/messages/?session_id=<hex>`); each JSON-RPC
//! message the client posts there is answered `202 Accepted`, and the server's replies
//! arrive as `message` events on the stream. The session lives as long as the stream.
//!
//! rmcp has no server side of this transport, so this module feeds one [`Handler`] per
//! session through channels.

use crate::handler::Handler;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::{RoleServer, ServiceExt};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How many SSE sessions a server holds at once; more are refused with 503.
pub const MAX_SESSIONS: usize = 1024;

/// Messages buffered per direction per session.
const CHANNEL_CAPACITY: usize = 64;

/// The open SSE sessions: session id → the sender into its server.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, mpsc::Sender<ClientJsonRpcMessage>>>,
}

impl Sessions {
    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or(0)
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Opens a session served by `handler` and answers its event stream; `endpoint` is
    /// the path of `…/sse/messages/` (the session id is appended as the query).
    ///
    /// Errors: 503 when [`MAX_SESSIONS`] are open.
    pub fn open(self: &Arc<Self>, handler: Handler, endpoint: &str) -> Response {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (in_tx, in_rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (out_tx, out_rx) = mpsc::channel(CHANNEL_CAPACITY);
        {
            let Ok(mut open) = self.open.lock() else {
                return crate::error_response(500, "SSE session table poisoned".into());
            };
            if open.len() >= MAX_SESSIONS {
                return crate::error_response(
                    503,
                    format!("Too many MCP SSE sessions (at most {MAX_SESSIONS}); try again later"),
                );
            }
            open.insert(id.clone(), in_tx);
        }
        let transport = ChannelTransport {
            out: out_tx,
            inbound: in_rx,
        };
        let session = id.clone();
        tokio::spawn(async move {
            match handler.serve(transport).await {
                Ok(running) => {
                    let _ = running.waiting().await;
                }
                Err(e) => {
                    tracing::debug!(%session, error = %e, "MCP SSE session ended before initialize")
                }
            }
        });
        let guard = Guard {
            sessions: self.clone(),
            id: id.clone(),
        };
        let first = Event::default()
            .event("endpoint")
            .data(format!("{endpoint}?session_id={id}"));
        let messages = stream::unfold((out_rx, guard), |(mut rx, guard)| async move {
            let msg: ServerJsonRpcMessage = rx.recv().await?;
            let data = serde_json::to_string(&msg).unwrap_or_default();
            Some((Event::default().event("message").data(data), (rx, guard)))
        });
        let events = stream::once(async move { first })
            .chain(messages)
            .map(Ok::<_, Infallible>);
        sse(events)
    }

    /// Hands a posted JSON-RPC message `body` to session `id`.
    ///
    /// Errors: 400 without a session id or when `body` is not a JSON-RPC message (the
    /// text says why), 404 for an unknown or closed session.
    pub async fn post(&self, id: Option<&str>, body: &[u8]) -> Response {
        let Some(id) = id.filter(|i| !i.is_empty()) else {
            return crate::error_response(400, "session_id is required".into());
        };
        let sender = self.open.lock().ok().and_then(|o| o.get(id).cloned());
        let Some(sender) = sender else {
            return crate::error_response(404, "Could not find session. Please reconnect.".into());
        };
        let message: ClientJsonRpcMessage = match serde_json::from_slice(body) {
            Ok(m) => m,
            Err(e) => return crate::error_response(400, format!("Could not parse message: {e}")),
        };
        match sender.send(message).await {
            Ok(()) => (axum::http::StatusCode::ACCEPTED, "Accepted").into_response(),
            Err(_) => {
                crate::error_response(404, "Could not find session. Please reconnect.".into())
            }
        }
    }
}

fn sse(events: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// Removes its session when the event stream is dropped (the client went away), which
/// closes the session's inbound channel and so ends its server task.
struct Guard {
    sessions: Arc<Sessions>,
    id: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(mut open) = self.sessions.open.lock() {
            open.remove(&self.id);
        }
    }
}

/// An rmcp transport over two channels: what the server sends goes to the event stream,
/// what clients post comes in.
struct ChannelTransport {
    out: mpsc::Sender<ServerJsonRpcMessage>,
    inbound: mpsc::Receiver<ClientJsonRpcMessage>,
}

impl Transport<RoleServer> for ChannelTransport {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send + 'static {
        let out = self.out.clone();
        async move {
            out.send(item).await.map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the SSE stream is closed")
            })
        }
    }

    fn receive(
        &mut self,
    ) -> impl std::future::Future<Output = Option<ClientJsonRpcMessage>> + Send {
        self.inbound.recv()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.inbound.close();
        Ok(())
    }
}
