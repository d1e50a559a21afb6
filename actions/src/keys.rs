//! Keys: the characters a key types under a keyboard layout, and the names PyAutoGUI gives keys.
//!
//! Recorders report the physical key as a W3C `KeyboardEvent.code` ("KeyZ" is the key where a US
//! keyboard has Z, whatever the layout prints on it) and, when they can, the text it produced.
//! Many give codes only; the reducer then infers the text by the layout the session declares.
//! Hotkeys are named by the character the layout puts on the key, as PyAutoGUI's `hotkey` expects
//! (Ctrl with the key labelled Z on a German keyboard, code `KeyY`, is `['ctrl', 'z']`).

/// A keyboard layout the reducer can infer text with. docs/ACTIONS.md lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// US QWERTY (the default when a session declares none).
    Us,
    /// UK QWERTY (ISO: `£` on Shift+3, `#` and `\` keys).
    Uk,
    /// German QWERTZ.
    De,
    /// French AZERTY.
    Fr,
}

impl Layout {
    /// The layout a session declares (`layout` in its session record): `us`, `en-US`, `gb`,
    /// `uk`, `en-GB`, `de`, `de-DE`, `de-CH` is not German, `fr`, `fr-FR`. `None` for a layout
    /// this table does not know: no text is inferred for it, and hotkeys are named by US codes.
    pub fn from_name(name: &str) -> Option<Layout> {
        let lower = name.trim().to_ascii_lowercase().replace('_', "-");
        Some(match lower.as_str() {
            "us" | "en-us" | "en" | "qwerty" => Layout::Us,
            "gb" | "uk" | "en-gb" => Layout::Uk,
            "de" | "de-de" | "de-at" => Layout::De,
            "fr" | "fr-fr" => Layout::Fr,
            _ => return None,
        })
    }

    /// The layout's name as `info.json` and the docs give it.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Us => "us",
            Layout::Uk => "gb",
            Layout::De => "de",
            Layout::Fr => "fr",
        }
    }

    /// What the key types: unshifted and shifted. `None` for keys that type nothing here (and
    /// for dead keys, whose character depends on the next key).
    pub fn chars(self, code: &str) -> Option<(char, char)> {
        let own = match self {
            Layout::Us => None,
            Layout::Uk => uk(code),
            Layout::De => de(code),
            Layout::Fr => fr(code),
        };
        match own {
            Some(Some(pair)) => Some(pair),
            Some(None) => None, // a dead key or no character on this layout
            None => us(code),
        }
    }

    /// The character the key types with Shift and Caps Lock as given. Caps Lock changes letters
    /// only (and inverts Shift for them).
    pub fn text(self, code: &str, shift: bool, caps: bool) -> Option<char> {
        let (base, shifted) = self.chars(code)?;
        let letter = base.is_alphabetic() && shifted.to_lowercase().eq(std::iter::once(base));
        Some(if shift ^ (caps && letter) { shifted } else { base })
    }
}

/// US QWERTY, and the keys every layout here shares (the numeric keypad with Num Lock on).
fn us(code: &str) -> Option<(char, char)> {
    if let Some(letter) = code.strip_prefix("Key")
        && letter.len() == 1
    {
        let c = letter.chars().next()?.to_ascii_lowercase();
        return c.is_ascii_lowercase().then(|| (c, c.to_ascii_uppercase()));
    }
    if let Some(d) = code.strip_prefix("Digit")
        && let [d] = d.as_bytes()
        && d.is_ascii_digit()
    {
        let shifted = b")!@#$%^&*("[usize::from(d - b'0')];
        return Some((char::from(*d), char::from(shifted)));
    }
    if let Some(d) = code.strip_prefix("Numpad")
        && let [d] = d.as_bytes()
        && d.is_ascii_digit()
    {
        return Some((char::from(*d), char::from(*d)));
    }
    Some(match code {
        "Space" => (' ', ' '),
        "Minus" => ('-', '_'),
        "Equal" => ('=', '+'),
        "BracketLeft" => ('[', '{'),
        "BracketRight" => (']', '}'),
        "Backslash" => ('\\', '|'),
        "Semicolon" => (';', ':'),
        "Quote" => ('\'', '"'),
        "Backquote" => ('`', '~'),
        "Comma" => (',', '<'),
        "Period" => ('.', '>'),
        "Slash" => ('/', '?'),
        "NumpadDecimal" => ('.', '.'),
        "NumpadAdd" => ('+', '+'),
        "NumpadSubtract" => ('-', '-'),
        "NumpadMultiply" => ('*', '*'),
        "NumpadDivide" => ('/', '/'),
        _ => return None,
    })
}

