//! URLs that rhizo signs and serves itself (spec artifacts.md §8 "Storage backend",
//! alternative: "HMAC-signed, expiring URLs served by the Hypha server itself"): what
//! `put_file`, `get_file` and the multipart parts hand out when the object store has no
//! presigned URLs of its own (the local directory), or when the S3 proxy is on.
//!
//! A URL is `{base}/s3/{key}?method=GET|PUT&expires=<unix s>&signature=<hex>` where the
//! signature is HMAC-SHA256, under a key derived from the server's JWT secret (so every
//! instance of a deployment accepts the URLs of the others), over
//! `"rhizo-object-url\n{METHOD}\n{key}\n{expires}"`. It grants exactly one method on
//! exactly one object until `expires`; changing any part breaks it (403), and so does
//! time (403 "expired"). Keys are percent-encoded per segment in the path.

use crate::objects::PresignOp;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// The route prefix of signed object URLs.
pub const OBJECT_ROUTE: &str = "/s3";

/// Why a signed URL was refused (both are HTTP 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// The signature does not match the method, key and expiry (tampered or forged).
    Invalid,
    /// The URL was valid until `expires`, which has passed.
    Expired,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureError::Invalid => f.write_str("the URL signature is not valid"),
            SignatureError::Expired => f.write_str("the URL has expired"),
        }
    }
}

/// Signs and checks object URLs with one key.
#[derive(Clone)]
pub struct UrlSigner {
    key: [u8; 32],
}

impl fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UrlSigner(..)")
    }
}

/// The method name of `op` in URLs.
pub fn method_name(op: PresignOp) -> &'static str {
    match op {
        PresignOp::Get => "GET",
        PresignOp::Put => "PUT",
    }
}

// === impl UrlSigner ===

impl UrlSigner {
    /// A signer with the 32-byte `key` (from `ServiceHost::derive_key`).
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self, op: PresignOp, key: &str, expires: i64) -> HmacSha256 {
        // HMAC accepts keys of any length: this cannot fail.
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(b"rhizo-object-url\n");
        mac.update(method_name(op).as_bytes());
        mac.update(b"\n");
        mac.update(key.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The hex signature of `op` on `key` until `expires` (unix seconds).
    pub fn signature(&self, op: PresignOp, key: &str, expires: i64) -> String {
        hex::encode(self.mac(op, key, expires).finalize().into_bytes())
    }

    /// The URL under `base` (no trailing `/`) granting `op` on `key` until `expires`.
    pub fn url(&self, base: &str, op: PresignOp, key: &str, expires: i64) -> String {
        format!(
            "{base}{OBJECT_ROUTE}/{}?method={}&expires={expires}&signature={}",
            encode_key(key),
            method_name(op),
            self.signature(op, key, expires)
        )
    }

    /// Checks a request for `op` on `key` carrying `expires` and `signature`, at `now`
    /// (unix seconds). The comparison is constant-time.
    ///
    /// # Errors
    /// [`SignatureError::Invalid`] for a signature that is not lowercase hex or does not
    /// match;
    /// [`SignatureError::Expired`] for a matching one past `expires`.
    pub fn verify(
        &self,
        op: PresignOp,
        key: &str,
        expires: i64,
        signature: &str,
        now: i64,
    ) -> Result<(), SignatureError> {
        // Only the canonical form (lowercase hex) is accepted: one URL, one spelling.
        if signature.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(SignatureError::Invalid);
        }
        let bytes = hex::decode(signature).map_err(|_| SignatureError::Invalid)?;
        self.mac(op, key, expires)
            .verify_slice(&bytes)
            .map_err(|_| SignatureError::Invalid)?;
        if now > expires {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }

    /// An opaque ETag for an object of `size` bytes stored at `key` through a signed URL:
    /// what a part upload answers and its completion checks (a wrong or foreign ETag is
    /// refused).
    pub fn etag(&self, key: &str, size: u64) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(b"rhizo-etag\n");
        mac.update(key.as_bytes());
        mac.update(b"\n");
        mac.update(size.to_string().as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}

/// `key` with each `/`-separated segment percent-encoded (RFC 3986 unreserved characters
/// kept), for the path of a URL.
pub fn encode_key(key: &str) -> String {
    key.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// One path segment percent-encoded.
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_verify_and_refuse_any_change() {
        let s = UrlSigner::new([7; 32]);
        let key = "ws/artifacts/id/v0/a b.txt";
        let sig = s.signature(PresignOp::Put, key, 1_000);
        assert!(s.verify(PresignOp::Put, key, 1_000, &sig, 999).is_ok());
        assert_eq!(
            s.verify(PresignOp::Put, key, 1_000, &sig, 1_001),
            Err(SignatureError::Expired)
        );
        // Another method, key, expiry or signature: invalid, whatever the time.
        for (op, k, e, g) in [
            (PresignOp::Get, key, 1_000, sig.clone()),
            (
                PresignOp::Put,
                "ws/artifacts/id/v0/other",
                1_000,
                sig.clone(),
            ),
            (PresignOp::Put, key, 2_000, sig.clone()),
            (PresignOp::Put, key, 1_000, format!("0{}", &sig[1..])),
            (PresignOp::Put, key, 1_000, "zz".into()),
            (PresignOp::Put, key, 1_000, sig.to_uppercase()),
        ] {
            assert_eq!(s.verify(op, k, e, &g, 0), Err(SignatureError::Invalid));
        }
        // Another server secret: invalid.
        let other = UrlSigner::new([8; 32]);
        assert_eq!(
            other.verify(PresignOp::Put, key, 1_000, &sig, 0),
            Err(SignatureError::Invalid)
        );
        let url = s.url("http://h:1", PresignOp::Get, key, 5);
        assert!(url.starts_with(
            "http://h:1/s3/ws/artifacts/id/v0/a%20b.txt?method=GET&expires=5&signature="
        ));
    }

    #[test]
    fn etags_depend_on_key_and_size() {
        let s = UrlSigner::new([1; 32]);
        assert_eq!(s.etag("k", 3), s.etag("k", 3));
        assert_ne!(s.etag("k", 3), s.etag("k", 4));
        assert_ne!(s.etag("k", 3), s.etag("j", 3));
        assert_eq!(s.etag("k", 3).len(), 32);
    }
}
