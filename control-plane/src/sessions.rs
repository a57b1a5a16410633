//! Live sessions of this instance, by client address: which connection holds the
//! address, whose it is and which token it descends from (workspace-api.md §1.5, §7 step 6).
//!
//! The table answers three questions the router cannot: how many connections a user
//! holds (`HYPHA_MAX_CONNECTIONS_PER_USER`), which connections a revoked token opened
//! (they are closed when it is revoked), and which origin a refreshed reconnection token
//! must carry so that revoking the original token also revokes its descendants.

use dashmap::DashMap;

/// One admitted connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Router connection id ([`rhizo_interface::ConnRef::id`]).
    pub conn_id: u64,
    /// User id of the connection's identity.
    pub user_id: String,
    /// SHA-256 hex of the token the session descends from (the token presented at
    /// first connect, carried through reconnection tokens); `None` for anonymous users
    /// and the root token.
    pub origin: Option<String>,
}

/// `(key, count)` pairs sorted by key.
pub type Counts = Vec<(String, usize)>;

/// Sessions by `"<ws>/<cid>"`, with a per-user count.
#[derive(Debug, Default)]
pub struct Sessions {
    by_addr: DashMap<String, Session>,
    per_user: DashMap<String, usize>,
    /// Sessions per workspace: an admitted client counts before the router has inserted
    /// its connection, so its workspace is not unloaded in between.
    per_ws: DashMap<String, usize>,
}

fn workspace_of(addr: &str) -> &str {
    addr.split_once('/').map_or(addr, |(w, _)| w)
}

// === impl Sessions ===

impl Sessions {
    /// Records `session` at `addr`, replacing (and uncounting) any older session there —
    /// a superseded connection never reports its end.
    pub fn open(&self, addr: &str, session: Session) {
        *self.per_user.entry(session.user_id.clone()).or_default() += 1;
        *self
            .per_ws
            .entry(workspace_of(addr).to_owned())
            .or_default() += 1;
        if let Some(old) = self.by_addr.insert(addr.to_owned(), session) {
            self.uncount(addr, &old.user_id);
        }
    }

    /// Forgets the session at `addr` if connection `conn_id` still holds it; returns
    /// whether it did. A late end of a superseded connection leaves the newer one alone.
    pub fn close(&self, addr: &str, conn_id: u64) -> bool {
        match self.by_addr.remove_if(addr, |_, s| s.conn_id == conn_id) {
            Some((_, old)) => {
                self.uncount(addr, &old.user_id);
                true
            }
            None => false,
        }
    }

    fn uncount(&self, addr: &str, user_id: &str) {
        for (map, key) in [
            (&self.per_user, user_id),
            (&self.per_ws, workspace_of(addr)),
        ] {
            if let Some(mut n) = map.get_mut(key) {
                *n = n.saturating_sub(1);
            }
            map.remove_if(key, |_, n| *n == 0);
        }
    }

    /// Sessions admitted into workspace `ws` and not ended.
    pub fn count_in(&self, ws: &str) -> usize {
        self.per_ws.get(ws).map_or(0, |n| *n)
    }

    /// The session at `addr`.
    pub fn get(&self, addr: &str) -> Option<Session> {
        self.by_addr.get(addr).map(|s| s.clone())
    }

    /// Connections `user_id` holds on this instance.
    pub fn count_for(&self, user_id: &str) -> usize {
        self.per_user.get(user_id).map_or(0, |n| *n)
    }

    /// Sessions of this node per user id and per workspace, each sorted by key (the
    /// admin utilities' `get_resource_usage`).
    pub fn usage(&self) -> (Counts, Counts) {
        let collect = |m: &DashMap<String, usize>| {
            let mut v: Vec<(String, usize)> = m
                .iter()
                .filter(|e| *e.value() > 0)
                .map(|e| (e.key().clone(), *e.value()))
                .collect();
            v.sort();
            v
        };
        (collect(&self.per_user), collect(&self.per_ws))
    }

    /// Addresses of the sessions of user `user_id`.
    pub fn with_user(&self, user_id: &str) -> Vec<String> {
        self.by_addr
            .iter()
            .filter(|s| s.user_id == user_id)
            .map(|s| s.key().clone())
            .collect()
    }

    /// Addresses of the sessions descending from the token with SHA-256 hex `origin`.
    pub fn with_origin(&self, origin: &str) -> Vec<String> {
        self.by_addr
            .iter()
            .filter(|s| s.origin.as_deref() == Some(origin))
            .map(|s| s.key().clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(conn_id: u64, user: &str, origin: Option<&str>) -> Session {
        Session {
            conn_id,
            user_id: user.into(),
            origin: origin.map(str::to_owned),
        }
    }

    #[test]
    fn counts_follow_opens_supersedes_and_closes() {
        let s = Sessions::default();
        s.open("ws-a/c1", session(1, "u", Some("h1")));
        s.open("ws-a/c2", session(2, "u", None));
        assert_eq!(s.count_for("u"), 2);
        // c1 reconnects: the new connection supersedes the old one.
        s.open("ws-a/c1", session(3, "u", Some("h1")));
        assert_eq!(s.count_for("u"), 2);
        // The superseded connection's late end does not remove the new session.
        assert!(!s.close("ws-a/c1", 1));
        assert_eq!(s.get("ws-a/c1").unwrap().conn_id, 3);
        assert_eq!(s.with_origin("h1"), vec!["ws-a/c1".to_owned()]);
        assert!(s.close("ws-a/c1", 3));
        assert_eq!(s.count_in("ws-a"), 1);
        assert!(s.close("ws-a/c2", 2));
        assert_eq!(s.count_for("u"), 0);
        assert_eq!(s.count_in("ws-a"), 0);
        assert!(s.with_origin("h1").is_empty());
    }

    #[test]
    fn an_address_taken_over_by_another_user_moves_the_count() {
        let s = Sessions::default();
        s.open("ws-a/c1", session(1, "u", None));
        s.open("ws-a/c1", session(2, "v", None));
        assert_eq!(s.count_for("u"), 0);
        assert_eq!(s.count_for("v"), 1);
    }
}
