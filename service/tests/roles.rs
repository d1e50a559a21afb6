//! Every role × route × ownership, from one table: what each token may do through the API, and
//! that what it may not do it cannot (an ML token never obtains raw events or unredacted text; a
//! recorder reads nothing and writes only its own device's sessions; expired, revoked, garbled
//! and missing tokens get 401).

mod common;

use common::Harness;
use serde_json::json;
use tracevault_service::Limits;

/// Text only raw reads and unredacted exports may carry.
const EMAIL: &str = "bob@example.com";

const WHO: [&str; 5] = ["recorder-d1", "recorder-d2", "ml", "auditor", "admin"];

fn setup(h: &Harness) {
    for (session, user, device, who) in [
        ("s-own", "u-1", "d-1", "recorder-d1"),
        ("s-other", "u-2", "d-2", "recorder-d2"),
        ("s-gone", "u-gone", "d-1", "recorder-d1"),
    ] {
        let a =
            h.post_json(who, "/v1/sessions", &json!({"session": session, "user": user, "device": device}));
        assert_eq!(a.status, 201, "{}", a.body);
        let events = json!([
            {"t": 1000, "kind": "move", "x": 10, "y": 20},
            {"t": 2000, "kind": "down", "button": "left", "x": 10, "y": 20},
            {"t": 2050, "kind": "up", "button": "left", "x": 10, "y": 20},
            {"t": 3000, "kind": "text", "text": format!("write to {EMAIL} today")},
        ]);
        let a = h.post_json(who, &format!("/v1/sessions/{session}/events"), &events);
        assert_eq!(a.status, 200, "{}", a.body);
    }
}

struct Case {
    name: &'static str,
    method: &'static str,
    /// `{who}` is replaced by the caller's name (so each caller creates its own session).
    path: &'static str,
    body: Option<serde_json::Value>,
    /// Expected status for recorder-d1, recorder-d2, ml, auditor, admin.
    expect: [u16; 5],
}

fn cases() -> Vec<Case> {
    let events = json!([{"t": 9000, "kind": "move", "x": 1, "y": 1}]);
    vec![
        Case {
            name: "create own device's session",
            method: "POST",
            path: "/v1/sessions",
            body: Some(json!({"session": "new-{who}", "user": "u-9", "device": "d-1"})),
            expect: [201, 403, 403, 403, 201],
        },
        Case {
            name: "append to d-1's session",
            method: "POST",
            path: "/v1/sessions/s-own/events",
            body: Some(events.clone()),
            expect: [200, 403, 403, 403, 200],
        },
        Case {
            name: "append to d-2's session",
            method: "POST",
            path: "/v1/sessions/s-other/events",
            body: Some(events),
            expect: [403, 200, 403, 403, 200],
        },
        Case {
            name: "close d-2's session",
            method: "POST",
            path: "/v1/sessions/s-other/close",
            body: None,
            expect: [403, 200, 403, 403, 200],
        },
        Case {
            name: "list sessions",
            method: "GET",
            path: "/v1/sessions",
            body: None,
            expect: [403, 403, 403, 200, 200],
        },
        Case {
            name: "replay raw",
            method: "GET",
            path: "/v1/sessions/s-own/replay?purpose=review&raw=true",
            body: None,
            expect: [403, 403, 403, 200, 403],
        },
        Case {
            name: "replay steps",
            method: "GET",
            path: "/v1/sessions/s-own/replay?purpose=review",
            body: None,
            expect: [403, 403, 403, 200, 403],
        },
        Case {
            name: "export redacted",
            method: "POST",
            path: "/v1/exports",
            body: Some(json!({"format": "jsonl"})),
            expect: [403, 403, 200, 200, 403],
        },
        Case {
            name: "export unredacted",
            method: "POST",
            path: "/v1/exports",
            body: Some(json!({"format": "jsonl", "redaction": "none", "purpose": "complaint"})),
            expect: [403, 403, 403, 200, 403],
        },
        Case {
            name: "export parquet",
            method: "POST",
            path: "/v1/exports",
            body: Some(json!({})),
            expect: [403, 403, 200, 200, 403],
        },
        Case {
            name: "read the audit log",
            method: "GET",
            path: "/v1/audit",
            body: None,
            expect: [403, 403, 403, 200, 200],
        },
        Case {
            name: "verify the audit log",
            method: "GET",
            path: "/v1/audit/verify",
            body: None,
            expect: [403, 403, 403, 200, 200],
        },
        Case {
            name: "shred a person",
            method: "POST",
            path: "/v1/users/u-gone/shred",
            body: Some(json!({"purpose": "erasure request", "ticket": "GDPR-1"})),
            expect: [403, 403, 403, 403, 200],
        },
    ]
}

