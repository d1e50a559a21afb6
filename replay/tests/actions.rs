//! Golden tests: hand-written event sequences for every rule of docs/ACTIONS.md, with the steps
//! they must reduce to; the lineage property; typed text with typos, Shift, Caps Lock and
//! Backspace.

use proptest::prelude::*;
use tracevault_codecs::{Button, Event, EventKind, Key, Screen};
use tracevault_replay::{Absorbed, Action, ReduceConfig, Step, reduce};

const MS: u64 = 1000;

/// Builds a session's events with a running clock.
#[derive(Default)]
struct Script {
    t: u64,
    events: Vec<Event>,
}

impl Script {
    fn at(&mut self, dt_ms: u64, kind: EventKind) -> &mut Self {
        self.t += dt_ms * MS;
        self.events.push(Event { t_us: self.t, kind });
        self
    }
    fn mv(&mut self, dt: u64, x: i32, y: i32) -> &mut Self {
        self.at(dt, EventKind::Move { x, y })
    }
    fn down(&mut self, dt: u64, b: Button, x: i32, y: i32) -> &mut Self {
        self.at(dt, EventKind::Down { button: b, x, y })
    }
    fn up(&mut self, dt: u64, b: Button, x: i32, y: i32) -> &mut Self {
        self.at(dt, EventKind::Up { button: b, x, y })
    }
    fn click(&mut self, dt: u64, b: Button, x: i32, y: i32) -> &mut Self {
        self.down(dt, b, x, y).up(80, b, x, y)
    }
    fn key(&mut self, dt: u64, code: &str, text: Option<&str>) -> &mut Self {
        let k = Key { code: code.into(), text: text.map(Into::into), secure: false };
        self.at(dt, EventKind::KeyDown(k.clone())).at(40, EventKind::KeyUp(Key { text: None, ..k }))
    }
    fn key_down(&mut self, dt: u64, code: &str) -> &mut Self {
        self.at(dt, EventKind::KeyDown(Key { code: code.into(), text: None, secure: false }))
    }
    fn key_up(&mut self, dt: u64, code: &str) -> &mut Self {
        self.at(dt, EventKind::KeyUp(Key { code: code.into(), text: None, secure: false }))
    }
    fn wheel(&mut self, dt: u64, dy: i32) -> &mut Self {
        self.at(dt, EventKind::Wheel { dx: 0, dy, x: 500, y: 400 })
    }
    /// Types `s` as a recorder would see it: Shift around capitals and shifted symbols.
    fn type_str(&mut self, s: &str) -> &mut Self {
        for c in s.chars() {
            let shifted = c.is_ascii_uppercase() || "!@#$%^&*()_+{}|:\"<>?".contains(c);
            if shifted {
                self.key_down(60, "ShiftLeft");
            }
            self.key(90, &code_of(c), Some(&c.to_string()));
            if shifted {
                self.key_up(30, "ShiftLeft");
            }
        }
        self
    }
    fn reduce(&self) -> (Vec<Step>, Option<Absorbed>) {
        reduce(&ReduceConfig::default(), Some(Screen { w: 1000, h: 800 }), &self.events)
    }
    fn actions(&self) -> Vec<Action> {
        self.reduce().0.into_iter().map(|s| s.action).collect()
    }
}

fn code_of(c: char) -> String {
    match c {
        'a'..='z' | 'A'..='Z' => format!("Key{}", c.to_ascii_uppercase()),
        '0'..='9' => format!("Digit{c}"),
        ' ' => "Space".into(),
        '.' => "Period".into(),
        ',' => "Comma".into(),
        '@' => "Digit2".into(),
        '!' => "Digit1".into(),
        '-' => "Minus".into(),
        _ => "Unidentified".into(),
    }
}

fn click(button: Button, x: i32, y: i32, count: u8) -> Action {
    Action::Click { button, x, y, count, modifiers: vec![] }
}

fn typed(text: &str) -> Action {
    Action::Type { text: text.into(), secure: false, inferred: false }
}

fn press(code: &str, key: &str) -> Action {
    Action::Press { code: code.into(), key: Some(key.into()) }
}

