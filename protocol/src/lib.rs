//! Sans-IO implementation of the hypha-rpc wire protocol as rhizo speaks it.
//!
//! Nothing here performs I/O, spawns tasks or reads a clock: the router and the control
//! plane feed bytes and times in and take bytes out, so every codec and state machine is
//! tested with plain calls (the way `quinn-proto` sits under `quinn`).
//!
//! * [`envelope`] — the inter-node envelope: how one rhizo node hands a frame to another over
//!   the Bus (a small header, then the frame untouched).
//! * [`frame`] — two-segment msgpack frames: header-only decode and the trusted-field rewrite
//!   (protocol.md §2).
//! * [`msgpack`] — allocation-free cursor helpers used by [`frame`].
//! * [`handshake`] — the JSON text messages of the WebSocket handshake and control channel
//!   (protocol.md §1, §6).
//! * [`value`] — hypha-rpc value encoding (`_rtype` maps) on `rmpv::Value`.
//! * [`message`] — RPC messages: decoding calls and replies, building them, binding
//!   arguments (protocol.md §3).
//! * [`peer`] — the RPC peer state machine: outgoing calls with promises, timeouts and
//!   heartbeats, incoming calls and their replies, the `built-in` service (protocol.md §3.4,
//!   §4.2).
//! * [`token`] — JWT claims and scope strings in the reference format (protocol.md §8).
//! * [`user`] — the user record stamped into headers (protocol.md §8.3).

pub mod envelope;
pub mod frame;
pub mod handshake;
pub mod message;
pub mod msgpack;
pub mod peer;
pub mod token;
pub mod user;
pub mod value;

pub use frame::{rewrite_header, write_rewritten_header, HeaderView, Stamp};

/// Why a binary frame could not be read.
///
/// `Truncated` is a plain variant so that checking a partial buffer costs nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame has no bytes.
    #[error("empty frame")]
    Empty,
    /// A msgpack object runs past the end of the frame.
    #[error("frame is truncated or not msgpack")]
    Truncated,
    /// The first msgpack object of the frame is not a map.
    #[error("frame header is not a msgpack map")]
    NotAMap,
    /// The bytes are msgpack but break a rule of the protocol.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
}
