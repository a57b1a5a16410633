use super::*;
use crate::value::map;

fn call_frame(extra: Option<Value>) -> Vec<u8> {
    let header = map([
        ("type", "method".into()),
        ("from", "ws-a/c1".into()),
        ("to", "*/manager-x".into()),
        ("ws", "ws-a".into()),
        ("user", map([("id", "u1".into())])),
        ("method", "services.default.echo".into()),
        ("session", "s1".into()),
    ]);
    encode_frame(&header, extra.as_ref())
}

fn as_call(frame: &[u8]) -> Call {
    match Message::decode(frame).unwrap().classify() {
        Incoming::Call(c) => *c,
        other => panic!("not a call: {other:?}"),
    }
}

#[test]
fn compact_call_with_kwargs() {
    let frame = call_frame(Some(map([
        ("args", Value::Array(vec![1.into(), map([("b", 2.into())])])),
        ("with_kwargs", true.into()),
        ("promise", "*".into()),
        ("t", 15.into()),
    ])));
    let call = as_call(&frame);
    assert_eq!(call.args, vec![Value::from(1)]);
    assert_eq!(call.kwargs.len(), 1);
    assert_eq!(
        call.promise,
        Promise::Compact {
            interval: Some(15.0)
        }
    );
    let bound = bind("f", &[("a", false), ("b", false), ("c", true)], &call).unwrap();
    assert_eq!(bound, vec![Value::from(1), Value::from(2), Value::Nil]);
    let (to, reply) = call.reply("*/manager-x", Ok("ok".into())).unwrap();
    assert_eq!(to, "ws-a/c1");
    let r = Message::decode(&reply).unwrap();
    assert_eq!(get_str(&r.merged, "method"), Some("s1.resolve"));
    assert_eq!(get_str(&r.merged, "from"), Some("*/manager-x"));
}

#[test]
fn single_segment_call_is_accepted() {
    let call = as_call(&call_frame(None));
    assert!(call.args.is_empty());
    assert_eq!(call.promise, Promise::None);
    assert!(call.reply("*/m", Ok(Value::Nil)).is_none());
}

#[test]
fn explicit_promise_reject_targets_prefixed_callback() {
    let cb = |m: &str| {
        map([
            ("_rtype", "method".into()),
            ("_rtarget", "c1".into()),
            ("_rmethod", m.into()),
        ])
    };
    let frame = call_frame(Some(map([
        ("args", Value::Array(vec!["default".into()])),
        (
            "promise",
            map([
                ("resolve", cb("s1.resolve")),
                ("reject", cb("s1.reject")),
                ("heartbeat", cb("s1.heartbeat")),
                ("interval", 15.0.into()),
            ]),
        ),
    ])));
    let call = as_call(&frame);
    let (to, reply) = call.reply("*/m", Err("KeyError: nope".into())).unwrap();
    assert_eq!(to, "ws-a/c1");
    let r = Message::decode(&reply).unwrap();
    assert_eq!(get_str(&r.merged, "method"), Some("s1.reject"));
    let arg = &get(&r.merged, "args").unwrap().as_array().unwrap()[0];
    assert_eq!(get_str(arg, "_rtype"), Some("error"));
    assert_eq!(get_str(arg, "_rvalue"), Some("KeyError: nope"));
    let (hto, hb) = call.heartbeat("*/m").unwrap();
    assert_eq!(hto, "ws-a/c1");
    assert_eq!(
        get_str(&Message::decode(&hb).unwrap().merged, "method"),
        Some("s1.heartbeat")
    );
}

