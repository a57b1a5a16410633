//! Service registration, discovery and calls between two Rust clients through the server.

mod common;

use rhizo_client::{handler, Client, ClientError, ConnectOptions, Event};
use rhizo_protocol::value::{get, get_str, map};
use rmpv::Value;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn register_get_and_call_across_workspaces() {
    let s = common::start().await;
    let provider = common::connect_as(&s.url, "prov").await;
    let add = handler(|call| async move {
        let a = call.args.first().and_then(Value::as_i64).unwrap_or(0);
        let b = call.args.get(1).and_then(Value::as_i64).unwrap_or(0);
        Ok(Value::from(a + b))
    });
    let sid = provider
        .register_service(
            "calc",
            map([("visibility", "public".into())]),
            vec![("add", add.clone())],
        )
        .await
        .unwrap();
    assert_eq!(sid, format!("{}/prov:calc", provider.workspace()));
    provider
        .register_service("secret", Value::Nil, vec![("add", add)])
        .await
        .unwrap();

    let consumer = Client::connect(&s.url, ConnectOptions::default())
        .await
        .unwrap();
    assert_ne!(consumer.workspace(), provider.workspace());
    let svc = consumer
        .manager_call("get_service", vec![sid.as_str().into()])
        .await
        .unwrap();
    let add_m = get(&svc, "add").expect("encoded method");
    let target = get_str(add_m, "_rtarget").unwrap();
    let method = get_str(add_m, "_rmethod").unwrap();
    assert_eq!(target, format!("{}/prov", provider.workspace()));
    assert_eq!(
        get_str(get(&svc, "config").unwrap(), "workspace"),
        Some(provider.workspace())
    );
    let sum = consumer
        .call(target, method, vec![2.into(), 3.into()], T)
        .await
        .unwrap();
    assert_eq!(sum.as_i64(), Some(5));

    // Protected services of another workspace are refused by the manager.
    let err = consumer
        .manager_call(
            "get_service",
            vec![format!("{}/prov:secret", provider.workspace()).into()],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Remote(m) if m.contains("Permission denied")),
        "{err}"
    );
    // ...and by the provider when called directly.
    let err = consumer
        .call(target, "services.secret.add", vec![1.into(), 1.into()], T)
        .await
        .unwrap_err();
    assert!(matches!(&err, ClientError::Remote(_)), "{err}");
}

#[tokio::test]
async fn keyword_arguments_bind_by_name() {
    let s = common::start().await;
    let c = Client::connect(&s.url, ConnectOptions::default())
        .await
        .unwrap();
    let listed = c
        .call_with(
            &c.manager(),
            "services.default.list_services",
            vec![],
            Some(map([
                ("query", Value::Nil),
                ("include_unlisted", true.into()),
            ])),
            T,
        )
        .await
        .unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| get_str(r, "id"))
        .collect();
    assert!(ids.iter().any(|i| i.ends_with(":built-in")), "{ids:?}");
    let err = c
        .call_with(
            &c.manager(),
            "services.default.echo",
            vec![],
            Some(map([("nope", 1.into())])),
            T,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Remote(m) if m.contains("unexpected keyword")),
        "{err}"
    );
}