fn hotkey(modifiers: &[&'static str], code: &str, key: &str) -> Action {
    Action::Hotkey { modifiers: modifiers.to_vec(), code: code.into(), key: Some(key.into()) }
}

#[test]
fn clicks_double_and_triple_clicks_right_and_middle_clicks() {
    let mut s = Script::default();
    s.mv(0, 100, 100).click(200, Button::Left, 100, 100);
    s.mv(800, 300, 300).click(100, Button::Left, 300, 300).click(120, Button::Left, 301, 299);
    s.mv(800, 500, 500).click(100, Button::Left, 500, 500).click(100, Button::Left, 500, 500).click(
        100,
        Button::Left,
        500,
        500,
    );
    s.mv(800, 50, 60).click(100, Button::Right, 50, 60).click(600, Button::Middle, 70, 80);
    let got = s.actions();
    let moves: Vec<_> = got.iter().filter(|a| matches!(a, Action::Move { .. })).collect();
    // The first move only says where the pointer is (nothing was known before): no step.
    assert_eq!(moves.len(), 3, "{got:#?}");
    let clicks: Vec<Action> = got.into_iter().filter(|a| !matches!(a, Action::Move { .. })).collect();
    assert_eq!(
        clicks,
        vec![
            click(Button::Left, 100, 100, 1),
            click(Button::Left, 300, 300, 2),
            click(Button::Left, 500, 500, 3),
            click(Button::Right, 50, 60, 1),
            click(Button::Middle, 70, 80, 1),
        ]
    );
    let names: Vec<&str> = s.reduce().0.iter().map(|s| s.action.name()).collect();
    assert!(
        names.contains(&"double_click") && names.contains(&"triple_click") && names.contains(&"right_click")
    );
}

#[test]
fn two_clicks_too_far_apart_in_time_or_space_are_two_clicks() {
    let mut s = Script::default();
    s.click(0, Button::Left, 10, 10).click(700, Button::Left, 10, 10); // too slow
    s.click(900, Button::Left, 10, 10).click(100, Button::Left, 40, 10); // too far
    let clicks: Vec<Action> = s.actions().into_iter().filter(|a| matches!(a, Action::Click { .. })).collect();
    assert_eq!(clicks.len(), 4, "{clicks:#?}");
    assert!(clicks.iter().all(|a| matches!(a, Action::Click { count: 1, .. })));
}

#[test]
fn a_press_moved_beyond_the_click_distance_is_a_drag_with_its_path() {
    let mut s = Script::default();
    s.down(0, Button::Left, 100, 100);
    for i in 1..=20 {
        s.mv(20, 100 + 10 * i, 100 + 5 * i);
    }
    s.up(20, Button::Left, 300, 200);
    let steps = s.reduce().0;
    assert_eq!(steps.len(), 1, "{steps:#?}");
    let Action::Drag { from, to, path, button, .. } = &steps[0].action else { panic!("{steps:#?}") };
    assert_eq!((*from, *to, *button), ((100, 100), (300, 200), Button::Left));
    assert!(path.len() >= 3 && path.len() <= ReduceConfig::default().path_points_max, "{path:?}");
    assert_eq!(path.first().map(|p| (p.0, p.1)), Some((100, 100)));
    assert_eq!(path.last().map(|p| (p.0, p.1)), Some((300, 200)));
    assert!(path.windows(2).all(|w| w[0].2 < w[1].2), "a path goes forward in time");
    assert!(steps[0].action.pyautogui(420_000).unwrap().contains("dragTo(300, 200, duration=0.420"));
}

#[test]
fn a_small_wobble_while_pressed_is_still_a_click() {
    let mut s = Script::default();
    s.down(0, Button::Left, 100, 100).mv(30, 103, 98).mv(30, 104, 101).up(30, Button::Left, 104, 101);
    assert_eq!(s.actions(), vec![click(Button::Left, 100, 100, 1)]);
}

#[test]
fn wheel_events_merge_across_short_gaps_only() {
    let mut s = Script::default();
    s.wheel(0, 120).wheel(100, 120).wheel(100, 240).wheel(900, -120);
    assert_eq!(
        s.actions(),
        vec![
            Action::Scroll { dx: 0, dy: -480, x: 500, y: 400, modifiers: vec![] },
            Action::Scroll { dx: 0, dy: 120, x: 500, y: 400, modifiers: vec![] }
        ]
    );
    assert_eq!(s.reduce().0[0].action.pyautogui(0).unwrap(), "pyautogui.scroll(-4, x=500, y=400)");
}

#[test]
fn typing_presses_and_hotkeys() {
    let mut s = Script::default();
    s.type_str("Hi there");
    s.key(100, "Enter", Some("\r"));
    s.key_down(100, "ControlLeft").key_down(50, "ShiftLeft").key(50, "KeyT", Some("T"));
    s.key_up(30, "ShiftLeft").key_up(30, "ControlLeft");
    s.key(100, "ArrowLeft", None);
    s.key_down(100, "ShiftLeft").key(40, "Tab", Some("\t")).key_up(40, "ShiftLeft");
    s.key(100, "F5", None);
    assert_eq!(
        s.actions(),
        vec![
            typed("Hi there"),
            press("Enter", "enter"),
            hotkey(&["ctrl", "shift"], "KeyT", "t"),
            press("ArrowLeft", "left"),
            hotkey(&["shift"], "Tab", "tab"),
            press("F5", "f5"),
        ]
    );
    let steps = s.reduce().0;
    assert_eq!(steps[0].action.pyautogui(0).unwrap(), "pyautogui.write('Hi there')");
    assert_eq!(steps[2].action.pyautogui(0).unwrap(), "pyautogui.hotkey('ctrl', 'shift', 't')");
    assert_eq!(steps[1].action.pyautogui(0).unwrap(), "pyautogui.press('enter')");
}

#[test]
fn a_lone_modifier_press_is_no_action_and_joins_a_neighbouring_step() {
    let mut s = Script::default();
    s.key(0, "KeyA", Some("a")).key_down(300, "ShiftLeft").key_up(100, "ShiftLeft").key(
        300,
        "KeyB",
        Some("b"),
    );
    let (steps, absorbed) = s.reduce();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].action, typed("ab"));
    assert_eq!((steps[0].lineage.first_event, steps[0].lineage.last_event), (0, 5));
    assert!(absorbed.is_none());
    // Nothing but a lone modifier: no step, and its events reported as absorbed.
    let mut lone = Script::default();
    lone.key_down(0, "AltLeft").key_up(100, "AltLeft");
    assert_eq!(lone.reduce(), (vec![], Some(Absorbed { first_event: 0, last_event: 1 })));
}