/// UK ISO QWERTY where it differs from US. `Some(None)`: the key types nothing on this layout.
fn uk(code: &str) -> Option<Option<(char, char)>> {
    Some(Some(match code {
        "Digit2" => ('2', '"'),
        "Digit3" => ('3', '£'),
        "Quote" => ('\'', '@'),
        "Backslash" => ('#', '~'),
        "Backquote" => ('`', '¬'),
        "IntlBackslash" => ('\\', '|'),
        _ => return None,
    }))
}

/// German QWERTZ where it differs from US (`´` and `^` are dead keys: they type nothing alone).
fn de(code: &str) -> Option<Option<(char, char)>> {
    Some(Some(match code {
        "KeyY" => ('z', 'Z'),
        "KeyZ" => ('y', 'Y'),
        "Digit2" => ('2', '"'),
        "Digit3" => ('3', '§'),
        "Digit6" => ('6', '&'),
        "Digit7" => ('7', '/'),
        "Digit8" => ('8', '('),
        "Digit9" => ('9', ')'),
        "Digit0" => ('0', '='),
        "Minus" => ('ß', '?'),
        "Equal" | "Backquote" => return Some(None),
        "BracketLeft" => ('ü', 'Ü'),
        "BracketRight" => ('+', '*'),
        "Backslash" => ('#', '\''),
        "Semicolon" => ('ö', 'Ö'),
        "Quote" => ('ä', 'Ä'),
        "Comma" => (',', ';'),
        "Period" => ('.', ':'),
        "Slash" => ('-', '_'),
        "IntlBackslash" => ('<', '>'),
        _ => return None,
    }))
}

/// French AZERTY where it differs from US (`^` is a dead key). The digit row types symbols
/// unshifted and digits with Shift.
fn fr(code: &str) -> Option<Option<(char, char)>> {
    Some(Some(match code {
        "KeyQ" => ('a', 'A'),
        "KeyA" => ('q', 'Q'),
        "KeyW" => ('z', 'Z'),
        "KeyZ" => ('w', 'W'),
        "Semicolon" => ('m', 'M'),
        "KeyM" => (',', '?'),
        "Digit1" => ('&', '1'),
        "Digit2" => ('é', '2'),
        "Digit3" => ('"', '3'),
        "Digit4" => ('\'', '4'),
        "Digit5" => ('(', '5'),
        "Digit6" => ('-', '6'),
        "Digit7" => ('è', '7'),
        "Digit8" => ('_', '8'),
        "Digit9" => ('ç', '9'),
        "Digit0" => ('à', '0'),
        "Minus" => (')', '°'),
        "Equal" => ('=', '+'),
        "BracketLeft" => return Some(None),
        "BracketRight" => ('$', '£'),
        "Backslash" => ('*', 'µ'),
        "Quote" => ('ù', '%'),
        "Backquote" => ('²', '²'),
        "Comma" => (';', '.'),
        "Period" => (':', '/'),
        "Slash" => ('!', '§'),
        "IntlBackslash" => ('<', '>'),
        _ => return None,
    }))
}

