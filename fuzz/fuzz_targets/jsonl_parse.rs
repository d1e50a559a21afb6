//! JSON Lines from a recorder: never panics, and every record read prints to a line that reads
//! back to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracevault_codecs::jsonl::{JsonlReader, parse_line, to_line};

fuzz_target!(|data: &[u8]| {
    for (_, record) in JsonlReader::new(data).flatten() {
        assert_eq!(parse_line(&to_line(&record)).expect("a printed record parses"), record);
    }
});
