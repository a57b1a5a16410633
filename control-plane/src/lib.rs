//! rhizo's control plane: everything with state or policy (DESIGN.md "Control plane").
//!
//! * [`manager`] — the manager peer at `*/<manager_id>`: the `built-in` and `default`
//!   services (protocol.md §4, workspace-api.md §5).
//! * [`admission`] — WebSocket handshake decisions (protocol.md §1.3) and the router hooks.
//! * [`service`] — [`service::ControlService`], the interface of the control-plane
//!   services that live in crates of their own (artifacts, server apps, …).
//! * [`registry`] — service records. [`workspaces`] — workspace records.
//! * [`sessions`] — live sessions by address (limits, revocation).
//! * [`tokens`] — JWTs in the reference format. [`events`] — workspace events (§6.3).
//! * [`error`] — [`ManagerError`], mapped once to reject texts and once to HTTP statuses.
//! * [`http`] — the control plane's axum routes.
//!
//! The control plane reaches clients only through the router, like any peer.

pub mod admission;
pub mod config;
pub mod error;
pub mod events;
pub mod http;
pub mod manager;
pub mod names;
pub mod registry;
pub mod service;
pub mod sessions;
pub mod storage;
pub mod tokens;
pub mod workspaces;

pub use config::ServerConfig;
pub use error::{ApiError, ManagerError, ManagerResult};
pub use manager::Manager;

use rhizo_interface::{ControlHooks, RouterControl};
use std::sync::Arc;

/// Builds the control plane over `router`. Returns the manager and the hooks the router
/// must be given (`Router::set_hooks`) before it serves: the binary wires the two planes
/// together, neither knows the other's type.
pub fn start(
    config: ServerConfig,
    router: Arc<dyn RouterControl>,
) -> (Arc<Manager>, Arc<dyn ControlHooks>) {
    let manager = Manager::new(config, router);
    let hooks = Arc::new(admission::Hooks(manager.clone()));
    (manager, hooks)
}
