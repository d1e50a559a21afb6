//! The viewer's routes without a browser: a view is one audited read and belongs to the token
//! that opened it; its blocks come by index, bounded; the roles that may not read cannot open
//! one; a subject's token reads its own person's access history and nothing of anyone else's.
//! (tests/viewer.rs drives the page itself in Chromium.)

mod common;

use common::Harness;
use serde_json::{Value, json};
use tracevault_service::Limits;

fn setup(h: &Harness) {
    for (session, user, device, who) in
        [("s-own", "u-1", "d-1", "recorder-d1"), ("s-other", "u-2", "d-2", "recorder-d2")]
    {
        let a =
            h.post_json(who, "/v1/sessions", &json!({"session": session, "user": user, "device": device}));
        assert_eq!(a.status, 201, "{}", a.body);
        let events: Vec<Value> = (0..10_000)
            .map(|i| json!({"t": 1000 + i * 8000, "kind": "move", "x": i % 1900, "y": (i * 7) % 1000}))
            .chain([json!({"t": 90_000_000, "kind": "key_down", "code": "KeyA", "secure": true})])
            .collect();
        let a = h.post_json(who, &format!("/v1/sessions/{session}/events"), &json!(events));
        assert_eq!(a.status, 200, "{}", a.body);
        let a = h.call(who, "POST", &format!("/v1/sessions/{session}/close"), &[], None);
        assert_eq!(a.status, 200, "{}", a.body);
    }
}

fn open(h: &Harness, who: &str, session: &str) -> common::Answer {
    h.post_json(who, "/v1/views", &json!({"session": session, "purpose": "route test", "ticket": "T-9"}))
}

fn reads_of(h: &Harness, session: &str) -> Vec<Value> {
    let entries = h.call("admin", "GET", "/v1/audit", &[], None).json();
    entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "read" && e["sessions"] == json!([session]))
        .cloned()
        .collect()
}

#[test]
fn a_view_is_one_audited_read_its_blocks_come_by_index_and_only_to_its_token() {
    let h = Harness::start("view-read", Limits::default(), false);
    setup(&h);
    let a = open(&h, "auditor", "s-own");
    assert_eq!(a.status, 201, "{}", a.body);
    let view = a.json();
    let id = view["view"].as_str().unwrap();
    assert_eq!(view["integrity"]["verified"], true, "{view}");
    assert_eq!(view["integrity"]["events_proven"], 10_001);
    let blocks = view["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 3, "10,001 events in blocks of 4,096: {view}");
    assert!(blocks.iter().all(|b| b["sealed"] == true));
    assert_eq!(blocks[0]["t_min_us"], 1000);
    assert!(blocks[1]["t_min_us"].as_u64() > blocks[0]["t_max_us"].as_u64());

    // One block asked for, one block decoded; the events as the page draws them.
    let metric = |name: &str| -> u64 {
        let text = h.call("none", "GET", "/metrics", &[], None).body;
        text.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.trim().parse().ok())).unwrap()
    };
    let before = metric("tracevault_viewer_blocks_decoded_total");
    let a = h.call("auditor", "GET", &format!("/v1/views/{id}/blocks?from=2&to=2"), &[], None);
    assert_eq!(a.status, 200, "{}", a.body);
    let got = a.json();
    let events = got["blocks"][0]["events"].as_array().unwrap();
    assert_eq!(got["blocks"][0]["index"], 2);
    assert_eq!(events.last().unwrap(), &json!([90_000_000, "keydown", "Unidentified", null, true]));
    assert_eq!(events[0][1], "move");
    assert_eq!(metric("tracevault_viewer_blocks_decoded_total") - before, 1);

    // The timeline, then many more block reads: still one audit entry, with purpose and ticket.
    let a = h.call("auditor", "GET", &format!("/v1/views/{id}/timeline"), &[], None);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(!a.json()["steps"].as_array().unwrap().is_empty());
    for _ in 0..3 {
        assert_eq!(
            h.call("auditor", "GET", &format!("/v1/views/{id}/blocks?from=0&to=1"), &[], None).status,
            200
        );
    }
    let reads = reads_of(&h, "s-own");
    assert_eq!(reads.len(), 1, "{reads:#?}");
    assert_eq!(reads[0]["purpose"], "route test");
    assert_eq!(reads[0]["ticket"], "T-9");
    assert!(reads[0]["actor"].as_str().unwrap().contains(&h.ids["auditor"]), "{}", reads[0]);

    // Another auditor's token does not reach this view; bad ranges say what is expected.
    let a = h.call("auditor-2", "GET", &format!("/v1/views/{id}/blocks?from=0&to=0"), &[], None);
    assert_eq!(a.status, 404, "{}", a.body);
    let a = h.call("auditor", "GET", &format!("/v1/views/{id}/blocks?from=1&to=3"), &[], None);
    assert_eq!(a.status, 400);
    assert!(a.json()["detail"].as_str().unwrap().contains("< 3"), "{}", a.body);
    let a = h.call("auditor", "GET", &format!("/v1/views/{id}/blocks?from=2&to=1"), &[], None);
    assert_eq!(a.status, 400, "{}", a.body);
    let a = h.post_json("auditor", "/v1/views", &json!({"session": "s-own"}));
    assert_eq!((a.status, a.json()["field"].clone()), (400, json!("purpose")), "{}", a.body);
    assert_eq!(open(&h, "auditor", "s-none").status, 404);

    // Closed: gone.
    assert_eq!(h.call("auditor", "DELETE", &format!("/v1/views/{id}"), &[], None).status, 204);
    assert_eq!(
        h.call("auditor", "GET", &format!("/v1/views/{id}/blocks?from=0&to=0"), &[], None).status,
        404
    );
}

