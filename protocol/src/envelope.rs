//! The inter-node envelope: how one rhizo node hands a frame to another over the Bus
//! (DESIGN.md "Router", issue 10). Sans-IO: encoding writes into the caller's `Vec`,
//! decoding borrows its input and returns the frame as a sub-slice (a [`Bytes::slice`] with
//! [`decode_bytes`]), so a received payload is never copied.
//!
//! Layout (all lengths big-endian, strings UTF-8):
//!
//! ```text
//! offset  size  field
//! 0       1     version           = 1 (VERSION)
//! 1       1     kind              1 unicast, 2 broadcast, 3 reject-back, 4 event,
//!                                 7 returned
//! 2       1     origin length  O  (1..=255) — node id of the sender
//! 3       O     origin
//! 3+O     2     target length  T  (0..=65535)
//! 5+O     T     target            client address `<ws>/<cid>` (unicast, reject, event)
//!                                 or workspace id (broadcast)
//! [broadcast and event only]
//! 5+O+T   2     event length   E
//! 7+O+T   E     event type        the frame's `type`, which subscribers filter on
//! ...     rest  frame             the original two-segment msgpack frame, untouched
//! ```
//!
//! Kinds: a **unicast** goes to one client address on the receiving node; a **broadcast**
//! to every connection of a workspace subscribed to its event type; a **reject-back**
//! carries a ready `<session>.reject` frame to the original caller on the origin node and
//! is never bounced again; an **event** is a server event for one client address,
//! delivered only if that client subscribed to its type; a **returned** frame is one the
//! receiving node could not deliver because its target client just left it (it is
//! reconnecting): the origin node holds it until the client is connected again, and never
//! returns it again.
//!
//! A fifth kind, **cluster** (code 5, [`CLUSTER_KIND`]), carries a message between the
//! control planes of two nodes (issue 10 stage B) rather than a frame for a client: same
//! version, kind and origin bytes, then a target that is the receiving node's id (empty
//! when published to every node), then the message bytes, opaque to the router. It has
//! its own functions ([`encode_cluster`], [`decode_cluster`]) and is not a [`Kind`]:
//! the bus hands it to the control plane before the router's inbox, and
//! [`Envelope::decode`] refuses it as [`EnvelopeError::UnknownKind`].
//!
//! A sixth kind, **bundle** (code 6, [`BUNDLE_KIND`]), packs several envelopes for one
//! node into one Bus message, so that a busy node publishes once per batch rather than
//! once per frame (issue 10, cross-node throughput):
//!
//! ```text
//! offset  size  field
//! 0       1     version           = 1 (VERSION)
//! 1       1     kind              = 6 (BUNDLE_KIND)
//! 2       4     length L1         of the first envelope, big-endian u32
//! 6       L1    envelope 1        any envelope above (frame or cluster), never a bundle
//! ...           length L2, envelope 2, ... to the end of the input
//! ```
//!
//! [`write_bundle`] writes one, [`Bundle`] iterates over its envelopes as
//! [`Bytes::slice`]s of the received buffer.

use bytes::Bytes;

/// The envelope format version this module writes and reads.
pub const VERSION: u8 = 1;

/// Bytes of the fixed part of the header (version, kind, origin length, target length).
const FIXED: usize = 1 + 1 + 1 + 2;

/// The kind byte of a control-plane (cluster) envelope; see the module docs.
pub const CLUSTER_KIND: u8 = 5;

/// The kind byte of a bundle of envelopes; see the module docs.
pub const BUNDLE_KIND: u8 = 6;

/// Bytes a bundle of envelopes of these lengths takes.
pub fn bundle_len(lengths: impl IntoIterator<Item = usize>) -> usize {
    2 + lengths.into_iter().map(|l| 4 + l).sum::<usize>()
}

