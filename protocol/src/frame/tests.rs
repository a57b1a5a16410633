use super::*;
use proptest::prelude::*;
use rmpv::Value;

fn enc(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

fn get<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

fn user() -> Vec<u8> {
    enc(&Value::Map(vec![("id".into(), "u1".into())]))
}

#[test]
fn reads_routing_fields() {
    let frame = enc(&Value::Map(vec![
        ("type".into(), "method".into()),
        ("to".into(), "ws-1/c2".into()),
        ("method".into(), "services.x.f".into()),
        ("session".into(), "s1".into()),
    ]));
    let view = HeaderView::parse(&frame).unwrap();
    assert_eq!(view.to(&frame), Some("ws-1/c2"));
    assert_eq!(view.kind(&frame), Some("method"));
    assert_eq!(view.method(&frame), Some("services.x.f"));
    assert_eq!(view.session(&frame), Some("s1"));
    assert_eq!(view.header_len(), frame.len());
}

#[test]
fn forged_trusted_fields_are_overwritten() {
    let frame = enc(&Value::Map(vec![
        ("type".into(), "method".into()),
        ("from".into(), "victim-ws/admin".into()),
        ("ws".into(), "victim-ws".into()),
        (
            "user".into(),
            Value::Map(vec![("id".into(), "root".into())]),
        ),
        ("to".into(), "c2".into()),
        ("custom".into(), 7.into()),
    ]));
    let view = HeaderView::parse(&frame).unwrap();
    let u = user();
    let stamp = Stamp {
        from: "ws-a/c1",
        ws: "ws-a",
        user: &u,
    };
    let out = rewrite_header(&frame, &view, "ws-a/c2", &stamp);
    let v = rmpv::decode::read_value(&mut &out[..]).unwrap();
    assert_eq!(v.as_map().unwrap().len(), 6);
    assert_eq!(get(&v, "from").unwrap().as_str(), Some("ws-a/c1"));
    assert_eq!(get(&v, "ws").unwrap().as_str(), Some("ws-a"));
    assert_eq!(get(&v, "to").unwrap().as_str(), Some("ws-a/c2"));
    assert_eq!(
        get(get(&v, "user").unwrap(), "id").unwrap().as_str(),
        Some("u1")
    );
    assert_eq!(get(&v, "custom").unwrap().as_i64(), Some(7));
}

#[test]
fn malformed_headers_are_refused() {
    assert_eq!(HeaderView::parse(&[]), Err(FrameError::Empty));
    assert_eq!(
        HeaderView::parse(&enc(&Value::from(3))),
        Err(FrameError::NotAMap)
    );
    assert_eq!(
        HeaderView::parse(&enc(&Value::Array(vec![]))),
        Err(FrameError::NotAMap)
    );
    let int_key = enc(&Value::Map(vec![(1.into(), 2.into())]));
    assert!(matches!(
        HeaderView::parse(&int_key),
        Err(FrameError::Malformed(_))
    ));
    let to_int = enc(&Value::Map(vec![("to".into(), 2.into())]));
    assert!(matches!(
        HeaderView::parse(&to_int),
        Err(FrameError::Malformed(_))
    ));
    assert!(HeaderView::parse(b"not msgpack at all").is_err());
    // A `to` that is not UTF-8 parses but cannot be read as a target.
    let bad_to = [0x81, 0xa2, b't', b'o', 0xa2, 0xff, 0xfe];
    let view = HeaderView::parse(&bad_to).unwrap();
    assert!(matches!(
        view.target(&bad_to),
        Err(FrameError::Malformed(_))
    ));
    assert_eq!(view.to(&bad_to), None);
}

#[test]
fn every_cut_of_a_header_is_truncated() {
    let frame = enc(&Value::Map(vec![
        ("type".into(), "method".into()),
        ("to".into(), "ws-1/c2".into()),
    ]));
    for cut in 1..frame.len() {
        assert_eq!(
            HeaderView::parse(&frame[..cut]),
            Err(FrameError::Truncated),
            "cut {cut}"
        );
    }
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Value::Binary),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-z]{1,8}", inner), 0..6)
                .prop_map(|kv| Value::Map(kv.into_iter().map(|(k, v)| (k.into(), v)).collect())),
        ]
    })
}

proptest! {
    #[test]
    fn payload_bytes_out_equal_payload_bytes_in(
        // Any keys but the routing ones, whose values must be strings (a non-string `to` is
        // refused, see `malformed_headers_are_refused`); forged `from`/`ws`/`user` included.
        extra_keys in prop::collection::vec(
            ("[a-z]{1,10}".prop_filter("routing key", |k| !["to", "type", "session", "method"].contains(&k.as_str())), arb_value()),
            0..20,
        ),
        payload in prop::option::of(arb_value()),
        to in "[a-z0-9/*-]{1,30}",
    ) {
        let mut header = vec![("to".into(), Value::from(to.clone()))];
        header.extend(extra_keys.into_iter().map(|(k, v)| (Value::from(k), v)));
        let head = enc(&Value::Map(header.clone()));
        let mut frame = head.clone();
        if let Some(p) = &payload {
            frame.extend(enc(p));
        }
        let view = HeaderView::parse(&frame).unwrap();
        prop_assert_eq!(view.header_len(), head.len());
        prop_assert_eq!(view.to(&frame), Some(to.as_str()));
        // Header bytes plus payload bytes equal the frame.
        prop_assert_eq!(&frame[view.header_len()..], &frame[head.len()..]);
        let u = user();
        let stamp = Stamp { from: "w/c", ws: "w", user: &u };
        let new_head = rewrite_header(&frame, &view, "w/x", &stamp);
        prop_assert_eq!(new_head.len(), rewritten_len(&view, 3, stamp.encode().len()), "exact length");
        let mut out = new_head.clone();
        out.extend_from_slice(&frame[view.header_len()..]);
        // The rewritten frame parses again, and its payload is the original payload.
        let view2 = HeaderView::parse(&out).unwrap();
        prop_assert_eq!(view2.header_len(), new_head.len());
        prop_assert_eq!(&out[view2.header_len()..], &frame[view.header_len()..]);
        prop_assert_eq!(view2.to(&out), Some("w/x"));
        // Every non-stamped header entry survives.
        let decoded = rmpv::decode::read_value(&mut &new_head[..]).unwrap();
        for (k, v) in &header {
            let key = k.as_str().unwrap();
            if !["from", "to", "ws", "user"].contains(&key) {
                // With duplicate keys the first occurrence wins on lookup in both maps.
                let orig = get(&Value::Map(header.clone()), key).cloned();
                prop_assert_eq!(get(&decoded, key).cloned(), orig, "{}", key);
                let _ = v;
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = HeaderView::parse(&bytes);
    }
}
