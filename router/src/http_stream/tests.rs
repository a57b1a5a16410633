use super::*;
use rmpv::Value;

/// Splits a body into its records' payloads; panics on a truncated record.
fn records(mut body: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let len = u32::from_be_bytes(body[..4].try_into().unwrap()) as usize;
        out.push(body[4..4 + len].to_vec());
        body = &body[4 + len..];
    }
    out
}

fn decode_one(payload: &[u8]) -> Value {
    let mut rest = payload;
    let v = rmpv::decode::read_value(&mut rest).unwrap();
    assert!(rest.is_empty(), "a control record holds exactly one object");
    v
}

#[test]
fn records_are_length_prefixed_big_endian() {
    let mut out = Vec::new();
    push_record(&mut out, b"abc");
    push_record(&mut out, &[]);
    push_record(&mut out, &[7; 300]);
    assert_eq!(&out[..7], &[0, 0, 0, 3, b'a', b'b', b'c']);
    assert_eq!(&out[7..11], &[0, 0, 0, 0]);
    assert_eq!(&out[11..15], &[0, 0, 1, 44]);
    assert_eq!(records(&out), vec![b"abc".to_vec(), vec![], vec![7; 300]]);
}

#[test]
fn control_texts_become_single_msgpack_maps() {
    let pong = decode_one(&text_to_msgpack(&handshake::pong()).unwrap());
    assert_eq!(value::get_str(&pong, "type"), Some("pong"));
    let tok = decode_one(&text_to_msgpack(&handshake::reconnection_token("t.k.n")).unwrap());
    assert_eq!(value::get_str(&tok, "type"), Some("reconnection_token"));
    assert_eq!(value::get_str(&tok, "reconnection_token"), Some("t.k.n"));
    let err = decode_one(&text_to_msgpack(&handshake::error("boom")).unwrap());
    assert_eq!(value::get_str(&err, "message"), Some("boom"));
    assert!(text_to_msgpack("not json").is_none());
    assert!(text_to_msgpack("[1,2]").is_none());
}

#[test]
fn connection_info_keeps_numbers_and_nesting() {
    let info = json!({
        "type": "connection_info",
        "workspace": "ws-x",
        "manager_id": "manager-1",
        "reconnection_token_life_time": 172800,
        "user": {"id": "u", "roles": ["a"]},
    });
    let v = decode_one(&value::encode(&value::from_json(&info)));
    assert_eq!(value::get_str(&v, "type"), Some("connection_info"));
    assert_eq!(
        value::get(&v, "reconnection_token_life_time").and_then(Value::as_u64),
        Some(172800)
    );
    let user = value::get(&v, "user").unwrap();
    assert_eq!(value::get_str(user, "id"), Some("u"));
}

#[test]
fn control_bodies_are_told_apart_from_frames() {
    let enc = |v: &Value| value::encode(v);
    let refresh = enc(&value::map([("type", "refresh_token".into())]));
    assert_eq!(control_body(&refresh), Some(Control::RefreshToken));
    let ping = enc(&value::map([("type", "ping".into())]));
    assert_eq!(control_body(&ping), Some(Control::Ping));
    // A routed message that happens to be called "ping" has a target.
    let routed = enc(&value::map([("type", "ping".into()), ("to", "c".into())]));
    assert_eq!(control_body(&routed), None);
    // A two-segment frame is never a control message.
    let mut two = refresh.clone();
    two.extend_from_slice(&enc(&value::map([("args", Value::Array(vec![]))])));
    assert_eq!(control_body(&two), None);
    assert_eq!(control_body(b"\xc1garbage"), None);
    assert_eq!(control_body(&enc(&Value::from("refresh_token"))), None);
}

#[test]
fn request_tokens_come_from_the_header_or_the_cookie() {
    let mut h = HeaderMap::new();
    assert_eq!(request_token(&h), None);
    h.insert(
        header::COOKIE,
        HeaderValue::from_static("a=b; access_token=ck"),
    );
    assert_eq!(request_token(&h).as_deref(), Some("ck"));
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer abc"),
    );
    assert_eq!(request_token(&h).as_deref(), Some("abc"));
}

