//! One session's batch, the body of `POST /v1/sessions/{id}/events`, as MessagePack and as JSON:
//! never panics; the MessagePack fast path gives exactly what the full path gives (or defers to
//! it); a batch read re-encodes to one that reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracevault_codecs::batch::{Encoding, decode_events, decode_events_full, encode_events_json, encode_events_msgpack};

fuzz_target!(|data: &[u8]| {
    let fast = decode_events(Encoding::Msgpack, data, "s");
    let full = decode_events_full(Encoding::Msgpack, data, "s");
    assert_eq!(fast.as_ref().ok(), full.as_ref().ok());
    if let Ok(events) = fast {
        assert_eq!(decode_events(Encoding::Msgpack, &encode_events_msgpack(&events), "s").unwrap(), events);
        assert_eq!(decode_events(Encoding::Json, &encode_events_json(&events), "s").unwrap(), events);
    }
    if let Ok(events) = decode_events(Encoding::Json, data, "s") {
        assert_eq!(decode_events(Encoding::Json, &encode_events_json(&events), "s").unwrap(), events);
    }
});