/// A promise whose callbacks point at another client, or at a service method of the caller,
/// gets no reply and no heartbeat: the answering peer never calls them (§3.4).
#[test]
fn explicit_promise_to_anything_but_the_callers_session_is_refused() {
    let promise = |target: &str, method: &str| {
        let cb = |m: &str| {
            map([
                ("_rtype", "method".into()),
                ("_rtarget", target.into()),
                ("_rmethod", m.into()),
            ])
        };
        Some(map([
            ("args", Value::Array(vec![])),
            (
                "promise",
                map([
                    ("resolve", cb(method)),
                    ("reject", cb(method)),
                    ("heartbeat", cb(method)),
                ]),
            ),
        ]))
    };
    for (target, method) in [
        ("ws-victim/c9", "s1.resolve"),
        ("ws-victim/c9", "services.secret.delete_all"),
        ("c1", "services.echo.echo"),
        ("ws-a/c1", "services.resolve"),
        ("ws-a/c2", "s1.resolve"),
        ("*/manager-x", "s1.resolve"),
        ("ws-a/c1", "s1.run"),
    ] {
        let call = as_call(&call_frame(promise(target, method)));
        assert!(
            call.reply("*/m", Ok(Value::Nil)).is_none(),
            "{target} {method}: resolve refused"
        );
        assert!(
            call.reply("*/m", Err("e".into())).is_none(),
            "{target} {method}: reject refused"
        );
        assert!(
            call.heartbeat("*/m").is_none(),
            "{target} {method}: heartbeat refused"
        );
    }
    // The caller's own session, bare or absolute, is answered.
    for target in ["c1", "ws-a/c1"] {
        let call = as_call(&call_frame(promise(target, "s1.resolve")));
        assert_eq!(call.reply("*/m", Ok(Value::Nil)).unwrap().0, "ws-a/c1");
    }
}

#[test]
fn replies_to_our_calls_are_classified() {
    let header = map([
        ("type", "method".into()),
        ("method", "m-sess.resolve".into()),
    ]);
    let frame = encode_frame(
        &header,
        Some(&map([("args", Value::Array(vec![5.into()]))])),
    );
    assert_eq!(
        Message::decode(&frame).unwrap().classify(),
        Incoming::Reply {
            session: "m-sess".into(),
            kind: ReplyKind::Resolve(5.into())
        }
    );
    let hb = encode_frame(
        &map([
            ("type", "method".into()),
            ("method", "a.b.heartbeat".into()),
        ]),
        None,
    );
    assert_eq!(
        Message::decode(&hb).unwrap().classify(),
        Incoming::Reply {
            session: "a.b".into(),
            kind: ReplyKind::Heartbeat
        }
    );
    let rej = encode_frame(
        &header.clone(),
        Some(&map([(
            "args",
            Value::Array(vec![crate::value::error("bad")]),
        )])),
    );
    let mut m = Message::decode(&rej).unwrap();
    crate::value::set(&mut m.merged, "method", "m-sess.reject".into());
    assert_eq!(
        m.classify(),
        Incoming::Reply {
            session: "m-sess".into(),
            kind: ReplyKind::Reject("bad".into())
        }
    );
}

#[test]
fn bind_errors_use_python_wording() {
    let frame = call_frame(Some(map([(
        "args",
        Value::Array(vec![1.into(), 2.into()]),
    )])));
    let call = as_call(&frame);
    assert!(bind("f", &[("a", false)], &call)
        .unwrap_err()
        .contains("positional"));
    let frame = call_frame(Some(map([
        ("args", Value::Array(vec![map([("zz", 1.into())])])),
        ("with_kwargs", true.into()),
    ])));
    assert!(bind("f", &[("a", true)], &as_call(&frame))
        .unwrap_err()
        .contains("unexpected keyword"));
    let empty = as_call(&call_frame(None));
    assert!(bind("f", &[("a", false)], &empty)
        .unwrap_err()
        .contains("missing required"));
}

#[test]
fn extra_segment_that_is_not_a_map_is_refused() {
    let mut frame = call_frame(None);
    frame.extend(crate::value::encode(&Value::from(3)));
    assert_eq!(Message::decode(&frame), Err(FrameError::NotAMap));
}