#[test]
fn secure_keys_type_nothing() {
    let mut s = Script::default();
    for _ in 0..6 {
        let k = Key { code: "Unidentified".into(), text: None, secure: true };
        s.at(100, EventKind::KeyDown(k.clone())).at(40, EventKind::KeyUp(k));
    }
    let steps = s.reduce().0;
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].action, Action::Type { text: String::new(), secure: true, inferred: false });
    assert!(steps[0].action.pyautogui(0).unwrap_err().contains("secure"));
}

#[test]
fn moves_between_actions_are_one_downsampled_path_and_idle_gaps_are_waits() {
    let mut s = Script::default();
    for i in 0..100 {
        s.mv(8, i * 5, 300); // 125 Hz
    }
    s.click(30, Button::Left, 495, 300);
    s.mv(2500, 10, 10); // 2.5 s idle
    let steps = s.reduce().0;
    let names: Vec<&str> = steps.iter().map(|s| s.action.name()).collect();
    assert_eq!(names, ["move", "click", "wait", "move"]);
    let Action::Move { path } = &steps[0].action else { unreachable!() };
    assert!(path.len() <= 32 && path.len() >= 10, "{} points", path.len());
    assert_eq!(path.last().map(|p| (p.0, p.1)), Some((495, 300)));
    assert_eq!(steps[2].action, Action::Wait { ms: 2500 });
    assert_eq!(steps[2].lineage.events, 0);
    assert_eq!(steps[1].args_for_test()["nx"], 0.495);
}

trait ArgsForTest {
    fn args_for_test(&self) -> serde_json::Value;
}

impl ArgsForTest for Step {
    fn args_for_test(&self) -> serde_json::Value {
        self.action.args(self.screen)
    }
}

#[test]
fn focus_changes_are_steps_and_long_gaps_or_focus_start_episodes() {
    let mut s = Script::default();
    s.at(0, EventKind::Focus { app: "firefox".into(), title: Some("Inbox".into()) });
    s.click(100, Button::Left, 10, 10);
    s.mv(61_000, 20, 20); // a minute and more: a new episode, no wait
    s.at(100, EventKind::Focus { app: "terminal".into(), title: None });
    s.key(100, "KeyL", Some("l"));
    let steps = s.reduce().0;
    let summary: Vec<(u32, u32, &str, Option<&str>)> =
        steps.iter().map(|s| (s.episode, s.step, s.action.name(), s.app.as_deref())).collect();
    assert_eq!(
        summary,
        [
            (0, 0, "focus", Some("firefox")),
            (0, 1, "click", Some("firefox")),
            (1, 0, "move", Some("firefox")),
            (1, 1, "focus", Some("terminal")),
            (1, 2, "type", Some("terminal")),
        ]
    );
    let split = ReduceConfig { split_on_focus: true, ..ReduceConfig::default() };
    let steps = reduce(&split, None, &s.events).0;
    let episodes: Vec<u32> = steps.iter().map(|s| s.episode).collect();
    assert_eq!(episodes, [0, 0, 1, 2, 2]);
}