#[test]
fn every_role_on_every_route_gets_what_the_policy_gives_and_no_more() {
    let h = Harness::start("roles", Limits::default(), false);
    setup(&h);
    for case in cases() {
        for (i, who) in WHO.iter().enumerate() {
            let path = case.path.replace("{who}", who);
            let body = case.body.as_ref().map(|b| b.to_string().replace("{who}", who));
            let answer = h.call(
                who,
                case.method,
                &path,
                &[("content-type", "application/json")],
                body.as_deref().map(str::as_bytes),
            );
            assert_eq!(
                answer.status, case.expect[i],
                "{}: {who} {} {path}: {}",
                case.name, case.method, answer.body
            );
            if answer.status >= 400 {
                // Every refusal is problem details that says why.
                let p = answer.json();
                assert_eq!(p["status"], answer.status);
                assert!(!p["detail"].as_str().unwrap_or("").is_empty(), "{}", answer.body);
                assert_eq!(answer.headers["content-type"], "application/problem+json");
            }
            if *who == "ml" || who.starts_with("recorder") || *who == "admin" {
                assert!(
                    !answer.body.contains(EMAIL),
                    "{}: {who} obtained unredacted text: {}",
                    case.name,
                    answer.body
                );
                assert!(
                    !answer.body.contains("\"kind\":\"text\""),
                    "{}: {who} obtained raw events",
                    case.name
                );
            }
        }
    }
    // What only auditors see really is there (the negative checks above are not vacuous).
    let raw = h.call("auditor", "GET", "/v1/sessions/s-own/replay?purpose=review&raw=true", &[], None);
    assert!(raw.body.contains(EMAIL) && raw.body.contains("\"kind\":\"text\""), "{}", raw.body);
    let redacted = h.post_json("ml", "/v1/exports", &json!({"format": "jsonl"}));
    assert!(redacted.body.contains("<EMAIL>"), "{}", redacted.body);
    // ML asking for the raw export, whatever it says, is refused, and the refusal is recorded.
    let asked =
        h.post_json("ml", "/v1/exports", &json!({"redaction": "none", "purpose": "I am an auditor really"}));
    assert_eq!(asked.status, 403);
    let audit = h.call("admin", "GET", "/v1/audit", &[], None).json();
    let refusals = audit["entries"].as_array().unwrap().iter().filter(|e| {
        e["actor"].as_str().unwrap().contains(&h.ids["ml"])
            && e["decision"]["decision"] == "denied"
            && e["action"] == "export"
    });
    assert!(refusals.count() >= 2);
    // The erased person's session can never be read, by anyone.
    let gone = h.call("auditor", "GET", "/v1/sessions/s-gone/replay?purpose=review&raw=true", &[], None);
    assert_eq!(gone.status, 404, "{}", gone.body);
}

