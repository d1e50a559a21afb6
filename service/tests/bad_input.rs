//! Bad input through the API: each case gets its status and a message that says where and why,
//! and the stored data is unchanged by it (nothing partially appended).

mod common;

use common::Harness;
use serde_json::json;
use tracevault_service::Limits;

fn events_held(h: &Harness, session: &str) -> u64 {
    let list = h.call("auditor", "GET", "/v1/sessions", &[], None).json();
    list.as_array()
        .unwrap()
        .iter()
        .find(|s| s["session"] == session)
        .map_or(0, |s| s["events"].as_u64().unwrap())
}

/// A bad request: its name, headers, path, body, the status it gets and what its message says.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, Vec<u8>, u16, &'a str);

#[test]
fn each_bad_batch_gets_its_status_and_reason_and_stores_nothing() {
    let limits = Limits {
        body_bytes_max: 256 << 10,
        batch_events_max: 1000,
        open_sessions_per_token: 3,
        ..Limits::default()
    };
    let mut h = Harness::start("bad-input", limits, false);
    let created =
        h.post_json("recorder-d1", "/v1/sessions", &json!({"session": "s", "user": "u", "device": "d-1"}));
    assert_eq!(created.status, 201);
    let good =
        json!([{"t": 1000, "kind": "move", "x": 1, "y": 2}, {"t": 2000, "kind": "move", "x": 3, "y": 4}]);
    assert_eq!(h.post_json("recorder-d1", "/v1/sessions/s/events", &good).status, 200);
    let path = "/v1/sessions/s/events";
    let json_ct = ("content-type", "application/json");
    let msgpack_ct = ("content-type", "application/msgpack");
    let huge = "x".repeat(2 << 20);
    let huge_text = json!([{"t": 3000, "kind": "text", "text": huge}]).to_string();
    let too_many: Vec<_> =
        (0..1001).map(|i| json!({"t": 3000 + i, "kind": "move", "x": 1, "y": 1})).collect();
    let too_many = serde_json::to_string(&too_many).unwrap();
    // A valid MessagePack batch whose second event is bad.
    let mut bad_msgpack = tracevault_codecs::batch::encode_events_msgpack(&[tracevault_codecs::Event {
        t_us: 3000,
        kind: tracevault_codecs::EventKind::Move { x: 1, y: 1 },
    }]);
    bad_msgpack.truncate(bad_msgpack.len() - 2);
    let zstd_bomb = zstd::bulk::compress(&vec![b' '; 100 << 20], 3).unwrap();
    let cases: Vec<Case> = vec![
        ("malformed JSON", vec![json_ct], path.into(), b"[{\"t\": 1,".to_vec(), 400, "EOF while parsing"),
        ("not an array", vec![json_ct], path.into(), b"{\"t\": 1}".to_vec(), 400, "expected an array of events"),
        ("trailing bytes", vec![json_ct], path.into(), b"[] []".to_vec(), 400, "after the array"),
        ("wrong type", vec![json_ct], path.into(), br#"[{"t":3000,"kind":"move","x":"left","y":1}]"#.to_vec(), 400, "field `x`"),
        ("unknown field", vec![json_ct], path.into(), br#"[{"t":3000,"kind":"move","x":1,"y":1,"pressure":3}]"#.to_vec(), 400, "pressure"),
        ("unknown kind", vec![json_ct], path.into(), br#"[{"t":3000,"kind":"teleport"}]"#.to_vec(), 400, "teleport"),
        ("field of another kind", vec![json_ct], path.into(), br#"[{"t":3000,"kind":"move","x":1,"y":1,"text":"a"}]"#.to_vec(), 400, "does not belong"),
        ("a session record in a batch", vec![json_ct], path.into(), br#"[{"type":"session","session":"s","user":"u"}]"#.to_vec(), 400, "POST /v1/sessions"),
        ("another session's event", vec![json_ct], path.into(), br#"[{"session":"t","t":3000,"kind":"move","x":1,"y":1}]"#.to_vec(), 400, "the session in the URL"),
        ("time far back", vec![json_ct], path.into(), br#"[{"t":3000,"kind":"move","x":1,"y":1},{"t":5000000,"kind":"move","x":1,"y":1},{"t":10,"kind":"move","x":1,"y":1}]"#.to_vec(), 400, "goes back"),
        ("time out of range", vec![json_ct], path.into(), br#"[{"t":18446744073709551615,"kind":"move","x":1,"y":1}]"#.to_vec(), 400, "at most"),
        ("huge string", vec![json_ct], path.into(), huge_text.into_bytes(), 413, "over"),
        // Far over the limit: the client is still sending when the server knows the answer, and
        // must still get it (not a reset connection).
        ("body far over the limit", vec![json_ct], path.into(), vec![b' '; 16 << 20], 413, "over 262144 bytes"),
        ("too many events", vec![json_ct], path.into(), too_many.into_bytes(), 413, "at most 1000 events"),
        ("malformed MessagePack", vec![msgpack_ct], path.into(), b"\xc1\xc1".to_vec(), 400, "body"),
        ("cut MessagePack", vec![msgpack_ct], path.into(), bad_msgpack, 400, "event"),
        ("bad zstd", vec![json_ct, ("content-encoding", "zstd")], path.into(), b"not zstd at all".to_vec(), 400, "zstd"),
        ("zstd bomb", vec![json_ct, ("content-encoding", "zstd")], path.into(), zstd_bomb, 413, "decompresses to over"),
        ("unknown encoding", vec![json_ct, ("content-encoding", "br")], path.into(), b"[]".to_vec(), 415, "Content-Encoding"),
        ("unknown content type", vec![("content-type", "text/csv")], path.into(), b"t,x,y".to_vec(), 415, "Content-Type"),
        ("wrong expected sequence", vec![json_ct], format!("{path}?expected_seq=7"), br#"[{"t":3000,"kind":"move","x":1,"y":1}]"#.to_vec(), 409, "expected sequence 7, but the session holds 2"),
        ("unknown query parameter", vec![json_ct], format!("{path}?sequence=2"), b"[]".to_vec(), 400, "unknown field `sequence`"),
        ("bad idempotency key", vec![json_ct, ("idempotency-key", "")], path.into(), b"[]".to_vec(), 400, "Idempotency-Key"),
        ("no such session", vec![json_ct], "/v1/sessions/nope/events".into(), b"[]".to_vec(), 404, "does not exist"),
    ];
    for (name, headers, path, body, status, says) in cases {
        let a = h.call("recorder-d1", "POST", &path, &headers, Some(&body));
        assert_eq!(a.status, status, "{name}: {}", a.body);
        let detail = a.json()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(says), "{name}: {detail:?} does not say {says:?}");
        assert_eq!(events_held(&h, "s"), 2, "{name} stored something");
    }
    // The field is named for the client to act on.
    let a = h.call(
        "recorder-d1",
        "POST",
        path,
        &[json_ct],
        Some(br#"[{"t":3000,"kind":"move","x":1,"y":1},{"t":3001,"kind":"move","x":1}]"#),
    );
    assert_eq!(a.json()["field"], "[1].y", "{}", a.body);

    // A retried batch (same Idempotency-Key) is acknowledged again and stored once; the same key
    // on a different batch is refused.
    let batch = json!([{"t": 4000, "kind": "move", "x": 5, "y": 5}]).to_string();
    let key = [json_ct, ("idempotency-key", "batch-7")];
    let first = h.call("recorder-d1", "POST", path, &key, Some(batch.as_bytes())).json();
    let again = h.call("recorder-d1", "POST", path, &key, Some(batch.as_bytes())).json();
    assert_eq!((first["duplicate"].as_bool(), again["duplicate"].as_bool()), (Some(false), Some(true)));
    assert_eq!(first["seq_first"], again["seq_first"]);
    let other =
        json!([{"t": 4000, "kind": "move", "x": 5, "y": 5}, {"t": 4001, "kind": "move", "x": 5, "y": 5}])
            .to_string();
    let reused = h.call("recorder-d1", "POST", path, &key, Some(other.as_bytes()));
    assert_eq!(reused.status, 422, "{}", reused.body);
    assert_eq!(events_held(&h, "s"), 3);

    // Session records: bad ones named, a changed one a conflict, too many open ones 429.
    let bad_time = h.post_json(
        "recorder-d1",
        "/v1/sessions",
        &json!({"session": "s2", "user": "u", "device": "d-1", "started_at": "yesterday"}),
    );
    assert_eq!(
        (bad_time.status, bad_time.json()["field"].as_str()),
        (400, Some("started_at")),
        "{}",
        bad_time.body
    );
    let unknown = h.post_json(
        "recorder-d1",
        "/v1/sessions",
        &json!({"session": "s2", "user": "u", "device": "d-1", "mood": "ok"}),
    );
    assert_eq!(unknown.status, 400, "{}", unknown.body);
    assert!(unknown.json()["detail"].as_str().unwrap().contains("mood"));
    let missing = h.post_json("recorder-d1", "/v1/sessions", &json!({"session": "s2", "device": "d-1"}));
    assert_eq!((missing.status, missing.json()["field"].as_str()), (400, Some("user")), "{}", missing.body);
    let changed = h.post_json(
        "recorder-d1",
        "/v1/sessions",
        &json!({"session": "s", "user": "someone else", "device": "d-1"}),
    );
    assert_eq!(changed.status, 409, "{}", changed.body);
    let same =
        h.post_json("recorder-d1", "/v1/sessions", &json!({"session": "s", "user": "u", "device": "d-1"}));
    assert_eq!(same.status, 200, "a retried creation is not an error: {}", same.body);
    for n in 2..=3 {
        assert_eq!(
            h.post_json(
                "recorder-d1",
                "/v1/sessions",
                &json!({"session": format!("s{n}"), "user": "u", "device": "d-1"})
            )
            .status,
            201
        );
    }
    let over =
        h.post_json("recorder-d1", "/v1/sessions", &json!({"session": "s4", "user": "u", "device": "d-1"}));
    assert_eq!(over.status, 429, "{}", over.body);
    assert!(over.headers.contains_key("retry-after"));
    assert_eq!(h.call("recorder-d1", "POST", "/v1/sessions/s3/close", &[], None).status, 200);
    assert_eq!(
        h.post_json("recorder-d1", "/v1/sessions", &json!({"session": "s4", "user": "u", "device": "d-1"}))
            .status,
        201
    );
    // An oversized body is refused before it is read whole.
    let big = vec![b' '; 300 << 10];
    let a = h.call("recorder-d1", "POST", path, &[json_ct], Some(&big));
    assert_eq!(a.status, 413, "{}", a.body);

    // What is stored is exactly what was acknowledged.
    let log = h.stop();
    let reader = tracevault_core::Access::new("test", tracevault_core::Role::Auditor, "check the test");
    let events = log.read_session(&reader, "s", 0..=u64::MAX).unwrap();
    assert_eq!(events.iter().map(|e| e.t_us).collect::<Vec<_>>(), [1000, 2000, 4000]);
    log.close().unwrap();
}
