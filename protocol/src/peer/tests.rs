use super::*;
use crate::value::get;

const S: Duration = Duration::from_secs(1);

fn peer(addr: &str, role: Role) -> RpcPeer<u32> {
    RpcPeer::new(PeerConfig {
        addr: addr.into(),
        server_url: "http://srv".into(),
        role,
        session_prefix: "s".into(),
    })
}

fn client() -> RpcPeer<u32> {
    peer("ws-a/me", Role::Client)
}

fn frame(header: Vec<(&str, Value)>, extra: Option<Value>) -> Vec<u8> {
    let header = Value::Map(header.into_iter().map(|(k, v)| (k.into(), v)).collect());
    encode_frame(&header, extra.as_ref())
}

/// A reply or heartbeat frame as the router delivers it: `from` stamped.
fn reply_frame(from: &str, method: &str, arg: Option<Value>) -> Vec<u8> {
    let header = vec![
        ("type", "method".into()),
        ("from", from.into()),
        ("to", "ws-a/me".into()),
        ("method", method.into()),
    ];
    frame(header, arg.map(|a| map([("args", Value::Array(vec![a]))])))
}

/// An incoming call from `from` with the given extra segment.
fn call_frame(from: &str, method: &str, session: &str, extra: Value) -> Vec<u8> {
    let ws = from.split_once('/').unwrap().0;
    let header = vec![
        ("type", "method".into()),
        ("from", from.into()),
        ("to", "ws-a/me".into()),
        ("ws", ws.into()),
        ("user", map([("id", "u".into())])),
        ("method", method.into()),
        ("session", session.into()),
    ];
    frame(header, Some(extra))
}

fn compact(args: Vec<Value>, t: f64) -> Value {
    map([
        ("args", Value::Array(args)),
        ("promise", "*".into()),
        ("t", t.into()),
    ])
}

fn cb(target: &str, method: &str) -> Value {
    map([
        ("_rtype", "method".into()),
        ("_rtarget", target.into()),
        ("_rmethod", method.into()),
        ("_rpromise", false.into()),
    ])
}

fn explicit(resolve: Value, reject: Value, heartbeat: Value, interval: f64) -> Value {
    map([
        ("args", Value::Array(vec!["x".into()])),
        (
            "promise",
            map([
                ("resolve", resolve),
                ("reject", reject),
                ("heartbeat", heartbeat),
                ("interval", interval.into()),
            ]),
        ),
    ])
}

fn decode(t: &Transmit) -> Message {
    Message::decode(&t.frame).unwrap()
}

fn method_of(t: &Transmit) -> String {
    get_str(&decode(t).merged, "method").unwrap().to_owned()
}

fn first_arg(t: &Transmit) -> Value {
    get(&decode(t).merged, "args").unwrap().as_array().unwrap()[0].clone()
}

fn transmits<W>(p: &mut RpcPeer<W>) -> Vec<Transmit> {
    std::iter::from_fn(|| p.poll_transmit()).collect()
}

fn events<W>(p: &mut RpcPeer<W>) -> Vec<PeerEvent<W>> {
    std::iter::from_fn(|| p.poll_event()).collect()
}

fn completed(p: &mut RpcPeer<u32>) -> Vec<(String, u32, Result<Value, CallError>)> {
    events(p)
        .into_iter()
        .map(|e| match e {
            PeerEvent::CallCompleted {
                session,
                waiter,
                result,
            } => (session, waiter, result),
            other => panic!("unexpected event {other:?}"),
        })
        .collect()
}

fn incoming(p: &mut RpcPeer<u32>) -> (IncomingId, Box<Call>) {
    match p.poll_event() {
        Some(PeerEvent::IncomingCall { id, call }) => (id, call),
        other => panic!("expected an incoming call, got {other:?}"),
    }
}