/// PyAutoGUI's name for a key that types no character (a W3C `code`), if PyAutoGUI has the key.
fn named(code: &str) -> Option<&'static str> {
    if let Some(digits) = code.strip_prefix('F')
        && let Ok(n) = digits.parse::<u8>()
        && (1..=24).contains(&n)
        && digits == n.to_string()
    {
        const F: [&str; 24] = [
            "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "f9", "f10", "f11", "f12", "f13", "f14", "f15",
            "f16", "f17", "f18", "f19", "f20", "f21", "f22", "f23", "f24",
        ];
        return Some(F[usize::from(n - 1)]);
    }
    Some(match code {
        "Enter" | "NumpadEnter" => "enter",
        "Tab" => "tab",
        "Backspace" => "backspace",
        "Escape" => "esc",
        "Space" => "space",
        "Delete" => "delete",
        "Insert" => "insert",
        "Home" => "home",
        "End" => "end",
        "PageUp" => "pageup",
        "PageDown" => "pagedown",
        "ArrowLeft" => "left",
        "ArrowRight" => "right",
        "ArrowUp" => "up",
        "ArrowDown" => "down",
        "CapsLock" => "capslock",
        "NumLock" => "numlock",
        "ScrollLock" => "scrolllock",
        "PrintScreen" => "printscreen",
        "Pause" => "pause",
        "ContextMenu" => "apps",
        "Help" => "help",
        "Select" => "select",
        "ShiftLeft" => "shiftleft",
        "ShiftRight" => "shiftright",
        "ControlLeft" => "ctrlleft",
        "ControlRight" => "ctrlright",
        "AltLeft" => "altleft",
        "AltRight" | "AltGraph" => "altright",
        "MetaLeft" | "OSLeft" => "winleft",
        "MetaRight" | "OSRight" => "winright",
        "Numpad0" => "num0",
        "Numpad1" => "num1",
        "Numpad2" => "num2",
        "Numpad3" => "num3",
        "Numpad4" => "num4",
        "Numpad5" => "num5",
        "Numpad6" => "num6",
        "Numpad7" => "num7",
        "Numpad8" => "num8",
        "Numpad9" => "num9",
        "NumpadAdd" => "add",
        "NumpadSubtract" => "subtract",
        "NumpadMultiply" => "multiply",
        "NumpadDivide" => "divide",
        "NumpadDecimal" => "decimal",
        "NumpadSeparator" => "separator",
        "AudioVolumeUp" => "volumeup",
        "AudioVolumeDown" => "volumedown",
        "AudioVolumeMute" => "volumemute",
        "MediaPlayPause" => "playpause",
        "MediaStop" => "stop",
        "MediaTrackNext" => "nexttrack",
        "MediaTrackPrevious" => "prevtrack",
        "MediaSelect" => "launchmediaselect",
        "LaunchMail" => "launchmail",
        "LaunchApp1" => "launchapp1",
        "LaunchApp2" => "launchapp2",
        "BrowserBack" => "browserback",
        "BrowserForward" => "browserforward",
        "BrowserRefresh" => "browserrefresh",
        "BrowserStop" => "browserstop",
        "BrowserSearch" => "browsersearch",
        "BrowserFavorites" => "browserfavorites",
        "BrowserHome" => "browserhome",
        "Sleep" => "sleep",
        "Convert" => "convert",
        "NonConvert" => "nonconvert",
        "KanaMode" => "kana",
        "Lang1" => "hangul",
        "Lang2" => "hanja",
        _ => return None,
    })
    .filter(|name| is_pyautogui_key(name))
}

/// PyAutoGUI's name for the key: a key that types nothing by [`named`]; a character key by the
/// character the layout puts on it (unshifted), when PyAutoGUI has that character. `None` when
/// PyAutoGUI has no such key: a call that named it would do nothing.
pub fn pyautogui_name(code: &str, layout: Option<Layout>) -> Option<String> {
    if let Some(name) = named(code) {
        // The numeric keypad's keys have names of their own even though they type characters.
        return Some(name.to_owned());
    }
    let (base, _) = layout.unwrap_or(Layout::Us).chars(code)?;
    let name = base.to_lowercase().to_string();
    is_pyautogui_key(&name).then_some(name)
}

/// Whether PyAutoGUI knows the key (`pyautogui.KEYBOARD_KEYS`): it silently ignores any other.
pub fn is_pyautogui_key(name: &str) -> bool {
    PYAUTOGUI_KEYS.binary_search(&name).is_ok()
}

/// Whether `pyautogui.write` types every character of `text` (it skips, without a word, each
/// one that is not a key name; capital letters it types with Shift).
pub fn pyautogui_can_write(text: &str) -> bool {
    let mut buf = [0u8; 4];
    text.chars().all(|c| c.is_ascii_uppercase() || is_pyautogui_key(c.encode_utf8(&mut buf)))
}

