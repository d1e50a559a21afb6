use proptest::prelude::*;

use super::*;
use crate::event::{Button, Event, EventKind, Key};

fn coord() -> impl Strategy<Value = i32> {
    prop_oneof![
        4 => -50i32..3000,
        1 => any::<i32>(),
        1 => prop::sample::select(vec![i32::MIN, i32::MAX, 0, -1]),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["", "a", "KeyA", "Enter", "firefox", "é", "日本"]).prop_map(str::to_owned),
        2 => ".{0,40}",
        1 => "[a-z]{1000,5000}",
    ]
}

fn kind() -> impl Strategy<Value = EventKind> {
    let button = prop::sample::select(Button::ALL.to_vec());
    let key = || {
        (text(), prop::option::of(text()), any::<bool>()).prop_map(|(code, text, secure)| Key {
            code,
            text,
            secure,
        })
    };
    prop_oneof![
        8 => (coord(), coord()).prop_map(|(x, y)| EventKind::Move { x, y }),
        1 => (button.clone(), coord(), coord()).prop_map(|(button, x, y)| EventKind::Down { button, x, y }),
        1 => (button, coord(), coord()).prop_map(|(button, x, y)| EventKind::Up { button, x, y }),
        1 => (any::<i32>(), any::<i32>(), coord(), coord()).prop_map(|(dx, dy, x, y)| EventKind::Wheel { dx, dy, x, y }),
        1 => key().prop_map(EventKind::KeyDown),
        1 => key().prop_map(EventKind::KeyUp),
        1 => text().prop_map(|text| EventKind::Text { text }),
        1 => (text(), prop::option::of(text())).prop_map(|(app, title)| EventKind::Focus { app, title }),
        1 => (any::<u32>(), any::<u32>()).prop_map(|(w, h)| EventKind::Screen { w, h }),
        1 => text().prop_map(|label| EventKind::Marker { label }),
    ]
}

/// How `t` moves from one event to the next: mostly forward in recorder-like steps, sometimes
/// backwards, sometimes anywhere at all.
#[derive(Clone, Debug)]
enum Step {
    Forward(u64),
    Back(u64),
    Anywhere(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => prop::sample::select(vec![0u64, 8_000, 16_000, 17_000, 1, 999]).prop_map(Step::Forward),
        1 => (0u64..100_000).prop_map(Step::Back),
        1 => any::<u64>().prop_map(Step::Anywhere),
    ]
}

pub(crate) fn events(max: usize) -> impl Strategy<Value = Vec<Event>> {
    (any::<u64>(), prop::collection::vec((step(), kind()), 0..max)).prop_map(|(t0, steps)| {
        let mut t_us = t0 % 1_000_000_000;
        steps
            .into_iter()
            .map(|(step, kind)| {
                t_us = match step {
                    Step::Forward(d) => t_us.wrapping_add(d),
                    Step::Back(d) => t_us.wrapping_sub(d),
                    Step::Anywhere(t) => t,
                };
                Event { t_us, kind }
            })
            .collect()
    })
}

/// Both versions this build writes: the current one and version 1.
const VERSIONS: [u8; 2] = [BLOCK_VERSION_1, BLOCK_VERSION];

fn encoder(version: u8, level: i32) -> BlockEncoder {
    let encoder = if version == BLOCK_VERSION_1 { BlockEncoder::v1(level) } else { BlockEncoder::new(level) };
    assert_eq!(encoder.version(), version);
    encoder
}

fn encode_as(version: u8, events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    encoder(version, DEFAULT_ZSTD_LEVEL).encode(events, &mut out).unwrap();
    out
}

fn encode(events: &[Event]) -> Vec<u8> {
    encode_as(BLOCK_VERSION, events)
}

fn encode_v1(events: &[Event]) -> Vec<u8> {
    encode_as(BLOCK_VERSION_1, events)
}

