//! The control plane across nodes (issue 10 stage B): what this node's control plane tells
//! its peers on the cluster channel of [`RouterControl`] and what it does with theirs. No
//! Redis client of its own: the router's Bus carries the bytes.
//!
//! **What crosses nodes.**
//! * The service registry: every node announces its local records (register, unregister,
//!   a client's departure) and sends its full local list to a node that joins (or asks
//!   with `hello`); each node keeps the others' records by node
//!   ([`crate::registry`]'s replica), so resolution, listings, search and `list_clients`
//!   see every node's services with the same visibility rules. When a node leaves, its
//!   records go at once and each remaining node tells its *own* subscribers
//!   `client_disconnected` / `service_removed`.
//! * `get_service` of a record held by another node: the provider's object is fetched by
//!   the manager of the provider's node (`fetch` / `fetched`), since a provider's reply to
//!   another node's manager address is not routable; calls into the object then go
//!   client to client through the router.
//! * Calls the manager makes into a client of another node (`call` / `called`): made by
//!   the manager of the client's node, since hypha-rpc lets only its own node's manager
//!   call protected functions (a server-app worker's `start`, §3 of apps-workers.md); the
//!   callee's callbacks and replies to it still go client to manager through the router.
//! * Token revocations: announced, added to every node's revocation set, and every node
//!   closes its own sessions descending from the token.
//! * Workspace records ([`crate::workspaces`]'s replica): every create, change (environment,
//!   bookmarks, service types, owners on overwrite), delete and temporary-workspace unload
//!   is announced; peers apply it to their table without writing the store (the origin
//!   did) and without events. A temporary workspace stays on every node while the node
//!   that first announced it (its origin) keeps it; when the origin unloads it, the other
//!   nodes drop it unless they have clients in it.
//!
//! **Events.** The service and client events a registry change means are emitted once, by
//! the node where the change happened, as a workspace broadcast, which the router's Bus
//! already carries to the subscribers on the other nodes; applying a peer's announcement
//! emits nothing, so nobody hears an event twice. The one exception is a node leaving:
//! it cannot speak any more, so every remaining node emits the events for its records to
//! its local subscribers only.
//!
//! **What stays per node.** Sessions (for `cleanup`, per-user connection limits, which
//! connection a token opened), the per-client service quota, manager call limits and the
//! message cache, rate limits, and `cleanup` itself (it pings and purges this node's
//! clients only). The singleton rule is checked against the replica too, and the
//! workspace client quota counts every node's clients (the router's directory); both can
//! still race between two nodes registering at the same instant.
//!
//! **Message format.** A msgpack map with `v` (= 1) and `op`:
//!
//! | op | fields | sent |
//! |----|--------|------|
//! | `hello` | — | published at start: "send me your records" |
//! | `snapshot` | `records`: [record], `workspaces`: [workspace] | to a node that joined or said hello |
//! | `workspace` | `record`: workspace | published on create or change |
//! | `workspace_deleted` | `id` | published on `delete_workspace` |
//! | `workspace_unloaded` | `id` | published when a temporary workspace is unloaded |
//! | `added` | `records`: [record] | published on register |
//! | `removed` | `keys`: [`ws/cid:name@app`] | published on unregister |
//! | `client_gone` | `ws`, `cid` | published when a local client leaves |
//! | `revoked` | `hash` (SHA-256 hex), `exp` (unix s) | published by `revoke_token` |
//! | `blocked` | `kind` (`user`/`ip`), `key`, `reason`, `exp` (unix s) | published by `block_user`/`block_ip` |
//! | `unblocked` | `kind`, `key` | published by `unblock_user`/`unblock_ip` |
//! | `kick` | `addr` (`ws/cid`), `code`, `reason` | published by `kickout_client` |
//! | `fetch` | `req` (u64), `ws`, `cid`, `name`, `timeout` (s) | to the provider's node |
//! | `fetched` | `req`, then `ok`: object, or `err`: text and `kind` | back to the asker |
//! | `call` | `req`, `to` (`ws/cid`), `method`, `args`: [value], `kwargs` (map or nil), `ws`, `user` (the caller's), `timeout` (s) | to the callee's node |
//! | `called` | `req`, then `ok`: the result, or `err`: text and `kind` | back to the asker |
//!
//! A record is the stored service record (`id`, `name`, `type`, … `config`), as listed; a
//! workspace is the `WorkspaceInfo` map (`type`, `id`, `name`, … `service_types`), as
//! `get_workspace_info` returns it.
//! Unknown ops and versions are ignored. Delivery is at most once: a lost announcement
//! is repaired by the next snapshot (a node that reconnects to Redis is sent everyone's).

