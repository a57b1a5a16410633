//! Two-segment frames: decode the header only, rewrite the trusted fields, keep the payload.
//!
//! A hypha-rpc frame is `msgpack(header_map) ++ [msgpack(extra_map)]` (protocol.md §2.1).
//! [`HeaderView::parse`] walks the first object without allocating and records where the
//! routing fields (`to`, `type`, `session`, `method`) lie; [`rewrite_header`] builds the one
//! new buffer per forwarded frame: the header with `from`, `to`, `ws` and `user` replaced by
//! the server's values (§2.3 step 4), every other header entry copied byte for byte. The
//! payload is never decoded: callers slice it off the arrival buffer with
//! [`HeaderView::header_len`] (for `bytes::Bytes`, `frame.slice(view.header_len()..)`).

use crate::msgpack::{
    map_marker_len, read_map_len, read_str, skip, str_len, write_map_len, write_str,
    write_str_parts,
};
use crate::FrameError;

/// A byte range inside the frame, `start..end`.
type Span = (u32, u32);

/// What the router knows about a frame after decoding its header (and nothing else).
///
/// Holds offsets into the frame it was parsed from; pass the same bytes to the accessors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderView {
    header_len: u32,
    entries: u32,
    /// Entries whose key is one of the four stamped keys; they are dropped on rewrite.
    stamped: u32,
    /// Bytes of the entries that are dropped on rewrite.
    stamped_bytes: u32,
    /// Bytes of the map marker at the start of the header.
    marker_len: u8,
    to: Option<Span>,
    kind: Option<Span>,
    session: Option<Span>,
    method: Option<Span>,
}

/// The trusted values the router stamps into every header it forwards (§2.3 step 4).
#[derive(Debug, Clone, Copy)]
pub struct Stamp<'a> {
    /// `"<ws>/<cid>"` of the sending connection.
    pub from: &'a str,
    /// Workspace of the sending connection.
    pub ws: &'a str,
    /// The sender's user record, already msgpack-encoded (protocol.md §8.3).
    pub user: &'a [u8],
}

const STAMPED_KEYS: [&[u8]; 4] = [b"from", b"to", b"ws", b"user"];

fn span_str(frame: &[u8], span: Option<Span>) -> Option<&str> {
    let (a, b) = span?;
    // Validated as UTF-8 in `parse`.
    std::str::from_utf8(&frame[a as usize..b as usize]).ok()
}

// === impl HeaderView ===

impl HeaderView {
    /// Decodes the first msgpack object of `frame`, which must be a map with string keys.
    ///
    /// Errors: [`FrameError::Empty`], [`FrameError::NotAMap`], [`FrameError::Truncated`],
    /// [`FrameError::Malformed`] (non-string key, non-string `to`, frame larger than 4 GiB).
    /// String fields are checked for UTF-8 when read, not here.
    pub fn parse(frame: &[u8]) -> Result<Self, FrameError> {
        if frame.is_empty() {
            return Err(FrameError::Empty);
        }
        if frame.len() > u32::MAX as usize {
            return Err(FrameError::Malformed("frame larger than 4 GiB"));
        }
        let (entries, mut pos) = read_map_len(frame, 0)?;
        let mut view = HeaderView {
            header_len: 0,
            entries: entries as u32,
            stamped: 0,
            stamped_bytes: 0,
            marker_len: pos as u8,
            to: None,
            kind: None,
            session: None,
            method: None,
        };
        for _ in 0..entries {
            let entry_start = pos;
            let (key, after_key) = read_str(frame, pos)?;
            let (ka, kb) = key.ok_or(FrameError::Malformed("header key is not a string"))?;
            let key = &frame[ka..kb];
            let slot = match key {
                b"to" => Some(&mut view.to),
                b"type" => Some(&mut view.kind),
                b"session" => Some(&mut view.session),
                b"method" => Some(&mut view.method),
                _ => None,
            };
            let stamped = STAMPED_KEYS.contains(&key);
            pos = match slot {
                Some(slot) => {
                    let (val, after) = read_str(frame, after_key)?;
                    match val {
                        // UTF-8 is checked when a field is read, so fields the router
                        // does not use cost nothing.
                        Some((a, b)) => *slot = Some((a as u32, b as u32)),
                        None if key == b"to" => {
                            return Err(FrameError::Malformed("header `to` is not a string"))
                        }
                        // A non-string `type`/`session`/`method` is carried but not used.
                        None => {}
                    }
                    after
                }
                None => skip(frame, after_key)?,
            };
            if stamped {
                view.stamped += 1;
                view.stamped_bytes += (pos - entry_start) as u32;
            }
        }
        view.header_len = pos as u32;
        Ok(view)
    }

    /// Byte length of the header (first segment); the payload is `frame[header_len..]`.
    pub fn header_len(&self) -> usize {
        self.header_len as usize
    }

