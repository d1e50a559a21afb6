//! Masking on the device, between the capture and anything written or sent.
//!
//! - **Secure input** (a password field): keys keep their timing and, for non-printing keys
//!   (Backspace, Enter, Shift), their code; they lose their text, and every printing key's code
//!   becomes `Unidentified`, so neither the characters nor the keys that made them leave the
//!   device. Input is secure when AT-SPI says the focused widget is a password field
//!   ([`crate::atspi`]) or the focused window matches the policy's secure classes or titles
//!   (pinentry, polkit, password managers: the fallback where AT-SPI is absent).
//! - **Sensitive apps** (the policy's list): keys are masked the same way (timing only) and the
//!   window's title is not recorded either.
//! - **Pause**: the policy's hotkey stops all capture (the hotkey itself is never recorded);
//!   the keys and buttons held at that moment are released in the session, a
//!   `recorder.paused` marker is written, and nothing at all is recorded until the hotkey is
//!   pressed again (`recorder.resumed`, then the focus and pointer as they are then).
//!
//! A key's release always takes the form its press was recorded with, and a release whose
//! press was not recorded (held before the start or during a pause) is dropped, so the session
//! is always well-formed: no release without its press, no secure press with a clear release.
//!
//! docs/RECORDER.md "Masking" is the user's guide to this.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::Deserialize;
use tracevault_codecs::{Button, EventKind, Key};

use crate::atspi::SecureFields;
use crate::capture::Input;

/// Window classes (`WM_CLASS`, case-insensitive substrings) and titles (case-insensitive
/// substrings) that a rule applies to.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Windows {
    #[serde(default)]
    pub classes: Vec<String>,
    #[serde(default)]
    pub titles: Vec<String>,
}

impl Windows {
    fn matches(&self, app: &str, instance: Option<&str>, title: Option<&str>) -> bool {
        let app = format!("{}\0{}", app.to_lowercase(), instance.unwrap_or("").to_lowercase());
        let title = title.map(str::to_lowercase).unwrap_or_default();
        self.classes.iter().any(|c| !c.is_empty() && app.contains(&c.to_lowercase()))
            || self.titles.iter().any(|t| !t.is_empty() && title.contains(&t.to_lowercase()))
    }
}

/// The masking policy: a TOML file (docs/RECORDER.md "Policy file"), its version recorded in
/// every session.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Recorded in the session as `recorder.policy`.
    pub version: String,
    /// Windows whose input is secure (password dialogs). A file without `[secure]` keeps the
    /// built-in list; one with it replaces the list.
    #[serde(default = "default_secure")]
    pub secure: Windows,
    /// Apps whose text is never captured: timing only, no titles.
    #[serde(default)]
    pub sensitive: Windows,
    /// Pauses and resumes capture: modifiers and a W3C key code joined by `+`.
    #[serde(default = "default_hotkey")]
    pub pause_hotkey: String,
}

fn default_secure() -> Windows {
    Policy::default_policy().secure
}

fn default_hotkey() -> String {
    "Ctrl+Alt+Shift+KeyP".into()
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read the policy file {path}: {why}")]
    Read { path: String, why: String },
    #[error("the policy file {path} is not valid: {why}")]
    Invalid { path: String, why: String },
}

impl Policy {
    /// The policy used without a file: common password prompts and managers are secure; no app
    /// is sensitive until the organisation names its own.
    pub fn default_policy() -> Policy {
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        Policy {
            version: "tracevault-default-1".into(),
            secure: Windows {
                classes: s(&[
                    "pinentry",
                    "gcr-prompter",
                    "polkit",
                    "lxpolkit",
                    "ssh-askpass",
                    "ksshaskpass",
                    "keepass",
                    "1password",
                    "bitwarden",
                    "kwalletd",
                    "seahorse",
                ]),
                titles: s(&["password", "passphrase", "passcode", "unlock", "authenticat", "sudo"]),
            },
            sensitive: Windows::default(),
            pause_hotkey: default_hotkey(),
        }
    }