use crate::error::{ManagerError, ManagerResult};
use crate::manager::Manager;
use crate::registry::ServiceRecord;
use bytes::Bytes;
use dashmap::DashMap;
use rhizo_protocol::value::{self, get, get_str};
use rmpv::Value;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Version of the message format.
const VERSION: u64 = 1;

/// Capacity of the queue between the bus's reader and the cluster task, messages.
const QUEUE: usize = 8192;

/// One message between control planes; see the module docs for the wire shape.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    /// Asks every peer for its records.
    Hello,
    /// The sender's full list of local service records, and its workspace records.
    Snapshot {
        /// Service records.
        records: Vec<Value>,
        /// Workspace records ([`crate::workspaces::WorkspaceInfo`] maps).
        workspaces: Vec<Value>,
    },
    /// Records the sender registered (or replaced).
    Added(Vec<Value>),
    /// Registry keys the sender removed.
    Removed(Vec<String>),
    /// A client of the sender left; its records go.
    ClientGone {
        /// Workspace.
        ws: String,
        /// Client id.
        cid: String,
    },
    /// The sender created or changed a workspace: its whole record.
    Workspace(Value),
    /// The sender deleted a workspace (`delete_workspace`).
    WorkspaceDeleted(String),
    /// The sender unloaded a temporary workspace (its last local client left).
    WorkspaceUnloaded(String),
    /// A token was revoked until `exp`.
    Revoked {
        /// SHA-256 hex of the token.
        hash: String,
        /// Unix seconds.
        exp: u64,
    },
    /// A user or address was blocked until `exp` (see [`crate::blocklist`]).
    Blocked(crate::storage::Block),
    /// The block of a user or address was lifted.
    Unblocked {
        /// `user` or `ip`.
        kind: crate::storage::BlockKind,
        /// The user id or address.
        key: String,
    },
    /// Close the client at `addr` if it is connected to the receiving node.
    Kick {
        /// `ws/cid`.
        addr: String,
        /// WebSocket close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// Asks the receiving node to fetch a local provider's service object.
    Fetch {
        /// Request id, chosen by the asker.
        req: u64,
        /// Provider workspace.
        ws: String,
        /// Provider client id.
        cid: String,
        /// Service name.
        name: String,
        /// Seconds to wait for the provider.
        timeout: f64,
    },
    /// The answer to a [`Msg::Fetch`].
    Fetched {
        /// The request id.
        req: u64,
        /// The object, or the error's kind and text.
        result: Result<Value, (String, String)>,
    },
    /// Asks the receiving node's manager to call a local client on the sender's behalf.
    Call {
        /// Request id, chosen by the asker.
        req: u64,
        /// The callee, `ws/cid`.
        to: String,
        /// `<service>.<function>`.
        method: String,
        /// Positional arguments.
        args: Vec<Value>,
        /// Keyword arguments, if any.
        kwargs: Option<Value>,
        /// The calling workspace the callee sees.
        ws: String,
        /// The calling user the callee sees (an encoded user record).
        user: Value,
        /// Seconds to wait for the callee.
        timeout: f64,
    },
    /// The answer to a [`Msg::Call`].
    Called {
        /// The request id.
        req: u64,
        /// The result, or the error's kind and text.
        result: Result<Value, (String, String)>,
    },
}

