use super::*;
use rhizo_protocol::value;

fn slot_for(t: &CallTemplate, slot: usize, seq: u64, payload: &[u8]) -> Slot {
    let mut buf = Vec::new();
    let at = t.write_head(&mut buf, &format!("{slot}x{seq}"));
    write_bin_header(&mut buf, payload.len());
    buf.extend_from_slice(payload);
    let end = buf.len();
    Slot {
        seq,
        sent: Instant::now(),
        frame: Bytes::from(buf),
        arg: (at, end),
    }
}

fn template() -> CallTemplate {
    CallTemplate::new(
        "ws-p/prov",
        "services.loadtest-echo.echo",
        Duration::from_secs(10),
    )
}

/// The call as the server would deliver it to the provider: `from` stamped in the header.
fn stamped(call: &Bytes) -> Bytes {
    let view = HeaderView::parse(call).unwrap();
    let stamp = rhizo_protocol::Stamp {
        from: "ws-c/caller",
        ws: "ws-c",
        user: &value::encode(&map([("id", "u".into())])),
    };
    let mut out = rhizo_protocol::rewrite_header(call, &view, "ws-p/prov", &stamp);
    out.extend_from_slice(&call[view.header_len()..]);
    Bytes::from(out)
}

#[test]
fn provider_echoes_the_argument_bytes_and_caller_accepts_them() {
    let live = Live::default();
    let t = template();
    for size in [0usize, 8, 128, 1024, 300_000] {
        let payload: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
        let mut slots: Vec<Option<Slot>> = (0..4).map(|_| None).collect();
        slots[2] = Some(slot_for(&t, 2, 41, &payload));
        let call = stamped(&slots[2].as_ref().unwrap().frame);
        let method = b"services.loadtest-echo.echo";
        let reply = provider_answer(&call, method, None, &live).expect("a reply");
        let view = HeaderView::parse(&reply).unwrap();
        assert_eq!(view.to(&reply), Some("ws-c/caller"));
        assert_eq!(view.method(&reply), Some("2x41.resolve"));
        assert_eq!(check_reply(&reply, &slots), Reply::Ok { slot: 2 });
    }
    assert_eq!(live.errors.load(Relaxed), 0);
}

#[test]
fn wrong_late_and_foreign_replies_are_told_apart() {
    let t = template();
    let mut slots: Vec<Option<Slot>> = (0..4).map(|_| None).collect();
    slots[1] = Some(slot_for(&t, 1, 7, b"12345678abcdef"));

    let reply = |session: &str, ok: bool, arg: &[u8]| {
        let mut out = Vec::new();
        write_reply(&mut out, "ws-c/caller", session, ok, arg);
        out
    };
    let mut bin = Vec::new();
    write_bin_header(&mut bin, 14);
    bin.extend_from_slice(b"12345678abcdeX");
    assert!(matches!(
        check_reply(&reply("1x7", true, &bin), &slots),
        Reply::Wrong {
            slot: 1,
            kind: "wrong reply",
            ..
        }
    ));
    let err = value::encode(&value::error("boom"));
    match check_reply(&reply("1x7", false, &err), &slots) {
        Reply::Wrong { kind, detail, .. } => {
            assert_eq!(kind, "rejected");
            assert!(detail.contains("boom"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    // A reply for an earlier call in the same slot, or an empty slot: late.
    assert_eq!(check_reply(&reply("1x6", true, &bin), &slots), Reply::Late);
    assert_eq!(check_reply(&reply("0x3", true, &bin), &slots), Reply::Late);
    // A slot we never had, or a session we never made.
    assert!(matches!(
        check_reply(&reply("9x1", true, &bin), &slots),
        Reply::Unmatched(_)
    ));
    assert!(matches!(
        check_reply(&reply("bogus", true, &bin), &slots),
        Reply::Unmatched(_)
    ));
    // Heartbeats are ignored, live or not.
    let hb = rhizo_protocol::message::encode_frame(
        &map([
            ("type", "method".into()),
            ("method", "1x7.heartbeat".into()),
        ]),
        None,
    );
    assert_eq!(check_reply(&hb, &slots), Reply::Heartbeat);
    // Calls into us and events are not replies.
    let call = slots[1].as_ref().unwrap().frame.clone();
    assert_eq!(check_reply(&call, &slots), Reply::Other);
    let event = value::encode(&map([("type", "lt-fanout".into()), ("to", "*".into())]));
    assert_eq!(check_reply(&event, &slots), Reply::Other);
}

#[test]
fn sessions_round_trip() {
    assert_eq!(parse_session("12x345"), Some((12, 345)));
    assert_eq!(parse_session("12345"), None);
    assert_eq!(parse_session("ax1"), None);
}

#[test]
fn payload_is_clamped_to_the_frame_limit() {
    let cfg = EchoConfig {
        payload: 16 << 20,
        ..Default::default()
    };
    assert_eq!(cfg.effective_payload(), (16 << 20) - FRAME_HEADROOM);
    let cfg = EchoConfig {
        payload: 128,
        ..Default::default()
    };
    assert_eq!(cfg.effective_payload(), 128);
}

#[test]
fn provider_rejects_nothing_it_cannot_parse() {
    let live = Live::default();
    assert!(provider_answer(&Bytes::from_static(&[0x01]), b"x", None, &live).is_none());
    assert_eq!(live.errors.load(Relaxed), 1);
}