    /// Reads and checks a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| PolicyError::Read { path: name.clone(), why: e.to_string() })?;
        let policy: Policy = toml::from_str(&text)
            .map_err(|e| PolicyError::Invalid { path: name.clone(), why: e.to_string() })?;
        if policy.version.trim().is_empty() {
            return Err(PolicyError::Invalid { path: name, why: "`version` is empty".into() });
        }
        Hotkey::parse(&policy.pause_hotkey)
            .map_err(|why| PolicyError::Invalid { path: name, why: format!("pause_hotkey: {why}") })?;
        Ok(policy)
    }
}

const MODIFIERS: [(&str, [&str; 2]); 4] = [
    ("ctrl", ["ControlLeft", "ControlRight"]),
    ("alt", ["AltLeft", "AltRight"]),
    ("shift", ["ShiftLeft", "ShiftRight"]),
    ("super", ["MetaLeft", "MetaRight"]),
];

/// A key with modifiers, as in `Ctrl+Alt+Shift+KeyP`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hotkey {
    modifiers: [bool; 4],
    code: String,
}

impl Hotkey {
    pub fn parse(text: &str) -> Result<Hotkey, String> {
        let mut modifiers = [false; 4];
        let mut code = None;
        for part in text.split('+').map(str::trim) {
            let lower = part.to_lowercase();
            let lower = match lower.as_str() {
                "control" => "ctrl",
                "meta" | "win" => "super",
                other => other,
            };
            if let Some(i) = MODIFIERS.iter().position(|(name, _)| *name == lower) {
                modifiers[i] = true;
            } else if code.is_some() {
                return Err(format!("{text:?} names two keys; expected modifiers and one key code"));
            } else if part.is_empty() {
                return Err(format!("{text:?} has an empty part"));
            } else {
                code = Some(part.to_owned());
            }
        }
        let code = code.ok_or_else(|| format!("{text:?} has no key; expected e.g. Ctrl+Alt+Shift+KeyP"))?;
        if !modifiers.iter().any(|&m| m) {
            return Err(format!("{text:?} has no modifier: a bare key would pause on ordinary typing"));
        }
        if !crate::capture::codes::is_known(&code) {
            return Err(format!(
                "{text:?}: {code:?} is not a W3C key code (expected one such as KeyP, Digit1, F9, Pause)"
            ));
        }
        Ok(Hotkey { modifiers, code })
    }

    fn pressed(&self, code: &str, held: &HashSet<String>) -> bool {
        code == self.code
            && MODIFIERS
                .iter()
                .zip(self.modifiers)
                .all(|((_, codes), wanted)| codes.iter().any(|c| held.contains(*c)) == wanted)
    }
}

/// Codes of keys that print something whatever the layout: masked to `Unidentified` in secure
/// input. (Any key that gave text is masked too.)
fn prints(code: &str) -> bool {
    code.starts_with("Key")
        || code.starts_with("Digit")
        || code.starts_with("Intl")
        || (code.starts_with("Numpad") && !matches!(code, "NumpadEnter"))
        || matches!(
            code,
            "Space"
                | "Minus"
                | "Equal"
                | "BracketLeft"
                | "BracketRight"
                | "Backslash"
                | "Semicolon"
                | "Quote"
                | "Backquote"
                | "Comma"
                | "Period"
                | "Slash"
                | "Unidentified"
        )
}

struct Focus {
    app: String,
    title: Option<String>,
    pid: Option<u32>,
    secure: bool,
    sensitive: bool,
}

/// Turns what a backend saw into the events a session may hold.
pub struct Masker {
    policy: Policy,
    hotkey: Hotkey,
    fields: SecureFields,
    focus: Option<Focus>,
    /// Keys held, by keycode, in the form their press was recorded.
    held: BTreeMap<u32, Key>,
    buttons: Vec<Button>,
    /// Codes physically held (recorded or not): for the hotkey.
    down: HashSet<String>,
    pointer: (i32, i32),
    paused: bool,
    /// Keys recorded in secure input (for the logs).
    masked: u64,
}