/// Writes a bundle of `parts` (each a whole envelope, none a bundle) to `out`.
///
/// Errors: the writer's; [`std::io::ErrorKind::InvalidInput`] for a part longer than
/// `u32::MAX` bytes.
pub fn write_bundle<'p, W: std::io::Write>(
    out: &mut W,
    parts: impl IntoIterator<Item = &'p [u8]>,
) -> std::io::Result<()> {
    out.write_all(&[VERSION, BUNDLE_KIND])?;
    for part in parts {
        let len = u32::try_from(part.len())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        out.write_all(&len.to_be_bytes())?;
        out.write_all(part)?;
    }
    Ok(())
}

/// Whether `input` starts like a bundle (version and kind bytes).
pub fn is_bundle(input: &[u8]) -> bool {
    input.len() >= 2 && input[0] == VERSION && input[1] == BUNDLE_KIND
}

/// The envelopes of a bundle, each a [`Bytes::slice`] of the bundle (no copy). A
/// truncated length or part ends the iteration with one [`EnvelopeError::Truncated`].
#[derive(Debug, Clone)]
pub struct Bundle {
    input: Bytes,
    at: usize,
}

impl Bundle {
    /// The envelopes of `input`.
    ///
    /// Errors: [`EnvelopeError::UnknownVersion`] / [`EnvelopeError::UnknownKind`] when
    /// `input` is not a bundle ([`is_bundle`]).
    pub fn new(input: Bytes) -> Result<Self, EnvelopeError> {
        match input.first() {
            None => return Err(EnvelopeError::Truncated),
            Some(&v) if v != VERSION => return Err(EnvelopeError::UnknownVersion(v)),
            _ => {}
        }
        match input.get(1) {
            None => Err(EnvelopeError::Truncated),
            Some(&BUNDLE_KIND) => Ok(Bundle { input, at: 2 }),
            Some(&k) => Err(EnvelopeError::UnknownKind(k)),
        }
    }
}

impl Iterator for Bundle {
    type Item = Result<Bytes, EnvelopeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.input.len() {
            return None;
        }
        let part = self.input.get(self.at..self.at + 4).and_then(|b| {
            let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            let start = self.at + 4;
            let end = start.checked_add(len)?;
            (end <= self.input.len()).then_some((start, end))
        });
        match part {
            Some((start, end)) => {
                self.at = end;
                Some(Ok(self.input.slice(start..end)))
            }
            None => {
                self.at = self.input.len();
                Some(Err(EnvelopeError::Truncated))
            }
        }
    }
}

/// A cluster envelope from node `origin` to node `target` (`""`: every node) carrying
/// `message`.
///
/// Errors: [`EnvelopeError::BadLength`] when `origin` is empty or longer than 255 bytes,
/// or `target` longer than 65535.
pub fn encode_cluster(
    origin: &str,
    target: &str,
    message: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    if origin.is_empty() || origin.len() > u8::MAX as usize {
        return Err(EnvelopeError::BadLength("origin"));
    }
    let target_len = u16::try_from(target.len()).map_err(|_| EnvelopeError::BadLength("target"))?;
    let mut out = Vec::with_capacity(FIXED + origin.len() + target.len() + message.len());
    out.push(VERSION);
    out.push(CLUSTER_KIND);
    out.push(origin.len() as u8);
    out.extend_from_slice(origin.as_bytes());
    out.extend_from_slice(&target_len.to_be_bytes());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(message);
    Ok(out)
}

/// Whether `input` starts like a cluster envelope (version and kind bytes); a cheap test
/// before [`decode_cluster`].
pub fn is_cluster(input: &[u8]) -> bool {
    input.len() >= 2 && input[0] == VERSION && input[1] == CLUSTER_KIND
}

