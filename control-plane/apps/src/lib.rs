//! Server apps (apps-workers.md §1–§3): the `public/server-apps` controller, which keeps
//! apps as artifacts of type `application` under `{ws}/applications`, starts their
//! instances on workers (any client's `server-app-worker` service), starts them lazily
//! when a client asks for one of their services, and stops them when idle.
//!
//! * [`controller`] — [`ServerApps`], the [`rhizo_control_plane::service::ControlService`].
//! * [`sessions`] — the instance records, disabled workers and cluster locks behind one
//!   trait ([`SessionStore`]): in memory, or in Redis for a cluster.
//! * [`workers`] — worker discovery, selection and calls.
//! * [`source`], [`manifest`] — the plugin source format and manifest rules.
//! * [`autoscaler`] — the autoscaling decision (§5), a pure function of load, config and clock.

pub mod autoscaler;
pub mod controller;
pub mod error;
pub mod manifest;
pub mod sessions;
pub mod source;
pub mod workers;

pub use controller::{AppsOptions, ServerApps};
pub use error::{AppsError, AppsResult};
pub use sessions::{Load, LockGuard, MemorySessions, RedisSessions, SessionStore, StoreError};
