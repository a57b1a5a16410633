use super::*;
use crate::egress::Egress;
use crate::hooks::{Admission, BoxFuture, ConnRef, Refusal};
use rhizo_protocol::handshake::AuthRequest;
use rhizo_protocol::message::Message;
use rmpv::Value;
use std::sync::Mutex;
use tokio::sync::mpsc::UnboundedReceiver;

#[derive(Default)]
struct FakeControl {
    manager_frames: Mutex<Vec<Bytes>>,
}

impl ControlHooks for FakeControl {
    fn admit(&self, _conn_id: u64, _req: AuthRequest) -> BoxFuture<'_, Result<Admission, Refusal>> {
        Box::pin(async {
            Err(Refusal {
                message: "no".into(),
                code: 1008,
            })
        })
    }
    fn refresh_token(&self, _conn: ConnRef<'_>) -> Result<String, Refusal> {
        Err(Refusal {
            message: "no".into(),
            code: 1008,
        })
    }
    fn manager_frame(&self, frame: Bytes) {
        self.manager_frames.lock().unwrap().push(frame);
    }
    fn disconnected(&self, _conn: ConnRef<'_>, _foreign_callers: Vec<String>) {}
}

fn setup() -> (Router, Arc<FakeControl>) {
    let r = Router::new(
        "manager-t",
        RouterConfig {
            egress_limit_bytes: 4096,
            ..Default::default()
        },
    );
    let hooks = Arc::new(FakeControl::default());
    r.set_hooks(hooks.clone());
    (r, hooks)
}

fn connect(
    r: &Router,
    id: u64,
    ws: &str,
    cid: &str,
    can_write: bool,
) -> (Arc<Conn>, UnboundedReceiver<Outbound>) {
    let (e, rx) = Egress::new(
        r.config().egress_limit_bytes,
        r.config().slow_consumer_grace,
    );
    let user = Bytes::from(value::encode(&value::map([("id", cid.into())])));
    let c = Arc::new(Conn::new(id, ws, cid, user, can_write, e));
    r.table().insert(c.clone());
    (c, rx)
}

fn frame(pairs: Vec<(&str, Value)>, extra: Option<Value>) -> Bytes {
    let header = Value::Map(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect());
    Bytes::from(encode_frame(&header, extra.as_ref()))
}

fn recv_frame(rx: &mut UnboundedReceiver<Outbound>) -> Message {
    match rx.try_recv().expect("a frame was queued") {
        Outbound::Binary(all) => Message::decode(&all).unwrap(),
        other => panic!("expected a frame, got {other:?}"),
    }
}

#[test]
fn relative_target_is_stamped_and_payload_kept() {
    let (r, _) = setup();
    let (a, _arx) = connect(&r, 1, "w", "a", true);
    let (_b, mut brx) = connect(&r, 2, "w", "b", true);
    let payload = value::map([("args", Value::Array(vec![Value::Binary(vec![7; 1000])]))]);
    let f = frame(
        vec![
            ("type", "method".into()),
            ("to", "b".into()),
            ("from", "evil/x".into()),
            ("ws", "evil".into()),
        ],
        Some(payload.clone()),
    );
    r.route_from(&a, f.clone()).unwrap();
    match brx.try_recv().unwrap() {
        Outbound::Binary(out) => {
            let view = HeaderView::parse(&f).unwrap();
            let out_view = HeaderView::parse(&out).unwrap();
            assert_eq!(
                &out[out_view.header_len()..],
                &f[view.header_len()..],
                "payload bytes out equal payload bytes in"
            );
        }
        other => panic!("{other:?}"),
    }
    r.route_from(&a, f).unwrap();
    let m = recv_frame(&mut brx);
    assert_eq!(value::get_str(&m.header, "from"), Some("w/a"));
    assert_eq!(value::get_str(&m.header, "ws"), Some("w"));
    assert_eq!(value::get_str(&m.header, "to"), Some("w/b"));
    assert_eq!(
        value::get_str(value::get(&m.header, "user").unwrap(), "id"),
        Some("a")
    );
}

#[test]
fn unknown_target_with_session_gets_a_reject() {
    let (r, _) = setup();
    let (a, mut arx) = connect(&r, 1, "w", "a", true);
    let f = frame(
        vec![
            ("type", "method".into()),
            ("to", "other/gone".into()),
            ("session", "s9".into()),
        ],
        None,
    );
    assert_eq!(
        r.route_from(&a, f),
        Err(RouteError::NotConnected("other/gone".into()))
    );
    let m = recv_frame(&mut arx);
    assert_eq!(value::get_str(&m.merged, "method"), Some("s9.reject"));
    assert_eq!(value::get_str(&m.merged, "from"), Some("other/gone"));
    let err = &value::get(&m.merged, "args").unwrap().as_array().unwrap()[0];
    assert_eq!(
        value::get_str(err, "_rvalue"),
        Some("Peer other/gone is not connected")
    );
}

#[test]
fn malformed_frames_get_an_error_text() {
    let (r, _) = setup();
    let (a, mut arx) = connect(&r, 1, "w", "a", true);
    assert!(matches!(
        r.route_from(&a, Bytes::from_static(b"\xc1garbage")),
        Err(RouteError::Frame(_))
    ));
    assert!(matches!(arx.try_recv().unwrap(), Outbound::Text(t) if t.contains("Malformed frame")));
    let no_to = frame(vec![("type", "method".into())], None);
    assert_eq!(r.route_from(&a, no_to), Err(RouteError::NoTarget));
    assert!(matches!(arx.try_recv().unwrap(), Outbound::Text(t) if t.contains("no `to`")));
}