#[test]
fn a_shift_click_carries_its_modifier() {
    let mut s = Script::default();
    s.key_down(0, "ShiftLeft").click(50, Button::Left, 10, 10).key_up(50, "ShiftLeft");
    let steps = s.reduce().0;
    assert_eq!(steps.len(), 1);
    assert_eq!(
        steps[0].action,
        Action::Click { button: Button::Left, x: 10, y: 10, count: 1, modifiers: vec!["shift"] }
    );
    assert_eq!(
        steps[0].action.pyautogui(0).unwrap(),
        "pyautogui.keyDown('shift'); pyautogui.click(x=10, y=10); pyautogui.keyUp('shift')"
    );
}

/// Sentences typed as people type them: typos fixed with Backspace, Shift for capitals, Caps
/// Lock for a shouted word.
#[test]
fn typed_sentences_with_typos_shift_caps_lock_and_backspace_read_as_the_final_sentence() {
    let sentences = [
        "The quick brown fox jumps over the lazy dog.",
        "Meeting moved to Thursday, 10 AM.",
        "Please send the report by Friday!",
    ];
    for (n, sentence) in sentences.iter().enumerate() {
        let mut s = Script::default();
        let mut caps = false;
        for (i, c) in sentence.char_indices() {
            // A typo every seven characters, noticed and fixed.
            if i % 7 == 3 && c.is_ascii_lowercase() {
                s.key(80, "KeyQ", Some("q")).key(150, "Backspace", None);
            }
            // "AM" typed with Caps Lock.
            let want_caps = sentence[..i].ends_with("10 ") && c.is_ascii_uppercase();
            if want_caps != caps && (want_caps || !c.is_ascii_uppercase()) {
                s.key(80, "CapsLock", None);
                caps = want_caps;
            }
            if caps {
                s.key(90, &code_of(c), Some(&c.to_string()));
            } else {
                s.type_str(&c.to_string());
            }
        }
        let steps = s.reduce().0;
        assert_eq!(steps.len(), 1, "sentence {n}: {steps:#?}");
        assert_eq!(steps[0].action, typed(sentence), "sentence {n}");
    }
}

#[test]
fn backspace_with_nothing_pending_is_a_press() {
    let mut s = Script::default();
    s.key(0, "Backspace", None).key(100, "Backspace", None);
    assert_eq!(s.actions(), vec![press("Backspace", "backspace"), press("Backspace", "backspace")]);
}

fn any_event() -> impl Strategy<Value = (u64, EventKind)> {
    let key = prop_oneof![
        Just(("KeyA", Some("a"))),
        Just(("KeyB", Some("B"))),
        Just(("Space", Some(" "))),
        Just(("Backspace", None)),
        Just(("Enter", Some("\r"))),
        Just(("ShiftLeft", None)),
        Just(("ControlLeft", None)),
        Just(("AltLeft", None)),
        Just(("ArrowUp", None)),
        Just(("CapsLock", None)),
        Just(("Unidentified", None)),
        Just(("KeyQ", None)),
        Just(("PageDown", None)),
    ];
    let button = prop_oneof![Just(Button::Left), Just(Button::Right), Just(Button::Middle)];
    let kind = prop_oneof![
        6 => (0i32..60, 0i32..60).prop_map(|(x, y)| EventKind::Move { x, y }),
        2 => (button.clone(), 0i32..60, 0i32..60).prop_map(|(button, x, y)| EventKind::Down { button, x, y }),
        2 => (button, 0i32..60, 0i32..60).prop_map(|(button, x, y)| EventKind::Up { button, x, y }),
        1 => (-240i32..240).prop_map(|dy| EventKind::Wheel { dx: 0, dy, x: 1, y: 1 }),
        2 => (key.clone(), any::<bool>()).prop_map(|((code, text), secure)| EventKind::KeyDown(Key {
            code: code.into(),
            text: if secure { None } else { text.map(Into::into) },
            secure,
        })),
        2 => key.prop_map(|(code, _)| EventKind::KeyUp(Key { code: code.into(), text: None, secure: false })),
        1 => Just(EventKind::Text { text: "héllo".into() }),
        1 => Just(EventKind::Focus { app: "app".into(), title: None }),
        1 => Just(EventKind::Screen { w: 800, h: 600 }),
        1 => Just(EventKind::Marker { label: "m".into() }),
    ];
    // Gaps from none to past the episode gap, and sometimes time going backwards.
    let dt = prop_oneof![4 => 0u64..200_000, 1 => 900_000u64..3_000_000, 1 => Just(70_000_000u64)];
    (dt, kind)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    /// Every event is accounted for by exactly one step, or by the one absorbed record: ranges
    /// of consecutive steps meet, and together cover every event.
    #[test]
    fn every_event_is_accounted_for_exactly_once(
        input in prop::collection::vec(any_event(), 0..300),
        back in prop::collection::vec(any::<bool>(), 300),
        split in any::<bool>(),
    ) {
        let mut t = 1_000_000u64;
        let events: Vec<Event> = input
            .into_iter()
            .enumerate()
            .map(|(i, (dt, kind))| {
                t = if back[i] && dt < 100_000 { t.saturating_sub(dt) } else { t + dt };
                Event { t_us: t, kind }
            })
            .collect();
        let config = ReduceConfig { split_on_focus: split, ..ReduceConfig::default() };
        let (steps, absorbed) = reduce(&config, None, &events);
        let mut next = 0u64;
        for s in steps.iter().filter(|s| s.lineage.events > 0) {
            prop_assert_eq!(s.lineage.first_event, next, "step {:?}", s);
            prop_assert_eq!(s.lineage.events, s.lineage.last_event - s.lineage.first_event + 1);
            next = s.lineage.last_event + 1;
        }
        if let Some(a) = absorbed {
            // Trailing events no step took (an episode of nothing but, say, key releases).
            prop_assert_eq!(a.first_event, next);
            next = a.last_event + 1;
        }
        prop_assert_eq!(next, events.len() as u64);
        for s in steps.iter().filter(|s| s.lineage.events == 0) {
            prop_assert!(matches!(s.action, Action::Wait { .. }), "only waits cover no event");
        }
        // Steps are numbered from 0 within each episode, episodes from 0 without gaps.
        let mut expected = (0u32, 0u32);
        for s in &steps {
            if s.episode != expected.0 {
                prop_assert_eq!(s.episode, expected.0 + 1);
                expected = (s.episode, 0);
            }
            prop_assert_eq!(s.step, expected.1);
            expected.1 += 1;
        }
    }
}