#[tokio::test]
async fn token_member_joins_and_disconnect_is_announced() {
    let s = common::start().await;
    let mut owner = common::connect_as(&s.url, "owner").await;
    owner
        .manager_call(
            "subscribe",
            vec![Value::Array(vec![
                "client_disconnected".into(),
                "service_added".into(),
            ])],
        )
        .await
        .unwrap();
    let token = owner
        .manager_call(
            "generate_token",
            vec![map([("permission", "read_write".into())])],
        )
        .await
        .unwrap();
    let member = Client::connect(
        &s.url,
        ConnectOptions {
            client_id: Some("member".into()),
            workspace: Some(owner.workspace().into()),
            token: token.as_str().map(str::to_owned),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(member.workspace(), owner.workspace());
    member
        .register_service("svc", Value::Nil, vec![])
        .await
        .unwrap();
    drop(member);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(T, owner.next_event())
            .await
            .unwrap()
            .unwrap()
        {
            Event::Frame(m) => seen.push((
                get_str(&m.merged, "type").unwrap_or_default().to_owned(),
                get_str(get(&m.merged, "data").unwrap(), "id")
                    .unwrap_or_default()
                    .to_owned(),
            )),
            _ => continue,
        }
    }
    assert_eq!(seen[0].0, "service_added");
    assert!(seen[0].1.ends_with("member:svc"));
    assert_eq!(
        seen[1],
        ("client_disconnected".to_owned(), "member".to_owned())
    );
    let ws = owner.workspace().to_owned();
    assert!(common::eventually(T, || s.manager.registry.clients(&ws).len() == 1).await);
}

#[tokio::test]
async fn services_cannot_be_registered_for_other_clients_or_workspaces() {
    let s = common::start().await;
    let a = common::connect_as(&s.url, "a").await;
    let other = Client::connect(&s.url, ConnectOptions::default())
        .await
        .unwrap();
    for id in [
        format!("{}/someone-else:svc", a.workspace()),
        format!("{}/a:svc", other.workspace()),
    ] {
        let record = map([
            ("id", id.as_str().into()),
            ("config", map([("visibility", "public".into())])),
        ]);
        let err = a
            .manager_call("register_service", vec![record])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::Remote(m) if m.starts_with("PermissionError")),
            "{id}: {err}"
        );
    }
    assert!(s
        .manager
        .registry
        .find(&rhizo_control_plane::registry::Pattern {
            name: Some("svc"),
            ..Default::default()
        })
        .is_empty());
    // Nor unregistered by another client.
    a.register_service("mine", map([("visibility", "public".into())]), vec![])
        .await
        .unwrap();
    let err = other
        .manager_call(
            "unregister_service",
            vec![format!("{}/a:mine", a.workspace()).into()],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Remote(m) if m.contains("Permission denied")),
        "{err}"
    );
}

// === HTTP streaming (`/rpc`) over raw HTTP/1.1 ===

/// Just enough HTTP/1.1 to open a `GET /rpc` stream and send `POST /rpc` (protocol.md §7),
/// without an HTTP client dependency.
mod raw_http {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A response's status and headers (names lower-cased), and the bytes read past them.
    pub struct Head {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        rest: Vec<u8>,
    }