fn strs(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn values(v: Option<&Value>) -> Vec<Value> {
    v.and_then(Value::as_array).cloned().unwrap_or_default()
}

// === impl Msg ===

impl Msg {
    /// The msgpack bytes.
    pub fn encode(&self) -> Bytes {
        let s = |x: &str| Value::from(x);
        let mut m = vec![("v", Value::from(VERSION))];
        match self {
            Msg::Hello => m.push(("op", s("hello"))),
            Msg::Snapshot {
                records,
                workspaces,
            } => {
                m.push(("op", s("snapshot")));
                m.push(("records", Value::Array(records.clone())));
                m.push(("workspaces", Value::Array(workspaces.clone())));
            }
            Msg::Workspace(r) => {
                m.push(("op", s("workspace")));
                m.push(("record", r.clone()));
            }
            Msg::WorkspaceDeleted(id) => {
                m.push(("op", s("workspace_deleted")));
                m.push(("id", s(id)));
            }
            Msg::WorkspaceUnloaded(id) => {
                m.push(("op", s("workspace_unloaded")));
                m.push(("id", s(id)));
            }
            Msg::Added(r) => {
                m.push(("op", s("added")));
                m.push(("records", Value::Array(r.clone())));
            }
            Msg::Removed(k) => {
                m.push(("op", s("removed")));
                m.push(("keys", Value::Array(k.iter().map(|k| s(k)).collect())));
            }
            Msg::ClientGone { ws, cid } => {
                m.push(("op", s("client_gone")));
                m.push(("ws", s(ws)));
                m.push(("cid", s(cid)));
            }
            Msg::Revoked { hash, exp } => {
                m.push(("op", s("revoked")));
                m.push(("hash", s(hash)));
                m.push(("exp", Value::from(*exp)));
            }
            Msg::Blocked(b) => {
                m.push(("op", s("blocked")));
                m.push(("kind", s(b.kind.as_str())));
                m.push(("key", s(&b.key)));
                m.push(("reason", s(&b.reason)));
                m.push(("exp", Value::from(b.expires_at)));
            }
            Msg::Unblocked { kind, key } => {
                m.push(("op", s("unblocked")));
                m.push(("kind", s(kind.as_str())));
                m.push(("key", s(key)));
            }
            Msg::Kick { addr, code, reason } => {
                m.push(("op", s("kick")));
                m.push(("addr", s(addr)));
                m.push(("code", Value::from(*code)));
                m.push(("reason", s(reason)));
            }
            Msg::Fetch {
                req,
                ws,
                cid,
                name,
                timeout,
            } => {
                m.push(("op", s("fetch")));
                m.push(("req", Value::from(*req)));
                m.push(("ws", s(ws)));
                m.push(("cid", s(cid)));
                m.push(("name", s(name)));
                m.push(("timeout", Value::from(*timeout)));
            }
            Msg::Fetched { req, result } | Msg::Called { req, result } => {
                let op = if matches!(self, Msg::Fetched { .. }) {
                    "fetched"
                } else {
                    "called"
                };
                m.push(("op", s(op)));
                m.push(("req", Value::from(*req)));
                match result {
                    Ok(v) => m.push(("ok", v.clone())),
                    Err((kind, text)) => {
                        m.push(("kind", s(kind)));
                        m.push(("err", s(text)));
                    }
                }
            }
            Msg::Call {
                req,
                to,
                method,
                args,
                kwargs,
                ws,
                user,
                timeout,
            } => {
                m.push(("op", s("call")));
                m.push(("req", Value::from(*req)));
                m.push(("to", s(to)));
                m.push(("method", s(method)));
                m.push(("args", Value::Array(args.clone())));
                m.push(("kwargs", kwargs.clone().unwrap_or(Value::Nil)));
                m.push(("ws", s(ws)));
                m.push(("user", user.clone()));
                m.push(("timeout", Value::from(*timeout)));
            }
        }
        let m = m.into_iter().map(|(k, v)| (Value::from(k), v)).collect();
        Bytes::from(value::encode(&Value::Map(m)))
    }

    /// Reads a message; `None` for anything unknown or malformed (ignored).
    pub fn decode(bytes: &[u8]) -> Option<Msg> {
        let v = rmpv::decode::read_value(&mut &bytes[..]).ok()?;
        if get(&v, "v").and_then(Value::as_u64) != Some(VERSION) {
            return None;
        }
        let text = |k: &str| get_str(&v, k).map(str::to_owned);
        let num = |k: &str| get(&v, k).and_then(Value::as_u64);
        Some(match get_str(&v, "op")? {
            "hello" => Msg::Hello,
            "snapshot" => Msg::Snapshot {
                records: values(get(&v, "records")),
                workspaces: values(get(&v, "workspaces")),
            },
            "workspace" => Msg::Workspace(get(&v, "record")?.clone()),
            "workspace_deleted" => Msg::WorkspaceDeleted(text("id")?),
            "workspace_unloaded" => Msg::WorkspaceUnloaded(text("id")?),
            "added" => Msg::Added(values(get(&v, "records"))),
            "removed" => Msg::Removed(strs(get(&v, "keys"))),
            "client_gone" => Msg::ClientGone {
                ws: text("ws")?,
                cid: text("cid")?,
            },
            "revoked" => Msg::Revoked {
                hash: text("hash")?,
                exp: num("exp")?,
            },
            "blocked" => Msg::Blocked(crate::storage::Block {
                kind: crate::storage::BlockKind::parse(get_str(&v, "kind")?)?,
                key: text("key")?,
                reason: text("reason").unwrap_or_default(),
                expires_at: get(&v, "exp").and_then(Value::as_i64)?,
            }),
            "unblocked" => Msg::Unblocked {
                kind: crate::storage::BlockKind::parse(get_str(&v, "kind")?)?,
                key: text("key")?,
            },
            "kick" => Msg::Kick {
                addr: text("addr")?,
                code: u16::try_from(num("code")?).ok()?,
                reason: text("reason").unwrap_or_default(),
            },
            "fetch" => Msg::Fetch {
                req: num("req")?,
                ws: text("ws")?,
                cid: text("cid")?,
                name: text("name")?,
                timeout: get(&v, "timeout").and_then(Value::as_f64).unwrap_or(10.0),
            },
            "fetched" | "called" => {
                let req = num("req")?;
                let result = match get(&v, "ok") {
                    Some(ok) => Ok(ok.clone()),
                    None => Err((text("kind").unwrap_or_default(), text("err")?)),
                };
                if get_str(&v, "op") == Some("fetched") {
                    Msg::Fetched { req, result }
                } else {
                    Msg::Called { req, result }
                }
            }
            "call" => Msg::Call {
                req: num("req")?,
                to: text("to")?,
                method: text("method")?,
                args: match get(&v, "args") {
                    Some(Value::Array(a)) => a.clone(),
                    _ => return None,
                },
                kwargs: get(&v, "kwargs").filter(|k| !k.is_nil()).cloned(),
                ws: text("ws")?,
                user: get(&v, "user")?.clone(),
                timeout: get(&v, "timeout").and_then(Value::as_f64).unwrap_or(30.0),
            },
            _ => return None,
        })
    }
}

/// An error as it crosses nodes: a kind and the inner text.
fn error_to_wire(e: &ManagerError) -> (String, String) {
    let (kind, text) = match e {
        ManagerError::Disconnected(t) => ("disconnected", t),
        ManagerError::Timeout(t) => ("timeout", t),
        ManagerError::NotFound(t) => ("not_found", t),
        ManagerError::Permission(t) => ("permission", t),
        ManagerError::Remote(t) => ("remote", t),
        ManagerError::InvalidArgument(t) => ("invalid", t),
        other => return ("internal".into(), other.to_string()),
    };
    (kind.into(), text.clone())
}

fn error_from_wire(kind: &str, text: String) -> ManagerError {
    match kind {
        "disconnected" => ManagerError::Disconnected(text),
        "timeout" => ManagerError::Timeout(text),
        "not_found" => ManagerError::NotFound(text),
        "permission" => ManagerError::Permission(text),
        "remote" => ManagerError::Remote(text),
        "invalid" => ManagerError::InvalidArgument(text),
        _ => ManagerError::Internal(text),
    }
}

/// What the router's hooks hand to the cluster task.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A peer's message.
    Message(String, Bytes),
    /// A peer joined (or came back).
    Joined(String),
    /// A peer left.
    Left(String),
    /// A message this node sent to the peer was not taken (the peer is gone or the
    /// write failed).
    Undelivered(String, Bytes),
}

