//! The synthetic workload: reproducible from its seed, every kind of input it promises, and
//! pointer statistics close to real human input (SapiMouse).

use tracevault::generate::{self, Workload, pointer_stats};
use tracevault::sapimouse;
use tracevault_codecs::{Event, EventKind};

#[test]
fn the_same_seed_gives_the_same_sessions_and_another_seed_others() {
    let w = Workload { sessions: 3, minutes: 1.0, seed: 7 };
    assert_eq!(generate::sessions(&w), generate::sessions(&w));
    assert_ne!(generate::sessions(&w), generate::sessions(&Workload { seed: 8, ..w.clone() }));
    assert_eq!(generate::session(&w, 2), generate::sessions(&w)[2], "a session regenerates alone");
}

#[test]
fn a_workload_holds_every_kind_of_input_it_promises() {
    let w = Workload { sessions: 6, minutes: 4.0, seed: 1 };
    let all: Vec<Event> = generate::sessions(&w).into_iter().flat_map(|(_, e)| e).collect();
    let has = |f: &dyn Fn(&EventKind) -> bool| all.iter().any(|e| f(&e.kind));
    assert!(has(&|k| matches!(k, EventKind::Move { .. })));
    assert!(has(&|k| matches!(k, EventKind::Down { button: tracevault_codecs::Button::Right, .. })));
    assert!(has(&|k| matches!(k, EventKind::Wheel { .. })));
    assert!(has(&|k| matches!(k, EventKind::KeyDown(key) if key.code == "Backspace")), "typos fixed");
    assert!(has(&|k| matches!(k, EventKind::KeyDown(key) if key.code == "ShiftLeft")));
    assert!(has(&|k| matches!(k, EventKind::KeyDown(key) if key.code == "ControlLeft")), "hotkeys");
    assert!(has(&|k| matches!(k, EventKind::KeyDown(key) if key.secure)), "password entry");
    assert!(has(&|k| matches!(k, EventKind::Focus { .. })));
    let minutes = all.iter().map(|e| e.t_us).max().unwrap() as f64 / 60e6;
    assert!(minutes >= 4.0, "each session lasts its minutes ({minutes:.1})");
}

/// The generated pointer against SapiMouse (the fixtures here; docs/GENERATOR.md has the full set):
/// sampling gaps and speeds within a factor the docs state.
#[test]
fn pointer_motion_is_close_to_real_human_motion() {
    let real = sapimouse::load_dir(&sapimouse::fixtures_dir()).unwrap();
    let real = pointer_stats(real.iter().map(|r| r.events.as_slice()));
    let sessions = generate::sessions(&Workload { sessions: 8, minutes: 3.0, seed: 42 });
    let ours = pointer_stats(sessions.iter().map(|(_, e)| e.as_slice()));
    println!("SapiMouse fixtures: {real:?}");
    println!("generated:          {ours:?}");
    if let Some(full) = sapimouse::shared_dir() {
        let all = sapimouse::load_dir(&full).unwrap();
        println!("SapiMouse, all:     {:?}", pointer_stats(all.iter().map(|r| r.events.as_slice())));
        let big = generate::sessions(&Workload { sessions: 24, minutes: 6.0, seed: 2026 });
        println!("generated, demo:    {:?}", pointer_stats(big.iter().map(|(_, e)| e.as_slice())));
    }
    let within = |a: f64, b: f64, factor: f64| a / b <= factor && b / a <= factor;
    assert!(
        within(ours.gap_ms[0], real.gap_ms[0], 1.25),
        "median gap {} vs {}",
        ours.gap_ms[0],
        real.gap_ms[0]
    );
    assert!(within(ours.gap_ms[1], real.gap_ms[1], 1.25), "p90 gap {} vs {}", ours.gap_ms[1], real.gap_ms[1]);
    for i in 0..3 {
        assert!(
            within(ours.speed_px_s[i], real.speed_px_s[i], 1.6),
            "speed percentile {i}: {} vs {}",
            ours.speed_px_s[i],
            real.speed_px_s[i]
        );
    }
}
