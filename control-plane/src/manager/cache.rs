//! The manager's `message_cache` (protocol.md §4.2, §5.1): clients split a message to the
//! manager that is larger than 256 KiB into chunks, upload them with `create` / `set` or
//! `append`, then `process` it. The manager reassembles the frame, stamps it with the
//! trusted fields of the `process` call and handles it like any frame.
//!
//! Entries are keyed by the uploading client's address and the key, so one client cannot
//! touch another's upload. One client may hold at most `Limits::cache_entries_per_client`
//! uploads of at most `Limits::cache_bytes_per_client` bytes together (so one message is
//! capped at that size too); everything a client uploaded is freed when it disconnects.

use super::{bind, Ctx, Manager};
use crate::error::{ManagerError, ManagerResult};
use dashmap::DashMap;
use rhizo_protocol::message::{Call, Message};
use rhizo_protocol::value;
use rmpv::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Default)]
struct Entry {
    chunks: BTreeMap<u64, Vec<u8>>,
    size: usize,
}

/// Uploads in progress.
#[derive(Debug)]
pub(super) struct MessageCache {
    /// Limits per client ([`crate::config::Limits`]).
    max_entries: usize,
    max_bytes: usize,
    entries: DashMap<(String, String), Entry>,
    /// Per uploading client: open entries and the bytes they hold. Updated with the
    /// entries; the owner's row goes when its last entry does.
    usage: DashMap<String, Usage>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Usage {
    entries: usize,
    bytes: usize,
}

/// The key of an upload: a string as it is, any other value as its text.
fn key_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.as_str().unwrap_or_default().to_owned(),
        other => other.to_string(),
    }
}

// === impl MessageCache ===

impl MessageCache {
    /// A cache that lets one client hold `max_entries` uploads of `max_bytes` together.
    pub(super) fn new(max_entries: usize, max_bytes: usize) -> Self {
        MessageCache {
            max_entries,
            max_bytes,
            entries: DashMap::new(),
            usage: DashMap::new(),
        }
    }