/// Reads a cluster envelope: `(origin, target, message)`, the message a
/// [`Bytes::slice`] of `input`.
///
/// Errors: [`EnvelopeError`] for another version or kind, a truncated or non-UTF-8
/// header; never panics.
pub fn decode_cluster(input: &Bytes) -> Result<(&str, &str, Bytes), EnvelopeError> {
    let mut r = Reader { input, at: 0 };
    let version = r.byte()?;
    if version != VERSION {
        return Err(EnvelopeError::UnknownVersion(version));
    }
    let code = r.byte()?;
    if code != CLUSTER_KIND {
        return Err(EnvelopeError::UnknownKind(code));
    }
    let origin_len = r.byte()? as usize;
    if origin_len == 0 {
        return Err(EnvelopeError::BadLength("origin"));
    }
    let origin = r.str(origin_len, "origin")?;
    let target_len = r.u16()? as usize;
    let target = r.str(target_len, "target")?;
    Ok((origin, target, input.slice(r.at..)))
}

/// What an envelope asks the receiving node to do with its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind<'a> {
    /// Deliver to the client at the target address.
    Unicast,
    /// Fan out to the connections of the target workspace subscribed to `event`.
    Broadcast {
        /// The frame's event type (its header's `type`).
        event: &'a str,
    },
    /// A reject frame for the caller at the target address; never answered with
    /// another reject.
    Reject,
    /// Deliver to the client at the target address if it subscribed to `event`.
    Event {
        /// The event type.
        event: &'a str,
    },
    /// A frame for the target address that the receiving node could not deliver because
    /// the client just left it: hold it until the client is connected again.
    Returned,
}

// === impl Kind ===

impl Kind<'_> {
    fn code(&self) -> u8 {
        match self {
            Kind::Unicast => 1,
            Kind::Broadcast { .. } => 2,
            Kind::Reject => 3,
            Kind::Event { .. } => 4,
            Kind::Returned => 7,
        }
    }

    fn event(&self) -> Option<&str> {
        match self {
            Kind::Broadcast { event } | Kind::Event { event } => Some(event),
            Kind::Unicast | Kind::Reject | Kind::Returned => None,
        }
    }
}

/// An envelope's header, borrowed from the bytes it was decoded from (or to be encoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// What to do with the frame.
    pub kind: Kind<'a>,
    /// Node id of the sender (1 to 255 bytes).
    pub origin: &'a str,
    /// Client address or workspace id (at most 65535 bytes), see [`Kind`].
    pub target: &'a str,
}

/// Why an envelope could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The input ends inside the header.
    #[error("envelope truncated")]
    Truncated,
    /// The first byte is not a version this node reads.
    #[error("unknown envelope version {0}")]
    UnknownVersion(u8),
    /// The kind byte is not one of [`Kind`].
    #[error("unknown envelope kind {0}")]
    UnknownKind(u8),
    /// A string field is not UTF-8.
    #[error("envelope field {0} is not UTF-8")]
    NotUtf8(&'static str),
    /// A field is empty or too long to encode (origin 1..=255 bytes, target and event at
    /// most 65535).
    #[error("envelope field {0} has a bad length")]
    BadLength(&'static str),
}

// === impl Envelope ===

impl<'a> Envelope<'a> {
    /// Bytes the header takes, excluding the frame.
    pub fn header_len(&self) -> usize {
        header_len_parts(self.kind, self.origin, self.target.len())
    }

    /// Appends the header then `frame` to `out`.
    ///
    /// Errors: [`EnvelopeError::BadLength`] if origin, target or event do not fit; `out` is
    /// unchanged then.
    pub fn encode_into(&self, out: &mut Vec<u8>, frame: &[u8]) -> Result<(), EnvelopeError> {
        out.reserve(self.header_len() + frame.len());
        write_header(out, self.kind, self.origin, &[self.target])?;
        out.extend_from_slice(frame);
        Ok(())
    }

    /// The header then `frame` in a new buffer.
    pub fn encode(&self, frame: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let mut out = Vec::new();
        self.encode_into(&mut out, frame)?;
        Ok(out)
    }

    /// Reads the header of `input`; returns it and the frame as a sub-slice of `input`.
    ///
    /// Errors: [`EnvelopeError`] for truncated or malformed headers; never panics.
    pub fn decode(input: &'a [u8]) -> Result<(Envelope<'a>, &'a [u8]), EnvelopeError> {
        let (env, at) = decode_header(input)?;
        Ok((env, &input[at..]))
    }
}

/// Bytes the header takes for `kind`, `origin` and a target of `target_len` bytes.
pub fn header_len_parts(kind: Kind<'_>, origin: &str, target_len: usize) -> usize {
    FIXED + origin.len() + target_len + kind.event().map_or(0, |e| 2 + e.len())
}

/// Appends a header whose target is the concatenation of `target` (e.g. `[ws, "/", cid]`,
/// to spare the caller a joined string). The frame is to be appended by the caller.
///
/// Errors: [`EnvelopeError::BadLength`] if origin, target or event do not fit; nothing is
/// written then.
pub fn write_header(
    out: &mut Vec<u8>,
    kind: Kind<'_>,
    origin: &str,
    target: &[&str],
) -> Result<(), EnvelopeError> {
    let target_len: usize = target.iter().map(|t| t.len()).sum();
    if origin.is_empty() || origin.len() > u8::MAX as usize {
        return Err(EnvelopeError::BadLength("origin"));
    }
    let target_len = u16::try_from(target_len).map_err(|_| EnvelopeError::BadLength("target"))?;
    let event = match kind.event() {
        Some(e) => Some((
            u16::try_from(e.len()).map_err(|_| EnvelopeError::BadLength("event"))?,
            e,
        )),
        None => None,
    };
    out.push(VERSION);
    out.push(kind.code());
    out.push(origin.len() as u8);
    out.extend_from_slice(origin.as_bytes());
    out.extend_from_slice(&target_len.to_be_bytes());
    for t in target {
        out.extend_from_slice(t.as_bytes());
    }
    if let Some((len, e)) = event {
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e.as_bytes());
    }
    Ok(())
}

