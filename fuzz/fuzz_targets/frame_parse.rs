//! Frames read back from disk (a segment or journal file someone may have damaged or forged):
//! parsing never panics, and a frame that parses re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracevault_core::frame::{self, Parsed};

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    while at < data.len() {
        match frame::parse(&data[at..]) {
            Parsed::Frame(f) => {
                let mut again = Vec::new();
                frame::write(&mut again, &f.header, f.payload);
                assert_eq!(again, f.bytes);
                // Whatever a block frame carries must decode or fail cleanly.
                if let Some(block) = f.payload.get(8..) {
                    let _ = tracevault_codecs::block::decode_block(block);
                }
                at += f.bytes.len();
            }
            Parsed::Incomplete | Parsed::Corrupt(_) => break,
        }
    }
});
