//! A streamed ZIP archive of artifact files (spec artifacts.md §4.3 `create-zip-file`):
//! stored entries (no compression), each followed by a data descriptor carrying the
//! CRC-32 computed while the bytes pass, then the central directory. The whole length is
//! known before the first byte ([`content_length`]), so the response has an exact
//! `Content-Length`; memory held is one chunk plus ~100 bytes per entry for the
//! directory, never a file.
//!
//! ZIP32 only: archives of 4 GiB or more, or of more than 65,535 entries, are refused
//! ([`ZipError`]) rather than written with ZIP64 records.

use crate::objects::{ByteStream, ObjectStore};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use std::sync::Arc;

/// One file of the archive.
#[derive(Debug, Clone)]
pub struct ZipEntry {
    /// Its name in the archive (`/`-separated, UTF-8).
    pub name: String,
    /// Its object key.
    pub key: String,
    /// Its size in bytes, as listed; the stream fails if the object's differs.
    pub size: u64,
}

/// Why an archive cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZipError {
    /// It would need ZIP64 records.
    #[error("the archive would be too large for ZIP32 (4 GiB, 65535 files); select fewer files")]
    TooLarge,
}

const LOCAL_HEADER: u64 = 30;
const DESCRIPTOR: u64 = 16;
const CENTRAL_HEADER: u64 = 46;
const END_RECORD: u64 = 22;
/// Bit 3 (sizes and CRC in the data descriptor) and bit 11 (UTF-8 names).
const FLAGS: u16 = 0x0808;
/// 1980-01-01 00:00 in DOS format.
const DOS_TIME: u16 = 0;
const DOS_DATE: u16 = (1 << 5) | 1;

/// The exact byte length of the archive of `entries`.
///
/// # Errors
/// [`ZipError::TooLarge`] past the ZIP32 limits.
pub fn content_length(entries: &[ZipEntry]) -> Result<u64, ZipError> {
    if entries.len() > 0xFFFF {
        return Err(ZipError::TooLarge);
    }
    let mut total = END_RECORD;
    for e in entries {
        if e.size >= 0xFFFF_FFFF || e.name.len() > 0xFFFF {
            return Err(ZipError::TooLarge);
        }
        total += e.size + LOCAL_HEADER + DESCRIPTOR + CENTRAL_HEADER + 2 * e.name.len() as u64;
    }
    if total >= 0xFFFF_FFFF {
        return Err(ZipError::TooLarge);
    }
    Ok(total)
}

/// The archive of `entries`, read from `objects` one after the other.
///
/// # Errors
/// [`ZipError::TooLarge`] past the ZIP32 limits. A file that is missing or whose size
/// differs from its entry ends the stream with an error (the client sees a cut-off
/// body, never a wrong archive).
pub fn archive(
    objects: Arc<dyn ObjectStore>,
    entries: Vec<ZipEntry>,
) -> Result<ByteStream, ZipError> {
    content_length(&entries)?;
    struct State {
        objects: Arc<dyn ObjectStore>,
        entries: std::vec::IntoIter<ZipEntry>,
        current: Option<(ZipEntry, ByteStream, crc32fast::Hasher, u64)>,
        central: BytesMut,
        count: u16,
        offset: u64,
        done: bool,
    }
    let state = State {
        objects,
        entries: entries.into_iter(),
        current: None,
        central: BytesMut::new(),
        count: 0,
        offset: 0,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        // Each step yields one piece: a header, a chunk, a descriptor or the directory.
        {
            if let Some((entry, body, crc, seen)) = s.current.as_mut() {
                match body.next().await {
                    Some(Ok(chunk)) => {
                        crc.update(&chunk);
                        *seen += chunk.len() as u64;
                        if *seen > entry.size {
                            s.done = true;
                            return Some((Err(changed(&entry.name)), s));
                        }
                        s.offset += chunk.len() as u64;
                        return Some((Ok(chunk), s));
                    }
                    Some(Err(e)) => {
                        s.done = true;
                        return Some((Err(e), s));
                    }
                    None => {
                        let (entry, _, crc, seen) = s.current.take().expect("checked above");
                        if seen != entry.size {
                            s.done = true;
                            return Some((Err(changed(&entry.name)), s));
                        }
                        let crc = crc.finalize();
                        let size = entry.size as u32;
                        let mut d = BytesMut::with_capacity(DESCRIPTOR as usize);
                        d.put_u32_le(0x0807_4b50);
                        d.put_u32_le(crc);
                        d.put_u32_le(size);
                        d.put_u32_le(size);
                        let local_offset =
                            s.offset - entry.size - LOCAL_HEADER - entry.name.len() as u64;
                        central_entry(&mut s.central, &entry.name, crc, size, local_offset as u32);
                        s.offset += DESCRIPTOR;
                        s.count += 1;
                        return Some((Ok(d.freeze()), s));
                    }
                }
            }
            match s.entries.next() {
                Some(entry) => {
                    let body = match s.objects.get_stream(&entry.key, None).await {
                        Ok(Some((_, body))) => body,
                        Ok(None) => {
                            s.done = true;
                            return Some((
                                Err(std::io::Error::other(format!("{} is gone", entry.name))),
                                s,
                            ));
                        }
                        Err(e) => {
                            s.done = true;
                            return Some((Err(std::io::Error::other(e.to_string())), s));
                        }
                    };
                    let header = local_header(&entry.name);
                    s.offset += header.len() as u64;
                    s.current = Some((entry, body, crc32fast::Hasher::new(), 0));
                    Some((Ok(header), s))
                }
                None => {
                    let central = std::mem::take(&mut s.central);
                    let mut tail = BytesMut::with_capacity(central.len() + END_RECORD as usize);
                    let cd_size = central.len() as u32;
                    tail.put_slice(&central);
                    tail.put_u32_le(0x0605_4b50);
                    tail.put_u16_le(0);
                    tail.put_u16_le(0);
                    tail.put_u16_le(s.count);
                    tail.put_u16_le(s.count);
                    tail.put_u32_le(cd_size);
                    tail.put_u32_le(s.offset as u32);
                    tail.put_u16_le(0);
                    s.done = true;
                    Some((Ok(tail.freeze()), s))
                }
            }
        }
    });
    Ok(Box::pin(stream))
}

