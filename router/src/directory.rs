//! The directory: which node holds which client address, for routing across nodes
//! (issue 10, stage A). Every node keeps this in-memory replica of the other nodes'
//! clients, so a frame for a client elsewhere costs one `DashMap` lookup and no Redis round
//! trip. Its own clients are not in it: the client table is authoritative for them.
//!
//! **Where it comes from.** Each node writes its client addresses to Redis (a hash per node,
//! `<prefix>:clients:<node>`, expiring with the node's heartbeat) and announces every
//! change on the control channel as a [`ControlMsg`]. A node loads every live node's hash
//! when it (re)connects to Redis and applies the control messages from then on.
//!
//! **Invalidation rule.**
//! * `joined(node, addr)` sets the address's holder to `node` (a client that moved to
//!   another node is simply overwritten);
//! * `left(node, addr)` removes the entry only if `node` still holds it, so a late leave
//!   from the client's old node never erases its new location;
//! * `down(node)` (a graceful shutdown, or the node's heartbeat key found expired by the
//!   periodic check) drops every entry of `node` at once;
//! * `sync(node)` (a node that reconnected to Redis and rewrote its hash) replaces every
//!   entry of `node` with the hash's content.
//!
//! A stale entry costs at most one envelope: the receiving node re-checks that the target
//! is local and answers a call with a reject-back (`Peer <addr> is not connected`).

use dashmap::DashMap;
use std::sync::Arc;

/// Hasher of the directory maps (client ids come from clients).
type Hasher = foldhash::fast::RandomState;

/// The replica: workspace → client id → node id. Node ids are interned, so an entry
/// costs one `Arc` clone and routing hands out the same `Arc<str>`.
#[derive(Debug, Default)]
pub struct Directory {
    by_ws: DashMap<String, DashMap<String, Arc<str>, Hasher>, Hasher>,
    nodes: DashMap<String, Arc<str>, Hasher>,
}

/// A change of the directory as announced on the control channel, one per message.
///
/// Text encoding: `<verb>\n<node>` or `<verb>\n<node>\n<addr>` with the verbs `join`,
/// `leave`, `down` and `sync` (node ids and client addresses never contain a newline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlMsg<'a> {
    /// `addr` is now connected to `node`.
    Joined {
        /// Node id.
        node: &'a str,
        /// `<ws>/<cid>`.
        addr: &'a str,
    },
    /// `addr` disconnected from `node`.
    Left {
        /// Node id.
        node: &'a str,
        /// `<ws>/<cid>`.
        addr: &'a str,
    },
    /// `node` is leaving the cluster; drop all its entries.
    Down {
        /// Node id.
        node: &'a str,
    },
    /// `node` rewrote its client hash; reload it.
    Sync {
        /// Node id.
        node: &'a str,
    },
}

// === impl ControlMsg ===

impl<'a> ControlMsg<'a> {
    /// The message as sent on the control channel.
    pub fn encode(&self) -> String {
        match self {
            ControlMsg::Joined { node, addr } => format!("join\n{node}\n{addr}"),
            ControlMsg::Left { node, addr } => format!("leave\n{node}\n{addr}"),
            ControlMsg::Down { node } => format!("down\n{node}"),
            ControlMsg::Sync { node } => format!("sync\n{node}"),
        }
    }

    /// Reads a control message; `None` for anything else (ignored by the receiver).
    pub fn decode(bytes: &'a [u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (verb, rest) = text.split_once('\n')?;
        let two = || {
            let (node, addr) = rest.split_once('\n')?;
            (!node.is_empty() && addr.contains('/')).then_some((node, addr))
        };
        match verb {
            "join" => two().map(|(node, addr)| ControlMsg::Joined { node, addr }),
            "leave" => two().map(|(node, addr)| ControlMsg::Left { node, addr }),
            "down" if !rest.is_empty() && !rest.contains('\n') => {
                Some(ControlMsg::Down { node: rest })
            }
            "sync" if !rest.is_empty() && !rest.contains('\n') => {
                Some(ControlMsg::Sync { node: rest })
            }
            _ => None,
        }
    }

    /// The node the message is about.
    pub fn node(&self) -> &'a str {
        match self {
            ControlMsg::Joined { node, .. }
            | ControlMsg::Left { node, .. }
            | ControlMsg::Down { node }
            | ControlMsg::Sync { node } => node,
        }
    }
}

// === impl Directory ===

impl Directory {
    /// The node holding `ws`/`cid`, if another node announced it.
    pub fn locate(&self, ws: &str, cid: &str) -> Option<Arc<str>> {
        let members = self.by_ws.get(ws)?;
        let node = members.get(cid)?.clone();
        Some(node)
    }

    /// How many clients of workspace `ws` other nodes announced.
    pub fn count(&self, ws: &str) -> usize {
        self.by_ws.get(ws).map_or(0, |m| m.len())
    }

    /// Applies one control message (see the invalidation rule in the module docs);
    /// `Sync` is only noted here, the caller reloads the node's hash and calls
    /// [`Directory::replace_node`].
    ///
    /// Returns the addresses it removed (a client that left, or every client of a node
    /// that went down), for the router to tell the local clients that had called them.
    pub fn apply(&self, msg: ControlMsg<'_>) -> Vec<String> {
        match msg {
            ControlMsg::Joined { node, addr } => {
                self.joined(node, addr);
                Vec::new()
            }
            ControlMsg::Left { node, addr } => {
                if self.left(node, addr) {
                    vec![addr.to_owned()]
                } else {
                    Vec::new()
                }
            }
            ControlMsg::Down { node } => self.drop_node(node),
            ControlMsg::Sync { .. } => Vec::new(),
        }
    }

