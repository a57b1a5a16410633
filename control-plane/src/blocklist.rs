//! Blocked users and IP addresses (workspace-api.md §9.3: `block_user`, `block_ip` of
//! `ws-user-root/admin-utils`), enforced at every boundary: a blocked user's tokens are
//! refused by [`crate::tokens::TokenService`] (WebSocket admission, reconnection, every
//! HTTP route), a blocked address is refused by [`refuse_blocked_ips`] before any route
//! runs (the WebSocket upgrade included).
//!
//! The blocks live in the store (`blocks` table) and, for the checks, in a cache on each
//! node: [`Blocklist::load`] fills it at start, the node that blocks announces the change
//! to the others (`crate::cluster`, ops `blocked` / `unblocked`). An empty list costs one
//! atomic load per check.
//!
//! **Which address.** The reference checks only the leftmost `X-Forwarded-For` entry when
//! the header is present, so a blocked client escapes by sending any other value. Here a
//! request is refused when the socket's peer address *or* the leftmost `X-Forwarded-For`
//! entry is blocked: forging the header can no longer lift a block, and behind a proxy
//! the client's own address still counts.

use crate::error::{ManagerError, ManagerResult};
use crate::manager::Manager;
use crate::storage::{now_unix, Block, BlockKind, Store, StoreError};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// A duration of 0 (or less) blocks for this long, as in the reference: 30 days, seconds.
pub const DEFAULT_BLOCK_SECS: i64 = 30 * 24 * 3600;

/// The blocks in force, cached from the store.
#[derive(Debug)]
pub struct Blocklist {
    users: DashMap<String, Block>,
    ips: DashMap<String, Block>,
    store: Arc<dyn Store>,
}

// === impl Blocklist ===

impl Blocklist {
    /// An empty list writing through `store` (call [`Blocklist::load`] before serving).
    pub fn new(store: Arc<dyn Store>) -> Self {
        Blocklist {
            users: DashMap::new(),
            ips: DashMap::new(),
            store,
        }
    }

    fn table(&self, kind: BlockKind) -> &DashMap<String, Block> {
        match kind {
            BlockKind::User => &self.users,
            BlockKind::Ip => &self.ips,
        }
    }

    /// Replaces the cache with the blocks the store holds in force now; returns how many.
    ///
    /// Errors: the store could not be read (the cache is left as it was).
    pub async fn load(&self) -> Result<usize, StoreError> {
        let blocks = self.store.list_blocks(now_unix()).await?;
        self.users.clear();
        self.ips.clear();
        let n = blocks.len();
        for b in blocks {
            self.note(b);
        }
        Ok(n)
    }

    /// Blocks `key` for `duration_secs` (≤ 0: [`DEFAULT_BLOCK_SECS`]) with `reason`, here
    /// and in the store; returns the block. The caller announces it to the other nodes.
    ///
    /// Errors: [`ManagerError::InvalidArgument`] for an empty key, the root user, or a
    /// value that is not an IP address for [`BlockKind::Ip`]; [`ManagerError::Store`]
    /// when it could not be stored (nothing changes then).
    pub async fn block(
        &self,
        kind: BlockKind,
        key: &str,
        reason: &str,
        duration_secs: i64,
    ) -> ManagerResult<Block> {
        let key = key.trim();
        if key.is_empty() {
            return Err(ManagerError::InvalidArgument(format!(
                "an empty {} cannot be blocked",
                kind.as_str()
            )));
        }
        match kind {
            BlockKind::User if key == "root" => {
                return Err(ManagerError::InvalidArgument(
                    "the root user cannot be blocked".into(),
                ))
            }
            BlockKind::Ip if key.parse::<std::net::IpAddr>().is_err() => {
                return Err(ManagerError::InvalidArgument(format!(
                    "not an IP address: {key:?}"
                )))
            }
            _ => {}
        }
        let secs = if duration_secs > 0 {
            duration_secs.min(10 * 365 * 24 * 3600)
        } else {
            DEFAULT_BLOCK_SECS
        };
        let block = Block {
            kind,
            key: normalize(kind, key),
            reason: reason.to_owned(),
            expires_at: now_unix() + secs,
        };
        self.store
            .put_block(&block)
            .await
            .map_err(|e| ManagerError::Store(format!("could not store the block: {e}")))?;
        self.note(block.clone());
        Ok(block)
    }

    /// Lifts the block of `key`, here and in the store; `true` if there was one. The
    /// caller announces it to the other nodes.
    ///
    /// Errors: [`ManagerError::Store`] when the store could not be written.
    pub async fn unblock(&self, kind: BlockKind, key: &str) -> ManagerResult<bool> {
        let key = normalize(kind, key.trim());
        let stored = self
            .store
            .delete_block(kind, &key)
            .await
            .map_err(|e| ManagerError::Store(format!("could not remove the block: {e}")))?;
        let cached = self.note_unblocked(kind, &key);
        Ok(stored || cached)
    }