fn moves(n: usize) -> Vec<Event> {
    (0..n as i32)
        .map(|i| Event {
            t_us: i as u64 * 16_000,
            kind: EventKind::Move { x: i * 3 % 1920, y: i * 7 % 1080 },
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trip(
        events in events(300),
        version in prop::sample::select(VERSIONS.to_vec()),
        level in prop::sample::select(vec![1, 3, 9]),
    ) {
        let mut block = Vec::new();
        encoder(version, level).encode(&events, &mut block).unwrap();
        prop_assert_eq!(block[0], version);
        prop_assert_eq!(decode_block(&block).unwrap(), events);
    }

    /// Blocks of both versions, one after another, through one decoder: a store written before
    /// version 2 keeps its old blocks and appends new ones.
    #[test]
    fn appends_after_existing_bytes_and_decodes_in_sequence(
        a in events(50),
        b in events(50),
        versions in prop::sample::select(vec![
            (BLOCK_VERSION_1, BLOCK_VERSION),
            (BLOCK_VERSION, BLOCK_VERSION_1),
            (BLOCK_VERSION, BLOCK_VERSION),
            (BLOCK_VERSION_1, BLOCK_VERSION_1),
        ]),
    ) {
        let mut bytes = b"prefix".to_vec();
        encoder(versions.0, DEFAULT_ZSTD_LEVEL).encode(&a, &mut bytes).unwrap();
        let split = bytes.len();
        encoder(versions.1, DEFAULT_ZSTD_LEVEL).encode(&b, &mut bytes).unwrap();
        let mut decoder = BlockDecoder::new();
        let mut out = Vec::new();
        prop_assert_eq!(decoder.decode_into(&bytes[6..split], &mut out).unwrap().version, versions.0);
        prop_assert_eq!(decoder.decode_into(&bytes[split..], &mut out).unwrap().version, versions.1);
        prop_assert_eq!(out, [a, b].concat());
    }

    /// One encoder, many blocks: nothing of one block's state leaks into the next.
    #[test]
    fn an_encoder_reused_writes_the_same_blocks_as_a_fresh_one(a in events(100), b in events(100)) {
        let mut reused = BlockEncoder::default();
        let (mut first, mut second) = (Vec::new(), Vec::new());
        reused.encode(&a, &mut first).unwrap();
        reused.encode(&b, &mut second).unwrap();
        prop_assert_eq!(second, encode(&b));
    }

    #[test]
    fn corrupted_bytes_never_panic(
        events in events(64),
        version in prop::sample::select(VERSIONS.to_vec()),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
    ) {
        let mut block = encode_as(version, &events);
        for (at, xor) in flips {
            let i = at.index(block.len());
            block[i] ^= xor;
        }
        // A flipped byte may still decode (integrity is the frame checksum's job), but it must
        // never panic, and an error leaves the output untouched.
        let mut out = vec![Event { t_us: 1, kind: EventKind::Move { x: 0, y: 0 } }];
        if BlockDecoder::new().decode_into(&block, &mut out).is_err() {
            prop_assert_eq!(out.len(), 1);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_block(&bytes);
        let mut prefixed = encode_v1(&[])[..PREFIX_BYTES].to_vec();
        prefixed.extend_from_slice(&bytes);
        let _ = decode_block(&prefixed);
        // Version 2: a plausible header (a few events, t 0, unit 1), then anything.
        for count in [1u8, 5, 100] {
            let mut prefixed = vec![BLOCK_VERSION, count, 0, 1];
            prefixed.extend_from_slice(&bytes);
            let _ = decode_block(&prefixed);
        }
    }
}

#[test]
fn every_truncation_is_an_error() {
    for version in VERSIONS {
        let block = encode_as(version, &moves(100));
        for len in 0..block.len() {
            assert!(decode_block(&block[..len]).is_err(), "version {version} truncated to {len} decoded");
        }
    }
}

#[test]
fn empty_block_round_trips() {
    let block = encode_v1(&[]);
    assert_eq!(block.len(), PREFIX_BYTES);
    assert_eq!(decode_block(&block).unwrap(), vec![]);
    let block = encode(&[]);
    assert!(block.len() < PREFIX_BYTES, "an empty version 2 block takes {} bytes", block.len());
    assert_eq!(decode_block(&block).unwrap(), vec![]);
}

#[test]
fn header_is_readable_alone() {
    let events = moves(10);
    for version in VERSIONS {
        let header = BlockHeader::read(&encode_as(version, &events)).unwrap();
        assert_eq!(header, BlockHeader { version, event_count: 10, t_first_us: 0, t_unit_us: 16_000 });
    }
}

#[test]
fn errors_say_what_was_expected_and_found() {
    for version in VERSIONS {
        let mut block = encode_as(version, &moves(10));
        block[OFFSET_VERSION] = 9;
        assert_eq!(
            decode_block(&block).unwrap_err().to_string(),
            "block format version 9 is not supported (this build reads versions 1, 2 and 3)"
        );
    }
    assert_eq!(
        decode_block(&[]).unwrap_err().to_string(),
        format!("block is 0 bytes, expected at least {HEADER_BYTES}")
    );

    let mut block = encode_v1(&moves(10));
    block.push(0);
    assert_eq!(
        decode_block(&block).unwrap_err().to_string(),
        format!(
            "block is corrupt: 1 bytes after the last column (block is {} bytes, columns end at {})",
            block.len(),
            block.len() - 1
        )
    );
    let mut block = encode_v1(&moves(10));
    block[OFFSET_EVENT_COUNT..OFFSET_EVENT_COUNT + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(decode_block(&block), Err(DecodeError::OverLimit { what: "event count", .. })));
    let mut block = encode_v1(&moves(10));
    block[OFFSET_EVENT_COUNT] = 11;
    assert_eq!(
        decode_block(&block).unwrap_err().to_string(),
        "block column kinds is corrupt: holds 10 kinds for 11 events"
    );

    // Version 2: the header is varints after the version byte.
    let mut block = encode(&moves(10));
    let too_many = [BLOCK_VERSION, 0xff, 0xff, 0xff, 0xff, 0x0f];
    block.splice(0..2, too_many);
    assert!(matches!(decode_block(&block), Err(DecodeError::OverLimit { what: "event count", .. })));
    let mut block = encode(&moves(10));
    block.push(0);
    let e = decode_block(&block).unwrap_err().to_string();
    assert!(e.starts_with("block column extras is corrupt"), "{e}");
}

#[test]
fn an_unknown_kind_is_named() {
    let mut events = moves(3);
    events.push(Event { t_us: 1, kind: EventKind::Marker { label: "m".into() } });
    let mut block = encode_v1(&events);
    // The kinds column is short and stored raw: its bytes are the first column's data.
    assert_eq!(block[HEADER_BYTES], CODEC_RAW);
    block[PREFIX_BYTES + 3] = 0x0c;
    assert_eq!(
        decode_block(&block).unwrap_err().to_string(),
        "block column kinds is corrupt: event 3: unknown kind 12"
    );
}

#[test]
fn too_many_events_is_an_encode_error_and_writes_nothing() {
    let events =
        vec![Event { t_us: 0, kind: EventKind::Move { x: 0, y: 0 } }; crate::limits::BLOCK_EVENTS_MAX + 1];
    let mut out = vec![7];
    let e = BlockEncoder::default().encode(&events, &mut out).unwrap_err();
    assert!(matches!(e, EncodeError::TooManyEvents { .. }));
    assert_eq!(out, vec![7]);
}

#[test]
fn oversized_string_is_an_encode_error_naming_the_event() {
    let events = vec![
        Event { t_us: 0, kind: EventKind::Move { x: 0, y: 0 } },
        Event { t_us: 0, kind: EventKind::Text { text: "x".repeat(crate::limits::STRING_BYTES_MAX + 1) } },
    ];
    for version in VERSIONS {
        let mut out = vec![7];
        let e = encoder(version, DEFAULT_ZSTD_LEVEL).encode(&events, &mut out).unwrap_err();
        assert!(e.to_string().starts_with("event 1: a string of"), "{e}");
        assert_eq!(out, vec![7]);
    }
}

/// Regression: a block whose only time step lay between 2^62 and 2^63 was written with that step
/// as its time unit, which the reader then rejected as out of range.
#[test]
fn time_unit_above_2_pow_62_round_trips() {
    for t in [6_898_024_206_941_304_615u64, (1 << 62) + 1, i64::MAX as u64, 1 << 63, u64::MAX] {
        let events = vec![
            Event { t_us: 0, kind: EventKind::Move { x: 0, y: 0 } },
            Event { t_us: t, kind: EventKind::Move { x: 1, y: 1 } },
        ];
        for version in VERSIONS {
            assert_eq!(decode_block(&encode_as(version, &events)).unwrap(), events, "v{version}, t = {t}");
        }
    }
}

/// Found by fuzzing: the decoder's renormalisation counts on states in [2^23, 2^31), which every
/// encoder keeps to; a block whose initial states are outside is refused by name, not decoded
/// (an overflow, or garbage).
#[test]
fn an_initial_rans_state_out_of_range_is_an_error() {
    let block = encode(&moves(100));
    // The rANS section: after the header, the strings (none here), the tables and its length.
    let (_, header) = super::v2::read_header(&block).unwrap();
    let mut r = super::varint::Reader::new(&block[header..]);
    assert_eq!(r.varint().unwrap(), 0, "no strings");
    let tables = r.varint().unwrap() as usize;
    r.bytes(tables).unwrap();
    r.varint().unwrap();
    let states = header + r.position();
    for state in [0u32, (1 << 23) - 1, 1 << 31, u32::MAX] {
        for lane in [0, 4] {
            let mut bad = block.clone();
            bad[states + lane..states + lane + 4].copy_from_slice(&state.to_be_bytes());
            let e = decode_block(&bad).unwrap_err().to_string();
            assert!(e.contains("rans") && e.contains("initial state"), "{state}: {e}");
        }
    }
}
