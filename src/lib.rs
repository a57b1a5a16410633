//! The `rhizo` server as a library: its [`Settings`] and the [`Server`] builder that wires
//! the router and the control plane together. The `rhizo` binary, the integration tests
//! and the load generator's smoke test all start servers through it.

pub mod assets;
pub mod server;
pub mod settings;
pub mod startup;

pub use server::{Server, ServerBuilder, StartError};
pub use settings::{ConfigError, Settings};