#[test]
fn a_modifier_release_the_recorder_missed_does_not_outlive_an_episode_gap_or_a_focus_change() {
    let mut s = Script::default();
    // Ctrl+Alt+Del: the secure desktop swallows the releases; the person is back after a minute.
    s.key_down(0, "ControlLeft").key_down(20, "AltLeft").key(20, "Delete", None);
    s.type_str_after(61_000, "back");
    s.key_down(0, "MetaLeft").key(20, "KeyL", Some("l"));
    s.at(100, EventKind::Focus { app: "desktop".into(), title: None });
    s.type_str("again");
    assert_eq!(
        s.actions(),
        vec![
            hotkey(&["ctrl", "alt"], "Delete", "delete"),
            typed("back"),
            hotkey(&["win"], "KeyL", "l"),
            Action::Focus { app: "desktop".into(), title: None },
            typed("again"),
        ]
    );
}

impl Script {
    fn type_str_after(&mut self, dt: u64, s: &str) -> &mut Self {
        self.t += dt * MS;
        self.type_str(s)
    }
}

#[test]
fn a_lost_button_release_ends_the_press_at_the_next_press_or_an_episode_gap() {
    let mut s = Script::default();
    s.down(0, Button::Left, 10, 10).click(200, Button::Left, 10, 10); // the first release was lost
    s.down(800, Button::Left, 50, 50).mv(20, 300, 300); // released off the record...
    s.key(61_000, "KeyA", Some("a")); // ...and a minute later the person types
    let steps = s.reduce().0;
    let names: Vec<&str> = steps.iter().map(|s| s.action.name()).collect();
    assert_eq!(names, ["click", "click", "drag", "type"], "{steps:#?}");
    assert_eq!(steps[3].episode, 1, "the typing starts a new episode, it is not swallowed by the press");
}

#[test]
fn a_click_belongs_to_the_app_it_was_pressed_in_and_a_double_click_drag_keeps_its_click() {
    let mut s = Script::default();
    s.at(0, EventKind::Focus { app: "1Password".into(), title: None });
    s.down(100, Button::Left, 10, 10);
    s.at(30, EventKind::Focus { app: "firefox".into(), title: None }); // focus moved before the release
    s.up(30, Button::Left, 10, 10);
    let steps = s.reduce().0;
    assert_eq!(steps[1].app.as_deref(), Some("1Password"), "{steps:#?}");

    let mut s = Script::default();
    s.click(0, Button::Left, 100, 100).down(100, Button::Left, 100, 100);
    for i in 1..=5 {
        s.mv(30, 100 + 20 * i, 100);
    }
    s.up(30, Button::Left, 200, 100);
    let actions = s.actions();
    assert_eq!(actions.len(), 2, "{actions:#?}");
    assert_eq!(actions[0], click(Button::Left, 100, 100, 1));
    assert!(matches!(&actions[1], Action::Drag { from: (100, 100), to: (200, 100), .. }), "{actions:#?}");
}

