use super::*;
use rhizo_protocol::message::encode_frame;
use rhizo_protocol::message::{Incoming, Message, Promise, ReplyKind};
use rhizo_protocol::peer::{service_record, LocalServices};
use rhizo_protocol::value::map;
use rhizo_protocol::HeaderView;

fn bin(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_bin_header(&mut out, payload.len());
    out.extend_from_slice(payload);
    out
}

#[test]
fn call_template_frames_decode_as_compact_calls() {
    let t = CallTemplate::new("ws-a/prov", "services.echo.echo", Duration::from_secs(30));
    for size in [0usize, 5, 255, 256, 65_535, 65_536, 300_000] {
        let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
        let arg = bin(&payload);
        let mut out = Vec::new();
        let at = t.write(&mut out, "s17", &arg);
        assert_eq!(&out[at..], &arg[..]);
        assert!(out.len() <= t.overhead(3) + arg.len());
        assert!(out.len() + 4 >= t.overhead(3) + arg.len());

        let view = HeaderView::parse(&out).unwrap();
        assert_eq!(view.to(&out), Some("ws-a/prov"));
        assert_eq!(view.session(&out), Some("s17"));
        assert_eq!(view.method(&out), Some("services.echo.echo"));
        assert_eq!(
            first_arg(&out, view.header_len()).unwrap(),
            Some((at, out.len()))
        );

        let Incoming::Call(call) = Message::decode(&out).unwrap().classify() else {
            panic!("not a call");
        };
        assert_eq!(call.args, vec![Value::Binary(payload)]);
        assert_eq!(
            call.promise,
            Promise::Compact {
                interval: Some(15.0)
            }
        );
    }
}

#[test]
fn extra_header_entries_are_kept() {
    let t = CallTemplate::with_header(
        "p",
        "services.x.f",
        Duration::from_secs(2),
        &[("from", "relay/c")],
    );
    let mut out = Vec::new();
    t.write(&mut out, "k", &[0xc0]);
    let v = CallView::parse(&out).unwrap();
    assert_eq!(v.from(&out), "relay/c");
    assert_eq!(v.session(&out), "k");
    assert_eq!(v.method(&out), b"services.x.f");
}

#[test]
fn replies_decode_as_resolve_and_reject() {
    let mut out = Vec::new();
    write_reply(&mut out, "ws-a/caller", "s9", true, &bin(b"hello"));
    let view = HeaderView::parse(&out).unwrap();
    assert_eq!(view.method(&out), Some("s9.resolve"));
    assert_eq!(view.to(&out), Some("ws-a/caller"));
    let (a, b) = first_arg(&out, view.header_len()).unwrap().unwrap();
    assert_eq!(&out[a..b], &bin(b"hello")[..]);
    match Message::decode(&out).unwrap().classify() {
        Incoming::Reply { session, kind } => {
            assert_eq!(session, "s9");
            assert_eq!(kind, ReplyKind::Resolve(Value::Binary(b"hello".to_vec())));
        }
        other => panic!("{other:?}"),
    }

    let long_session = "x".repeat(40);
    let mut out = Vec::new();
    let err = value::encode(&value::error("boom"));
    write_reply(&mut out, "c", &long_session, false, &err);
    let view = HeaderView::parse(&out).unwrap();
    assert_eq!(
        view.method(&out),
        Some(format!("{long_session}.reject").as_str())
    );
    assert_eq!(reject_text(&out), "boom");
}

#[test]
fn call_view_reads_stamped_fields() {
    let header = map([
        ("type", "method".into()),
        ("to", "ws-b/p".into()),
        ("method", "services.s.f".into()),
        ("session", "abc".into()),
        ("from", "ws-a/c".into()),
        ("user", map([("id", "u".into())])),
    ]);
    let frame = encode_frame(&header, None);
    let v = CallView::parse(&frame).unwrap();
    assert_eq!(v.header_len, frame.len());
    assert_eq!(v.from(&frame), "ws-a/c");
    assert_eq!(v.session(&frame), "abc");
    assert_eq!(v.method(&frame), b"services.s.f");
    assert_eq!(first_arg(&frame, v.header_len).unwrap(), None);
}

