use super::*;
use proptest::prelude::*;

fn frame() -> Vec<u8> {
    // A header map {"type": "method"} followed by a payload map: any bytes will do.
    vec![
        0x81, 0xa4, b't', b'y', b'p', b'e', 0xa6, b'm', b'e', b't', b'h', b'o', b'd', 0x80,
    ]
}

#[test]
fn unicast_round_trips_and_keeps_the_frame() {
    let f = frame();
    let env = Envelope {
        kind: Kind::Unicast,
        origin: "node-a",
        target: "ws-1/client-9",
    };
    let bytes = env.encode(&f).unwrap();
    assert_eq!(bytes.len(), env.header_len() + f.len());
    let (back, rest) = Envelope::decode(&bytes).unwrap();
    assert_eq!(back, env);
    assert_eq!(rest, &f[..]);
}

#[test]
fn decode_bytes_slices_without_copying() {
    let env = Envelope {
        kind: Kind::Broadcast { event: "ev" },
        origin: "a",
        target: "ws",
    };
    let buf = Bytes::from(env.encode(&frame()).unwrap());
    let (back, f) = decode_bytes(&buf).unwrap();
    assert_eq!(back.kind, Kind::Broadcast { event: "ev" });
    assert_eq!(&f[..], &frame()[..]);
    // Same allocation: the frame's pointer lies inside the envelope's buffer.
    let start = buf.as_ptr() as usize;
    assert_eq!(f.as_ptr() as usize, start + env.header_len());
}

#[test]
fn write_header_joins_target_parts() {
    let mut out = Vec::new();
    write_header(&mut out, Kind::Event { event: "x" }, "n", &["ws", "/", "c"]).unwrap();
    out.extend_from_slice(b"F");
    let (env, rest) = Envelope::decode(&out).unwrap();
    assert_eq!(env.target, "ws/c");
    assert_eq!(env.kind, Kind::Event { event: "x" });
    assert_eq!(rest, b"F");
}

#[test]
fn bad_input_gives_typed_errors() {
    assert_eq!(Envelope::decode(b""), Err(EnvelopeError::Truncated));
    assert_eq!(
        Envelope::decode(b"\x02\x01"),
        Err(EnvelopeError::UnknownVersion(2))
    );
    assert_eq!(
        Envelope::decode(b"\x01\x09\x01a\x00\x00"),
        Err(EnvelopeError::UnknownKind(9))
    );
    assert_eq!(
        Envelope::decode(b"\x01\x01\x00\x00\x00"),
        Err(EnvelopeError::BadLength("origin"))
    );
    assert_eq!(
        Envelope::decode(b"\x01\x01\x05ab"),
        Err(EnvelopeError::Truncated)
    );
    assert_eq!(
        Envelope::decode(b"\x01\x01\x01\xff\x00\x00"),
        Err(EnvelopeError::NotUtf8("origin"))
    );
    let long = "x".repeat(256);
    let env = Envelope {
        kind: Kind::Unicast,
        origin: &long,
        target: "t",
    };
    let mut out = vec![7];
    assert_eq!(
        env.encode_into(&mut out, b""),
        Err(EnvelopeError::BadLength("origin"))
    );
    assert_eq!(out, [7], "nothing written on error");
}

#[test]
fn every_truncation_of_a_header_is_reported() {
    let env = Envelope {
        kind: Kind::Broadcast {
            event: "service_added",
        },
        origin: "node",
        target: "ws",
    };
    let bytes = env.encode(b"").unwrap();
    for cut in 0..bytes.len() {
        assert_eq!(
            Envelope::decode(&bytes[..cut]),
            Err(EnvelopeError::Truncated),
            "cut at {cut}"
        );
    }
}

fn kind_strategy() -> impl Strategy<Value = (u8, String)> {
    (prop_oneof![1u8..=4, Just(7u8)], "[a-z_]{0,20}")
}