/// This node's side of the cluster channel: the queue from the hooks to the cluster task,
/// and the `get_service` fetches waiting on other nodes.
pub(crate) struct Cluster {
    tx: mpsc::Sender<Incoming>,
    rx: Mutex<Option<mpsc::Receiver<Incoming>>>,
    next_req: AtomicU64,
    /// Fetches and calls sent to other nodes: request id → (node, answer).
    pending: DashMap<u64, (String, oneshot::Sender<ManagerResult<Value>>)>,
    /// Messages dropped because the queue was full.
    pub(crate) dropped: AtomicU64,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

// === impl Cluster ===

impl Cluster {
    pub(crate) fn new() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Cluster {
            tx,
            rx: Mutex::new(Some(rx)),
            next_req: AtomicU64::new(1),
            pending: DashMap::new(),
            dropped: AtomicU64::new(0),
        }
    }

    /// From a hook: never waits; a full queue drops (a later snapshot repairs).
    pub(crate) fn push(&self, item: Incoming) {
        if self.tx.try_send(item).is_err() {
            self.dropped.fetch_add(1, Relaxed);
            tracing::warn!("cluster: control-plane queue full; message dropped");
        }
    }

    fn fail_node(&self, node: &str) {
        let reqs: Vec<u64> = self
            .pending
            .iter()
            .filter(|e| e.value().0 == node)
            .map(|e| *e.key())
            .collect();
        for req in reqs {
            if let Some((_, (_, tx))) = self.pending.remove(&req) {
                let _ = tx.send(Err(ManagerError::Disconnected(format!(
                    "the server node {node} left before it answered"
                ))));
            }
        }
    }
}