#[test]
fn altgr_types_dead_keys_wait_for_their_text_and_steps_never_end_before_they_start() {
    let mut s = Script::default();
    // Windows AltGr+Q on a German layout: Ctrl+Alt, and the key produces "@".
    s.type_str("ada");
    s.key_down(50, "ControlLeft").key_down(0, "AltRight").key(30, "KeyQ", Some("@"));
    s.key_up(20, "AltRight").key_up(0, "ControlLeft");
    s.type_str("x.org");
    // A dead key (^) then e: the recorder sees the dead key without text, then "ê".
    s.key(50, "BracketLeft", None).key(50, "KeyE", Some("ê"));
    assert_eq!(s.actions(), vec![typed("ada@x.orgê")]);
    // A release stamped before its press (clocks do that): the step ends when it starts.
    let events = vec![
        Event { t_us: 5_000, kind: EventKind::Down { button: Button::Left, x: 1, y: 1 } },
        Event { t_us: 4_000, kind: EventKind::Up { button: Button::Left, x: 1, y: 1 } },
    ];
    let steps = reduce(&ReduceConfig::default(), None, &events).0;
    assert!(steps.iter().all(|s| s.t_end_us >= s.t_start_us), "{steps:#?}");
}

// ---- The defects a review found (issue 13), each as its minimal case. ----

fn names(steps: &[Step]) -> Vec<&'static str> {
    steps.iter().map(|s| s.action.name()).collect()
}

/// D1: a button held while another is clicked: the held one is a `mouse_down` step, the clicks
/// are clicks, and its release a `mouse_up`; a release that never comes swallows nothing.
#[test]
fn d1_presses_of_another_button_while_one_is_held_are_not_swallowed() {
    let mut s = Script::default();
    s.down(0, Button::Right, 100, 100).mv(50, 200, 200);
    s.click(100, Button::Left, 200, 200).click(600, Button::Left, 400, 200);
    let actions = s.actions();
    assert_eq!(names(&s.reduce().0), ["mouse_down", "move", "click", "click"], "{actions:#?}");
    assert_eq!(actions[0], Action::MouseDown { button: Button::Right, x: 100, y: 100 });
    // ...and when the release comes, it is a mouse_up where it happened.
    s.up(100, Button::Right, 400, 200);
    let steps = s.reduce().0;
    assert_eq!(
        steps.last().map(|s| &s.action),
        Some(&Action::MouseUp { button: Button::Right, x: 400, y: 200 })
    );
    assert_eq!(
        steps.last().unwrap().action.pyautogui(0).unwrap(),
        "pyautogui.mouseUp(x=400, y=200, button='right')"
    );
    // A key while a button is held: the key is its own step.
    let mut s = Script::default();
    s.down(0, Button::Left, 10, 10).key(100, "KeyA", Some("a")).key(100, "KeyB", Some("b"));
    assert_eq!(names(&s.reduce().0), ["mouse_down", "type"]);
}

/// D2: the second press of a double click measures its movement from itself.
#[test]
fn d2_a_second_press_that_stays_put_is_a_double_click_not_a_drag() {
    let mut s = Script::default();
    s.click(0, Button::Left, 100, 100).down(100, Button::Left, 104, 100).mv(30, 107, 100).up(
        30,
        Button::Left,
        107,
        100,
    );
    assert_eq!(s.actions(), vec![click(Button::Left, 100, 100, 2)]);
}

/// D3: modifiers held through an idle second are still held.
#[test]
fn d3_modifiers_held_through_a_pause_still_apply() {
    let mut s = Script::default();
    s.key_down(0, "ControlLeft").key(1500, "KeyC", None).key_up(50, "ControlLeft");
    s.key_down(2000, "ShiftLeft").key(1500, "Tab", Some("\t")).key_up(50, "ShiftLeft");
    s.key_down(2000, "ControlLeft").click(1500, Button::Left, 10, 10).key_up(50, "ControlLeft");
    let actions: Vec<Action> =
        s.actions().into_iter().filter(|a| !matches!(a, Action::Wait { .. })).collect();
    assert_eq!(
        actions,
        vec![
            hotkey(&["ctrl"], "KeyC", "c"),
            hotkey(&["shift"], "Tab", "tab"),
            Action::Click { button: Button::Left, x: 10, y: 10, count: 1, modifiers: vec!["ctrl"] },
        ]
    );
}

/// D4: a release far from its press is a drag, moves between or not.
#[test]
fn d4_a_release_far_from_its_press_is_a_drag() {
    let mut s = Script::default();
    s.down(0, Button::Left, 100, 100).up(80, Button::Left, 140, 100);
    let actions = s.actions();
    assert!(matches!(&actions[..], [Action::Drag { from: (100, 100), to: (140, 100), .. }]), "{actions:#?}");
}

