//! Version 2 block decoding of untrusted bytes. The input is a block without its version byte, so
//! every input reaches the version 2 decoder (in `block_decode` most inputs stop at the version
//! check): it never panics, never allocates past the limits, and whatever decodes re-encodes, in
//! version 2 and in version 1, to blocks that decode to the same events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracevault_codecs::block::{BLOCK_VERSION, BlockEncoder, DEFAULT_ZSTD_LEVEL, decode_block};

fuzz_target!(|data: &[u8]| {
    let mut block = Vec::with_capacity(data.len() + 1);
    block.push(BLOCK_VERSION);
    block.extend_from_slice(data);
    if let Ok(events) = decode_block(&block) {
        for mut encoder in [BlockEncoder::new(DEFAULT_ZSTD_LEVEL), BlockEncoder::v1(DEFAULT_ZSTD_LEVEL)] {
            let mut again = Vec::new();
            encoder.encode(&events, &mut again).expect("decoded events re-encode");
            assert_eq!(decode_block(&again).expect("a re-encoded block decodes"), events);
        }
    }
});