// === impl Manager (cluster) ===

impl Manager {
    /// Starts the cluster task and attaches `hooks` to the router's cluster channel, then
    /// says `hello`. A no-op on a single node.
    pub(crate) fn start_cluster(self: &Arc<Self>, hooks: Arc<dyn rhizo_interface::ControlHooks>) {
        if self.router.node_id().is_empty() {
            return;
        }
        let Some(rx) = self.cluster.rx.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        tokio::spawn(run(Arc::downgrade(self), rx));
        self.router.cluster_attach(hooks);
        self.router.cluster_publish(Msg::Hello.encode());
    }

    /// Publishes `msg` to the other nodes (nothing on a single node).
    pub(crate) fn announce(&self, msg: Msg) {
        if !self.router.node_id().is_empty() {
            self.router.cluster_publish(msg.encode());
        }
    }

    /// Publishes a token revocation to the other nodes.
    pub(crate) fn announce_revocation(&self, hash: &str, exp: u64) {
        if !self.router.node_id().is_empty() {
            let msg = Msg::Revoked {
                hash: hash.to_owned(),
                exp,
            };
            self.router.cluster_publish(msg.encode());
        }
    }

    /// Asks `node` for the service object of `r` (its provider is connected there).
    ///
    /// Errors: [`ManagerError::Disconnected`] when the request cannot be sent or the node
    /// leaves, [`ManagerError::Timeout`] after `timeout` plus a grace, else the error the
    /// other node met.
    pub(crate) async fn fetch_remote(
        &self,
        node: &str,
        r: &ServiceRecord,
        timeout: Duration,
    ) -> ManagerResult<Value> {
        let id = r.id();
        self.ask_node(
            node,
            |req| Msg::Fetch {
                req,
                ws: r.ws.clone(),
                cid: r.cid.clone(),
                name: r.name.clone(),
                timeout: timeout.as_secs_f64(),
            },
            timeout,
            || format!("Client disconnected while retrieving service: {id} (its server node {node} cannot be reached)"),
            || format!("no answer from server node {node} for service {id}"),
        )
        .await
    }

