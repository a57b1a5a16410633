//! The interface through which the router reaches the control plane (DESIGN.md "Router …
//! never imports the control plane"). The control plane implements [`ControlHooks`]; the
//! router calls it for admission, token refresh, frames addressed to the manager and
//! disconnects. The other direction is [`crate::RouterControl`].

use bytes::Bytes;
use rhizo_protocol::handshake::AuthRequest;
use std::future::Future;
use std::pin::Pin;

/// A boxed future, for the one async hook.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the control plane decided for an accepted handshake.
#[derive(Debug, Clone)]
pub struct Admission {
    /// Resolved workspace.
    pub workspace: String,
    /// The client id (as requested).
    pub client_id: String,
    /// The user record, msgpack-encoded, stamped into every header the client sends.
    pub user: Bytes,
    /// Whether the client may broadcast into its workspace.
    pub can_write: bool,
    /// The `connection_info` JSON object to send (protocol.md §1.4).
    pub connection_info: serde_json::Value,
    /// Whether this is a reconnection (the duplicate-client check was skipped).
    pub reconnecting: bool,
}

/// A refused handshake: the message for the `{"type":"error"}` frame and the close code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Message, in the reference's wording ("Authentication error: …").
    pub message: String,
    /// WebSocket close code (1008 auth/policy, 1001 setup failure, 1013 server busy).
    pub code: u16,
}

/// Identity of a live connection, given to hooks.
#[derive(Debug, Clone, Copy)]
pub struct ConnRef<'a> {
    /// Router-unique connection id.
    pub id: u64,
    /// Workspace.
    pub ws: &'a str,
    /// Client id.
    pub cid: &'a str,
}

/// Callbacks from the router into the control plane.
pub trait ControlHooks: Send + Sync + 'static {
    /// Authenticates a handshake and resolves the workspace (protocol.md §1.3).
    /// `conn_id` is the router-unique id the connection will have if admitted (the one
    /// later given back in [`ConnRef::id`]).
    fn admit(&self, conn_id: u64, req: AuthRequest) -> BoxFuture<'_, Result<Admission, Refusal>>;

    /// A fresh reconnection token for `conn` (protocol.md §6.2). A refusal (expired or
    /// revoked identity) makes the router close the connection with its message.
    fn refresh_token(&self, conn: ConnRef<'_>) -> Result<String, Refusal>;

    /// A stamped frame addressed to `*/<manager_id>`. Must not block.
    fn manager_frame(&self, frame: Bytes);

    /// `conn` ended and was not superseded: purge its services, tell its workspace and
    /// the `foreign_callers` (addresses in other workspaces that had sent it frames).
    fn disconnected(&self, conn: ConnRef<'_>, foreign_callers: Vec<String>);

    /// A `POST /rpc` for which no stream is open: a stateless call (workspace-api.md
    /// §8.5). `token` is the request's, `workspace` the query's (if any), `body` one
    /// msgpack map `{type: "method", to, method, args?, kwargs?}`. Answers the HTTP
    /// status and the JSON body. The default refuses it (404, no stream).
    fn stateless_call(
        &self,
        token: Option<String>,
        workspace: Option<String>,
        body: Bytes,
    ) -> BoxFuture<'_, (u16, serde_json::Value)> {
        let _ = (token, body);
        let ws = workspace.unwrap_or_default();
        Box::pin(async move {
            let detail = format!("No active stream in {ws}");
            (404, serde_json::json!({"success": false, "detail": detail}))
        })
    }

    /// The remote client `addr` (`"<ws>/<cid>"`, on another node) is gone — it left, or
    /// its node went down or stopped answering — and `callers`, local clients of other
    /// workspaces, had sent it frames: tell them (`client_disconnected`), so their pending
    /// calls fail at once. Must not block. The default does nothing.
    fn remote_client_gone(&self, addr: &str, callers: Vec<String>) {
        let _ = (addr, callers);
    }

    /// A message another node's control plane sent with
    /// [`crate::RouterControl::cluster_publish`] or [`crate::RouterControl::cluster_send`].
    /// Called from the bus's reader: must not block (hand the work to a task).
    fn cluster_message(&self, from_node: &str, message: Bytes) {
        let _ = (from_node, message);
    }

    /// A message for `to_node` that the bus took but could not hand over (no node
    /// listens under that id now, or the write to Redis failed): whatever waits on its
    /// answer should fail now rather than at its timeout. Called from the bus's task:
    /// must not block. The default does nothing.
    fn cluster_undelivered(&self, to_node: &str, message: Bytes) {
        let _ = (to_node, message);
    }

    /// The directory learned that `node` came up, or came back after losing Redis (it may
    /// have missed messages). Must not block.
    fn node_joined(&self, node: &str) {
        let _ = node;
    }

    /// The directory dropped `node`: it announced its shutdown (`down`) or its heartbeat
    /// expired. Must not block.
    fn node_left(&self, node: &str) {
        let _ = node;
    }
}