    impl Head {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }
    }

    fn host(url: &str) -> &str {
        url.trim_start_matches("http://").trim_end_matches('/')
    }

    async fn request(
        url: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (TcpStream, Head) {
        let mut tcp = TcpStream::connect(host(url)).await.unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            host(url),
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        tcp.write_all(body).await.unwrap();
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let mut chunk = [0u8; 4096];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before the response head");
            buf.extend_from_slice(&chunk[..n]);
        };
        let text = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut lines = text.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let head = Head {
            status: status.parse().unwrap(),
            headers,
            rest: buf[end + 4..].to_vec(),
        };
        (tcp, head)
    }

    /// `POST path` with `body`; the response's status.
    pub async fn post(url: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
        let mut h = vec![
            ("Content-Type", "application/msgpack"),
            ("Connection", "close"),
        ];
        h.extend_from_slice(headers);
        request(url, "POST", path, &h, body).await.1.status
    }

    /// An open `GET /rpc` stream: its head and its records as they arrive.
    pub struct Stream {
        pub head: Head,
        tcp: TcpStream,
        /// Bytes of the chunked body not yet de-chunked.
        raw: Vec<u8>,
        /// De-chunked body bytes not yet split into records.
        body: Vec<u8>,
    }

    impl Stream {
        pub async fn open(url: &str, path: &str) -> Stream {
            let h = [("Accept", "application/x-msgpack-stream")];
            let (tcp, mut head) = request(url, "GET", path, &h, b"").await;
            let raw = std::mem::take(&mut head.rest);
            Stream {
                head,
                tcp,
                raw,
                body: Vec::new(),
            }
        }

        /// The `Set-Cookie` pair (`name=value`) the stream was opened with, if any.
        pub fn cookie(&self) -> Option<String> {
            let v = self.head.header("set-cookie")?;
            Some(v.split(';').next()?.trim().to_owned())
        }

        /// Moves whole chunks from `raw` to `body`.
        fn dechunk(&mut self) {
            while let Some(i) = self.raw.windows(2).position(|w| w == b"\r\n") {
                let size = std::str::from_utf8(&self.raw[..i]).unwrap();
                let size =
                    usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
                if self.raw.len() < i + 2 + size + 2 {
                    return;
                }
                self.body.extend_from_slice(&self.raw[i + 2..i + 2 + size]);
                self.raw.drain(..i + 2 + size + 2);
            }
        }

        /// The next record's first msgpack object, or `None` if none arrives `within`.
        pub async fn next_record(&mut self, within: std::time::Duration) -> Option<rmpv::Value> {
            let deadline = tokio::time::Instant::now() + within;
            loop {
                self.dechunk();
                if self.body.len() >= 4 {
                    let n = u32::from_be_bytes(self.body[..4].try_into().unwrap()) as usize;
                    if self.body.len() >= 4 + n {
                        let record: Vec<u8> = self.body.drain(..4 + n).skip(4).collect();
                        return Some(rmpv::decode::read_value(&mut &record[..]).unwrap());
                    }
                }
                let mut chunk = [0u8; 65536];
                let read = tokio::time::timeout_at(deadline, self.tcp.read(&mut chunk)).await;
                match read {
                    Ok(Ok(n)) if n > 0 => self.raw.extend_from_slice(&chunk[..n]),
                    _ => return None,
                }
            }
        }
    }
}

/// The next binary frame `c` receives within `within`, skipping texts.
async fn next_frame(c: &mut Client, within: Duration) -> Option<rhizo_protocol::message::Message> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, c.next_event()).await {
            Ok(Some(Event::Frame(m))) => return Some(m),
            Ok(Some(Event::Text(_))) => {}
            _ => return None,
        }
    }
}

/// An anonymous HTTP stream is bound to the secret its GET received (a cookie, which the
/// Python client's session keeps): once its client has shown it, a POST for the stream's
/// `<ws>/<cid>` without it — or with another — is refused with 403 and delivers nothing
/// (protocol.md §7.2 hardening; before, anyone who knew the address could send as it).
#[tokio::test]
async fn anonymous_stream_refuses_posts_without_its_secret() {
    let s = common::start().await;
    let mut observer = common::connect_as(&s.url, "observer").await;
    let observer_addr = format!("{}/observer", observer.workspace());

    let mut stream = raw_http::Stream::open(&s.url, "/rpc?client_id=victim").await;
    assert_eq!(stream.head.status, 200);
    let info = stream.next_record(T).await.expect("connection_info");
    assert_eq!(get_str(&info, "type"), Some("connection_info"));
    let ws = get_str(&info, "workspace").unwrap().to_owned();
    let path = format!("/rpc?client_id=victim&workspace={ws}");
    let cookie = stream.cookie();
    let with_secret: Vec<(&str, &str)> = cookie.iter().map(|c| ("Cookie", c.as_str())).collect();
    let note = |text: &str| {
        rhizo_protocol::message::encode_frame(
            &map([
                ("type", "note".into()),
                ("to", observer_addr.as_str().into()),
            ]),
            Some(&map([("text", text.into())])),
        )
    };

    // The stream's own client, with its cookie: delivered, and the stream is now bound.
    assert_eq!(
        raw_http::post(&s.url, &path, &with_secret, &note("mine")).await,
        200
    );
    let m = next_frame(&mut observer, T)
        .await
        .expect("the owner's frame arrives");
    assert_eq!(get_str(&m.merged, "text"), Some("mine"));
    assert_eq!(
        get_str(&m.header, "from"),
        Some(format!("{ws}/victim").as_str())
    );

    // Someone else who knows the address: no cookie, or a made-up one.
    assert_eq!(
        raw_http::post(&s.url, &path, &[], &note("forged")).await,
        403
    );
    let name = cookie
        .as_deref()
        .and_then(|c| c.split_once('='))
        .map_or("x", |(n, _)| n);
    let guess = format!("{name}={}", "0".repeat(64));
    let wrong = [("Cookie", guess.as_str())];
    assert_eq!(
        raw_http::post(&s.url, &path, &wrong, &note("guessed")).await,
        403
    );
    let ping = rhizo_protocol::value::encode(&map([("type", "ping".into())]));
    assert_eq!(raw_http::post(&s.url, &path, &[], &ping).await, 403);
    assert!(
        next_frame(&mut observer, Duration::from_millis(300))
            .await
            .is_none(),
        "a refused POST delivers nothing"
    );

    // The owner still can, and nothing else reached its stream but the answer to its ping.
    assert_eq!(
        raw_http::post(&s.url, &path, &with_secret, &ping).await,
        200
    );
    let pong = stream.next_record(T).await.expect("pong");
    assert_eq!(get_str(&pong, "type"), Some("pong"));
}