    /// Number of entries in the header map.
    pub fn entries(&self) -> usize {
        self.entries as usize
    }

    /// The raw `to` as the sender wrote it; `None` if absent or not UTF-8.
    pub fn to<'a>(&self, frame: &'a [u8]) -> Option<&'a str> {
        span_str(frame, self.to)
    }

    /// The raw `to`, telling an absent one (`Ok(None)`) from one that is not UTF-8.
    pub fn target<'a>(&self, frame: &'a [u8]) -> Result<Option<&'a str>, FrameError> {
        match self.to {
            None => Ok(None),
            Some((a, b)) => std::str::from_utf8(&frame[a as usize..b as usize])
                .map(Some)
                .map_err(|_| FrameError::Malformed("header `to` is not UTF-8")),
        }
    }

    /// The message `type` (`"method"` for RPC calls, an event name otherwise).
    pub fn kind<'a>(&self, frame: &'a [u8]) -> Option<&'a str> {
        span_str(frame, self.kind)
    }

    /// The caller's `session`, present iff the sender expects a reply.
    pub fn session<'a>(&self, frame: &'a [u8]) -> Option<&'a str> {
        span_str(frame, self.session)
    }

    /// The `method` path (§3.3).
    pub fn method<'a>(&self, frame: &'a [u8]) -> Option<&'a str> {
        span_str(frame, self.method)
    }
}

// === impl Stamp ===

impl Stamp<'_> {
    /// The three stamped entries `"from": …, "ws": …, "user": …` as msgpack map entries.
    /// A connection's stamp never changes, so the router encodes it once at connect and
    /// appends the bytes to every header it rewrites.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.from.len() + self.ws.len() + self.user.len() + 24);
        write_str(&mut out, "from");
        write_str(&mut out, self.from);
        write_str(&mut out, "ws");
        write_str(&mut out, self.ws);
        write_str(&mut out, "user");
        out.extend_from_slice(self.user);
        out
    }
}

/// Builds the rewritten header of `frame`: every entry except `from`/`to`/`ws`/`user` copied
/// verbatim, then `to` and the `from`, `ws` and `user` of `stamp`.
///
/// The result is the header segment only (`view.header_len()` bytes are replaced); append
/// the untouched payload `frame[view.header_len()..]` after it.
pub fn rewrite_header(frame: &[u8], view: &HeaderView, to: &str, stamp: &Stamp<'_>) -> Vec<u8> {
    let stamp = stamp.encode();
    let mut out = Vec::with_capacity(rewritten_len(view, to.len(), stamp.len()));
    write_rewritten_header(&mut out, frame, view, &[to], &stamp);
    out
}

/// Exact length of the rewritten header, bytes, for a `to` of `to_len` bytes and an encoded
/// stamp ([`Stamp::encode`]) of `stamp_len` bytes. Sizing the output buffer exactly lets
/// `Bytes::from(Vec)` take it over without another allocation.
pub fn rewritten_len(view: &HeaderView, to_len: usize, stamp_len: usize) -> usize {
    let kept = view.entries() - view.stamped as usize;
    let entries_bytes = view.header_len() - view.marker_len as usize - view.stamped_bytes as usize;
    map_marker_len(kept + 4) + entries_bytes + str_len(2) + str_len(to_len) + stamp_len
}

/// Appends the rewritten header of `frame` to `out` (see [`rewrite_header`]); the new `to`
/// is the concatenation of `to_parts`, so a relative target can be written as
/// `[ws, "/", cid]` without building a string first, and `stamp` is the connection's
/// encoded stamp ([`Stamp::encode`]). Allocates only if `out` lacks room.
pub fn write_rewritten_header(
    out: &mut Vec<u8>,
    frame: &[u8],
    view: &HeaderView,
    to_parts: &[&str],
    stamp: &[u8],
) {
    let kept = view.entries() - view.stamped as usize;
    write_map_len(out, kept + 4);
    let (_, first) = read_map_len(frame, 0).expect("parsed header");
    if view.stamped == 0 {
        // Fast path: copy all entries in one go.
        out.extend_from_slice(&frame[first..view.header_len()]);
    } else {
        let mut pos = first;
        for _ in 0..view.entries() {
            let (key, after_key) = read_str(frame, pos).expect("parsed header");
            let end = skip(frame, after_key).expect("parsed header");
            let (ka, kb) = key.expect("parsed header");
            if !STAMPED_KEYS.contains(&&frame[ka..kb]) {
                out.extend_from_slice(&frame[pos..end]);
            }
            pos = end;
        }
    }
    write_str(out, "to");
    write_str_parts(out, to_parts);
    out.extend_from_slice(stamp);
}

#[cfg(test)]
mod tests;