#[test]
fn call_is_encoded_with_a_compact_promise_and_resolves() {
    let t0 = Instant::now();
    let mut p = client();
    let req = CallRequest::new("ws-b/prov", "services.x.f", vec![1.into()], 10 * S);
    let session = p.call(t0, req, 7);
    let out = transmits(&mut p);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, "ws-b/prov");
    let m = decode(&out[0]);
    assert_eq!(get_str(&m.header, "session"), Some(session.as_str()));
    assert_eq!(get_str(&m.header, "from"), Some("ws-a/me"));
    assert_eq!(get_str(&m.header, "method"), Some("services.x.f"));
    assert!(get(&m.header, "ws").is_none());
    assert_eq!(get_str(&m.merged, "promise"), Some("*"));
    assert_eq!(get(&m.merged, "t").and_then(Value::as_f64), Some(5.0));
    assert_eq!(get(&m.merged, "args"), Some(&Value::Array(vec![1.into()])));
    assert_eq!(p.pending_count(), 1);
    assert_eq!(p.poll_timeout(), Some(t0 + 10 * S));

    let r = reply_frame(
        "ws-b/prov",
        &format!("{session}.resolve"),
        Some("ok".into()),
    );
    p.handle_frame(t0 + S, &r).unwrap();
    assert_eq!(completed(&mut p), vec![(session, 7, Ok("ok".into()))]);
    assert_eq!(p.pending_count(), 0);
    assert_eq!(p.poll_timeout(), None);
    // A late heartbeat or a second resolve changes nothing.
    p.handle_frame(t0 + 2 * S, &r).unwrap();
    assert!(events(&mut p).is_empty());
}

#[test]
fn reject_completes_with_the_error_text() {
    let t0 = Instant::now();
    let mut p = client();
    let session = p.call(t0, CallRequest::new("prov", "services.x.f", vec![], S), 1);
    let r = reply_frame(
        "ws-a/prov",
        &format!("{session}.reject"),
        Some(value::error("ValueError: boom")),
    );
    p.handle_frame(t0, &r).unwrap();
    assert_eq!(
        completed(&mut p),
        vec![(
            session,
            1,
            Err(CallError::Rejected("ValueError: boom".into()))
        )]
    );
}

#[test]
fn reply_from_another_peer_is_ignored() {
    let t0 = Instant::now();
    let mut p = client();
    let session = p.call(
        t0,
        CallRequest::new("ws-b/prov", "services.x.f", vec![], S),
        1,
    );
    let forged = reply_frame("ws-b/other", &format!("{session}.resolve"), Some(1.into()));
    p.handle_frame(t0, &forged).unwrap();
    assert!(events(&mut p).is_empty());
    assert!(p.is_pending(&session));
}

#[test]
fn unknown_reply_session_is_ignored() {
    let t0 = Instant::now();
    let mut p = client();
    let session = p.call(
        t0,
        CallRequest::new("ws-b/prov", "services.x.f", vec![], S),
        1,
    );
    transmits(&mut p);
    for name in ["resolve", "reject", "heartbeat"] {
        let r = reply_frame("ws-b/prov", &format!("nope.{name}"), Some(1.into()));
        p.handle_frame(t0, &r).unwrap();
    }
    assert!(events(&mut p).is_empty());
    assert!(transmits(&mut p).is_empty());
    assert!(p.is_pending(&session));
    assert_eq!(p.poll_timeout(), Some(t0 + S));
}

#[test]
fn heartbeat_extends_the_deadline() {
    let t0 = Instant::now();
    let mut p = client();
    let session = p.call(
        t0,
        CallRequest::new("ws-b/prov", "services.x.f", vec![], 10 * S),
        3,
    );
    let hb = reply_frame("ws-b/prov", &format!("{session}.heartbeat"), None);
    p.handle_frame(t0 + 8 * S, &hb).unwrap();
    assert_eq!(p.poll_timeout(), Some(t0 + 18 * S));
    p.handle_timeout(t0 + 11 * S);
    assert!(
        events(&mut p).is_empty(),
        "the heartbeat should have saved the call"
    );
    assert!(p.is_pending(&session));
    p.handle_timeout(t0 + 18 * S);
    let done = completed(&mut p);
    assert_eq!(done.len(), 1);
    assert!(matches!(done[0].2, Err(CallError::Timeout { .. })));
}