/// [`Envelope::decode`] for a `Bytes` buffer: the frame is a [`Bytes::slice`] of `input`
/// (shares its allocation, no copy).
pub fn decode_bytes(input: &Bytes) -> Result<(Envelope<'_>, Bytes), EnvelopeError> {
    let (env, at) = decode_header(input)?;
    Ok((env, input.slice(at..)))
}

/// Reads the header; returns it and the offset where the frame starts.
fn decode_header(input: &[u8]) -> Result<(Envelope<'_>, usize), EnvelopeError> {
    let mut r = Reader { input, at: 0 };
    let version = r.byte()?;
    if version != VERSION {
        return Err(EnvelopeError::UnknownVersion(version));
    }
    let code = r.byte()?;
    if !matches!(code, 1..=4 | 7) {
        return Err(EnvelopeError::UnknownKind(code));
    }
    let origin_len = r.byte()? as usize;
    if origin_len == 0 {
        return Err(EnvelopeError::BadLength("origin"));
    }
    let origin = r.str(origin_len, "origin")?;
    let target_len = r.u16()? as usize;
    let target = r.str(target_len, "target")?;
    let kind = match code {
        1 => Kind::Unicast,
        3 => Kind::Reject,
        7 => Kind::Returned,
        c => {
            let len = r.u16()? as usize;
            let event = r.str(len, "event")?;
            if c == 2 {
                Kind::Broadcast { event }
            } else {
                Kind::Event { event }
            }
        }
    };
    Ok((
        Envelope {
            kind,
            origin,
            target,
        },
        r.at,
    ))
}

struct Reader<'a> {
    input: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EnvelopeError> {
        let end = self.at.checked_add(n).ok_or(EnvelopeError::Truncated)?;
        let s = self
            .input
            .get(self.at..end)
            .ok_or(EnvelopeError::Truncated)?;
        self.at = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, EnvelopeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, EnvelopeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn str(&mut self, n: usize, field: &'static str) -> Result<&'a str, EnvelopeError> {
        std::str::from_utf8(self.take(n)?).map_err(|_| EnvelopeError::NotUtf8(field))
    }
}

#[cfg(test)]
mod tests;
