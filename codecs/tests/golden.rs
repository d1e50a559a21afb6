//! Golden blocks: bytes written by each block format version (`block_v{N}_{name}.bin`), with the
//! events they hold (`block_v{N}_{name}.jsonl`). The current code must decode every one of them to
//! exactly those events, and, for the versions it still writes (1 on request, and the current
//! one), write the same bytes again; version 2 is read only.
//! `TRACEVAULT_BLESS=1 cargo test --test golden` writes the current version's files; never bless
//! over an old version's files.

use std::path::{Path, PathBuf};

use tracevault_codecs::block::{
    BLOCK_VERSION, BLOCK_VERSION_1, BLOCK_VERSION_2, BlockEncoder, DEFAULT_ZSTD_LEVEL, decode_block,
};
use tracevault_codecs::{Event, Record, jsonl};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn events(jsonl_path: &Path) -> Vec<Event> {
    let text = std::fs::read_to_string(jsonl_path).unwrap();
    jsonl::JsonlReader::new(text.as_bytes())
        .map(|r| match r.unwrap().1 {
            Record::Event { event, .. } => event,
            Record::Session(_) => panic!("golden files hold events only"),
        })
        .collect()
}

#[test]
fn golden_blocks_decode_to_their_events() {
    let bless = std::env::var_os("TRACEVAULT_BLESS").is_some();
    let mut checked = 0;
    let mut versions = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        let expected = events(&path);
        let bin = path.with_extension("bin");
        let name = bin.file_name().unwrap().to_string_lossy().into_owned();
        let version: u8 = name
            .strip_prefix("block_v")
            .and_then(|rest| rest.split('_').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name}: expected block_v{{N}}_{{name}}.bin"));
        let encoder = match version {
            BLOCK_VERSION_1 => Some(BlockEncoder::v1(DEFAULT_ZSTD_LEVEL)),
            BLOCK_VERSION_2 => None,
            BLOCK_VERSION => Some(BlockEncoder::new(DEFAULT_ZSTD_LEVEL)),
            other => panic!("{name}: no reader for version {other}"),
        };
        let encoded = encoder.map(|mut encoder| {
            let mut encoded = Vec::new();
            encoder.encode(&expected, &mut encoded).unwrap();
            encoded
        });
        if let Some(encoded) = &encoded
            && bless
            && version == BLOCK_VERSION
        {
            std::fs::write(&bin, encoded).unwrap();
        }
        let golden = std::fs::read(&bin).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(golden.first(), Some(&version), "{name}: the file's first byte is its version");
        assert_eq!(decode_block(&golden).unwrap(), expected, "{name} no longer decodes to its events");
        // A difference here means the writer changed the format (bump the version) or zstd's
        // output changed (check the zstd-sys update).
        if let Some(encoded) = encoded {
            assert!(encoded == golden, "{name}: the current encoder writes different bytes");
        }
        versions.insert(version);
        checked += 1;
    }
    assert!(checked >= 6, "expected the golden files in {}", golden_dir().display());
    assert_eq!(
        versions.into_iter().collect::<Vec<_>>(),
        [BLOCK_VERSION_1, BLOCK_VERSION_2, BLOCK_VERSION],
        "a golden file per version"
    );
}

/// A MessagePack batch written by another implementation (Python's msgpack, from
/// block_v1_all_kinds.jsonl with a session record in front): the HTTP API's binary format must
/// read what recorders in other languages write.
#[test]
fn foreign_msgpack_batch_reads_as_the_same_records() {
    let bytes = std::fs::read(golden_dir().join("batch_v1_all_kinds.msgpack")).unwrap();
    let records = tracevault_codecs::msgpack::decode_batch(&bytes).unwrap();
    let Record::Session(meta) = &records[0] else { panic!("expected the session record first") };
    assert_eq!((meta.session.as_str(), meta.user.as_str()), ("golden", "u-1"));
    let events: Vec<Event> = records[1..]
        .iter()
        .map(|r| match r {
            Record::Event { event, .. } => event.clone(),
            Record::Session(_) => panic!("one session record only"),
        })
        .collect();
    assert_eq!(events, self::events(&golden_dir().join("block_v1_all_kinds.jsonl")));
}