    /// Adds `block` to the cache only (another node stored it).
    pub fn note(&self, block: Block) {
        if block.expires_at > now_unix() {
            self.table(block.kind).insert(block.key.clone(), block);
        }
    }

    /// Removes the block of `key` from the cache only; `true` if it was there.
    pub fn note_unblocked(&self, kind: BlockKind, key: &str) -> bool {
        self.table(kind).remove(key).is_some()
    }

    fn reason(&self, kind: BlockKind, key: &str) -> Option<String> {
        let table = self.table(kind);
        if table.is_empty() {
            return None;
        }
        let live = table
            .get(key)
            .map(|b| (b.expires_at > now_unix(), b.reason.clone()))?;
        match live {
            (true, reason) => {
                let what = match kind {
                    BlockKind::User => "User",
                    BlockKind::Ip => "IP",
                };
                let reason = if reason.is_empty() {
                    "no reason given".to_owned()
                } else {
                    reason
                };
                // The reference's wording, which clients show as is.
                Some(format!("{what} is blocked: {reason}"))
            }
            (false, _) => {
                table.remove_if(key, |_, b| b.expires_at <= now_unix());
                None
            }
        }
    }

    /// `Some("User is blocked: <reason>")` while `user_id` is blocked.
    pub fn user(&self, user_id: &str) -> Option<String> {
        self.reason(BlockKind::User, user_id)
    }

    /// `Some("IP is blocked: <reason>")` while `ip` is blocked.
    pub fn ip(&self, ip: &str) -> Option<String> {
        self.reason(BlockKind::Ip, &normalize(BlockKind::Ip, ip))
    }

    /// The blocks in force, users then IPs, each ordered by key.
    pub fn list(&self) -> Vec<Block> {
        let now = now_unix();
        let mut out: Vec<Block> = self
            .users
            .iter()
            .chain(self.ips.iter())
            .filter(|b| b.expires_at > now)
            .map(|b| b.value().clone())
            .collect();
        out.sort_by(|a, b| (a.kind, &a.key).cmp(&(b.kind, &b.key)));
        out
    }
}

/// IP addresses compare in their canonical text form (`::ffff:10.0.0.1` is `10.0.0.1`).
fn normalize(kind: BlockKind, key: &str) -> String {
    match (kind, key.parse::<std::net::IpAddr>()) {
        (BlockKind::Ip, Ok(ip)) => ip.to_canonical().to_string(),
        _ => key.to_owned(),
    }
}

/// Middleware over every HTTP route (the WebSocket upgrade and `/rpc` included): a
/// request whose peer address or leftmost `X-Forwarded-For` entry is blocked gets 403
/// `{"success": false, "detail": "IP is blocked: …"}` and reaches no route.
pub async fn refuse_blocked_ips(
    State(m): State<Arc<Manager>>,
    req: Request,
    next: Next,
) -> Response {
    let list = m.tokens.blocklist();
    if list.ips.is_empty() {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_owned());
    for ip in peer.iter().chain(forwarded.iter()) {
        if let Some(reason) = list.ip(ip) {
            let body = serde_json::json!({"success": false, "detail": reason});
            return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
        }
    }
    next.run(req).await
}

// === impl Manager (blocks and kicks) ===

impl Manager {
    /// Blocks `key` ([`Blocklist::block`]), tells the other nodes, and for a user closes
    /// its connections on every node (1008, `User is blocked: <reason>`). Returns the
    /// block and how many connections this node closed.
    ///
    /// Errors: as [`Blocklist::block`].
    pub async fn block(
        &self,
        kind: BlockKind,
        key: &str,
        reason: &str,
        duration_secs: i64,
    ) -> ManagerResult<(Block, usize)> {
        let block = self
            .tokens
            .blocklist()
            .block(kind, key, reason, duration_secs)
            .await?;
        self.announce(crate::cluster::Msg::Blocked(block.clone()));
        let closed = match kind {
            BlockKind::User => self.close_sessions_of_user(&block.key, &block.reason),
            BlockKind::Ip => 0,
        };
        Ok((block, closed))
    }

    /// Lifts the block of `key` here, in the store and on the other nodes; `true` if
    /// there was one. Errors: as [`Blocklist::unblock`].
    pub async fn unblock(&self, kind: BlockKind, key: &str) -> ManagerResult<bool> {
        let lifted = self.tokens.blocklist().unblock(kind, key).await?;
        self.announce(crate::cluster::Msg::Unblocked {
            kind,
            key: normalize(kind, key.trim()),
        });
        Ok(lifted)
    }

