//! rhizo's control plane: everything with state or policy (DESIGN.md "Control plane").
//!
//! * [`manager`] — the manager peer at `*/<manager_id>`: the `built-in` and `default`
//!   services (protocol.md §4, workspace-api.md §5).
//! * [`admission`] — WebSocket handshake decisions (protocol.md §1.3) and the router hooks.
//! * [`cluster`] — the control plane across nodes: registry replica, remote `get_service`,
//!   revocations (issue 10 stage B; what stays per node is listed there).
//! * [`service`] — [`service::ControlService`], the interface of the control-plane
//!   services that live in crates of their own (artifacts, server apps, …).
//! * The domains, each owning its state, the persistence of that state and the events
//!   it emits: [`registry`] — services, resolution, listing; [`workspaces`] — workspace
//!   records, lifecycle, settings; [`tokens`] — JWTs in the reference format and their
//!   revocation; [`blocklist`] — blocked users and addresses; [`sessions`] — live sessions by address (limits, revocation);
//!   [`event_log`] — the `log_event` rows.
//! * [`events`] — the workspace event frames (§6.3). [`storage`] — the [`storage::Store`]
//!   every domain writes through: in memory or SQL.
//! * [`error`] — [`ManagerError`], mapped once to reject texts and once to HTTP statuses.
//! * [`http`] — the control plane's axum routes.
//!
//! The control plane reaches clients only through the router, like any peer.

pub mod admission;
pub mod blocklist;
pub mod cluster;
pub mod config;
pub mod error;
pub mod event_log;
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
pub use manager::{Ctx, Manager};

use rhizo_interface::{ControlHooks, RouterControl};
use std::sync::Arc;
use storage::{Store, StoreError};

/// Builds the control plane over `router`, its state kept in `store`
/// ([`storage::MemoryStore`] or [`storage::SqlStore`]), and loads what the store holds
/// (persistent workspaces, token revocations still in force). Returns the manager and the
/// hooks the router must be given (`Router::set_hooks`) before it serves: the binary
/// wires the two planes together, neither knows the other's type.
///
/// Errors: the store could not be read.
pub async fn start(
    config: ServerConfig,
    router: Arc<dyn RouterControl>,
    store: Arc<dyn Store>,
) -> Result<(Arc<Manager>, Arc<dyn ControlHooks>), StoreError> {
    start_with_services(config, router, store, service::ServiceSet::default()).await
}

/// [`start`], exposing `services` (control-plane services from their own crates, see
/// [`service::ControlService`]) as `public/<id>` through the manager, with their HTTP
/// routes merged into [`http::routes`].
///
/// Errors: the store could not be read.
pub async fn start_with_services(
    config: ServerConfig,
    router: Arc<dyn RouterControl>,
    store: Arc<dyn Store>,
    services: service::ServiceSet,
) -> Result<(Arc<Manager>, Arc<dyn ControlHooks>), StoreError> {
    let manager = Manager::new(config, router, store, services);
    let host: Arc<dyn service::ServiceHost> =
        Arc::new(service::ManagerHost(Arc::downgrade(&manager)));
    for s in manager.services().iter() {
        s.attach(host.clone());
    }
    let workspaces = manager.workspaces.load().await?;
    let revocations = manager.tokens.load().await?;
    tracing::info!(workspaces, revocations, "state loaded from the store");
    let hooks: Arc<dyn ControlHooks> = Arc::new(admission::Hooks(manager.clone()));
    manager.start_cluster(hooks.clone());
    Ok((manager, hooks))
}