/// D5: only calls PyAutoGUI executes as recorded; anything else is a step without a call, and
/// says why.
#[test]
fn d5_every_call_is_one_pyautogui_runs_and_the_rest_say_why_not() {
    let back = Action::Click { button: Button::Back, x: 1, y: 1, count: 1, modifiers: vec![] };
    assert!(back.pyautogui(0).unwrap_err().contains("no back button"));
    let mut s = Script::default();
    s.key_down(0, "ControlLeft")
        .key(50, "Numpad5", None)
        .key(100, "NumpadAdd", None)
        .key_up(50, "ControlLeft");
    s.key(100, "MediaPlayPause", None).key(100, "IntlBackslash", None);
    let calls: Vec<Result<String, String>> = s.reduce().0.iter().map(|s| s.action.pyautogui(0)).collect();
    assert_eq!(
        calls[..3],
        [
            Ok("pyautogui.hotkey('ctrl', 'num5')".into()),
            Ok("pyautogui.hotkey('ctrl', 'add')".into()),
            Ok("pyautogui.press('playpause')".into())
        ]
    );
    assert_eq!(calls[3], Err("PyAutoGUI has no key for IntlBackslash".into()));
    // Typing that Backspace erased entirely is no step (never `write('')`).
    let mut s = Script::default();
    s.type_str("ab").key(100, "Backspace", None).key(100, "Backspace", None).key(100, "Enter", Some("\r"));
    assert_eq!(s.actions(), vec![press("Enter", "enter")]);
    // Text PyAutoGUI cannot type is a type step without a call.
    let mut s = Script::default();
    s.at(0, EventKind::Text { text: "café".into() });
    assert!(s.reduce().0[0].action.pyautogui(0).unwrap_err().contains("cannot type"));
}

/// D6: partial notches round up to a notch, never `scroll(0)`; a change of direction is a new
/// scroll; Ctrl+wheel keeps its Ctrl.
#[test]
fn d6_scrolls_keep_small_amounts_their_direction_and_their_modifier() {
    let mut s = Script::default();
    s.wheel(0, 50);
    s.wheel(1000, 180);
    s.wheel(1000, 120).wheel(100, -120);
    s.key_down(1000, "ControlLeft").wheel(100, -120).key_up(50, "ControlLeft");
    let calls: Vec<String> = s
        .reduce()
        .0
        .iter()
        .filter(|s| s.action.name() == "scroll")
        .map(|s| s.action.pyautogui(0).unwrap())
        .collect();
    assert_eq!(
        calls,
        [
            "pyautogui.scroll(-1, x=500, y=400)",
            "pyautogui.scroll(-2, x=500, y=400)",
            "pyautogui.scroll(-1, x=500, y=400)",
            "pyautogui.scroll(1, x=500, y=400)",
            "pyautogui.keyDown('ctrl'); pyautogui.scroll(1, x=500, y=400); pyautogui.keyUp('ctrl')",
        ]
    );
}

/// D8: on 60 Hz input the kept points are a sample period (50 ms) apart, and no path repeats its
/// last point.
#[test]
fn d8_paths_keep_one_point_per_period_and_never_repeat_their_last_point() {
    let mut s = Script::default();
    for i in 0..60 {
        s.at(if i == 0 { 0 } else { 17 }, EventKind::Move { x: 10 * i, y: 5 * i });
    }
    s.mv(17, 590, 295); // the same position again
    let steps = s.reduce().0;
    let Action::Move { path } = &steps[0].action else { panic!("{steps:#?}") };
    for w in path[..path.len() - 1].windows(2) {
        assert!(w[1].2 - w[0].2 >= 50 * MS, "kept points {:?} are closer than the period", w);
    }
    let n = path.len();
    assert_ne!((path[n - 1].0, path[n - 1].1), (path[n - 2].0, path[n - 2].1), "{path:?}");
    assert_eq!((path[n - 1].0, path[n - 1].1), (590, 295));
}

/// D10: pointer jitter that never leaves the click distance is no move step.
#[test]
fn d10_jitter_is_no_move() {
    let mut s = Script::default();
    s.click(0, Button::Left, 100, 100);
    s.mv(700, 102, 101).mv(30, 104, 103).mv(30, 101, 100);
    s.key(100, "Enter", Some("\r"));
    assert_eq!(names(&s.reduce().0), ["click", "press"]);
}