// PyAutoGUI 0.9.54: pyautogui.KEYBOARD_KEYS (== KEY_NAMES), all 194 names.
// Sorted by bytes (Rust's str order) so that `PYAUTOGUI_KEYS.binary_search(&name)` works;
// upstream's own order is not sorted (it ends with "command", "option", "optionleft", "optionright").
// Uppercase A-Z are NOT in the list, although write()/press() type them on X11, Windows and macOS.
pub const PYAUTOGUI_KEYS: &[&str] = &[
    "\t",
    "\n",
    "\r",
    " ",
    "!",
    "\"",
    "#",
    "$",
    "%",
    "&",
    "'",
    "(",
    ")",
    "*",
    "+",
    ",",
    "-",
    ".",
    "/",
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
    ":",
    ";",
    "<",
    "=",
    ">",
    "?",
    "@",
    "[",
    "\\",
    "]",
    "^",
    "_",
    "`",
    "a",
    "accept",
    "add",
    "alt",
    "altleft",
    "altright",
    "apps",
    "b",
    "backspace",
    "browserback",
    "browserfavorites",
    "browserforward",
    "browserhome",
    "browserrefresh",
    "browsersearch",
    "browserstop",
    "c",
    "capslock",
    "clear",
    "command",
    "convert",
    "ctrl",
    "ctrlleft",
    "ctrlright",
    "d",
    "decimal",
    "del",
    "delete",
    "divide",
    "down",
    "e",
    "end",
    "enter",
    "esc",
    "escape",
    "execute",
    "f",
    "f1",
    "f10",
    "f11",
    "f12",
    "f13",
    "f14",
    "f15",
    "f16",
    "f17",
    "f18",
    "f19",
    "f2",
    "f20",
    "f21",
    "f22",
    "f23",
    "f24",
    "f3",
    "f4",
    "f5",
    "f6",
    "f7",
    "f8",
    "f9",
    "final",
    "fn",
    "g",
    "h",
    "hanguel",
    "hangul",
    "hanja",
    "help",
    "home",
    "i",
    "insert",
    "j",
    "junja",
    "k",
    "kana",
    "kanji",
    "l",
    "launchapp1",
    "launchapp2",
    "launchmail",
    "launchmediaselect",
    "left",
    "m",
    "modechange",
    "multiply",
    "n",
    "nexttrack",
    "nonconvert",
    "num0",
    "num1",
    "num2",
    "num3",
    "num4",
    "num5",
    "num6",
    "num7",
    "num8",
    "num9",
    "numlock",
    "o",
    "option",
    "optionleft",
    "optionright",
    "p",
    "pagedown",
    "pageup",
    "pause",
    "pgdn",
    "pgup",
    "playpause",
    "prevtrack",
    "print",
    "printscreen",
    "prntscrn",
    "prtsc",
    "prtscr",
    "q",
    "r",
    "return",
    "right",
    "s",
    "scrolllock",
    "select",
    "separator",
    "shift",
    "shiftleft",
    "shiftright",
    "sleep",
    "space",
    "stop",
    "subtract",
    "t",
    "tab",
    "u",
    "up",
    "v",
    "volumedown",
    "volumemute",
    "volumeup",
    "w",
    "win",
    "winleft",
    "winright",
    "x",
    "y",
    "yen",
    "z",
    "{",
    "|",
    "}",
    "~",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_list_is_sorted_for_binary_search_and_every_name_given_is_in_it() {
        assert!(PYAUTOGUI_KEYS.windows(2).all(|w| w[0] < w[1]));
        for code in ["Enter", "Numpad5", "NumpadAdd", "MediaPlayPause", "F24", "ArrowLeft", "ContextMenu"] {
            let name = named(code).unwrap_or_else(|| panic!("{code}"));
            assert!(is_pyautogui_key(name), "{code} -> {name}");
        }
        assert_eq!(
            ["Numpad5", "NumpadAdd", "MediaPlayPause", "Escape"].map(|c| pyautogui_name(c, None)),
            [Some("num5".into()), Some("add".into()), Some("playpause".into()), Some("esc".into())]
        );
        assert_eq!(pyautogui_name("IntlBackslash", Some(Layout::Us)), None);
        assert_eq!(pyautogui_name("F25", None), None);
        assert_eq!(pyautogui_name("F05", None), None);
    }

    #[test]
    fn layouts_put_their_characters_on_the_keys() {
        assert_eq!(pyautogui_name("KeyY", Some(Layout::De)).as_deref(), Some("z"));
        assert_eq!(pyautogui_name("KeyY", Some(Layout::Us)).as_deref(), Some("y"));
        assert_eq!(pyautogui_name("KeyQ", Some(Layout::Fr)).as_deref(), Some("a"));
        assert_eq!(pyautogui_name("IntlBackslash", Some(Layout::De)).as_deref(), Some("<"));
        assert_eq!(Layout::De.text("Semicolon", false, false), Some('ö'));
        assert_eq!(Layout::De.text("Semicolon", false, true), Some('Ö'), "Caps Lock capitalises letters");
        assert_eq!(Layout::Us.text("Digit1", true, false), Some('!'));
        assert_eq!(Layout::Us.text("Digit1", false, true), Some('1'), "Caps Lock leaves digits alone");
        assert_eq!(Layout::Us.text("KeyA", true, true), Some('a'), "Shift under Caps Lock is lower case");
        assert_eq!(Layout::Fr.text("Digit2", false, false), Some('é'));
        assert_eq!(Layout::Uk.text("Digit3", true, false), Some('£'));
        assert_eq!(Layout::De.text("Equal", false, false), None, "a dead key types nothing alone");
        assert_eq!(Layout::from_name("de-DE"), Some(Layout::De));
        assert_eq!(Layout::from_name("ja"), None);
    }

    #[test]
    fn write_takes_keyboard_characters_only() {
        assert!(pyautogui_can_write("Hello, World! 42 ~"));
        assert!(!pyautogui_can_write("café"));
        assert!(!pyautogui_can_write("£"));
    }
}