#[test]
fn timeout_without_heartbeat() {
    let t0 = Instant::now();
    let mut p = client();
    let session = p.call(
        t0,
        CallRequest::new("ws-b/prov", "services.x.f", vec![], 10 * S),
        4,
    );
    p.handle_timeout(t0 + 10 * S - Duration::from_millis(1));
    assert!(events(&mut p).is_empty());
    p.handle_timeout(t0 + 10 * S);
    let done = completed(&mut p);
    let err = CallError::Timeout {
        to: "ws-b/prov".into(),
        method: "services.x.f".into(),
        timeout: 10 * S,
    };
    assert_eq!(done, vec![(session.clone(), 4, Err(err.clone()))]);
    assert_eq!(
        err.to_string(),
        "TimeoutError: Method call timed out: services.x.f on ws-b/prov (10s)"
    );
    assert_eq!(p.pending_count(), 0);
    // The reply arriving after the timeout is ignored.
    let r = reply_frame("ws-b/prov", &format!("{session}.resolve"), Some(1.into()));
    p.handle_frame(t0 + 11 * S, &r).unwrap();
    assert!(events(&mut p).is_empty());
}

#[test]
fn extend_and_cancel() {
    let t0 = Instant::now();
    let mut p = client();
    let a = p.call(
        t0,
        CallRequest::new("ws-b/p", "services.x.f", vec![], 10 * S),
        1,
    );
    let b = p.call(
        t0,
        CallRequest::new("ws-b/p", "services.x.f", vec![], 10 * S),
        2,
    );
    assert!(p.extend(t0 + 5 * S, &a));
    assert!(!p.extend(t0, "nope"));
    assert_eq!(p.cancel(&b), Some(2));
    assert_eq!(p.poll_timeout(), Some(t0 + 15 * S));
    p.handle_timeout(t0 + 10 * S);
    assert!(events(&mut p).is_empty());
    p.handle_timeout(t0 + 15 * S);
    assert_eq!(completed(&mut p).len(), 1);
}

#[test]
fn manager_calls_carry_ws_user_and_kwargs() {
    let t0 = Instant::now();
    let mut p = peer("*/manager-x", Role::Manager);
    let req = CallRequest::new(
        "ws-b/prov",
        "services.built-in.get_service",
        vec!["svc".into()],
        30 * S,
    )
    .with_kwargs(Some(map([("mode", "first".into())])))
    .on_behalf_of("ws-c", map([("id", "root".into())]));
    p.call(t0, req, 0);
    let out = transmits(&mut p);
    let m = decode(&out[0]);
    assert_eq!(get_str(&m.header, "from"), Some("*/manager-x"));
    assert_eq!(get_str(&m.header, "ws"), Some("ws-c"));
    assert_eq!(get_str(get(&m.header, "user").unwrap(), "id"), Some("root"));
    assert_eq!(get(&m.merged, "with_kwargs"), Some(&Value::Boolean(true)));
    let Incoming::Call(call) = m.classify() else {
        panic!("not a call")
    };
    assert_eq!(call.args, vec![Value::from("svc")]);
    assert_eq!(call.kwargs, vec![("mode".into(), "first".into())]);
}