impl Masker {
    pub fn new(policy: Policy, fields: SecureFields) -> Result<Masker, String> {
        let hotkey = Hotkey::parse(&policy.pause_hotkey)?;
        Ok(Masker {
            policy,
            hotkey,
            fields,
            focus: None,
            held: BTreeMap::new(),
            buttons: Vec::new(),
            down: HashSet::new(),
            pointer: (0, 0),
            paused: false,
            masked: 0,
        })
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Key events recorded without their text so far.
    pub fn masked(&self) -> u64 {
        self.masked
    }

    /// The events `input` becomes (none, one, or several for a pause).
    pub fn push(&mut self, input: Input, out: &mut Vec<EventKind>) {
        match input {
            Input::Key { keycode, code, text, down, repeat } => {
                self.key(keycode, code, text, down, repeat, out)
            }
            Input::Button { button, down, x, y } => {
                self.pointer = (x, y);
                if self.paused {
                    return;
                }
                if down {
                    self.buttons.push(button);
                    out.push(EventKind::Down { button, x, y });
                } else if let Some(i) = self.buttons.iter().position(|&b| b == button) {
                    self.buttons.remove(i);
                    out.push(EventKind::Up { button, x, y });
                }
            }
            Input::Wheel { dx, dy, x, y } => {
                self.pointer = (x, y);
                if !self.paused {
                    out.push(EventKind::Wheel { dx, dy, x, y });
                }
            }
            Input::Move { x, y } => {
                self.pointer = (x, y);
                if !self.paused {
                    out.push(EventKind::Move { x, y });
                }
            }
            Input::Focus { app, instance, title, pid } => {
                let secure = self.policy.secure.matches(&app, instance.as_deref(), title.as_deref());
                let sensitive = self.policy.sensitive.matches(&app, instance.as_deref(), title.as_deref());
                let focus = Focus { app, title, pid, secure, sensitive };
                if !self.paused {
                    out.push(focus_event(&focus));
                }
                self.focus = Some(focus);
            }
            Input::Screen(s) => out.push(EventKind::Screen { w: s.w, h: s.h }),
        }
    }

    fn key(
        &mut self,
        keycode: u32,
        code: String,
        text: Option<String>,
        down: bool,
        repeat: bool,
        out: &mut Vec<EventKind>,
    ) {
        if !down {
            self.down.remove(&code);
            if let Some(pressed) = self.held.remove(&keycode) {
                out.push(EventKind::KeyUp(Key { text: None, ..pressed }));
            }
            return;
        }
        // (A press of a key already down is a repeat, whatever the backend says.)
        if !repeat && !self.down.contains(&code) && self.hotkey.pressed(&code, &self.down) {
            self.down.insert(code);
            self.toggle_pause(out);
            return;
        }
        self.down.insert(code.clone());
        if self.paused {
            return;
        }
        if repeat && !self.held.contains_key(&keycode) {
            // The press was not recorded (held through a pause): neither are its repeats.
            return;
        }
        let masked = self.secure_now() || self.held.get(&keycode).is_some_and(|k| k.secure);
        let key = if masked {
            self.masked += 1;
            let code = if prints(&code) || text.is_some() { "Unidentified".to_owned() } else { code };
            Key { code, text: None, secure: true }
        } else {
            Key { code, text, secure: false }
        };
        self.held.entry(keycode).or_insert_with(|| key.clone());
        out.push(EventKind::KeyDown(key));
    }

    /// Whether a key pressed now is secure: the focused window is a password prompt by the
    /// policy, its app is sensitive, or AT-SPI says its focused widget is a password field.
    fn secure_now(&self) -> bool {
        match &self.focus {
            Some(f) => f.secure || f.sensitive || self.fields.is_secure(f.pid),
            None => self.fields.is_secure(None),
        }
    }

    /// The end of the recording: releases for what is still held, so the session is
    /// well-formed (no press without its release).
    pub fn finish(&mut self, out: &mut Vec<EventKind>) {
        let (x, y) = self.pointer;
        for (_, key) in std::mem::take(&mut self.held) {
            out.push(EventKind::KeyUp(Key { text: None, ..key }));
        }
        for button in std::mem::take(&mut self.buttons) {
            out.push(EventKind::Up { button, x, y });
        }
    }

    fn toggle_pause(&mut self, out: &mut Vec<EventKind>) {
        if self.paused {
            self.paused = false;
            tracing::info!("recording resumed");
            out.push(EventKind::Marker { label: "recorder.resumed".into() });
            if let Some(focus) = &self.focus {
                out.push(focus_event(focus));
            }
            let (x, y) = self.pointer;
            out.push(EventKind::Move { x, y });
        } else {
            let (x, y) = self.pointer;
            for (_, key) in std::mem::take(&mut self.held) {
                out.push(EventKind::KeyUp(Key { text: None, ..key }));
            }
            for button in std::mem::take(&mut self.buttons) {
                out.push(EventKind::Up { button, x, y });
            }
            out.push(EventKind::Marker { label: "recorder.paused".into() });
            tracing::info!("recording paused: nothing is captured until the hotkey is pressed again");
            self.paused = true;
        }
    }
}

fn focus_event(focus: &Focus) -> EventKind {
    EventKind::Focus {
        app: focus.app.clone(),
        title: if focus.sensitive { None } else { focus.title.clone() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(keycode: u32, code: &str, text: Option<&str>, down: bool) -> Input {
        Input::Key { keycode, code: code.into(), text: text.map(Into::into), down, repeat: false }
    }

    fn run(masker: &mut Masker, inputs: Vec<Input>) -> Vec<EventKind> {
        let mut out = Vec::new();
        for i in inputs {
            masker.push(i, &mut out);
        }
        out
    }

    fn focus(app: &str, title: &str) -> Input {
        Input::Focus { app: app.into(), instance: None, title: Some(title.into()), pid: Some(4242) }
    }

    fn typed(out: &[EventKind]) -> String {
        out.iter()
            .filter_map(|e| match e {
                EventKind::KeyDown(k) => k.text.clone(),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_password_prompt_by_the_policy_masks_printing_keys_and_keeps_the_others() {
        let mut m = Masker::new(Policy::default_policy(), SecureFields::none()).unwrap();
        let out = run(
            &mut m,
            vec![
                focus("Pinentry-gtk-2", "Unlock OpenPGP key"),
                key(38, "KeyA", Some("a"), true),
                key(38, "KeyA", Some("a"), false),
                key(22, "Backspace", None, true),
                key(22, "Backspace", None, false),
                key(65, "Space", Some(" "), true),
                focus("xterm", "bash"),
                // Released after focus left: still the secure form its press had.
                key(65, "Space", None, false),
                key(39, "KeyS", Some("s"), true),
            ],
        );
        let keys: Vec<(bool, &str, bool, bool)> = out
            .iter()
            .filter_map(|e| match e {
                EventKind::KeyDown(k) => Some((true, k.code.as_str(), k.text.is_some(), k.secure)),
                EventKind::KeyUp(k) => Some((false, k.code.as_str(), k.text.is_some(), k.secure)),
                _ => None,
            })
            .collect();
        assert_eq!(
            keys,
            vec![
                (true, "Unidentified", false, true),
                (false, "Unidentified", false, true),
                (true, "Backspace", false, true),
                (false, "Backspace", false, true),
                (true, "Unidentified", false, true),
                (false, "Unidentified", false, true),
                (true, "KeyS", true, false),
            ]
        );
        assert_eq!(typed(&out), "s");
    }

    #[test]
    fn a_sensitive_app_keeps_timing_only_and_no_title() {
        let mut policy = Policy::default_policy();
        policy.sensitive.classes = vec!["signal".into()];
        let mut m = Masker::new(policy, SecureFields::none()).unwrap();
        let out = run(&mut m, vec![focus("Signal", "Alice: see you at 8"), key(38, "KeyA", Some("a"), true)]);
        assert_eq!(out[0], EventKind::Focus { app: "Signal".into(), title: None });
        assert_eq!(out[1], EventKind::KeyDown(Key { code: "Unidentified".into(), text: None, secure: true }));
    }

    #[test]
    fn the_hotkey_pauses_releases_what_is_held_and_records_nothing_until_resumed() {
        let mut m = Masker::new(Policy::default_policy(), SecureFields::none()).unwrap();
        let chord = |down| {
            vec![
                key(37, "ControlLeft", None, down),
                key(64, "AltLeft", None, down),
                key(50, "ShiftLeft", None, down),
                key(33, "KeyP", Some("P"), down),
            ]
        };
        let mut inputs = vec![focus("xterm", "bash"), Input::Move { x: 5, y: 5 }];
        inputs.extend(chord(true));
        inputs.extend(chord(false));
        // While paused: nothing.
        inputs.extend([
            key(38, "KeyA", Some("a"), true),
            key(38, "KeyA", Some("a"), false),
            Input::Move { x: 90, y: 40 },
            focus("firefox", "Private chat"),
        ]);
        inputs.extend(chord(true));
        inputs.extend(chord(false));
        inputs.push(key(39, "KeyS", Some("s"), true));
        let out = run(&mut m, inputs);
        let labels: Vec<String> = out
            .iter()
            .map(|e| match e {
                EventKind::KeyDown(k) => format!("down {}", k.code),
                EventKind::KeyUp(k) => format!("up {}", k.code),
                EventKind::Marker { label } => label.clone(),
                EventKind::Focus { app, .. } => format!("focus {app}"),
                EventKind::Move { x, y } => format!("move {x},{y}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            labels,
            [
                "focus xterm",
                "move 5,5",
                "down ControlLeft",
                "down AltLeft",
                "down ShiftLeft",
                // The hotkey itself never appears; what was held is released.
                "up ControlLeft",
                "up ShiftLeft",
                "up AltLeft",
                "recorder.paused",
                "recorder.resumed",
                "focus firefox",
                "move 90,40",
                "down KeyS",
            ]
        );
    }

    #[test]
    fn a_release_without_its_recorded_press_is_dropped() {
        let mut m = Masker::new(Policy::default_policy(), SecureFields::none()).unwrap();
        let out = run(
            &mut m,
            vec![
                key(38, "KeyA", None, false),
                Input::Button { button: Button::Left, down: false, x: 1, y: 1 },
            ],
        );
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn policy_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("tv-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(
            &good,
            "version = \"acme-7\"\n[secure]\nclasses = [\"vault\"]\n[sensitive]\nclasses = [\"slack\"]\n",
        )
        .unwrap();
        let p = Policy::load(&good).unwrap();
        assert_eq!((p.version.as_str(), p.pause_hotkey.as_str()), ("acme-7", "Ctrl+Alt+Shift+KeyP"));
        assert_eq!(p.secure.classes, ["vault"], "a [secure] section replaces the built-in list");
        let only_sensitive = dir.join("sensitive.toml");
        std::fs::write(&only_sensitive, "version = \"acme-8\"\n[sensitive]\nclasses = [\"slack\"]\n")
            .unwrap();
        let p = Policy::load(&only_sensitive).unwrap();
        assert_eq!(p.secure, Policy::default_policy().secure, "without [secure], the built-in list stays");
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "version = \"x\"\npause_hotkey = \"KeyP\"\n").unwrap();
        let e = Policy::load(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.toml") && e.contains("pause_hotkey") && e.contains("no modifier"), "{e}");
        std::fs::write(&bad, "version = \"x\"\npause_hotkey = \"Ctrl+Alt+P\"\n").unwrap();
        let e = Policy::load(&bad).unwrap_err().to_string();
        assert!(e.contains("\"P\" is not a W3C key code"), "{e}");
        std::fs::write(&bad, "version = \"x\"\nsecrue = {}\n").unwrap();
        let e = Policy::load(&bad).unwrap_err().to_string();
        assert!(e.contains("unknown field") && e.contains("secrue"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