fn changed(name: &str) -> std::io::Error {
    std::io::Error::other(format!("{name} changed while the archive was written"))
}

fn local_header(name: &str) -> Bytes {
    let mut h = BytesMut::with_capacity(LOCAL_HEADER as usize + name.len());
    h.put_u32_le(0x0403_4b50);
    h.put_u16_le(20);
    h.put_u16_le(FLAGS);
    h.put_u16_le(0);
    h.put_u16_le(DOS_TIME);
    h.put_u16_le(DOS_DATE);
    h.put_u32_le(0);
    h.put_u32_le(0);
    h.put_u32_le(0);
    h.put_u16_le(name.len() as u16);
    h.put_u16_le(0);
    h.put_slice(name.as_bytes());
    h.freeze()
}

fn central_entry(out: &mut BytesMut, name: &str, crc: u32, size: u32, offset: u32) {
    out.put_u32_le(0x0201_4b50);
    out.put_u16_le(20);
    out.put_u16_le(20);
    out.put_u16_le(FLAGS);
    out.put_u16_le(0);
    out.put_u16_le(DOS_TIME);
    out.put_u16_le(DOS_DATE);
    out.put_u32_le(crc);
    out.put_u32_le(size);
    out.put_u32_le(size);
    out.put_u16_le(name.len() as u16);
    out.put_u16_le(0);
    out.put_u16_le(0);
    out.put_u16_le(0);
    out.put_u16_le(0);
    out.put_u32_le(0);
    out.put_u32_le(offset);
    out.put_slice(name.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::MemoryObjectStore;

    #[tokio::test]
    async fn archives_have_the_announced_length_and_valid_records() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryObjectStore::new());
        let files = [
            ("a.txt", &b"hello"[..]),
            ("dir/b.bin", &[0u8, 1, 2, 255][..]),
            ("empty", &b""[..]),
        ];
        let mut entries = Vec::new();
        for (name, data) in files {
            let key = format!("k/{name}");
            store.put(&key, Bytes::copy_from_slice(data)).await.unwrap();
            entries.push(ZipEntry {
                name: name.into(),
                key,
                size: data.len() as u64,
            });
        }
        let expected = content_length(&entries).unwrap();
        let mut body = archive(store.clone(), entries).unwrap();
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(out.len() as u64, expected);
        // The end record: 3 entries, and the central directory where it says.
        let end = &out[out.len() - 22..];
        assert_eq!(&end[..4], &[0x50, 0x4b, 0x05, 0x06]);
        assert_eq!(u16::from_le_bytes([end[10], end[11]]), 3);
        let cd_size = u32::from_le_bytes(end[12..16].try_into().unwrap()) as usize;
        let cd_offset = u32::from_le_bytes(end[16..20].try_into().unwrap()) as usize;
        assert_eq!(cd_offset + cd_size + 22, out.len());
        assert_eq!(&out[cd_offset..cd_offset + 4], &[0x50, 0x4b, 0x01, 0x02]);
        // The first entry's data and CRC.
        assert_eq!(&out[30 + 5..30 + 10], b"hello");
        let crc = u32::from_le_bytes(out[30 + 10 + 4..30 + 10 + 8].try_into().unwrap());
        assert_eq!(crc, crc32fast::hash(b"hello"));
    }

    #[tokio::test]
    async fn a_file_that_changed_size_cuts_the_stream() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryObjectStore::new());
        store
            .put("k/a", Bytes::from_static(b"longer than said"))
            .await
            .unwrap();
        let entries = vec![ZipEntry {
            name: "a".into(),
            key: "k/a".into(),
            size: 3,
        }];
        let mut body = archive(store, entries).unwrap();
        let mut failed = false;
        while let Some(chunk) = body.next().await {
            if chunk.is_err() {
                failed = true;
            }
        }
        assert!(failed);
    }

    #[test]
    fn zip32_limits_are_enforced() {
        let big = ZipEntry {
            name: "x".into(),
            key: "k".into(),
            size: 5 << 30,
        };
        assert_eq!(content_length(&[big]), Err(ZipError::TooLarge));
    }
}
