//! The router's internals, for the micro-benchmarks in `benches/` only (cargo feature
//! `internals`): the client table, connection records, egress queues and the per-frame
//! entry points that the connection tasks call. Without the feature these are private to
//! the router, so no other crate can reach past [`rhizo_interface::RouterControl`].

pub use crate::egress::{Egress, Outbound, PushError};
pub use crate::route::RouteCache;
pub use crate::table::{ClientTable, Conn};

use crate::{RouteError, Router};
use bytes::Bytes;
use std::sync::Arc;

/// The live client table of `router`.
pub fn table(router: &Router) -> &ClientTable {
    router.table()
}

/// Routes one binary frame received from `conn`, as its reader task does (protocol.md
/// §2.3); errors are already reported to the sender when this returns.
pub fn route_from(router: &Router, conn: &Arc<Conn>, frame: Bytes) -> Result<(), RouteError> {
    router.route_from(conn, frame)
}

/// [`route_from`] with the sender's [`RouteCache`], as the WebSocket reader does.
pub fn route_from_cached(
    router: &Router,
    conn: &Arc<Conn>,
    frame: Bytes,
    cache: &mut RouteCache,
) -> Result<(), RouteError> {
    router.route_from_cached(conn, frame, cache)
}