proptest! {
    #[test]
    fn encode_decode_round_trips(
        (code, event) in kind_strategy(),
        origin in "[a-z0-9-]{1,40}",
        target in "[a-z0-9/*-]{0,80}",
        frame in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let kind = match code {
            1 => Kind::Unicast,
            2 => Kind::Broadcast { event: &event },
            3 => Kind::Reject,
            7 => Kind::Returned,
            _ => Kind::Event { event: &event },
        };
        let env = Envelope { kind, origin: &origin, target: &target };
        let buf = Bytes::from(env.encode(&frame).unwrap());
        let (back, f) = decode_bytes(&buf).unwrap();
        prop_assert_eq!(back, env);
        prop_assert_eq!(&f[..], &frame[..]);
        prop_assert_eq!(buf.len(), env.header_len() + frame.len());
    }

    #[test]
    fn malformed_input_never_panics(input in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok((env, rest)) = Envelope::decode(&input) {
            prop_assert_eq!(env.header_len() + rest.len(), input.len());
        }
    }
}

#[test]
fn cluster_envelopes_round_trip_and_are_not_frames() {
    let buf = Bytes::from(encode_cluster("node-a", "node-b", b"\x81\xa1k\x01").unwrap());
    assert!(is_cluster(&buf));
    let (origin, target, msg) = decode_cluster(&buf).unwrap();
    assert_eq!(
        (origin, target, &msg[..]),
        ("node-a", "node-b", &b"\x81\xa1k\x01"[..])
    );
    assert_eq!(
        Envelope::decode(&buf).unwrap_err(),
        EnvelopeError::UnknownKind(CLUSTER_KIND)
    );
    let all = Bytes::from(encode_cluster("a", "", b"").unwrap());
    assert_eq!(decode_cluster(&all).unwrap().1, "");
    assert!(encode_cluster("", "b", b"x").is_err());
    let unicast = Bytes::from(
        Envelope {
            kind: Kind::Unicast,
            origin: "a",
            target: "w/c",
        }
        .encode(b"f")
        .unwrap(),
    );
    assert!(!is_cluster(&unicast));
    assert!(decode_cluster(&unicast).is_err());
    assert!(decode_cluster(&Bytes::from_static(b"\x01\x05\x03ab")).is_err());
}

#[test]
fn bundles_round_trip_without_copying_and_report_truncation() {
    let a = Envelope {
        kind: Kind::Unicast,
        origin: "n1",
        target: "ws/c",
    }
    .encode(&frame())
    .unwrap();
    let b = encode_cluster("n1", "n2", b"msg").unwrap();
    let mut out = Vec::new();
    write_bundle(&mut out, [&a[..], &b[..], &[][..]]).unwrap();
    assert_eq!(out.len(), bundle_len([a.len(), b.len(), 0]));
    assert!(is_bundle(&out) && !is_bundle(&a) && !is_cluster(&out));
    let input = Bytes::from(out);
    let parts: Vec<Bytes> = Bundle::new(input.clone())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(parts, vec![Bytes::from(a), Bytes::from(b), Bytes::new()]);
    // Each part shares the bundle's allocation.
    let base = input.as_ptr() as usize;
    assert!((base..base + input.len()).contains(&(parts[0].as_ptr() as usize)));
    // Every truncation yields the whole parts before it, then one error.
    for cut in 2..input.len() {
        let got: Vec<_> = Bundle::new(input.slice(..cut)).unwrap().collect();
        let errors = got.iter().filter(|r| r.is_err()).count();
        assert!(errors <= 1, "cut {cut}: {got:?}");
        if errors == 1 {
            assert_eq!(got.last(), Some(&Err(EnvelopeError::Truncated)));
        }
    }
    assert_eq!(
        Bundle::new(Bytes::from_static(&[1, 1])).err(),
        Some(EnvelopeError::UnknownKind(1))
    );
    assert_eq!(
        Bundle::new(Bytes::from_static(&[9, 6])).err(),
        Some(EnvelopeError::UnknownVersion(9))
    );
    assert_eq!(
        Bundle::new(Bytes::new()).err(),
        Some(EnvelopeError::Truncated)
    );
}

proptest! {
    #[test]
    fn bundle_reader_never_panics(input in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut input = input;
        if input.len() >= 2 {
            input[0] = VERSION;
            input[1] = BUNDLE_KIND;
        }
        if let Ok(b) = Bundle::new(Bytes::from(input)) {
            for part in b.take(64) {
                let _ = part;
            }
        }
    }
}