#[test]
fn fail_calls_to_fails_only_that_peers_calls() {
    let t0 = Instant::now();
    let mut p = client();
    p.call(
        t0,
        CallRequest::new("ws-b/p1", "services.x.f", vec![], 10 * S),
        1,
    );
    p.call(
        t0,
        CallRequest::new("ws-b/p2", "services.x.f", vec![], 10 * S),
        2,
    );
    // A bare target is in our own workspace.
    p.call(
        t0,
        CallRequest::new("p1", "services.x.f", vec![], 10 * S),
        3,
    );
    p.call(
        t0,
        CallRequest::new("ws-a/p1", "services.x.f", vec![], 10 * S),
        4,
    );
    assert_eq!(p.fail_calls_to("ws-a/p1", "ConnectionError: gone"), 2);
    let mut done = completed(&mut p);
    done.sort_by_key(|d| d.1);
    assert_eq!(done.len(), 2);
    assert_eq!((done[0].1, done[1].1), (3, 4));
    assert_eq!(
        done[0].2,
        Err(CallError::Failed("ConnectionError: gone".into()))
    );
    assert_eq!(p.pending_count(), 2);
    p.fail_all("closed");
    assert_eq!(completed(&mut p).len(), 2);
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn incoming_call_is_heartbeated_at_its_interval_until_answered() {
    let t0 = Instant::now();
    let mut p = peer("*/manager-x", Role::Manager);
    let f = call_frame(
        "ws-a/c",
        "services.default.slow",
        "s9",
        compact(vec![], 2.0),
    );
    p.handle_frame(t0, &f).unwrap();
    let (id, call) = incoming(&mut p);
    assert_eq!(call.method, "services.default.slow");
    assert_eq!(call.from, "ws-a/c");
    assert_eq!(p.incoming_count(), 1);
    assert_eq!(p.poll_timeout(), Some(t0 + 2 * S));
    p.handle_timeout(t0 + S);
    assert!(transmits(&mut p).is_empty());
    p.handle_timeout(t0 + 2 * S);
    let hb = transmits(&mut p);
    assert_eq!(hb.len(), 1);
    assert_eq!(hb[0].to, "ws-a/c");
    assert_eq!(method_of(&hb[0]), "s9.heartbeat");
    assert_eq!(get_str(&decode(&hb[0]).header, "from"), Some("*/manager-x"));
    assert_eq!(p.poll_timeout(), Some(t0 + 4 * S));
    p.handle_timeout(t0 + 3 * S);
    assert!(transmits(&mut p).is_empty());
    p.handle_timeout(t0 + 4 * S);
    assert_eq!(transmits(&mut p).len(), 1);

    assert!(p.respond(id, Ok("done".into())));
    let out = transmits(&mut p);
    assert_eq!(out.len(), 1);
    assert_eq!(method_of(&out[0]), "s9.resolve");
    assert_eq!(first_arg(&out[0]), Value::from("done"));
    assert_eq!(p.poll_timeout(), None);
    p.handle_timeout(t0 + 60 * S);
    assert!(
        transmits(&mut p).is_empty(),
        "no heartbeats after the reply"
    );
    assert!(!p.respond(id, Ok(Value::Nil)), "a call is answered once");
    assert!(transmits(&mut p).is_empty());
}

#[test]
fn incoming_reject_carries_an_error_map() {
    let t0 = Instant::now();
    let mut p = peer("*/manager-x", Role::Manager);
    let f = call_frame("ws-a/c", "services.default.f", "s1", compact(vec![], 15.0));
    p.handle_frame(t0, &f).unwrap();
    let (id, _) = incoming(&mut p);
    p.respond(id, Err("KeyError: nope".into()));
    let out = transmits(&mut p);
    assert_eq!(method_of(&out[0]), "s1.reject");
    assert_eq!(first_arg(&out[0]), value::error("KeyError: nope"));
}

#[test]
fn fire_and_forget_call_surfaces_but_is_not_answered() {
    let t0 = Instant::now();
    let mut p = peer("*/manager-x", Role::Manager);
    let f = call_frame(
        "ws-a/c",
        "services.default.log",
        "s1",
        map([("args", Value::Array(vec![]))]),
    );
    p.handle_frame(t0, &f).unwrap();
    let (id, _) = incoming(&mut p);
    assert_eq!(p.incoming_count(), 0);
    assert!(!p.respond(id, Ok(Value::Nil)));
    assert!(transmits(&mut p).is_empty());
}

#[test]
fn explicit_promise_to_the_caller_is_answered_and_heartbeated() {
    let t0 = Instant::now();
    let mut p = peer("*/manager-x", Role::Manager);
    let extra = explicit(
        cb("c", "s5.resolve"),
        cb("c", "s5.reject"),
        cb("ws-a/c", "s5.heartbeat"),
        1.0,
    );
    p.handle_frame(
        t0,
        &call_frame("ws-a/c", "services.built-in.get_service", "s5", extra),
    )
    .unwrap();
    let (id, _) = incoming(&mut p);
    p.handle_timeout(t0 + S);
    let hb = transmits(&mut p);
    assert_eq!(hb.len(), 1);
    assert_eq!(
        (hb[0].to.as_str(), method_of(&hb[0]).as_str()),
        ("ws-a/c", "s5.heartbeat")
    );
    p.respond(id, Ok(1.into()));
    let out = transmits(&mut p);
    assert_eq!(out[0].to, "ws-a/c");
    assert_eq!(method_of(&out[0]), "s5.resolve");
}

#[test]
fn explicit_promise_to_a_foreign_target_is_refused() {
    let t0 = Instant::now();
    let cases = [
        // Another peer than the caller.
        (
            explicit(
                cb("ws-v/victim", "s1.resolve"),
                cb("c", "s1.reject"),
                cb("c", "s1.heartbeat"),
                1.0,
            ),
            Refused::ForeignTarget,
        ),
        // A bare id resolves to the caller's own workspace: a different client there.
        (
            explicit(
                cb("c", "s1.resolve"),
                cb("other", "s1.reject"),
                cb("c", "s1.heartbeat"),
                1.0,
            ),
            Refused::ForeignTarget,
        ),
        // Only the heartbeat is foreign.
        (
            explicit(
                cb("c", "s1.resolve"),
                cb("c", "s1.reject"),
                cb("ws-v/victim", "s1.heartbeat"),
                1.0,
            ),
            Refused::ForeignTarget,
        ),
        // The caller itself, but a service method instead of a callback.
        (
            explicit(
                cb("ws-a/c", "services.vault.open"),
                cb("ws-a/c", "services.vault.open"),
                cb("ws-a/c", "services.vault.open"),
                1.0,
            ),
            Refused::BadMethod,
        ),
        (
            explicit(
                cb("ws-a/c", "services.x.resolve"),
                cb("c", "s1.reject"),
                cb("c", "s1.heartbeat"),
                1.0,
            ),
            Refused::BadMethod,
        ),
        (
            explicit(
                cb("ws-a/c", "s1.open"),
                cb("c", "s1.reject"),
                cb("c", "s1.heartbeat"),
                1.0,
            ),
            Refused::BadMethod,
        ),
    ];
    for role in [Role::Manager, Role::Client] {
        for (extra, want) in &cases {
            let mut p = peer("ws-a/me", role);
            let f = call_frame("ws-a/c", "services.built-in.ping", "s1", extra.clone());
            p.handle_frame(t0, &f).unwrap();
            match events(&mut p).as_slice() {
                [PeerEvent::Refused { from, reason, .. }] => {
                    assert_eq!(from, "ws-a/c");
                    assert_eq!(reason, want);
                }
                other => panic!("{role:?}: expected a refusal, got {other:?}"),
            }
            p.handle_timeout(t0 + 10 * S);
            assert!(
                transmits(&mut p).is_empty(),
                "{role:?}: nothing may be sent"
            );
            assert_eq!(p.incoming_count(), 0);
        }
    }
}

#[test]
fn reply_helper_refuses_a_foreign_promise() {
    let m = Message::decode(&call_frame(
        "ws-a/c",
        "services.x.f",
        "s1",
        explicit(
            cb("ws-v/victim", "s1.resolve"),
            cb("ws-v/victim", "s1.reject"),
            cb("ws-v/victim", "s1.heartbeat"),
            1.0,
        ),
    ))
    .unwrap();
    let Incoming::Call(call) = m.classify() else {
        panic!("not a call")
    };
    assert!(reply(&call, "ws-a/me", Ok(Value::Nil)).is_none());
    assert!(heartbeat(&call, "ws-a/me").is_none());
    assert!(LocalServices::new("ws-a/me", "").answer(&call).is_none());
}

#[test]
fn built_in_ping_is_answered_without_surfacing() {
    let t0 = Instant::now();
    let mut p = client();
    let f = call_frame(
        "ws-b/c",
        "services.built-in.ping",
        "s1",
        compact(vec!["ping".into()], 15.0),
    );
    p.handle_frame(t0, &f).unwrap();
    assert!(events(&mut p).is_empty());
    let out = transmits(&mut p);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, "ws-b/c");
    assert_eq!(method_of(&out[0]), "s1.resolve");
    assert_eq!(first_arg(&out[0]), Value::from("pong"));
    assert_eq!(p.incoming_count(), 0);
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn manager_role_surfaces_built_in_calls() {
    let t0 = Instant::now();
    let mut p = peer("*/manager-x", Role::Manager);
    let f = call_frame(
        "ws-b/c",
        "services.built-in.ping",
        "s1",
        compact(vec![], 15.0),
    );
    p.handle_frame(t0, &f).unwrap();
    let (_, call) = incoming(&mut p);
    assert_eq!(call.method, "services.built-in.ping");
    assert!(transmits(&mut p).is_empty());
}

#[test]
fn built_in_get_service_describes_registered_services() {
    let t0 = Instant::now();
    let mut p = client();
    let public = service_record("ws-a/me", "pub", map([("visibility", "public".into())]));
    let protected = service_record("ws-a/me", "priv", Value::Nil);
    p.services_mut().register("pub", public, vec!["f".into()]);
    p.services_mut()
        .register("priv", protected, vec!["g".into()]);
    let ask = |p: &mut RpcPeer<u32>, from: &str, name: &str| {
        let f = call_frame(
            from,
            "services.built-in.get_service",
            "s1",
            compact(vec![name.into()], 15.0),
        );
        p.handle_frame(t0, &f).unwrap();
        let out = transmits(p);
        assert_eq!(out.len(), 1);
        (method_of(&out[0]), first_arg(&out[0]))
    };

    let (m, obj) = ask(&mut p, "ws-b/c", "pub");
    assert_eq!(m, "s1.resolve");
    assert_eq!(get_str(&obj, "id"), Some("ws-a/me:pub"));
    let f = get(&obj, "f").unwrap();
    assert_eq!(get_str(f, "_rtarget"), Some("ws-a/me"));
    assert_eq!(get_str(f, "_rmethod"), Some("services.pub.f"));
    assert_eq!(get_str(f, "_rpromise"), Some("*"));
    assert_eq!(get_str(f, "_rserver"), Some("http://srv"));

    let (m, err) = ask(&mut p, "ws-b/c", "priv");
    assert_eq!(m, "s1.reject");
    assert!(get_str(&err, "_rvalue")
        .unwrap()
        .starts_with("PermissionError"));
    let (m, _) = ask(&mut p, "ws-a/c", "priv");
    assert_eq!(m, "s1.resolve");

    let (m, err) = ask(&mut p, "ws-a/c", "nope");
    assert_eq!(m, "s1.reject");
    assert_eq!(
        get_str(&err, "_rvalue"),
        Some("KeyError: Service not found: nope")
    );

    let (m, obj) = ask(&mut p, "ws-b/c", "built-in");
    assert_eq!(m, "s1.resolve");
    assert_eq!(get_str(&obj, "type"), Some("built-in"));
    assert_eq!(
        get_str(get(&obj, "ping").unwrap(), "_rmethod"),
        Some("services.built-in.ping")
    );
    assert!(events(&mut p).is_empty());
}

#[test]
fn client_serves_registered_members_and_rejects_the_rest() {
    let t0 = Instant::now();
    let mut p = client();
    let rec = service_record("ws-a/me", "svc", Value::Nil);
    p.services_mut().register("svc", rec, vec!["f".into()]);

    // A member, called from the own workspace: the driver runs it.
    p.handle_frame(
        t0,
        &call_frame(
            "ws-a/c",
            "services.svc.f",
            "s1",
            compact(vec![2.into()], 15.0),
        ),
    )
    .unwrap();
    let (id, call) = incoming(&mut p);
    assert_eq!(call.args, vec![Value::from(2)]);
    p.respond(id, Ok(4.into()));
    assert_eq!(first_arg(&transmits(&mut p)[0]), Value::from(4));

    // Protected: another workspace is refused; the manager is not.
    p.handle_frame(
        t0,
        &call_frame("ws-b/c", "services.svc.f", "s2", compact(vec![], 15.0)),
    )
    .unwrap();
    let out = transmits(&mut p);
    assert_eq!(method_of(&out[0]), "s2.reject");
    assert!(get_str(&first_arg(&out[0]), "_rvalue")
        .unwrap()
        .starts_with("PermissionError"));
    p.handle_frame(
        t0,
        &call_frame("*/manager-x", "services.svc.f", "s3", compact(vec![], 15.0)),
    )
    .unwrap();
    incoming(&mut p);

    // Unknown members and services.
    for (method, session) in [("services.svc.nope", "s4"), ("services.other.f", "s5")] {
        p.handle_frame(
            t0,
            &call_frame("ws-a/c", method, session, compact(vec![], 15.0)),
        )
        .unwrap();
        let out = transmits(&mut p);
        assert_eq!(method_of(&out[0]), format!("{session}.reject"));
        assert_eq!(
            get_str(&first_arg(&out[0]), "_rvalue"),
            Some(format!("Method not found: {method}").as_str())
        );
    }
    assert!(p.services_mut().unregister("svc"));
    p.handle_frame(
        t0,
        &call_frame("ws-a/c", "services.svc.f", "s6", compact(vec![], 15.0)),
    )
    .unwrap();
    assert_eq!(method_of(&transmits(&mut p)[0]), "s6.reject");
    assert!(p.poll_event().is_none());
}

#[test]
fn events_and_foreign_callbacks_surface_as_other() {
    let t0 = Instant::now();
    let mut p = client();
    let ev = frame(
        vec![
            ("type", "client_disconnected".into()),
            ("from", "*/manager-x".into()),
        ],
        None,
    );
    p.handle_frame(t0, &ev).unwrap();
    let cbk = call_frame("ws-b/c", "abc.123#fn", "s1", compact(vec![], 15.0));
    p.handle_frame(t0, &cbk).unwrap();
    let evs = events(&mut p);
    assert_eq!(evs.len(), 2);
    let PeerEvent::Other(m) = &evs[0] else {
        panic!("{:?}", evs[0])
    };
    assert_eq!(get_str(&m.merged, "type"), Some("client_disconnected"));
    assert!(
        matches!(&evs[1], PeerEvent::Other(m) if get_str(&m.merged, "method") == Some("abc.123#fn"))
    );
    assert!(transmits(&mut p).is_empty());
    assert!(p.handle_frame(t0, &[0xc1]).is_err());
}

#[test]
fn tiny_heartbeat_intervals_are_clamped() {
    let t0 = Instant::now();
    let mut p = peer("*/manager-x", Role::Manager);
    let f = call_frame(
        "ws-a/c",
        "services.default.f",
        "s1",
        compact(vec![], 0.000_001),
    );
    p.handle_frame(t0, &f).unwrap();
    assert_eq!(p.poll_timeout(), Some(t0 + MIN_HEARTBEAT_INTERVAL));
}

#[test]
fn stale_timers_do_not_pile_up() {
    let t0 = Instant::now();
    let mut p = client();
    for i in 0..10_000u32 {
        let s = p.call(
            t0,
            CallRequest::new("ws-b/p", "services.x.f", vec![], 30 * S),
            i,
        );
        let r = reply_frame("ws-b/p", &format!("{s}.resolve"), Some(Value::Nil));
        p.handle_frame(t0, &r).unwrap();
    }
    assert_eq!(completed(&mut p).len(), 10_000);
    assert!(p.timers.len() <= 64 + 2, "{} timers kept", p.timers.len());
}

#[test]
fn exposed_methods_are_served_to_their_caller_alone_until_withdrawn() {
    let t0 = Instant::now();
    let mut p = client();
    p.services_mut().expose("gen-1.next", "ws-b/c");
    assert!(p.services().is_exposed("gen-1.next"));
    // The caller it was handed to: served.
    let f = call_frame("ws-b/c", "gen-1.next", "s1", compact(vec![], 15.0));
    p.handle_frame(t0, &f).unwrap();
    let (id, call) = incoming(&mut p);
    assert_eq!(call.method, "gen-1.next");
    assert!(p.respond(id, Ok(1.into())));
    assert_eq!(method_of(&transmits(&mut p)[0]), "s1.resolve");
    // Anyone else, even from the same workspace: refused with the reference's text.
    let f = call_frame("ws-b/other", "gen-1.next", "s2", compact(vec![], 15.0));
    p.handle_frame(t0, &f).unwrap();
    assert!(events(&mut p).is_empty());
    let out = transmits(&mut p);
    assert_eq!(method_of(&out[0]), "s2.reject");
    assert!(format!("{:?}", first_arg(&out[0])).contains("Access denied"));
    // Withdrawn: a foreign callback again (surfaced as other, not served).
    assert!(p.services_mut().withdraw("gen-1.next"));
    assert!(!p.services_mut().withdraw("gen-1.next"));
    let f = call_frame("ws-b/c", "gen-1.next", "s3", compact(vec![], 15.0));
    p.handle_frame(t0, &f).unwrap();
    assert!(matches!(&events(&mut p)[..], [PeerEvent::Other(_)]));
    assert_eq!(p.services().exposed(), 0);
}
