//! The legacy MCP "HTTP with SSE" client transport (MCP 2024-11-05), which rmcp no longer
//! ships: `GET url` opens an event stream whose first `endpoint` event names the URL to
//! POST JSON-RPC messages to (relative to `url`); the server's messages come back as
//! `message` events on the stream. [`SseTransport`] is an rmcp [`Transport`], so rmcp's
//! client session runs over it exactly as over streamable HTTP.

use futures_util::StreamExt;
use reqwest::header::HeaderMap;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::service::RoleClient;
use rmcp::transport::Transport;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long to wait for the `endpoint` event after the stream opened.
const ENDPOINT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the SSE transport failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SseError {
    /// The HTTP request failed.
    #[error("HTTP request to {url} failed")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    /// The stream ended or timed out before it named the POST endpoint.
    #[error("the SSE stream of {0} sent no 'endpoint' event")]
    NoEndpoint(String),
    /// The `endpoint` event is not a URL.
    #[error("bad endpoint {0:?}: {1}")]
    BadEndpoint(String, String),
    /// A message could not be encoded.
    #[error("encoding a message: {0}")]
    Encode(#[from] serde_json::Error),
}

/// One server-sent event: its `event` type (default `message`) and `data` lines joined by
/// newlines.
#[derive(Debug, PartialEq)]
struct SseEvent {
    event: String,
    data: String,
}

/// Splits a byte stream into events: blocks separated by a blank line. Bytes are kept
/// until a block is whole, so a UTF-8 character cut between chunks survives; `\r` is
/// dropped (CRLF line ends).
#[derive(Default)]
struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    /// Feeds `chunk`; returns the events it completed.
    fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.extend(chunk.iter().filter(|b| **b != b'\r'));
        let mut out = Vec::new();
        while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
            let raw: Vec<u8> = self.buf.drain(..end + 2).collect();
            let block = String::from_utf8_lossy(&raw);
            let (mut event, mut data) = (String::from("message"), Vec::new());
            for line in block.lines() {
                let (field, val) = line.split_once(':').unwrap_or((line, ""));
                let val = val.strip_prefix(' ').unwrap_or(val);
                match field {
                    "event" => event = val.to_owned(),
                    "data" => data.push(val.to_owned()),
                    _ => {}
                }
            }
            if !data.is_empty() {
                out.push(SseEvent {
                    event,
                    data: data.join("\n"),
                });
            }
        }
        out
    }
}

/// An open SSE session: the POST endpoint and the stream's messages.
pub(crate) struct SseTransport {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    headers: HeaderMap,
    rx: mpsc::Receiver<ServerJsonRpcMessage>,
    reader: tokio::task::JoinHandle<()>,
}

impl SseTransport {
    /// Opens the stream at `url` (with `headers`) and waits at most 10 s for its
    /// `endpoint` event.
    ///
    /// Errors: the GET fails or answers an error status; no endpoint in time.
    pub(crate) async fn connect(
        http: reqwest::Client,
        url: &str,
        headers: HeaderMap,
    ) -> Result<Self, SseError> {
        let http_err = |source| SseError::Http {
            url: url.to_owned(),
            source,
        };
        let base = reqwest::Url::parse(url)
            .map_err(|e| SseError::BadEndpoint(url.to_owned(), e.to_string()))?;
        let resp = tokio::time::timeout(
            ENDPOINT_TIMEOUT,
            http.get(base.clone())
                .headers(headers.clone())
                .header("Accept", "text/event-stream")
                .send(),
        )
        .await
        .map_err(|_| SseError::NoEndpoint(url.to_owned()))?
        .map_err(http_err)?;
        if !resp.status().is_success() {
            return Err(SseError::Status {
                url: url.to_owned(),
                status: resp.status().as_u16(),
            });
        }
        let mut body = resp.bytes_stream();
        let mut parser = SseParser::default();
        let (tx, rx) = mpsc::channel(64);
        let mut early = Vec::new();
        let endpoint = tokio::time::timeout(ENDPOINT_TIMEOUT, async {
            while let Some(chunk) = body.next().await {
                let Ok(chunk) = chunk else { break };
                for ev in parser.feed(&chunk) {
                    if ev.event == "endpoint" {
                        return Some((ev.data, std::mem::take(&mut early)));
                    }
                    early.push(ev);
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        let Some((endpoint, early)) = endpoint else {
            return Err(SseError::NoEndpoint(url.to_owned()));
        };
        let endpoint = base
            .join(endpoint.trim())
            .map_err(|e| SseError::BadEndpoint(endpoint.clone(), e.to_string()))?;
        let reader = tokio::spawn(async move {
            let mut pending: Vec<SseEvent> = early;
            loop {
                for ev in pending.drain(..) {
                    if ev.event != "message" {
                        continue;
                    }
                    match serde_json::from_str::<ServerJsonRpcMessage>(&ev.data) {
                        Ok(m) => {
                            if tx.send(m).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "ignoring an SSE message"),
                    }
                }
                match body.next().await {
                    Some(Ok(chunk)) => pending = parser.feed(&chunk),
                    _ => return,
                }
            }
        });
        Ok(SseTransport {
            http,
            endpoint,
            headers,
            rx,
            reader,
        })
    }
}

impl Transport<RoleClient> for SseTransport {
    type Error = SseError;

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl std::future::Future<Output = Result<(), SseError>> + Send + 'static {
        let req = self
            .http
            .post(self.endpoint.clone())
            .headers(self.headers.clone());
        let url = self.endpoint.to_string();
        async move {
            let body = serde_json::to_vec(&item)?;
            let resp = req
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .map_err(|source| SseError::Http {
                    url: url.clone(),
                    source,
                })?;
            if !resp.status().is_success() {
                return Err(SseError::Status {
                    url,
                    status: resp.status().as_u16(),
                });
            }
            Ok(())
        }
    }

    fn receive(
        &mut self,
    ) -> impl std::future::Future<Output = Option<ServerJsonRpcMessage>> + Send {
        self.rx.recv()
    }

    async fn close(&mut self) -> Result<(), SseError> {
        self.reader.abort();
        Ok(())
    }
}

impl Drop for SseTransport {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_at_blank_lines_in_any_chunking() {
        let raw = b"event: endpoint\r\ndata: /messages/?session_id=1\r\n\r\n: ping\n\n\
                    event: message\ndata: {\"a\":\ndata: 1}\n\n";
        for cut in 0..raw.len() {
            let mut p = SseParser::default();
            let mut evs = p.feed(&raw[..cut]);
            evs.extend(p.feed(&raw[cut..]));
            assert_eq!(
                evs,
                [
                    SseEvent {
                        event: "endpoint".into(),
                        data: "/messages/?session_id=1".into()
                    },
                    SseEvent {
                        event: "message".into(),
                        data: "{\"a\":\n1}".into()
                    },
                ],
                "cut at {cut}"
            );
        }
    }
}
