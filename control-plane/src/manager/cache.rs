//! The manager's `message_cache` (protocol.md §4.2, §5.1): clients split a message to the
//! manager that is larger than 256 KiB into chunks, upload them with `create` / `set` or
//! `append`, then `process` it. The manager reassembles the frame, stamps it with the
//! trusted fields of the `process` call and handles it like any frame.
//!
//! Entries are keyed by the uploading client's address and the key, so one client cannot
//! touch another's upload; an entry is capped at [`MAX_MESSAGE_BYTES`] and dropped when
//! its client disconnects.

use super::{Ctx, Manager};
use dashmap::DashMap;
use rhizo_protocol::message::{bind, Call, Message};
use rhizo_protocol::value;
use rmpv::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Largest message one client may assemble, bytes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, Default)]
struct Entry {
    chunks: BTreeMap<u64, Vec<u8>>,
    size: usize,
}

/// Uploads in progress.
#[derive(Debug, Default)]
pub(super) struct MessageCache {
    entries: DashMap<(String, String), Entry>,
}

fn key_of(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.as_str().unwrap_or_default().to_owned()),
        other => Ok(other.to_string()),
    }
}

// === impl MessageCache ===

impl MessageCache {
    pub(super) fn call(
        &self,
        mgr: &Arc<Manager>,
        ctx: &Ctx,
        name: &str,
        call: &Call,
    ) -> Result<Value, String> {
        let owner = ctx.from.clone();
        match name {
            "create" => {
                let a = bind(
                    name,
                    &[("key", false), ("heartbeat", true), ("overwrite", true)],
                    call,
                )?;
                let key = key_of(&a[0])?;
                self.heartbeat(mgr, &key, &a[1])?;
                let overwrite = a[2].as_bool().unwrap_or(false);
                let slot = (owner, key.clone());
                if !overwrite && self.entries.contains_key(&slot) {
                    return Err(format!("KeyError: Message with key {key} already exists"));
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
                    let index = a[1]
                        .as_u64()
                        .ok_or("TypeError: index must be a non-negative integer")?;
                    (key_of(&a[0])?, Some(index), a[2].clone(), a[3].clone())
                } else {
                    let a = bind(
                        name,
                        &[("key", false), ("chunk", false), ("heartbeat", true)],
                        call,
                    )?;
                    (key_of(&a[0])?, None, a[1].clone(), a[2].clone())
                };
                self.heartbeat(mgr, &key, &hb)?;
                let Value::Binary(chunk) = chunk else {
                    return Err("TypeError: chunk must be binary".into());
                };
                let mut entry = self
                    .entries
                    .get_mut(&(owner, key.clone()))
                    .ok_or_else(|| format!("KeyError: Message with key {key} does not exist"))?;
                if entry.size + chunk.len() > MAX_MESSAGE_BYTES {
                    return Err(format!(
                        "ValueError: Message {key} exceeds {MAX_MESSAGE_BYTES} bytes"
                    ));
                }
                entry.size += chunk.len();
                let index =
                    index.unwrap_or_else(|| entry.chunks.keys().next_back().map_or(0, |k| k + 1));
                if let Some(old) = entry.chunks.insert(index, chunk) {
                    entry.size -= old.len();
                }
                Ok(Value::Nil)
            }
            "process" => {
                let a = bind(name, &[("key", false), ("heartbeat", true)], call)?;
                let key = key_of(&a[0])?;
                self.heartbeat(mgr, &key, &a[1])?;
                let (_, entry) = self
                    .entries
                    .remove(&(owner, key.clone()))
                    .ok_or_else(|| format!("KeyError: Message with key {key} does not exist"))?;
                let mut whole = Vec::with_capacity(entry.size);
                for c in entry.chunks.values() {
                    whole.extend_from_slice(c);
                }
                let mut m = Message::decode(&whole)
                    .map_err(|e| format!("ValueError: cached message: {e}"))?;
                // The trusted fields come from the `process` call, never from the upload.
                for target in [&mut m.header, &mut m.merged] {
                    value::set(target, "from", call.from.as_str().into());
                    value::set(target, "to", mgr.addr.as_str().into());
                    value::set(target, "ws", call.ws.as_str().into());
                    value::set(target, "user", call.user.clone());
                }
                mgr.handle_message(m);
                Ok(Value::Nil)
            }
            "remove" => {
                let a = bind(name, &[("key", false)], call)?;
                self.entries.remove(&(owner, key_of(&a[0])?));
                Ok(Value::Nil)
            }
            _ => Err(format!(
                "Method not found: services.built-in.message_cache.{name}"
            )),
        }
    }

    /// With `heartbeat` true the key is a session of the manager's own pending call: reset
    /// its timer, or fail if there is none (§5.1).
    fn heartbeat(&self, mgr: &Manager, key: &str, heartbeat: &Value) -> Result<(), String> {
        if heartbeat.as_bool() != Some(true) {
            return Ok(());
        }
        match mgr.pending.get(key) {
            Some(p) => {
                p.heartbeat.notify_one();
                Ok(())
            }
            None => Err(format!("KeyError: Session not found: {key}")),
        }
    }

    /// Drops every upload of a departed client.
    pub(super) fn drop_owner(&self, owner: &str) {
        self.entries.retain(|(o, _), _| o != owner);
    }
}
