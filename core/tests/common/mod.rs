//! Helpers shared by the core tests.
#![allow(dead_code)]

use std::sync::Arc;

use tracevault_codecs::{Button, Event, EventKind, Key, SessionMeta};
use tracevault_core::storage::{FaultStorage, Storage};
use tracevault_core::{Access, KeySource, Log, LogOptions, Role, Secret};

pub fn meta(id: &str, user: &str) -> SessionMeta {
    SessionMeta {
        session: id.into(),
        user: user.into(),
        device: Some("d-1".into()),
        screen: None,
        started_at: None,
        layout: None,
        labels: Default::default(),
    }
}

/// `n` recorder-like events starting at `t0_us`, varied by `seed`.
pub fn events(seed: u64, t0_us: u64, n: usize) -> Vec<Event> {
    (0..n as u64)
        .map(|i| {
            let k = seed.wrapping_mul(31).wrapping_add(i);
            let t_us = t0_us + i * 16_000;
            let kind = match k % 50 {
                0 => EventKind::Down { button: Button::Left, x: (k % 1920) as i32, y: (k % 1080) as i32 },
                1 => EventKind::Up { button: Button::Left, x: (k % 1920) as i32, y: (k % 1080) as i32 },
                2 => EventKind::KeyDown(Key { code: "KeyA".into(), text: Some("a".into()), secure: false }),
                _ => EventKind::Move {
                    x: (k.wrapping_mul(7) % 1920) as i32,
                    y: (k.wrapping_mul(3) % 1080) as i32,
                },
            };
            Event { t_us, kind }
        })
        .collect()
}

/// Fixed keys given directly, so tests touch no key directory. (Real runs keep them in files
/// outside the data directory, or in the environment.)
pub fn test_keys() -> KeySource {
    KeySource::given(Secret::from_bytes([0x11; 32]), Secret::from_bytes([0x22; 32]))
}

/// The defaults, with the test keys.
pub fn options() -> LogOptions {
    LogOptions { keys: Some(test_keys()), ..LogOptions::default() }
}

/// Who the tests read as: an auditor with a purpose.
pub fn reader() -> Access {
    Access::new("test", Role::Auditor, "check what was appended")
}

pub fn small_options() -> LogOptions {
    LogOptions {
        block_events_max: 64,
        segment_bytes_max: 8 << 10,
        journal_bytes_max: 8 << 10,
        checkpoint_bytes: 16 << 10,
        ..options()
    }
}

pub fn memory_index() -> redb::Database {
    redb::Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).unwrap()
}

/// Opens a log on fault-injecting storage, with a fresh in-memory index (a crash loses it, so
/// every open rebuilds the index from the segments).
pub fn open_fault(storage: &FaultStorage, options: LogOptions) -> Log {
    Log::open_with(Arc::new(storage.clone()) as Arc<dyn Storage>, memory_index(), options).unwrap()
}
