//! A cursor over msgpack bytes that measures objects without building them.
//!
//! The router needs to know where the first msgpack object of a frame ends and where a few
//! string values inside it lie; building a value tree for that would allocate on every
//! frame. [`skip`] walks one object and returns its end offset, [`read_str`] reads a string
//! in place, and [`read_map_len`] reads a map marker. None of them allocate.
//!
//! Spec: protocol.md §2.1 (two-segment frames, opaque remainder).

use crate::FrameError;

/// Deepest nesting [`skip`] accepts; deeper input is refused instead of recursing without
/// bound on a hostile frame.
pub const MAX_DEPTH: usize = 256;

fn need(buf: &[u8], pos: usize, n: usize) -> Result<(), FrameError> {
    if buf.len() < pos.saturating_add(n) {
        Err(FrameError::Truncated)
    } else {
        Ok(())
    }
}

fn be(buf: &[u8], pos: usize, n: usize) -> Result<usize, FrameError> {
    need(buf, pos, n)?;
    let mut v: usize = 0;
    for b in &buf[pos..pos + n] {
        v = (v << 8) | *b as usize;
    }
    Ok(v)
}

/// Returns the offset just past the msgpack object starting at `pos`.
///
/// Errors: [`FrameError::Truncated`] if the object runs past the end of `buf`,
/// [`FrameError::Malformed`] for the reserved marker `0xc1` or nesting deeper than
/// [`MAX_DEPTH`].
pub fn skip(buf: &[u8], pos: usize) -> Result<usize, FrameError> {
    // Iterative walk: `pending` counts objects still to be skipped at the current level.
    let mut pos = pos;
    let mut pending: usize = 1;
    let mut stack: [usize; MAX_DEPTH] = [0; MAX_DEPTH];
    let mut depth = 0usize;
    loop {
        while pending == 0 {
            if depth == 0 {
                return Ok(pos);
            }
            depth -= 1;
            pending = stack[depth];
        }
        pending -= 1;
        need(buf, pos, 1)?;
        let m = buf[pos];
        pos += 1;
        let children: usize = match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 0,
            0x80..=0x8f => 2 * (m as usize & 0x0f),
            0x90..=0x9f => m as usize & 0x0f,
            0xa0..=0xbf => {
                pos += m as usize & 0x1f;
                0
            }
            0xc4 | 0xd9 => {
                pos += 1 + be(buf, pos, 1)?;
                0
            }
            0xc5 | 0xda => {
                pos += 2 + be(buf, pos, 2)?;
                0
            }
            0xc6 | 0xdb => {
                pos += 4 + be(buf, pos, 4)?;
                0
            }
            0xc7 => {
                pos += 2 + be(buf, pos, 1)?;
                0
            }
            0xc8 => {
                pos += 3 + be(buf, pos, 2)?;
                0
            }
            0xc9 => {
                pos += 5 + be(buf, pos, 4)?;
                0
            }
            0xca => {
                pos += 4;
                0
            }
            0xcb => {
                pos += 8;
                0
            }
            0xcc | 0xd0 => {
                pos += 1;
                0
            }
            0xcd | 0xd1 => {
                pos += 2;
                0
            }
            0xce | 0xd2 => {
                pos += 4;
                0
            }
            0xcf | 0xd3 => {
                pos += 8;
                0
            }
            0xd4 => {
                pos += 2;
                0
            }
            0xd5 => {
                pos += 3;
                0
            }
            0xd6 => {
                pos += 5;
                0
            }
            0xd7 => {
                pos += 9;
                0
            }
            0xd8 => {
                pos += 17;
                0
            }
            0xdc => {
                let n = be(buf, pos, 2)?;
                pos += 2;
                n
            }
            0xdd => {
                let n = be(buf, pos, 4)?;
                pos += 4;
                n
            }
            0xde => {
                let n = be(buf, pos, 2)?;
                pos += 2;
                2 * n
            }
            0xdf => {
                let n = be(buf, pos, 4)?;
                pos += 4;
                2usize.saturating_mul(n)
            }
            0xc1 => return Err(FrameError::Malformed("reserved msgpack marker 0xc1")),
        };
        if pos > buf.len() {
            return Err(FrameError::Truncated);
        }
        if children > 0 {
            // A container cannot hold more objects than bytes remain; refuse early.
            if children > buf.len() - pos {
                return Err(FrameError::Truncated);
            }
            if depth == MAX_DEPTH {
                return Err(FrameError::Malformed("msgpack nesting too deep"));
            }
            stack[depth] = pending;
            depth += 1;
            pending = children;
        }
    }
}