#[test]
fn first_arg_handles_missing_and_empty_args() {
    let header = map([("type", "method".into())]);
    let extra = map([("promise", "*".into()), ("args", Value::Array(vec![]))]);
    let frame = encode_frame(&header, Some(&extra));
    let hl = CallView::parse(&frame).unwrap().header_len;
    assert_eq!(first_arg(&frame, hl).unwrap(), None);

    let extra = map([("with_kwargs", false.into())]);
    let frame = encode_frame(&header, Some(&extra));
    assert_eq!(first_arg(&frame, hl).unwrap(), None);

    let extra = map([("args", "oops".into())]);
    let frame = encode_frame(&header, Some(&extra));
    assert!(first_arg(&frame, hl).is_err());

    let big: Vec<Value> = (0..20).map(Value::from).collect();
    let extra = map([("args", Value::Array(big))]);
    let frame = encode_frame(&header, Some(&extra));
    let (a, b) = first_arg(&frame, hl).unwrap().unwrap();
    assert_eq!(&frame[a..b], &[0x00]);
}

#[test]
fn truncated_frames_are_errors_not_panics() {
    let t = CallTemplate::new("ws/p", "services.e.echo", Duration::from_secs(1));
    let mut out = Vec::new();
    t.write(&mut out, "s1", &bin(&[7; 100]));
    for cut in 0..out.len() {
        let part = &out[..cut];
        if let Ok(v) = CallView::parse(part) {
            let _ = first_arg(part, v.header_len);
        }
    }
}

fn responder() -> Responder {
    let mut services = LocalServices::new("ws-a/me", "http://srv");
    let record = service_record("ws-a/me", "echo", map([("visibility", "public".into())]));
    services.register("echo", record, vec!["echo".into()]);
    Responder {
        info: serde_json::json!({"workspace": "ws-a", "client_id": "me", "manager_id": "m"}),
        me: "ws-a/me".into(),
        services,
    }
}

fn incoming_call(method: &str, promise: Value, args: Vec<Value>) -> Vec<u8> {
    let header = map([
        ("type", "method".into()),
        ("from", "ws-b/c".into()),
        ("to", "ws-a/me".into()),
        ("ws", "ws-b".into()),
        ("method", method.into()),
        ("session", "s1".into()),
    ]);
    let extra = map([
        ("args", Value::Array(args)),
        ("promise", promise),
        ("t", 15.into()),
    ]);
    encode_frame(&header, Some(&extra))
}

fn reply_of(frame: &[u8]) -> (String, Value) {
    let m = Message::decode(frame).unwrap();
    let method = value::get_str(&m.merged, "method").unwrap().to_owned();
    let arg = value::get(&m.merged, "args").unwrap().as_array().unwrap()[0].clone();
    (method, arg)
}

#[test]
fn responder_answers_built_in_and_rejects_the_rest() {
    let r = responder();
    let ping = r
        .answer(&incoming_call("services.built-in.ping", "*".into(), vec![]))
        .unwrap();
    assert_eq!(reply_of(&ping), ("s1.resolve".into(), "pong".into()));

    let get = incoming_call(
        "services.built-in.get_service",
        "*".into(),
        vec!["echo".into()],
    );
    let (method, obj) = reply_of(&r.answer(&get).unwrap());
    assert_eq!(method, "s1.resolve");
    let echo = value::get(&obj, "echo").unwrap();
    assert_eq!(value::get_str(echo, "_rmethod"), Some("services.echo.echo"));
    assert_eq!(value::get_str(echo, "_rserver"), Some("http://srv"));

    // The owner's loop runs `echo`; reaching the responder means it did not.
    let call = incoming_call("services.echo.echo", "*".into(), vec![1.into()]);
    let (method, err) = reply_of(&r.answer(&call).unwrap());
    assert_eq!(method, "s1.reject");
    assert_eq!(
        value::get_str(&err, "_rvalue"),
        Some("Method not found: services.echo.echo")
    );
}

#[test]
fn responder_refuses_a_promise_to_another_peer() {
    let cb = |target: &str, method: &str| {
        map([
            ("_rtype", "method".into()),
            ("_rtarget", target.into()),
            ("_rmethod", method.into()),
        ])
    };
    let promise = map([
        ("resolve", cb("ws-v/victim", "services.vault.open")),
        ("reject", cb("ws-v/victim", "services.vault.open")),
    ]);
    let call = incoming_call("services.built-in.ping", promise, vec![]);
    assert!(responder().answer(&call).is_none());
}