    /// `addr` is held by `node` now.
    pub fn joined(&self, node: &str, addr: &str) {
        let Some((ws, cid)) = addr.split_once('/') else {
            return;
        };
        let node = self.intern(node);
        self.by_ws
            .entry(ws.to_owned())
            .or_default()
            .insert(cid.to_owned(), node);
    }

    /// `addr` left `node`: removed only if `node` still holds it (a late leave from a
    /// client's old node must not erase its new location). Returns whether it was removed.
    pub fn left(&self, node: &str, addr: &str) -> bool {
        let Some((ws, cid)) = addr.split_once('/') else {
            return false;
        };
        let (removed, emptied) = match self.by_ws.get(ws) {
            Some(m) => {
                let removed = m.remove_if(cid, |_, n| &**n == node).is_some();
                (removed, m.is_empty())
            }
            None => (false, false),
        };
        if emptied {
            self.by_ws.remove_if(ws, |_, m| m.is_empty());
        }
        removed
    }

    /// Drops every entry of `node`; returns the addresses dropped.
    pub fn drop_node(&self, node: &str) -> Vec<String> {
        let mut dropped = Vec::new();
        for m in self.by_ws.iter() {
            let ws = m.key();
            m.retain(|cid, n| {
                let keep = &**n != node;
                if !keep {
                    dropped.push(format!("{ws}/{cid}"));
                }
                keep
            });
        }
        self.by_ws.retain(|_, m| !m.is_empty());
        self.nodes.remove(node);
        dropped
    }

    /// Replaces every entry of `node` with `addrs`; returns the addresses that `node` held
    /// before and holds no more.
    pub fn replace_node<'s>(
        &self,
        node: &str,
        addrs: impl IntoIterator<Item = &'s str>,
    ) -> Vec<String> {
        let before = self.drop_node(node);
        let mut now = std::collections::HashSet::new();
        for a in addrs {
            self.joined(node, a);
            now.insert(a.to_owned());
        }
        before.into_iter().filter(|a| !now.contains(a)).collect()
    }

    /// Nodes announced (by a join or a reload) and not dropped since.
    pub fn nodes(&self) -> Vec<Arc<str>> {
        self.nodes.iter().map(|e| e.value().clone()).collect()
    }

    /// Number of remote client addresses known.
    pub fn len(&self) -> usize {
        self.by_ws.iter().map(|m| m.len()).sum()
    }

    /// True if no remote client is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn intern(&self, node: &str) -> Arc<str> {
        if let Some(n) = self.nodes.get(node) {
            return n.clone();
        }
        self.nodes
            .entry(node.to_owned())
            .or_insert_with(|| Arc::from(node))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip() {
        for m in [
            ControlMsg::Joined {
                node: "a",
                addr: "ws/c",
            },
            ControlMsg::Left {
                node: "a",
                addr: "ws/c",
            },
            ControlMsg::Down { node: "b" },
            ControlMsg::Sync { node: "c" },
        ] {
            let text = m.encode();
            assert_eq!(ControlMsg::decode(text.as_bytes()), Some(m));
        }
        for bad in [
            &b""[..],
            b"join\na",
            b"join\na\nnoslash",
            b"down\n",
            b"x\ny",
            b"\xff",
        ] {
            assert_eq!(ControlMsg::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn join_leave_and_moves() {
        let d = Directory::default();
        d.joined("a", "ws/c");
        assert_eq!(d.locate("ws", "c").as_deref(), Some("a"));
        // The client moved to b; a's late leave must not erase it.
        d.joined("b", "ws/c");
        d.left("a", "ws/c");
        assert_eq!(d.locate("ws", "c").as_deref(), Some("b"));
        d.left("b", "ws/c");
        assert!(d.locate("ws", "c").is_none());
        assert!(d.is_empty());
    }

    #[test]
    fn a_node_going_down_takes_its_entries() {
        let d = Directory::default();
        d.apply(ControlMsg::Joined {
            node: "a",
            addr: "w/1",
        });
        d.joined("a", "x/2");
        d.joined("b", "w/3");
        let mut gone = d.apply(ControlMsg::Down { node: "a" });
        gone.sort();
        assert_eq!(gone, ["w/1", "x/2"], "the dropped addresses are reported");
        assert!(d.locate("w", "1").is_none());
        assert!(d.locate("x", "2").is_none());
        assert_eq!(d.locate("w", "3").as_deref(), Some("b"));
        assert_eq!(d.len(), 1);
        let gone = d.replace_node("b", ["w/4", "w/5"]);
        assert_eq!(
            gone,
            ["w/3"],
            "only what the reload no longer lists is gone"
        );
        assert!(d.locate("w", "3").is_none());
        assert!(
            d.replace_node("b", ["w/4", "w/5"]).is_empty(),
            "same set: nothing gone"
        );
        assert_eq!(d.len(), 2);
        assert_eq!(
            d.nodes().iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            ["b"]
        );
    }

    #[test]
    fn node_ids_are_interned() {
        let d = Directory::default();
        d.joined("a", "w/1");
        d.joined("a", "w/2");
        let (x, y) = (d.locate("w", "1").unwrap(), d.locate("w", "2").unwrap());
        assert!(Arc::ptr_eq(&x, &y));
    }
}
