//! The recorder's delivery against the real `tracevault serve`: every request sealed to the
//! server's key and spooled before it is sent; the server stopped for an outage (30 s, or
//! `TRACEVAULT_OUTAGE_S`) while the recorder keeps recording, then restarted on the same port:
//! every event arrives exactly once, in order. A spooled batch opens with the server's key and
//! with no other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracevault_codecs::sealed::{self, PrivateKey};
use tracevault_codecs::{Event, Screen, SessionMeta, batch};
use tracevault_recorder::{BatchPolicy, Delivery, Recorder, Spool, spawn_delivery};

use super::cli::temp;
use super::service_cli::{Server, stored_events, token};

fn outage() -> Duration {
    let s = std::env::var("TRACEVAULT_OUTAGE_S").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    Duration::from_secs(s)
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_server_outage_loses_nothing_and_stores_nothing_twice() {
    let dir = temp("recorder-outage");
    let data = dir.join("data");
    let recorder_token = token(&data, &["--role", "recorder", "--device", "laptop-7"]);
    let server = Server::start(&data, "127.0.0.1:0", &[]);
    let url = server.url.clone();
    let port = server.port().to_owned();

    // Real mouse input: the first SapiMouse fixture recording, as one session.
    let recording =
        tracevault::sapimouse::load_dir(&tracevault::sapimouse::fixtures_dir()).unwrap().remove(0);
    let events: Vec<Event> = recording.events;
    assert!(events.len() > 2000, "the fixture is big enough to make many batches");
    let meta = SessionMeta {
        session: "rec-outage-1".into(),
        user: "u-41".into(),
        device: Some("laptop-7".into()),
        screen: Some(Screen { w: 1920, h: 1080 }),
        started_at: Some("2026-12-02T09:00:00Z".into()),
        layout: Some("us".into()),
        labels: Default::default(),
    };

    let delivery = Delivery::new(&url, &recorder_token);
    let key = delivery.server_key().unwrap();
    let spool_dir = dir.join("spool");
    let spool = Arc::new(Mutex::new(Spool::open(&spool_dir, 64 << 20).unwrap()));
    let policy = BatchPolicy { max_events: 250, max_age: Duration::from_secs(1) };
    let mut recorder = Recorder::start(spool.clone(), key, &meta, policy).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let deliverer = spawn_delivery(delivery, spool.clone(), stop.clone(), Duration::from_secs(60));
    let spooled = || spool.lock().unwrap().len();

    let (before, after) = events.split_at(events.len() / 2);
    for e in before {
        recorder.record(e.clone()).unwrap();
    }
    recorder.flush().unwrap();
    wait_until("the first half to be delivered", Duration::from_secs(30), || spooled() == 0);

    // The outage: the server is gone while the second half is recorded.
    server.kill();
    for e in after {
        recorder.record(e.clone()).unwrap();
    }
    recorder.flush().unwrap();
    let waiting = spooled();
    assert!(waiting >= after.len() / 250, "batches wait in the spool: {waiting}");

    // What waits is sealed: it opens with the server's key, under its own request, and no other.
    let server_key = PrivateKey::from_bytes(&std::fs::read(data.join("recorder.key")).unwrap()).unwrap();
    let entry = spool.lock().unwrap().oldest().unwrap().expect("a spooled batch");
    let h = &entry.request.header;
    let raw = std::fs::read(&entry.path).unwrap();
    let first = batch::encode_events_msgpack(&after[..250]);
    assert!(!raw.windows(64).any(|w| first.windows(64).any(|f| f == w)), "the batch shows through");
    let aad = sealed::request_aad(&h.method, &h.path, &h.idempotency_key);
    assert_eq!(PrivateKey::generate().open(&aad, &entry.request.body), Err(sealed::SealError::Open));
    let opened = server_key.open(&aad, &entry.request.body).unwrap();
    let plain = zstd::stream::decode_all(&opened[..]).unwrap();
    let decoded = batch::decode_events(batch::Encoding::Msgpack, &plain, &meta.session).unwrap();
    assert_eq!(decoded, after[..250], "the spool holds the batch, sealed");

    std::thread::sleep(outage());
    assert!(spooled() >= waiting, "nothing left the spool while the server was down");

    let server = Server::start(&data, &format!("127.0.0.1:{port}"), &[]);
    recorder.close().unwrap();
    stop.store(true, Ordering::Release);
    deliverer.join().unwrap().unwrap();
    assert_eq!(spooled(), 0, "the spool drained once the server was back");
    assert!(!spool_dir.join("rejected").exists(), "the server refused nothing");
    server.kill();

    let stored = stored_events(&data, &meta.session);
    assert_eq!(stored.len(), events.len(), "every event once");
    assert_eq!(stored, events, "in order");
    std::fs::remove_dir_all(&dir).unwrap();
}