#[test]
fn only_an_auditor_opens_a_view_and_the_page_is_served_with_a_strict_policy() {
    let h = Harness::start("view-roles", Limits::default(), false);
    setup(&h);
    for who in ["recorder-d1", "ml", "admin", "subject-u1"] {
        let a = open(&h, who, "s-own");
        assert_eq!(a.status, 403, "{who}: {}", a.body);
    }
    for who in ["none", "garbled", "expired", "revoked"] {
        assert_eq!(open(&h, who, "s-own").status, 401, "{who}");
    }
    assert!(reads_of(&h, "s-own").is_empty(), "a refused opening reads nothing");
    let me = h.call("subject-u1", "GET", "/v1/whoami", &[], None).json();
    assert_eq!((me["role"].clone(), me["user"].clone()), (json!("subject"), json!("u-1")));

    let page = h.call("none", "GET", "/viewer", &[], None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/viewer/app.js"));
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{csp}");
    for asset in ["/viewer/app.js", "/viewer/app.css"] {
        let a = h.call("none", "GET", asset, &[], None);
        assert!(a.status == 200 && a.body.len() > 1000, "{asset}");
    }
}

#[test]
fn a_subject_sees_who_read_their_sessions_and_nothing_of_anyone_else() {
    let h = Harness::start("view-subject", Limits::default(), false);
    setup(&h);
    assert_eq!(open(&h, "auditor", "s-own").status, 201);
    assert_eq!(open(&h, "auditor", "s-other").status, 201);
    // An export that reads both people's sessions shows, to u-1, as a read of u-1's only.
    let a = h.post_json("ml", "/v1/exports", &json!({"format": "jsonl"}));
    assert_eq!(a.status, 200, "{}", a.body);

    let a = h.call("subject-u1", "GET", "/v1/me/access", &[], None);
    assert_eq!(a.status, 200, "{}", a.body);
    let history = a.json();
    assert_eq!(history["user"], "u-1");
    assert_eq!(history["sessions"], json!(["s-own"]));
    let entries = history["entries"].as_array().unwrap();
    assert!(entries.iter().all(|e| e["sessions"] == json!(["s-own"])), "{history:#}");
    let view = entries.iter().find(|e| e["action"] == "read").expect("the auditor's viewing");
    assert_eq!((view["purpose"].clone(), view["ticket"].clone()), (json!("route test"), json!("T-9")));
    assert!(view["actor"].as_str().unwrap().contains(&h.ids["auditor"]));
    let export = entries.iter().find(|e| e["action"] == "export").expect("the ml export");
    assert_eq!(export["role"], "ml");
    assert!(!a.body.contains("s-other") && !a.body.contains("u-2"), "{}", a.body);

    // Its own person only; and nothing else a subject could read.
    let a = h.call("subject-u1", "GET", "/v1/me/access?user=u-2", &[], None);
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(h.call("subject-u1", "GET", "/v1/me/access?user=u-1", &[], None).status, 200);
    for path in ["/v1/sessions", "/v1/audit", "/v1/sessions/s-own/replay?purpose=mine"] {
        assert_eq!(h.call("subject-u1", "GET", path, &[], None).status, 403, "{path}");
    }
    let a = h.post_json("subject-u1", "/v1/exports", &json!({"format": "jsonl"}));
    assert_eq!(a.status, 403, "{}", a.body);
    // An auditor may ask about anyone, by name; an ml token about no one.
    let a = h.call("auditor", "GET", "/v1/me/access?user=u-2", &[], None);
    assert_eq!((a.status, a.json()["sessions"].clone()), (200, json!(["s-other"])));
    assert_eq!(h.call("ml", "GET", "/v1/me/access?user=u-2", &[], None).status, 403);
    // The auditor's look at u-1's history is in u-1's history; u-1's own looks are not.
    assert_eq!(h.call("auditor", "GET", "/v1/me/access?user=u-1", &[], None).status, 200);
    let history = h.call("subject-u1", "GET", "/v1/me/access", &[], None).json();
    let looks: Vec<&Value> =
        history["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "read-audit").collect();
    assert_eq!(looks.len(), 1, "{history:#}");
    assert_eq!(looks[0]["role"], "auditor");
}

/// Flips a byte in the payload of every block frame numbered `block`, in place, under the
/// running server (as whoever holds the disk could).
fn alter_blocks(h: &Harness, block: u32) -> usize {
    use std::io::{Seek, SeekFrom, Write};
    use tracevault_core::frame::{self, FrameKind, Parsed};
    let mut altered = 0;
    for entry in std::fs::read_dir(h.dir.join("data").join("segments")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let mut at = tracevault_core::files::FILE_HEADER_BYTES;
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        while let Parsed::Frame(f) = frame::parse(&bytes[at..]) {
            if f.header.kind == FrameKind::Block && f.header.block == block {
                let target = f.payload.as_ptr() as usize - bytes.as_ptr() as usize + f.payload.len() / 2;
                file.seek(SeekFrom::Start(target as u64)).unwrap();
                file.write_all(&[bytes[target] ^ 0x5a]).unwrap();
                altered += 1;
            }
            at += f.bytes.len();
        }
        file.sync_all().unwrap();
    }
    altered
}

#[test]
fn a_block_altered_after_the_view_was_opened_is_refused_as_unproven_not_played() {
    let h = Harness::start("view-altered", Limits::default(), false);
    setup(&h);
    let a = open(&h, "auditor", "s-own");
    assert_eq!(a.status, 201, "{}", a.body);
    let id = a.json()["view"].as_str().unwrap().to_owned();
    assert_eq!(alter_blocks(&h, 1), 2, "block 1 of both sessions");

    // Block 0 still proves; block 1 no longer hashes to the leaf proven at opening.
    let a = h.call("auditor", "GET", &format!("/v1/views/{id}/blocks?from=0&to=0"), &[], None);
    assert_eq!(a.status, 200, "{}", a.body);
    let a = h.call("auditor", "GET", &format!("/v1/views/{id}/blocks?from=1&to=1"), &[], None);
    assert_eq!(a.status, 409, "{}", a.body);
    let problem = a.json();
    assert_eq!(problem["integrity"]["verified"], false);
    assert!(problem["detail"].as_str().unwrap().contains("no longer hashes to the leaf proven"), "{problem}");
    // The view is closed with it, and the session no longer opens.
    let a = h.call("auditor", "GET", &format!("/v1/views/{id}/blocks?from=0&to=0"), &[], None);
    assert_eq!(a.status, 404, "{}", a.body);
    let a = open(&h, "auditor", "s-other");
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.json()["integrity"]["verified"], false);
}

#[test]
fn erasing_a_person_closes_the_views_of_their_sessions() {
    let h = Harness::start("view-erased", Limits::default(), false);
    setup(&h);
    let a = open(&h, "auditor", "s-own");
    assert_eq!(a.status, 201, "{}", a.body);
    let id = a.json()["view"].as_str().unwrap().to_owned();
    let a = h.post_json(
        "admin",
        "/v1/users/u-1/shred",
        &json!({"purpose": "erasure request", "ticket": "DSR-1"}),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    // The next request on the view says why it is gone, and it is closed with what it held.
    let a = h.call("auditor", "GET", &format!("/v1/views/{id}/timeline"), &[], None);
    assert_eq!(a.status, 410, "{}", a.body);
    assert!(a.body.contains("erased"), "{}", a.body);
    let a = h.call("auditor", "GET", &format!("/v1/views/{id}/blocks?from=0&to=0"), &[], None);
    assert_eq!(a.status, 404, "closed: {}", a.body);
}
