//! What a browser or `curl` does with a presigned URL, without an HTTP client crate: one
//! HTTP/1.1 request over a loopback `TcpStream` ([`request`]), and an independent check
//! of a SigV4 query-string signature ([`sigv4_query_valid`]), because moto accepts
//! presigned URLs without verifying their signature.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP answer.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

// === impl Response ===

impl Response {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `url` split into (authority, path with query); only `http://` URLs.
fn split_url(url: &str) -> (&str, &str) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http:// URL: {url}"));
    match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    }
}

/// Sends `method url` with `body` (and `Content-Length`) and reads the whole answer.
pub async fn request(method: &str, url: &str, body: &[u8]) -> Response {
    let (authority, target) = split_url(url);
    let mut conn = tokio::net::TcpStream::connect(authority)
        .await
        .unwrap_or_else(|e| panic!("connect to {authority}: {e}"));
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.unwrap();
    parse(&raw)
}

/// An HTTP/1.1 answer from its bytes.
fn parse(raw: &[u8]) -> Response {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an answer with a header block");
    let head = std::str::from_utf8(&raw[..end]).expect("an ASCII header block");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let rest = &raw[end + 4..];
    response.body = if response
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        dechunk(rest)
    } else {
        match response
            .header("content-length")
            .and_then(|v| v.parse().ok())
        {
            Some(n) => rest[..n].to_vec(),
            None => rest.to_vec(),
        }
    };
    response
}

/// A chunked body's bytes.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&rest[..eol]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        rest = &rest[eol + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// `%XX` sequences decoded.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// SigV4's URI encoding: everything but unreserved characters escaped.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Whether `url` carries a valid SigV4 query-string signature for `method` by `secret`
/// (signed headers: `host` only; payload `UNSIGNED-PAYLOAD`), recomputed from the URL
/// alone as S3 does.
pub fn sigv4_query_valid(method: &str, url: &str, secret: &str) -> bool {
    let (authority, target) = split_url(url);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(n), decode(v))
        })
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} missing from {url}"))
    };
    let signature = param("X-Amz-Signature");
    let date = param("X-Amz-Date");
    let credential = param("X-Amz-Credential");
    assert_eq!(param("X-Amz-SignedHeaders"), "host", "{url}");
    assert_eq!(param("X-Amz-Algorithm"), "AWS4-HMAC-SHA256", "{url}");
    let scope = credential
        .split_once('/')
        .expect("key id/scope")
        .1
        .to_owned();
    params.retain(|(n, _)| n != "X-Amz-Signature");
    let mut encoded: Vec<(String, String)> =
        params.iter().map(|(n, v)| (encode(n), encode(v))).collect();
    encoded.sort();
    let canonical_query = encoded
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_request =
        format!("{method}\n{path}\n{canonical_query}\nhost:{authority}\n\nhost\nUNSIGNED-PAYLOAD");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mut parts = scope.split('/');
    let (day, region, service) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let key = hmac(format!("AWS4{secret}").as_bytes(), day);
    let key = hmac(&key, region);
    let key = hmac(&key, service);
    let key = hmac(&key, "aws4_request");
    hex::encode(hmac(&key, &string_to_sign)) == signature
}

/// `url` with the last hex digit of its `X-Amz-Signature` changed.
pub fn tamper(url: &str) -> String {
    let at = url.find("X-Amz-Signature=").expect("a signed URL") + "X-Amz-Signature=".len();
    let end = url[at..].find('&').map_or(url.len(), |i| at + i);
    let last = &url[end - 1..end];
    let swapped = if last == "0" { "1" } else { "0" };
    format!("{}{swapped}{}", &url[..end - 1], &url[end..])
}
