//! rhizo log-in: the `public/hypha-login` service the hypha-rpc clients' `login()` talks
//! to (workspace-api.md §9.1), the page a person logs in on, and local accounts
//! (`--enable-local-auth`: e-mail + password, argon2 hashes, kept in the control plane's
//! database). No external identity provider is used: a person either logs in with a
//! local account or pastes a token the server issued.
//!
//! - [`service`]: the control-plane service (`start`, `check`, `report`, `profile`,
//!   `logout`, and with local accounts `signup` and `login`).
//! - [`http`]: the page at `/public/apps/hypha-login/` and `/login`, and its JSON routes.
//! - [`keys`]: pending login keys, bounded and expiring.
//! - [`users`]: the `login_users` table (SQLite / PostgreSQL) or its in-memory twin.
//! - [`password`]: hashing, verification and the password policy.

pub mod http;
pub mod keys;
pub mod password;
pub mod service;
pub mod users;

pub use service::{LoginService, SERVICE_ID};
pub use users::UserStore;