    /// Closes this node's connections of user `user_id` (1008); returns how many.
    pub(crate) fn close_sessions_of_user(&self, user_id: &str, reason: &str) -> usize {
        let reason = if reason.is_empty() {
            "no reason given"
        } else {
            reason
        };
        let mut n = 0;
        for addr in self.sessions.with_user(user_id) {
            let why = rhizo_interface::CloseReason::Policy(format!("User is blocked: {reason}"));
            n += usize::from(self.router.close(&addr, None, why));
        }
        n
    }

    /// Closes the connection of client `ws/cid` with `code` and `reason`, on this node or
    /// (told through the cluster channel) on the node it is connected to.
    ///
    /// Errors: [`ManagerError::InvalidArgument`] for a code a server may not send
    /// ([`rhizo_interface::CloseReason::sendable`]); [`ManagerError::NotFound`]
    /// (`Client not connected: ws/cid`) when no node has it.
    pub fn kick_client(&self, ws: &str, cid: &str, code: u16, reason: &str) -> ManagerResult<()> {
        if !rhizo_interface::CloseReason::sendable(code) {
            return Err(ManagerError::InvalidArgument(format!(
                "close code {code} cannot be sent (use 1000-1003, 1007-1014 or 3000-4999)"
            )));
        }
        let addr = format!("{ws}/{cid}");
        let why = rhizo_interface::CloseReason::Admin {
            code,
            message: reason.to_owned(),
        };
        if self.router.close(&addr, None, why) {
            return Ok(());
        }
        // Another node has it when its records say so, or (a client that registered
        // nothing yet) when the directory places some client of `ws` elsewhere.
        let elsewhere = self
            .registry
            .clients_all(ws)
            .iter()
            .any(|r| r.cid == cid && self.registry.remote_node(r).is_some())
            || self.router.cluster_client_count(ws) > self.router.client_count(ws);
        if !elsewhere {
            return Err(ManagerError::NotFound(format!(
                "Client not connected: {addr}"
            )));
        }
        self.announce(crate::cluster::Msg::Kick {
            addr,
            code,
            reason: reason.to_owned(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStore;

    #[tokio::test]
    async fn blocks_apply_until_lifted_and_survive_a_reload() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let list = Blocklist::new(store.clone());
        assert_eq!(list.user("mallory"), None);
        list.block(BlockKind::User, "mallory", "spam", 60)
            .await
            .unwrap();
        list.block(BlockKind::Ip, "::ffff:10.0.0.9", "", 0)
            .await
            .unwrap();
        assert_eq!(
            list.user("mallory").as_deref(),
            Some("User is blocked: spam")
        );
        assert_eq!(
            list.ip("10.0.0.9").as_deref(),
            Some("IP is blocked: no reason given")
        );
        assert_eq!(list.user("alice"), None);
        // A fresh node sees the same blocks from the store.
        let other = Blocklist::new(store.clone());
        assert_eq!(other.load().await.unwrap(), 2);
        assert!(other.user("mallory").is_some());
        let ip = other
            .list()
            .into_iter()
            .find(|b| b.kind == BlockKind::Ip)
            .unwrap();
        assert!(ip.expires_at - now_unix() > DEFAULT_BLOCK_SECS - 5);
        assert!(list.unblock(BlockKind::User, "mallory").await.unwrap());
        assert!(!list.unblock(BlockKind::User, "mallory").await.unwrap());
        assert_eq!(list.user("mallory"), None);
        assert_eq!(store.list_blocks(now_unix()).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn bad_keys_are_refused() {
        let list = Blocklist::new(Arc::new(MemoryStore::new()));
        for (kind, key) in [
            (BlockKind::User, "root"),
            (BlockKind::User, " "),
            (BlockKind::Ip, "not-an-ip"),
        ] {
            let e = list.block(kind, key, "", 60).await.unwrap_err();
            assert!(matches!(e, ManagerError::InvalidArgument(_)), "{key}: {e}");
        }
        assert!(list.list().is_empty());
    }

    #[test]
    fn an_expired_block_no_longer_applies() {
        let list = Blocklist::new(Arc::new(MemoryStore::new()));
        list.table(BlockKind::User).insert(
            "gone".into(),
            Block {
                kind: BlockKind::User,
                key: "gone".into(),
                reason: String::new(),
                expires_at: now_unix() - 1,
            },
        );
        assert_eq!(list.user("gone"), None);
        assert!(list.users.is_empty(), "the expired entry is dropped");
    }
}
