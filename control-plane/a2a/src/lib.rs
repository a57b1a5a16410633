//! rhizo's A2A endpoints (workspace-api.md §8.1, A2A line; served with `--enable-a2a`):
//! every Hypha service of `type: "a2a"` as an Agent2Agent (A2A 0.3.0) agent.
//!
//! Such a service carries `agent_card` (a dict, or a function returning one; the reference
//! also takes `extended_agent_card` in its place) and `run(message, context)`, which gets
//! the A2A message as a dict and returns the answer (its text form is sent; a generator's
//! items are streamed as artifact chunks). Routes (all JSON):
//!
//! - `GET /{ws}/a2a/{service_id}/.well-known/agent-card.json` (and the older
//!   `.../agent.json`): the agent card ([`card::normalize`]).
//! - `POST /{ws}/a2a/{service_id}` or `.../{service_id}/`: JSON-RPC 2.0 — `message/send`,
//!   `message/stream` (SSE), `tasks/get`, `tasks/cancel`, `tasks/resubscribe` (SSE),
//!   `agent/getAuthenticatedExtendedCard`; push notification methods answer `-32003`
//!   ([`jsonrpc`] lists the codes). Bodies over [`routes::MAX_BODY`] get 413.
//! - `GET /{ws}/a2a-info/{service_id}` (and `GET /{ws}/a2a/{service_id}[/]`): the
//!   service, its card and endpoints.
//!
//! The caller is the token of `Authorization: Bearer …`, the `access_token` cookie or `?token=`
//! (anonymous without one); the service must be visible to it (404 otherwise, 400 for a
//! service that is not of type `a2a`). Tasks live in memory, bounded ([`tasks`]).
//!
//! Unlike the reference (workspace-api.md §9, quirk 14), whose A2A middleware wraps the
//! rate limiter so that its requests bypass HTTP rate limiting, these routes are merged
//! into the app before the control plane's layers: whatever limits those layers apply
//! apply to A2A requests too.

use rhizo_control_plane::manager::Manager;
use std::sync::Arc;

pub mod card;
pub mod jsonrpc;
pub mod routes;
pub mod tasks;

/// The A2A routes under `/{ws}/a2a/…` and `/{ws}/a2a-info/…`, served for `manager`'s
/// services of type `a2a`, with one task store for all of them.
pub fn routes(manager: Arc<Manager>) -> axum::Router {
    routes::router(manager)
}
