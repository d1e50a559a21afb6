//! Block decoding of untrusted bytes: never panics, never allocates past the limits, and whatever
//! decodes re-encodes to a block that decodes to the same events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracevault_codecs::block::{BlockEncoder, decode_block};

fuzz_target!(|data: &[u8]| {
    if let Ok(events) = decode_block(data) {
        let mut again = Vec::new();
        BlockEncoder::default().encode(&events, &mut again).expect("decoded events re-encode");
        assert_eq!(decode_block(&again).expect("a re-encoded block decodes"), events);
    }
});