#[test]
fn expired_revoked_garbled_unknown_and_missing_tokens_get_401_on_every_route() {
    let h = Harness::start("bad-tokens", Limits::default(), false);
    setup(&h);
    for who in ["expired", "revoked", "garbled", "unknown", "none"] {
        for case in cases() {
            let body = case.body.as_ref().map(|b| b.to_string());
            let answer = h.call(
                who,
                case.method,
                case.path,
                &[("content-type", "application/json")],
                body.as_deref().map(str::as_bytes),
            );
            assert_eq!(answer.status, 401, "{who} {}: {}", case.name, answer.body);
            assert!(answer.headers.contains_key("www-authenticate"));
            let detail = answer.json()["detail"].as_str().unwrap().to_owned();
            let expected = match who {
                "expired" => "expired",
                "revoked" => "revoked",
                "garbled" => "malformed",
                "unknown" => "not valid",
                _ => "no bearer token",
            };
            assert!(detail.contains(expected), "{who}: {detail}");
        }
    }
    // Nothing was written by any of them.
    let sessions = h.call("auditor", "GET", "/v1/sessions", &[], None).json();
    assert_eq!(sessions.as_array().unwrap().len(), 3);
    // Unauthenticated: only health, metrics and the API description.
    for path in ["/healthz", "/metrics", "/v1/openapi.json"] {
        assert_eq!(h.call("none", "GET", path, &[], None).status, 200, "{path}");
    }
}

#[test]
fn every_raw_read_leaves_exactly_one_audit_entry_naming_the_token_before_the_answer() {
    let mut h = Harness::start("audit", Limits::default(), false);
    setup(&h);
    let reads = |h: &Harness| -> Vec<serde_json::Value> {
        let audit = h.call("admin", "GET", "/v1/audit", &[], None).json();
        audit["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "read").cloned().collect()
    };
    let before = reads(&h).len();
    for n in 1..=3 {
        let a = h.call(
            "auditor",
            "GET",
            &format!("/v1/sessions/s-own/replay?purpose=case+{n}&ticket=T-{n}&raw=true"),
            &[],
            None,
        );
        assert_eq!(a.status, 200);
        let after = reads(&h);
        assert_eq!(after.len(), before + n, "one entry per read");
        let last = after.last().unwrap();
        let actor = last["actor"].as_str().unwrap();
        assert!(
            actor.starts_with("auditor (token ")
                && actor.contains(&h.ids["auditor"])
                && actor.contains("127.0.0.1"),
            "{actor}"
        );
        assert_eq!(last["purpose"], format!("case {n}"));
        assert_eq!(last["ticket"], format!("T-{n}"));
        assert_eq!(last["sessions"], json!(["s-own"]));
        assert_eq!(last["role"], "auditor");
    }
    // A replay without a purpose is refused before anything is read.
    let a = h.call("auditor", "GET", "/v1/sessions/s-own/replay?raw=true", &[], None);
    assert_eq!((a.status, a.json()["field"].as_str()), (400, Some("purpose")));
    assert_eq!(reads(&h).len(), before + 3);
    let log = h.stop();
    log.close().unwrap();
}

#[test]
fn a_read_whose_audit_entry_cannot_be_made_durable_returns_nothing() {
    let h = Harness::start("audit-fails", Limits::default(), true);
    setup(&h);
    let ok = h.call("auditor", "GET", "/v1/sessions/s-own/replay?purpose=review&raw=true", &[], None);
    assert_eq!(ok.status, 200);
    // Only the audit log's store fails: the proof and the rest of the log could go on.
    let audit_dir = tracevault_core::audit::audit_path().parent().unwrap().to_owned();
    h.storage.as_ref().unwrap().fail_writes_under(Some(&audit_dir));
    let failed = h.call("auditor", "GET", "/v1/sessions/s-own/replay?purpose=review&raw=true", &[], None);
    assert_eq!(failed.status, 503, "{}", failed.body);
    assert!(!failed.body.contains(EMAIL) && !failed.body.contains("\"kind\""), "{}", failed.body);
    assert!(failed.json()["detail"].as_str().unwrap().contains("audit"), "{}", failed.body);
    assert!(failed.headers.contains_key("retry-after"));
    // Steps and exports are reads too.
    let steps = h.call("auditor", "GET", "/v1/sessions/s-own/replay?purpose=review", &[], None);
    assert_eq!(steps.status, 503, "{}", steps.body);
    let export = h.post_json("ml", "/v1/exports", &json!({"format": "jsonl"}));
    assert_ne!(export.status, 200, "{}", export.body);
    assert!(!export.body.contains("<EMAIL>"));
}