/// A client that keeps no cookies (the npm client on Node.js) still works: its stream
/// never gets bound, so its POSTs need no secret. (This is what stays open: anyone who
/// knows such a stream's address can post for it.)
#[tokio::test]
async fn stream_of_a_client_without_cookies_still_works() {
    let s = common::start().await;
    let mut stream = raw_http::Stream::open(&s.url, "/rpc?client_id=nocookies").await;
    assert_eq!(stream.head.status, 200);
    let info = stream.next_record(T).await.expect("connection_info");
    let ws = get_str(&info, "workspace").unwrap().to_owned();
    let path = format!("/rpc?client_id=nocookies&workspace={ws}");
    let ping = rhizo_protocol::value::encode(&map([("type", "ping".into())]));
    for _ in 0..2 {
        assert_eq!(raw_http::post(&s.url, &path, &[], &ping).await, 200);
        let pong = stream.next_record(T).await.expect("pong");
        assert_eq!(get_str(&pong, "type"), Some("pong"));
    }
}

/// A POST body over `max_frame_bytes` is answered 413 (told by axum's limit error type);
/// the stream stays usable.
#[tokio::test]
async fn oversized_post_is_413() {
    let s = common::start_with(rhizo_router::RouterConfig {
        max_frame_bytes: 64 * 1024,
        ..Default::default()
    })
    .await;
    let mut stream = raw_http::Stream::open(&s.url, "/rpc?client_id=big").await;
    let info = stream.next_record(T).await.expect("connection_info");
    let ws = get_str(&info, "workspace").unwrap().to_owned();
    let path = format!("/rpc?client_id=big&workspace={ws}");
    let cookie = stream.cookie().expect("the stream's secret cookie");
    let with_secret = [("Cookie", cookie.as_str())];
    let big = rhizo_protocol::message::encode_frame(
        &map([("type", "note".into()), ("to", "*".into())]),
        Some(&map([("d", Value::Binary(vec![0; 100_000]))])),
    );
    assert_eq!(raw_http::post(&s.url, &path, &with_secret, &big).await, 413);
    let ping = rhizo_protocol::value::encode(&map([("type", "ping".into())]));
    assert_eq!(
        raw_http::post(&s.url, &path, &with_secret, &ping).await,
        200
    );
    let pong = stream.next_record(T).await.expect("pong");
    assert_eq!(get_str(&pong, "type"), Some("pong"));
}
