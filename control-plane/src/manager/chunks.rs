//! Large frames the manager itself sends (protocol.md §2.4, §5.1): Python clients cannot
//! decode a msgpack segment above 512 KiB and their WebSocket library closes on frames
//! above 1 MiB, so a frame larger than [`CHUNK_BYTES`] (+1 KiB) — a big `list_services`
//! result, or an HTTP request body passed on to a service — is uploaded into the target's
//! `message_cache` in chunks and then `process`ed there, as clients do for each other.

use super::Manager;
use crate::error::{ManagerError, ManagerResult};
use bytes::Bytes;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use rhizo_protocol::value::get;
use rmpv::Value;
use std::time::Duration;

/// Chunk size, bytes (hypha-rpc's `long_message_chunk_size`).
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Frames up to this size go out whole.
pub const WHOLE_FRAME_LIMIT: usize = CHUNK_BYTES + 1024;

/// Chunk uploads in flight per message (as the clients do).
const SETS_IN_FLIGHT: usize = 30;

/// Time limit of each chunk call; the callee's timer restarts with every chunk.
const CHUNK_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How a large frame could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    /// The target has no `message_cache` (e.g. a minimal client); send the frame whole.
    Unsupported,
    /// An upload call failed.
    Failed(ManagerError),
}

// === impl Manager (outgoing chunks) ===

impl Manager {
    /// Delivers `frame` to `to` (`"<ws>/<cid>"`): whole if small, else through the
    /// target's `message_cache`. `key` names the upload; with `heartbeat` it must be a
    /// session the target is waiting on (its timer restarts per chunk). `caller` (workspace,
    /// user record) is stamped on the upload calls, and the target applies it to the
    /// reassembled message, so it must be what the whole frame would have carried.
    ///
    /// Falls back to the whole frame when the target has no `message_cache`.
    /// Errors: the target is gone or an upload failed.
    pub(crate) async fn deliver_large(
        &self,
        to: &str,
        frame: Vec<u8>,
        key: &str,
        heartbeat: bool,
        caller: (&str, &Value),
    ) -> ManagerResult<()> {
        if frame.len() <= WHOLE_FRAME_LIMIT {
            return self.deliver_whole(to, frame);
        }
        match self.upload(to, &frame, key, heartbeat, caller).await {
            Ok(()) => Ok(()),
            Err(ChunkError::Unsupported) => self.deliver_whole(to, frame),
            Err(ChunkError::Failed(e)) => {
                tracing::debug!(target = to, error = %e, "chunked delivery failed");
                Err(e)
            }
        }
    }

    /// Hands `frame` to the router for `to`. Errors: [`ManagerError::Disconnected`]
    /// (`Peer … is not connected`).
    pub(crate) fn deliver_whole(&self, to: &str, frame: Vec<u8>) -> ManagerResult<()> {
        if self.router.deliver(to, Bytes::from(frame)) {
            Ok(())
        } else {
            Err(ManagerError::Disconnected(format!(
                "Peer {to} is not connected"
            )))
        }
    }

    async fn upload(
        &self,
        to: &str,
        frame: &[u8],
        key: &str,
        heartbeat: bool,
        caller: (&str, &Value),
    ) -> Result<(), ChunkError> {
        let call = |name: &str, args: Vec<Value>| {
            let method = format!("services.built-in.message_cache.{name}");
            async move {
                self.call_client_as(to, &method, args, None, caller, CHUNK_CALL_TIMEOUT)
                    .await
            }
        };
        // The target's built-in service says whether it takes chunks, and which way.
        let built_in = self
            .call_client(
                to,
                "services.built-in.get_service",
                vec!["built-in".into()],
                CHUNK_CALL_TIMEOUT,
            )
            .await
            .map_err(ChunkError::Failed)?;
        if get(&built_in, "message_cache").is_none_or(|m| !m.is_map()) {
            return Err(ChunkError::Unsupported);
        }
        let version = get(&built_in, "config")
            .and_then(|c| get(c, "api_version"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let hb = Value::Boolean(heartbeat);
        call("create", vec![key.into(), hb.clone()])
            .await
            .map_err(ChunkError::Failed)?;
        // Owned chunks: futures that borrow the frame cannot be spawned (higher-ranked
        // lifetimes), and the copy is one pass over a frame that is being split anyway.
        let chunks: Vec<Value> = frame
            .chunks(CHUNK_BYTES)
            .map(|c| Value::Binary(c.to_vec()))
            .collect();
        let uploaded = if version >= 3 {
            let sets: Vec<_> = chunks
                .into_iter()
                .enumerate()
                .map(|(i, c)| call("set", vec![key.into(), i.into(), c, hb.clone()]))
                .collect();
            stream::iter(sets)
                .buffer_unordered(SETS_IN_FLIGHT)
                .try_collect::<Vec<_>>()
                .await
                .map(|_| ())
        } else {
            let mut r = Ok(());
            for c in chunks {
                let args = vec![key.into(), c, hb.clone()];
                if let Err(e) = call("append", args).await {
                    r = Err(e);
                    break;
                }
            }
            r
        };
        if let Err(e) = uploaded {
            let _ = call("remove", vec![key.into()]).await;
            return Err(ChunkError::Failed(e));
        }
        call("process", vec![key.into(), hb])
            .await
            .map(|_| ())
            .map_err(ChunkError::Failed)
    }
}
