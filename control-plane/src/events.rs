//! Workspace events sent by the server (protocol.md §6.3): single-map frames
//! `{"type":<name>,"to":"*","data":<payload>}` delivered to the connections of the
//! workspace that subscribed to `<name>`.

use crate::error::{ManagerError, ManagerResult};
use bytes::Bytes;
use rhizo_interface::RouterControl;
use rhizo_protocol::value::{self, map};
use rmpv::Value;

/// Every event name the server itself emits or clients may subscribe to without
/// restriction (workspace-api.md §5.5).
pub const SYSTEM_EVENTS: [&str; 12] = [
    "service_added",
    "service_removed",
    "service_updated",
    "client_connected",
    "client_disconnected",
    "client_updated",
    "workspace_loaded",
    "workspace_deleted",
    "workspace_changed",
    "workspace_ready",
    "workspace_unloaded",
    "workspace_status_changed",
];

/// The event frame `{"type":kind,"to":"*","data":data}`.
pub fn frame(kind: &str, data: Value) -> Bytes {
    Bytes::from(value::encode(&map([
        ("type", kind.into()),
        ("to", "*".into()),
        ("data", data),
    ])))
}

/// Sends event `kind` with `data` to the subscribers in `ws`.
pub fn emit(router: &dyn RouterControl, ws: &str, kind: &str, data: Value) {
    router.broadcast(ws, kind, frame(kind, data));
}

/// Checks the names a client in `ws` wants to subscribe to: no names that point into
/// another workspace (workspace-api.md §5.5). Errors: [`ManagerError::Permission`] (the text says "forbidden").
pub fn check_subscription(ws: &str, name: &str) -> ManagerResult<()> {
    /// A permission error, as the reference raises one, that says it is forbidden.
    fn foreign_events(name: &str) -> ManagerError {
        ManagerError::Permission(format!(
            "Permission denied: subscribing to events of another workspace is forbidden ({name})"
        ))
    }
    if SYSTEM_EVENTS.contains(&name) {
        return Ok(());
    }
    let foreign = |prefix: &str| prefix != ws;
    if let Some((first, _)) = name.split_once('/') {
        if foreign(first) {
            return Err(foreign_events(name));
        }
    } else if let Some((first, _)) = name.split_once(':') {
        if first.starts_with("ws-") && foreign(first) {
            return Err(foreign_events(name));
        }
    } else if name.starts_with("ws-") && foreign(name) {
        return Err(foreign_events(name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_names() {
        assert!(check_subscription("ws-a", "client_disconnected").is_ok());
        assert!(check_subscription("ws-a", "my-event").is_ok());
        assert!(check_subscription("ws-a", "ws-a/x").is_ok());
        assert!(check_subscription("ws-a", "ws-b/x").is_err());
        assert!(check_subscription("ws-a", "ws-b").is_err());
        assert!(check_subscription("ws-a", "ws-b:thing").is_err());
    }
}
