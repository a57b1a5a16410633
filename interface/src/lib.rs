//! The seam between rhizo's two planes (DESIGN.md "Two planes", "Layout: (interface)").
//!
//! This crate holds only traits and plain types; it depends on neither plane, and both
//! depend on it, so Cargo itself keeps the control plane out of the router's internals:
//!
//! * [`control::RouterControl`] — what the control plane may ask of the data plane: deliver
//!   a frame to an address, broadcast an event in a workspace, edit a connection's event
//!   subscriptions, close a connection with a [`CloseReason`], read the presence of a
//!   workspace and a [`control::CountersSnapshot`]. The router implements it in process
//!   today; a split `rhizo router` / `rhizo control-plane` and the Redis Bus implement the
//!   same trait later.
//! * [`hooks::ControlHooks`] — the other direction: what the router asks of the control
//!   plane (admission, token refresh, frames for the manager, disconnects).
//! * [`close::CloseReason`] — why a connection is closed (code, text, metric label).

pub mod close;
pub mod control;
pub mod hooks;

pub use close::CloseReason;
pub use control::{ClientPresence, CountersSnapshot, RouterControl};
pub use hooks::{Admission, BoxFuture, ConnRef, ControlHooks, Refusal};
