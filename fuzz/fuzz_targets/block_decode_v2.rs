//! Decoding of untrusted bytes by the entropy-coded block layouts (versions 2 and 3). The input's
//! first byte picks the version (odd: 2, even: 3) and the rest is a block without its version
//! byte, so every input reaches one of their decoders (in `block_decode` most inputs stop at the
//! version check): it never panics, never allocates past the limits, and whatever decodes
//! re-encodes, in the current version and in version 1, to blocks that decode to the same events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracevault_codecs::block::{BLOCK_VERSION, BLOCK_VERSION_2, BlockEncoder, DEFAULT_ZSTD_LEVEL, decode_block};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let mut block = Vec::with_capacity(data.len());
    block.push(if pick & 1 == 1 { BLOCK_VERSION_2 } else { BLOCK_VERSION });
    block.extend_from_slice(body);
    if let Ok(events) = decode_block(&block) {
        for mut encoder in [BlockEncoder::new(DEFAULT_ZSTD_LEVEL), BlockEncoder::v1(DEFAULT_ZSTD_LEVEL)] {
            let mut again = Vec::new();
            encoder.encode(&events, &mut again).expect("decoded events re-encode");
            assert_eq!(decode_block(&again).expect("a re-encoded block decodes"), events);
        }
    }
});