#[tokio::test]
async fn an_oversized_body_is_told_by_error_type() {
    // Without a `DefaultBodyLimit` layer axum applies its default limit of 2 MiB: the same
    // `Limited` wrapping, and the same error, as the `/rpc` route's own limit.
    let body = Body::from(vec![0u8; (2 << 20) + 1]);
    let err = Bytes::from_request(Request::new(body), &())
        .await
        .unwrap_err();
    assert_eq!(body_error_status(&err), StatusCode::PAYLOAD_TOO_LARGE);
    // Any other failure to read the body — even one whose text speaks of a limit — is a 400.
    let gone = std::io::Error::other("length limit exceeded");
    let body = Body::from_stream(futures_util::stream::iter([Err::<Bytes, _>(gone)]));
    let err = Bytes::from_request(Request::new(body), &())
        .await
        .unwrap_err();
    assert_eq!(body_error_status(&err), StatusCode::BAD_REQUEST);
}

#[test]
fn stream_cookie_names_are_per_address_tokens() {
    let a = stream_cookie_name("ws-user-x/c1");
    assert_eq!(a, stream_cookie_name("ws-user-x/c1"), "stable");
    assert_ne!(a, stream_cookie_name("ws-user-x/c2"));
    assert!(a.starts_with("rhizo_stream_") && a.len() == "rhizo_stream_".len() + 16);
    assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    let v = secret_cookie("w/c; x=\"y\"", "ab").unwrap();
    assert!(v.to_str().unwrap().starts_with("rhizo_stream_"));
    assert!(v.to_str().unwrap().contains("HttpOnly; SameSite=Strict"));
}

#[test]
fn request_cookies_are_found_by_name() {
    let mut h = HeaderMap::new();
    assert_eq!(request_cookie(&h, "s"), None);
    h.append(header::COOKIE, HeaderValue::from_static("a=1; s=two"));
    h.append(header::COOKIE, HeaderValue::from_static("t=\"3\""));
    assert_eq!(request_cookie(&h, "s"), Some("two"));
    assert_eq!(request_cookie(&h, "t"), Some("3"));
    assert_eq!(request_cookie(&h, "a"), Some("1"));
    assert_eq!(request_cookie(&h, "x"), None);
}

#[test]
fn streams_get_distinct_secrets() {
    let (a, b) = (StreamCredentials::new(None), StreamCredentials::new(None));
    assert_eq!(a.secret().len(), 2 * SECRET_BYTES);
    assert!(a.secret().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(a.secret(), b.secret());
    let shown = format!("{a:?}");
    assert!(
        !shown.contains(a.secret()),
        "Debug hides the secret: {shown}"
    );
}

#[test]
fn anonymous_stream_binds_to_its_secret() {
    let creds = StreamCredentials::new(None);
    let secret = creds.secret().to_owned();
    // Before its client showed the secret, a cookie-less POST is accepted (clients that
    // keep no cookies), a wrong secret never is.
    assert_eq!(creds.check(None, None), Ok(()));
    assert_eq!(
        creds.check(None, Some("guess")),
        Err(PostRefusal::WrongSecret)
    );
    assert_eq!(
        creds.check(Some("tok"), Some(&secret)),
        Err(PostRefusal::Token)
    );
    assert_eq!(creds.check(None, Some(&secret)), Ok(()));
    // Bound: only POSTs with the secret.
    assert_eq!(creds.check(None, None), Err(PostRefusal::MissingSecret));
    assert_eq!(
        creds.check(None, Some(&secret[1..])),
        Err(PostRefusal::WrongSecret)
    );
    assert_eq!(creds.check(None, Some(&secret)), Ok(()));
}

#[test]
fn token_stream_needs_its_token_and_never_a_wrong_secret() {
    let creds = StreamCredentials::new(Some("tok".into()));
    let secret = creds.secret().to_owned();
    assert_eq!(creds.check(None, None), Err(PostRefusal::Token));
    assert_eq!(
        creds.check(Some("other"), Some(&secret)),
        Err(PostRefusal::Token)
    );
    assert_eq!(creds.check(Some("tok"), Some(&secret)), Ok(()));
    assert_eq!(creds.check(Some("tok"), None), Ok(()));
    assert_eq!(
        creds.check(Some("tok"), Some("old")),
        Err(PostRefusal::WrongSecret)
    );
}