/// Reads a map marker at `pos`; returns `(entry count, offset of the first key)`.
///
/// Errors: [`FrameError::NotAMap`] if the object at `pos` is not a map.
pub fn read_map_len(buf: &[u8], pos: usize) -> Result<(usize, usize), FrameError> {
    need(buf, pos, 1)?;
    match buf[pos] {
        m @ 0x80..=0x8f => Ok((m as usize & 0x0f, pos + 1)),
        0xde => Ok((be(buf, pos + 1, 2)?, pos + 3)),
        0xdf => Ok((be(buf, pos + 1, 4)?, pos + 5)),
        _ => Err(FrameError::NotAMap),
    }
}

/// Reads a string at `pos`; returns `Some((start, end))` byte range of its UTF-8 content and
/// the offset after it, or `None` (with the offset after the object) if it is not a string.
pub fn read_str(buf: &[u8], pos: usize) -> Result<(Option<(usize, usize)>, usize), FrameError> {
    need(buf, pos, 1)?;
    let (len, start) = match buf[pos] {
        m @ 0xa0..=0xbf => (m as usize & 0x1f, pos + 1),
        0xd9 => (be(buf, pos + 1, 1)?, pos + 2),
        0xda => (be(buf, pos + 1, 2)?, pos + 3),
        0xdb => (be(buf, pos + 1, 4)?, pos + 5),
        _ => return Ok((None, skip(buf, pos)?)),
    };
    need(buf, start, len)?;
    Ok((Some((start, start + len)), start + len))
}

/// Appends a msgpack string to `out`.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    write_str_parts(out, &[s]);
}

/// Appends the concatenation of `parts` to `out` as one msgpack string.
pub fn write_str_parts(out: &mut Vec<u8>, parts: &[&str]) {
    let n: usize = parts.iter().map(|p| p.len()).sum();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n < 256 {
        out.push(0xd9);
        out.push(n as u8);
    } else if n < 65536 {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    for p in parts {
        out.extend_from_slice(p.as_bytes());
    }
}

/// Encoded size of a msgpack string of `n` bytes.
pub fn str_len(n: usize) -> usize {
    n + match n {
        0..=31 => 1,
        32..=255 => 2,
        256..=65535 => 3,
        _ => 5,
    }
}

/// Encoded size of a msgpack map marker for `n` entries.
pub fn map_marker_len(n: usize) -> usize {
    match n {
        0..=15 => 1,
        16..=65535 => 3,
        _ => 5,
    }
}

/// Appends a msgpack map marker for `n` entries to `out`.
pub fn write_map_len(out: &mut Vec<u8>, n: usize) {
    if n < 16 {
        out.push(0x80 | n as u8);
    } else if n < 65536 {
        out.push(0xde);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdf);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &rmpv::Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        out
    }

    #[test]
    fn skips_nested_values() {
        let v = rmpv::Value::Map(vec![
            (
                "a".into(),
                rmpv::Value::Array(vec![1.into(), 2.5f64.into(), "x".into()]),
            ),
            ("b".into(), rmpv::Value::Binary(vec![0; 300])),
            ("c".into(), rmpv::Value::Ext(-1, vec![0; 8])),
            ("d".into(), rmpv::Value::Nil),
        ]);
        let bytes = enc(&v);
        assert_eq!(skip(&bytes, 0).unwrap(), bytes.len());
    }

    #[test]
    fn truncated_is_reported_at_every_cut() {
        let v = rmpv::Value::Map(vec![("key".into(), "a longer string value here xx".into())]);
        let bytes = enc(&v);
        for cut in 0..bytes.len() {
            assert_eq!(
                skip(&bytes[..cut], 0),
                Err(FrameError::Truncated),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut bytes = vec![0x91u8; MAX_DEPTH + 5];
        bytes.push(0x01);
        assert!(matches!(skip(&bytes, 0), Err(FrameError::Malformed(_))));
    }

    #[test]
    fn huge_declared_lengths_do_not_panic() {
        assert_eq!(
            skip(&[0xdf, 0xff, 0xff, 0xff, 0xff], 0),
            Err(FrameError::Truncated)
        );
        assert_eq!(
            skip(&[0xdb, 0xff, 0xff, 0xff, 0xff], 0),
            Err(FrameError::Truncated)
        );
    }

    #[test]
    fn write_str_round_trips_all_length_classes() {
        for n in [0usize, 31, 32, 255, 256, 70000] {
            let s = "x".repeat(n);
            let mut out = Vec::new();
            write_str(&mut out, &s);
            assert_eq!(out.len(), str_len(n));
            let (range, end) = read_str(&out, 0).unwrap();
            let (a, b) = range.unwrap();
            assert_eq!(&out[a..b], s.as_bytes());
            assert_eq!(end, out.len());
        }
    }
}