#[test]
fn manager_frames_go_to_the_control_plane() {
    let (r, hooks) = setup();
    let (a, _arx) = connect(&r, 1, "w", "a", true);
    let f = frame(
        vec![("type", "method".into()), ("to", "*/manager-t".into())],
        Some(value::map([("args", Value::Array(vec![]))])),
    );
    r.route_from(&a, f).unwrap();
    let got = hooks.manager_frames.lock().unwrap().pop().unwrap();
    let m = Message::decode(&got).unwrap();
    assert_eq!(value::get_str(&m.header, "from"), Some("w/a"));
    assert!(value::get(&m.merged, "args").is_some());
}

#[test]
fn broadcast_reaches_subscribers_only_and_respects_permissions() {
    let (r, _) = setup();
    let (a, _arx) = connect(&r, 1, "w", "a", true);
    let (b, mut brx) = connect(&r, 2, "w", "b", true);
    let (_c, mut crx) = connect(&r, 3, "w", "c", true);
    let (ro, mut rorx) = connect(&r, 4, "w", "ro", false);
    b.subscribe(["ev".to_owned()]);
    r.route_from(
        &a,
        frame(vec![("type", "ev".into()), ("to", "*".into())], None),
    )
    .unwrap();
    assert_eq!(
        value::get_str(&recv_frame(&mut brx).header, "from"),
        Some("w/a")
    );
    assert!(crx.try_recv().is_err());
    assert!(matches!(
        r.route_from(
            &ro,
            frame(vec![("type", "ev".into()), ("to", "*".into())], None)
        ),
        Err(RouteError::ReadOnlyBroadcast(_))
    ));
    assert!(matches!(rorx.try_recv().unwrap(), Outbound::Text(_)));
    assert!(matches!(
        r.route_from(
            &a,
            frame(vec![("type", "ev".into()), ("to", "x/*".into())], None)
        ),
        Err(RouteError::ForeignBroadcast(_, _))
    ));
}

#[test]
fn full_queue_rejects_calls_at_once() {
    let (r, _) = setup();
    let (a, mut arx) = connect(&r, 1, "w", "a", true);
    let (_b, _brx) = connect(&r, 2, "w", "b", true);
    let big = value::map([("args", Value::Array(vec![Value::Binary(vec![0; 3000])]))]);
    let call = || {
        frame(
            vec![
                ("type", "method".into()),
                ("to", "b".into()),
                ("session", "s1".into()),
            ],
            Some(big.clone()),
        )
    };
    r.route_from(&a, call()).unwrap();
    assert_eq!(
        r.route_from(&a, call()),
        Err(RouteError::SlowPeer("w/b".into()))
    );
    let m = recv_frame(&mut arx);
    assert_eq!(value::get_str(&m.merged, "method"), Some("s1.reject"));
    assert_eq!(r.counters().dropped.load(Relaxed), 1);
}

#[test]
fn route_cache_follows_reconnects() {
    let (r, _) = setup();
    let (a, _arx) = connect(&r, 1, "w", "a", true);
    let (b1, mut b1rx) = connect(&r, 2, "x", "b", true);
    let mut cache = RouteCache::default();
    let f = || frame(vec![("type", "method".into()), ("to", "x/b".into())], None);
    r.route_from_cached(&a, f(), &mut cache).unwrap();
    r.route_from_cached(&a, f(), &mut cache).unwrap();
    assert!(b1rx.try_recv().is_ok() && b1rx.try_recv().is_ok());
    // b reconnects: the newer connection supersedes the cached one.
    let (b2, mut b2rx) = connect(&r, 3, "x", "b", true);
    r.route_from_cached(&a, f(), &mut cache).unwrap();
    assert!(b2rx.try_recv().is_ok(), "routed to the new connection");
    assert!(b1rx.try_recv().is_err());
    // b leaves: the cache does not keep a dead target alive.
    assert!(r.table().remove(&b2));
    assert_eq!(
        r.route_from_cached(&a, f(), &mut cache),
        Err(RouteError::NotConnected("x/b".into()))
    );
    drop(b1);
}

/// A frame that is refused — a broadcast into another workspace, a broadcast from a
/// read-only connection, an unknown target — is refused from its header alone: the
/// router allocates far less than the payload (only the error report), because the
/// rewritten copy is built after the decision. A delivered broadcast of the same frame
/// shows the measurement sees the copy.
#[test]
fn refused_frames_are_not_copied() {
    const PAYLOAD: usize = 1 << 20;
    let (r, _) = setup();
    let (a, mut arx) = connect(&r, 1, "w", "a", true);
    let (ro, mut rorx) = connect(&r, 2, "w", "ro", false);
    let big = value::map([("args", Value::Array(vec![Value::Binary(vec![7; PAYLOAD])]))]);
    let to = |to: &str| {
        frame(
            vec![
                ("type", "ev".into()),
                ("to", to.into()),
                ("session", "s1".into()),
            ],
            Some(big.clone()),
        )
    };
    let cases = [
        (&a, to("x/*"), "foreign broadcast"),
        (&ro, to("*"), "read-only broadcast"),
        (&a, to("w/gone"), "unknown target"),
        (&a, to("*/old-manager"), "unknown manager"),
    ];
    for (sender, f, what) in cases {
        let info = allocation_counter::measure(|| {
            assert!(r.route_from(sender, f.clone()).is_err(), "{what}");
        });
        assert!(
            (info.bytes_total as usize) < PAYLOAD / 16,
            "{what}: {} bytes allocated for a refused {PAYLOAD}-byte frame",
            info.bytes_total
        );
    }
    while arx.try_recv().is_ok() || rorx.try_recv().is_ok() {}
    let info = allocation_counter::measure(|| r.route_from(&a, to("*")).unwrap());
    assert!(
        info.bytes_total as usize >= PAYLOAD,
        "the measurement sees the copy"
    );
}
