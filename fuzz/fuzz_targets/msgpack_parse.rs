//! A MessagePack batch from the HTTP API: never panics, and a batch read re-encodes to a batch
//! that reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracevault_codecs::msgpack::{decode_batch, encode_batch};

fuzz_target!(|data: &[u8]| {
    if let Ok(records) = decode_batch(data) {
        assert_eq!(decode_batch(&encode_batch(&records)).expect("a re-encoded batch decodes"), records);
    }
});