/// Recorders that give key codes alone: the text comes from the session's layout, with Shift
/// and Caps Lock, and the step says it was inferred.
#[test]
fn text_is_inferred_from_codes_by_the_layout() {
    let mut s = Script::default();
    s.key_down(0, "ShiftLeft").key(50, "KeyH", None).key_up(20, "ShiftLeft");
    for code in ["KeyE", "KeyL", "KeyL", "KeyO", "Comma", "Space"] {
        s.key(80, code, None);
    }
    s.key(80, "CapsLock", None).key(80, "KeyW", None).key(80, "CapsLock", None).key(80, "KeyX", None);
    s.key(80, "Backspace", None).key(80, "Digit1", None);
    let steps = s.reduce().0;
    assert_eq!(steps.len(), 1, "{steps:#?}");
    assert_eq!(steps[0].action, Action::Type { text: "Hello, W1".into(), secure: false, inferred: true });
    // A German keyboard: the key where US has Y types z, and Ctrl with it is Ctrl+Z.
    let mut s = Script::default();
    s.key(0, "KeyY", None).key(80, "Semicolon", None);
    s.key_down(200, "ControlLeft").key(50, "KeyY", None).key_up(20, "ControlLeft");
    let mut r = tracevault_replay::Reducer::new(ReduceConfig::default(), None).with_layout(Some("de"));
    r.push_block(0, 0, &s.events);
    let actions: Vec<Action> = r.finish().0.into_iter().map(|s| s.action).collect();
    assert_eq!(
        actions,
        vec![
            Action::Type { text: "zö".into(), secure: false, inferred: true },
            hotkey(&["ctrl"], "KeyY", "z")
        ]
    );
    // A recorder that gives text: a key without text is a dead key, not a key to infer.
    let mut s = Script::default();
    s.key(0, "KeyA", Some("a")).key(50, "BracketLeft", None).key(50, "KeyE", Some("ê"));
    assert_eq!(s.actions(), vec![typed("aê")]);
}

/// A key held down until it repeats is a `key_down` step that takes its repeats, and its
/// release a `key_up` (computer_13's held keys); a key pressed twice is two presses.
#[test]
fn a_held_key_is_key_down_and_key_up() {
    let mut s = Script::default();
    s.key_down(0, "ArrowDown");
    for _ in 0..5 {
        s.key_down(if s.t == 0 { 500 } else { 33 }, "ArrowDown");
    }
    s.key_up(20, "ArrowDown");
    s.key(200, "ArrowDown", None).key(200, "ArrowDown", None);
    let steps = s.reduce().0;
    assert_eq!(names(&steps), ["key_down", "key_up", "press", "press"], "{steps:#?}");
    assert_eq!(steps[0].lineage.events, 6, "the repeats are the key_down's");
    assert_eq!(steps[0].action.pyautogui(0).unwrap(), "pyautogui.keyDown('down')");
    assert_eq!(steps[1].action.pyautogui(0).unwrap(), "pyautogui.keyUp('down')");
}

/// Held keys and held buttons together keep every event in one step's range, in order; a key
/// held across a click is held once (one key_down, one key_up); Caps Lock held down until it
/// repeats toggles once.
#[test]
fn held_keys_and_buttons_together_keep_the_lineage() {
    let check = |s: &Script| {
        let (steps, absorbed) = s.reduce();
        let mut next = 0;
        for st in steps.iter().filter(|st| st.lineage.events > 0) {
            assert_eq!(st.lineage.first_event, next, "{steps:#?}");
            next = st.lineage.last_event + 1;
        }
        if let Some(a) = absorbed {
            next = a.last_event + 1;
        }
        assert_eq!(next, s.events.len() as u64, "{steps:#?}");
        steps
    };
    let mut s = Script::default();
    s.key_down(0, "ArrowUp").key_down(30, "ArrowUp").down(10, Button::Left, 10, 10);
    s.key_up(10, "ArrowUp").key_down(10, "PageDown");
    check(&s);
    let mut s = Script::default();
    s.key_down(0, "ArrowRight").key_down(500, "ArrowRight");
    s.click(20, Button::Left, 10, 10);
    s.key_down(20, "ArrowRight").key_down(30, "ArrowRight").key_up(30, "ArrowRight");
    s.key(300, "ArrowRight", None);
    let steps = check(&s);
    let ups = steps.iter().filter(|st| st.action.name() == "key_up").count();
    let downs = steps.iter().filter(|st| st.action.name() == "key_down").count();
    assert!(ups <= downs, "a key_up without its key_down: {steps:#?}");
    assert_eq!(steps.last().map(|st| st.action.name()), Some("press"), "{steps:#?}");
    let mut s = Script::default();
    s.key_down(0, "CapsLock").key_down(500, "CapsLock").key_down(33, "CapsLock").key_up(20, "CapsLock");
    s.key(100, "KeyA", None);
    assert_eq!(check(&s)[0].action, Action::Type { text: "A".into(), secure: false, inferred: true });
}