    /// Has the manager of `node` call its client `to` on `caller`'s behalf
    /// ([`Manager::call_client_as`] there) and waits for the result.
    ///
    /// Errors: [`ManagerError::Disconnected`] when the request cannot be sent or the node
    /// leaves, [`ManagerError::Timeout`] after `timeout` plus a grace, else the error the
    /// call met there.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn call_remote(
        &self,
        node: &str,
        to: &str,
        method: &str,
        args: Vec<Value>,
        kwargs: Option<Value>,
        caller: (&str, &Value),
        timeout: Duration,
    ) -> ManagerResult<Value> {
        self.ask_node(
            node,
            |req| Msg::Call {
                req,
                to: to.to_owned(),
                method: method.to_owned(),
                args,
                kwargs,
                ws: caller.0.to_owned(),
                user: caller.1.clone(),
                timeout: timeout.as_secs_f64(),
            },
            timeout,
            || format!("Peer {to} is not connected (its server node {node} cannot be reached)"),
            || format!("Method call timed out: {to}:{method} (no answer from server node {node})"),
        )
        .await
    }

    /// Sends `node` the request `msg(req)` (a [`Msg::Fetch`] or [`Msg::Call`]) and waits
    /// for its answer, at most `timeout` plus a grace.
    ///
    /// Errors: [`ManagerError::Disconnected`] with `unreachable()` when it cannot be sent
    /// (or the node leaves, [`Cluster::fail_node`]), [`ManagerError::Timeout`] with
    /// `no_answer()`, else the error the request met there.
    async fn ask_node(
        &self,
        node: &str,
        msg: impl FnOnce(u64) -> Msg,
        timeout: Duration,
        unreachable: impl FnOnce() -> String,
        no_answer: impl FnOnce() -> String,
    ) -> ManagerResult<Value> {
        let req = self.cluster.next_req.fetch_add(1, Relaxed);
        let (tx, rx) = oneshot::channel();
        self.cluster.pending.insert(req, (node.to_owned(), tx));
        if !self.router.cluster_send(node, msg(req).encode()) {
            self.cluster.pending.remove(&req);
            return Err(ManagerError::Disconnected(unreachable()));
        }
        let answer = tokio::time::timeout(timeout + Duration::from_secs(2), rx).await;
        self.cluster.pending.remove(&req);
        match answer {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ManagerError::Internal("cluster request dropped".into())),
            Err(_) => Err(ManagerError::Timeout(no_answer())),
        }
    }

    /// Sends `node` this node's service records and workspace records.
    fn send_snapshot(&self, node: &str) {
        self.registry
            .send_snapshot(node, self.workspaces.snapshot());
    }

    fn on_cluster(self: &Arc<Self>, item: Incoming) {
        match item {
            Incoming::Joined(node) => self.send_snapshot(&node),
            Incoming::Left(node) => {
                tracing::info!(%node, "cluster: node left; dropping its services");
                self.cluster.fail_node(&node);
                self.workspaces.node_left(&node);
                for addr in self.registry.node_left(&node) {
                    self.fail_calls_to(&addr);
                }
            }
            Incoming::Undelivered(node, bytes) => {
                // A fetch or call nobody received fails now, not at its timeout.
                if let Some(Msg::Fetch { req, .. } | Msg::Call { req, .. }) = Msg::decode(&bytes) {
                    if let Some((_, (_, tx))) = self.cluster.pending.remove(&req) {
                        let _ = tx.send(Err(ManagerError::Disconnected(format!(
                            "the server node {node} holding the client cannot be reached"
                        ))));
                    }
                }
            }
            Incoming::Message(node, bytes) => {
                let Some(msg) = Msg::decode(&bytes) else {
                    tracing::debug!(%node, "cluster: unreadable message ignored");
                    return;
                };
                self.on_message(node, msg);
            }
        }
    }

    fn on_message(self: &Arc<Self>, node: String, msg: Msg) {
        match msg {
            Msg::Hello => self.send_snapshot(&node),
            Msg::Snapshot {
                records,
                workspaces,
            } => {
                self.workspaces.apply_snapshot(&node, workspaces);
                self.registry.apply_snapshot(&node, records);
            }
            Msg::Workspace(record) => self.workspaces.apply_record(&node, record),
            Msg::WorkspaceDeleted(id) => self.workspaces.apply_deleted(&id),
            Msg::WorkspaceUnloaded(id) => self.workspaces.apply_unloaded(&node, &id),
            Msg::Added(records) => self.registry.apply_added(&node, records),
            Msg::Removed(keys) => self.registry.apply_removed(&node, &keys),
            Msg::ClientGone { ws, cid } => self.registry.apply_client_gone(&node, &ws, &cid),
            Msg::Revoked { hash, exp } => {
                self.tokens.note_revoked(&hash, exp);
                self.close_sessions_of(&hash, None);
            }
            Msg::Blocked(block) => {
                let user = (block.kind == crate::storage::BlockKind::User)
                    .then(|| (block.key.clone(), block.reason.clone()));
                self.tokens.blocklist().note(block);
                if let Some((id, reason)) = user {
                    self.close_sessions_of_user(&id, &reason);
                }
            }
            Msg::Unblocked { kind, key } => {
                self.tokens.blocklist().note_unblocked(kind, &key);
            }
            Msg::Kick { addr, code, reason } => {
                let reason = rhizo_interface::CloseReason::Admin {
                    code,
                    message: reason,
                };
                self.router.close(&addr, None, reason);
            }
            Msg::Fetch {
                req,
                ws,
                cid,
                name,
                timeout,
            } => {
                let m = self.clone();
                tokio::spawn(async move {
                    let timeout = Duration::from_secs_f64(timeout.clamp(0.1, 600.0));
                    let result = m
                        .ask_provider(&ws, &cid, &name, timeout)
                        .await
                        .map_err(|e| error_to_wire(&e));
                    m.router
                        .cluster_send(&node, Msg::Fetched { req, result }.encode());
                });
            }
            Msg::Call {
                req,
                to,
                method,
                args,
                kwargs,
                ws,
                user,
                timeout,
            } => {
                let m = self.clone();
                tokio::spawn(async move {
                    let timeout = Duration::from_secs_f64(timeout.clamp(0.1, 3600.0));
                    let result = m
                        .call_client_here(&to, &method, args, kwargs, (&ws, &user), timeout)
                        .await
                        .map_err(|e| error_to_wire(&e));
                    m.router
                        .cluster_send(&node, Msg::Called { req, result }.encode());
                });
            }
            Msg::Fetched { req, result } | Msg::Called { req, result } => {
                if let Some((_, (_, tx))) = self.cluster.pending.remove(&req) {
                    let _ = tx.send(result.map_err(|(k, t)| error_from_wire(&k, t)));
                }
            }
        }
    }
}

