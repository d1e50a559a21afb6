//! `GET /v1/openapi.json`: the API described as OpenAPI 3.1, from the same table docs/SERVICE.md
//! gives (routes, roles, statuses).

use serde_json::{Value, json};

fn problem() -> Value {
    json!({"description": "RFC 9457 problem details", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

fn op(summary: &str, roles: &str, ok: (&str, &str), params: Value, body: Option<Value>) -> Value {
    let mut responses = json!({
        ok.0: {"description": ok.1},
        "400": problem(), "401": problem(), "403": problem(), "404": problem(),
        "409": problem(), "413": problem(), "429": problem(), "503": problem(),
    });
    if ok.0 == "201" {
        responses["200"] = json!({"description": "the session existed with the same record (a retry)"});
    }
    let mut o = json!({
        "summary": summary,
        "description": format!("Roles: {roles}."),
        "security": [{"bearer": []}],
        "parameters": params,
        "responses": responses,
    });
    if let Some(b) = body {
        o["requestBody"] = b;
    }
    o
}

fn param(name: &str, at: &str, required: bool, ty: &str, description: &str) -> Value {
    json!({"name": name, "in": at, "required": required, "schema": {"type": ty}, "description": description})
}

pub fn document() -> Value {
    let id = param("id", "path", true, "string", "the session id");
    let json_body = |d: &str| json!({"required": true, "content": {"application/json": {"schema": {"type": "object"}}}, "description": d});
    json!({
        "openapi": "3.1.0",
        "info": {"title": "tracevault", "version": env!("CARGO_PKG_VERSION"), "description": "Session replay for human input: ingest from recorders, replay for auditors, redacted trajectories for ML. docs/SERVICE.md is the guide."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "tvk_<id>_<secret>, from `tracevault token create`"}},
            "schemas": {"Problem": {"type": "object", "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                "detail": {"type": "string"}, "field": {"type": "string"}}}}
        },
        "paths": {
            "/v1/sessions": {
                "post": op("Create a session from its session record (the JSONL form; `type` optional)", "recorder (its own device), admin", ("201", "created"), json!([]), Some(json_body("a session record"))),
                "get": op("List sessions (no events)", "auditor, admin", ("200", "an array of sessions"), json!([
                    param("user", "query", false, "string", "only this person's"),
                    param("device", "query", false, "string", "only this device's"),
                    param("from", "query", false, "string", "started at or after (RFC 3339)"),
                    param("to", "query", false, "string", "started before (RFC 3339)")]), None),
            },
            "/v1/recorder-key": {"get": op("The public key recorders seal request bodies to (HPKE, RFC 9180; Content-Encoding: tracevault-hpke)", "any valid token", ("200", "{kem, kdf, aead, public_key (hex)}"), json!([]), None)},
            "/v1/sessions/{id}/events": {"post": op(
                "Append a batch of events; answered once durable",
                "recorder (its own device's sessions), admin",
                ("200", "{session, seq_first, events, next_seq, duplicate}"),
                json!([id, param("expected_seq", "query", false, "integer", "the events the session must hold, else 409"),
                       param("Idempotency-Key", "header", false, "string", "a retry with the same key is acknowledged again, not stored twice")]),
                Some(json!({"required": true, "description": "an array of event records (`session` optional); Content-Encoding: zstd, and tracevault-hpke (sealed to /v1/recorder-key) last, accepted", "content": {
                    "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                    "application/msgpack": {"schema": {"type": "string", "format": "binary"}}}})))},
            "/v1/sessions/{id}/close": {"post": op("Close a session: its events sealed", "recorder (its own device), admin", ("200", "closed"), json!([id]), None)},
            "/v1/sessions/{id}/replay": {"get": op(
                "An auditor's replay, after the session's proof checks out; every call is one audit entry",
                "auditor",
                ("200", "steps as JSON, or with raw=true the events as interchange JSONL (application/x-ndjson)"),
                json!([id, param("purpose", "query", true, "string", "why (recorded)"), param("ticket", "query", false, "string", "the request answered (recorded)"),
                       param("raw", "query", false, "boolean", "the stored events instead of steps"),
                       param("from", "query", false, "integer", "from this time in the session, µs"), param("to", "query", false, "integer", "up to this time, µs")]),
                None)},
            "/v1/exports": {"post": op(
                "Export trajectories as one Parquet or JSONL file",
                "ml (redacted only, whatever is asked), auditor (redaction none with a purpose)",
                ("200", "the file (application/vnd.apache.parquet or application/x-ndjson)"),
                json!([]),
                Some(json_body("{format: parquet|jsonl, redaction: default|none, sessions: [..], user, started_from, started_before, purpose, ticket}")))},
            "/v1/users/{user}/shred": {"post": op("Crypto-erase a person", "admin", ("200", "the keys erased and sessions made unreadable"), json!([param("user", "path", true, "string", "the person's id")]), Some(json_body("{purpose, ticket} (optional)")))},
            "/v1/audit": {"get": op("The access audit log's entries", "admin, auditor", ("200", "{entries, problem}"), json!([param("from_seq", "query", false, "integer", "entries from this sequence number")]), None)},
            "/v1/audit/verify": {"get": op("Verify the audit log against the signed heads", "admin, auditor", ("200", "{ok, heads, audit_entries, first_problem}"), json!([]), None)},
            "/v1/views": {"post": op(
                "Open a session in the viewer: proven against the newest signed head, then the read recorded (one audit entry); 409 with integrity.verified=false when the proof fails",
                "auditor",
                ("201", "{view, session, integrity, t_min_us, t_max_us, blocks}"),
                json!([]),
                Some(json_body("{session, purpose (required), ticket}")))},
            "/v1/views/{view}": {"delete": op("Close a view", "the token that opened it", ("204", "closed"), json!([param("view", "path", true, "string", "the view's id")]), None)},
            "/v1/views/{view}/blocks": {"get": op(
                "Blocks of a view, decoded: events as [t_us, kind, ...fields] (docs/VIEWER.md)",
                "the token that opened the view",
                ("200", "{blocks: [{index, events}]}"),
                json!([param("view", "path", true, "string", "the view's id"),
                       param("from", "query", true, "integer", "the first block's index"),
                       param("to", "query", true, "integer", "the last block's index (at most 16 blocks)")]),
                None)},
            "/v1/views/{view}/timeline": {"get": op("A view's steps (the session reduced)", "the token that opened the view", ("200", "{steps, episodes, events}"), json!([param("view", "path", true, "string", "the view's id")]), None)},
            "/v1/me/access": {"get": op(
                "A person's access history: the audit entries naming their sessions, cut to them",
                "subject (its own person), auditor, admin",
                ("200", "{user, sessions, entries}"),
                json!([param("user", "query", false, "string", "whose (required but for a subject's token)")]),
                None)},
            "/v1/whoami": {"get": op("The token's name, role and binding", "any valid token", ("200", "{id, name, role, user, device}"), json!([]), None)},
            "/viewer": {"get": {"summary": "The viewer (HTML; app.js and app.css beside it)", "responses": {"200": {"description": "text/html"}}}},
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "ok"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text format 0.0.4"}}}},
            "/v1/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
        }
    })
}