    pub(super) fn call(
        &self,
        mgr: &Arc<Manager>,
        ctx: &Ctx,
        name: &str,
        call: &Call,
    ) -> ManagerResult<Value> {
        let owner = ctx.from.clone();
        match name {
            "create" => {
                let a = bind(
                    name,
                    &[("key", false), ("heartbeat", true), ("overwrite", true)],
                    call,
                )?;
                let key = key_of(&a[0]);
                self.heartbeat(mgr, &key, &a[1])?;
                let overwrite = a[2].as_bool().unwrap_or(false);
                let slot = (owner.clone(), key.clone());
                if !overwrite && self.entries.contains_key(&slot) {
                    return Err(ManagerError::NotFound(format!(
                        "Message with key {key} already exists"
                    )));
                }
                if let Some((_, old)) = self.entries.remove(&slot) {
                    self.release(&owner, 1, old.size);
                }
                {
                    let mut u = self.usage.entry(owner.clone()).or_default();
                    if u.entries >= self.max_entries {
                        return Err(ManagerError::Quota(format!(
                            "too many messages being uploaded by {owner} \
                             (limit {}); process or remove some first",
                            self.max_entries
                        )));
                    }
                    u.entries += 1;
                }
                self.entries.insert(slot, Entry::default());
                Ok(Value::Nil)
            }
            "set" | "append" => {
                let (key, index, chunk, hb) = if name == "set" {
                    let a = bind(
                        name,
                        &[
                            ("key", false),
                            ("index", false),
                            ("chunk", false),
                            ("heartbeat", true),
                        ],
                        call,
                    )?;
                    let index = a[1].as_u64().ok_or_else(|| {
                        ManagerError::BadCall("index must be a non-negative integer".into())
                    })?;
                    (key_of(&a[0]), Some(index), a[2].clone(), a[3].clone())
                } else {
                    let a = bind(
                        name,
                        &[("key", false), ("chunk", false), ("heartbeat", true)],
                        call,
                    )?;
                    (key_of(&a[0]), None, a[1].clone(), a[2].clone())
                };
                self.heartbeat(mgr, &key, &hb)?;
                let Value::Binary(chunk) = chunk else {
                    return Err(ManagerError::BadCall("chunk must be binary".into()));
                };
                let mut entry = self
                    .entries
                    .get_mut(&(owner.clone(), key.clone()))
                    .ok_or_else(|| {
                        ManagerError::NotFound(format!("Message with key {key} does not exist"))
                    })?;
                let index =
                    index.unwrap_or_else(|| entry.chunks.keys().next_back().map_or(0, |k| k + 1));
                let replaced = entry.chunks.get(&index).map_or(0, Vec::len);
                {
                    // Lock order: an entry, then its owner's usage row (never the reverse).
                    let mut u = self.usage.entry(owner.clone()).or_default();
                    let after = u.bytes.saturating_sub(replaced) + chunk.len();
                    if after > self.max_bytes {
                        // A bound, but `ValueError` on the wire as the reference has it.
                        return Err(ManagerError::InvalidArgument(format!(
                            "Message {key} exceeds {} bytes \
                             (all uploads of one client together)",
                            self.max_bytes
                        )));
                    }
                    u.bytes = after;
                }
                entry.size = entry.size - replaced + chunk.len();
                entry.chunks.insert(index, chunk);
                Ok(Value::Nil)
            }
            "process" => {
                let a = bind(name, &[("key", false), ("heartbeat", true)], call)?;
                let key = key_of(&a[0]);
                self.heartbeat(mgr, &key, &a[1])?;
                let (_, entry) = self
                    .entries
                    .remove(&(owner.clone(), key.clone()))
                    .ok_or_else(|| {
                        ManagerError::NotFound(format!("Message with key {key} does not exist"))
                    })?;
                self.release(&owner, 1, entry.size);
                let mut whole = Vec::with_capacity(entry.size);
                for c in entry.chunks.values() {
                    whole.extend_from_slice(c);
                }
                let mut m = Message::decode(&whole)
                    .map_err(|e| ManagerError::InvalidArgument(format!("cached message: {e}")))?;
                // The trusted fields come from the `process` call, never from the upload.
                for target in [&mut m.header, &mut m.merged] {
                    value::set(target, "from", call.from.as_str().into());
                    value::set(target, "to", mgr.addr.as_str().into());
                    value::set(target, "ws", call.ws.as_str().into());
                    value::set(target, "user", call.user.clone());
                }
                // The reassembled message runs on its own task, with a call slot of its own.
                let slot = mgr.calls.acquire(&call.from)?;
                let me = mgr.clone();
                tokio::spawn(async move { me.handle_message(m, slot).await });
                Ok(Value::Nil)
            }
            "remove" => {
                let a = bind(name, &[("key", false)], call)?;
                if let Some((_, old)) = self.entries.remove(&(owner.clone(), key_of(&a[0]))) {
                    self.release(&owner, 1, old.size);
                }
                Ok(Value::Nil)
            }
            _ => Err(ManagerError::MethodNotFound(format!(
                "services.built-in.message_cache.{name}"
            ))),
        }
    }

    /// With `heartbeat` true the key is a session of the manager's own pending call: reset
    /// its timer, or fail if there is none (§5.1).
    fn heartbeat(&self, mgr: &Manager, key: &str, heartbeat: &Value) -> ManagerResult<()> {
        if heartbeat.as_bool() != Some(true) {
            return Ok(());
        }
        if mgr.driver.extend(key) {
            Ok(())
        } else {
            Err(ManagerError::NotFound(format!("Session not found: {key}")))
        }
    }

    /// Uncounts `entries` uploads holding `bytes` of `owner`.
    fn release(&self, owner: &str, entries: usize, bytes: usize) {
        if let Some(mut u) = self.usage.get_mut(owner) {
            u.entries = u.entries.saturating_sub(entries);
            u.bytes = u.bytes.saturating_sub(bytes);
        }
        self.usage.remove_if(owner, |_, u| u.entries == 0);
    }

    /// Drops every upload of a departed client and frees what they held.
    pub(super) fn drop_owner(&self, owner: &str) {
        self.entries.retain(|(o, _), _| o != owner);
        self.usage.remove(owner);
    }

    /// Uploads open and bytes held by `owner` (for tests and metrics).
    pub(super) fn usage_of(&self, owner: &str) -> (usize, usize) {
        self.usage
            .get(owner)
            .map_or((0, 0), |u| (u.entries, u.bytes))
    }
}