/// The cluster task: applies what the hooks queued, in order, until the manager goes.
async fn run(m: std::sync::Weak<Manager>, mut rx: mpsc::Receiver<Incoming>) {
    while let Some(item) = rx.recv().await {
        let Some(m) = m.upgrade() else {
            return;
        };
        m.on_cluster(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhizo_protocol::value::map;

    #[test]
    fn messages_round_trip() {
        let rec = map([("id", "w/c:s".into())]);
        for m in [
            Msg::Hello,
            Msg::Snapshot {
                records: vec![rec.clone()],
                workspaces: vec![rec.clone()],
            },
            Msg::Workspace(rec.clone()),
            Msg::WorkspaceDeleted("w".into()),
            Msg::WorkspaceUnloaded("w".into()),
            Msg::Added(vec![rec.clone()]),
            Msg::Removed(vec!["w/c:s@*".into()]),
            Msg::ClientGone {
                ws: "w".into(),
                cid: "c".into(),
            },
            Msg::Revoked {
                hash: "ab".into(),
                exp: 7,
            },
            Msg::Blocked(crate::storage::Block {
                kind: crate::storage::BlockKind::Ip,
                key: "10.0.0.1".into(),
                reason: "r".into(),
                expires_at: 9,
            }),
            Msg::Unblocked {
                kind: crate::storage::BlockKind::User,
                key: "u".into(),
            },
            Msg::Kick {
                addr: "w/c".into(),
                code: 4000,
                reason: "bye".into(),
            },
            Msg::Fetch {
                req: 3,
                ws: "w".into(),
                cid: "c".into(),
                name: "s".into(),
                timeout: 1.5,
            },
            Msg::Fetched {
                req: 3,
                result: Ok(rec.clone()),
            },
            Msg::Fetched {
                req: 4,
                result: Err(("timeout".into(), "late".into())),
            },
            Msg::Call {
                req: 5,
                to: "w/c".into(),
                method: "svc.start".into(),
                args: vec![rec.clone(), 1.into()],
                kwargs: Some(rec.clone()),
                ws: "w2".into(),
                user: rec.clone(),
                timeout: 30.0,
            },
            Msg::Call {
                req: 6,
                to: "w/c".into(),
                method: "svc.stop".into(),
                args: vec![],
                kwargs: None,
                ws: "w".into(),
                user: Value::Nil,
                timeout: 1.0,
            },
            Msg::Called {
                req: 5,
                result: Ok(Value::Nil),
            },
            Msg::Called {
                req: 6,
                result: Err(("remote".into(), "Exception: no".into())),
            },
        ] {
            assert_eq!(Msg::decode(&m.encode()), Some(m));
        }
        assert_eq!(Msg::decode(b"\x80"), None);
        assert_eq!(Msg::decode(b"\xff"), None);
        let other = value::encode(&map([("v", 2.into()), ("op", "hello".into())]));
        assert_eq!(Msg::decode(&other), None);
    }

    #[test]
    fn errors_keep_their_kind_across_nodes() {
        for e in [
            ManagerError::Disconnected("x".into()),
            ManagerError::Timeout("x".into()),
            ManagerError::NotFound("x".into()),
            ManagerError::Remote("Exception: x".into()),
        ] {
            let (k, t) = error_to_wire(&e);
            assert_eq!(error_from_wire(&k, t), e);
        }
    }
}
