//! The strings every version 2 block can name without storing them: the W3C UI Events
//! `KeyboardEvent.code` values ("UI Events KeyboardEvent code Values", W3C Recommendation) and
//! the texts one key commonly types. A keystroke's code and text are almost always in here, so a
//! short typing session stores no string bytes at all.
//!
//! This list is part of the block format: an id is an index into it, and a block's own strings
//! take the ids after it. It is frozen for format version 2 (a test pins its length and entries);
//! a different list is a new block version. docs/FORMAT.md gives the rules.

/// The W3C `code` values, in the order of the specification's tables (writing system keys,
/// functional keys, control pad, arrow pad, numpad, function section, media keys, legacy).
const CODES: [&str; 169] = [
    // Writing system keys.
    "Backquote",
    "Backslash",
    "BracketLeft",
    "BracketRight",
    "Comma",
    "Digit0",
    "Digit1",
    "Digit2",
    "Digit3",
    "Digit4",
    "Digit5",
    "Digit6",
    "Digit7",
    "Digit8",
    "Digit9",
    "Equal",
    "IntlBackslash",
    "IntlRo",
    "IntlYen",
    "KeyA",
    "KeyB",
    "KeyC",
    "KeyD",
    "KeyE",
    "KeyF",
    "KeyG",
    "KeyH",
    "KeyI",
    "KeyJ",
    "KeyK",
    "KeyL",
    "KeyM",
    "KeyN",
    "KeyO",
    "KeyP",
    "KeyQ",
    "KeyR",
    "KeyS",
    "KeyT",
    "KeyU",
    "KeyV",
    "KeyW",
    "KeyX",
    "KeyY",
    "KeyZ",
    "Minus",
    "Period",
    "Quote",
    "Semicolon",
    "Slash",
    // Functional keys.
    "AltLeft",
    "AltRight",
    "Backspace",
    "CapsLock",
    "ContextMenu",
    "ControlLeft",
    "ControlRight",
    "Enter",
    "MetaLeft",
    "MetaRight",
    "ShiftLeft",
    "ShiftRight",
    "Space",
    "Tab",
    "Convert",
    "KanaMode",
    "Lang1",
    "Lang2",
    "Lang3",
    "Lang4",
    "Lang5",
    "NonConvert",
    // Control pad and arrow pad.
    "Delete",
    "End",
    "Help",
    "Home",
    "Insert",
    "PageDown",
    "PageUp",
    "ArrowDown",
    "ArrowLeft",
    "ArrowRight",
    "ArrowUp",
    // Numpad.
    "NumLock",
    "Numpad0",
    "Numpad1",
    "Numpad2",
    "Numpad3",
    "Numpad4",
    "Numpad5",
    "Numpad6",
    "Numpad7",
    "Numpad8",
    "Numpad9",
    "NumpadAdd",
    "NumpadBackspace",
    "NumpadClear",
    "NumpadClearEntry",
    "NumpadComma",
    "NumpadDecimal",
    "NumpadDivide",
    "NumpadEnter",
    "NumpadEqual",
    "NumpadHash",
    "NumpadMemoryAdd",
    "NumpadMemoryClear",
    "NumpadMemoryRecall",
    "NumpadMemoryStore",
    "NumpadMemorySubtract",
    "NumpadMultiply",
    "NumpadParenLeft",
    "NumpadParenRight",
    "NumpadStar",
    "NumpadSubtract",
    // Function section.
    "Escape",
    "F1",
    "F2",
    "F3",
    "F4",
    "F5",
    "F6",
    "F7",
    "F8",
    "F9",
    "F10",
    "F11",
    "F12",
    "F13",
    "F14",
    "F15",
    "F16",
    "F17",
    "F18",
    "F19",
    "F20",
    "F21",
    "F22",
    "F23",
    "F24",
    "Fn",
    "FnLock",
    "PrintScreen",
    "ScrollLock",
    "Pause",
    // Media keys.
    "BrowserBack",
    "BrowserFavorites",
    "BrowserForward",
    "BrowserHome",
    "BrowserRefresh",
    "BrowserSearch",
    "BrowserStop",
    "Eject",
    "LaunchApp1",
    "LaunchApp2",
    "LaunchMail",
    "MediaPlayPause",
    "MediaSelect",
    "MediaStop",
    "MediaTrackNext",
    "MediaTrackPrevious",
    "Power",
    "Sleep",
    "AudioVolumeDown",
    "AudioVolumeMute",
    "AudioVolumeUp",
    "WakeUp",
    // Legacy, and what a recorder writes for a key it cannot name.
    "Hyper",
    "Super",
    "Unidentified",
];

/// Texts one key types beyond the printable ASCII characters (which follow them).
const CONTROL_TEXTS: [&str; 4] = ["\t", "\n", "\r", "\u{8}"];

/// Printable ASCII, U+0020 to U+007E.
const ASCII: std::ops::RangeInclusive<u8> = 0x20..=0x7e;

/// How many strings the dictionary holds.
pub(crate) const LEN: usize = CODES.len() + CONTROL_TEXTS.len() + 95;

/// The dictionary string with id `id` (`id < LEN`).
pub(crate) fn get(id: usize) -> &'static str {
    if let Some(code) = CODES.get(id) {
        return code;
    }
    let id = id - CODES.len();
    if let Some(text) = CONTROL_TEXTS.get(id) {
        return text;
    }
    ASCII_STRS[id - CONTROL_TEXTS.len()]
}

/// The id of `s` if the dictionary holds it.
pub(crate) fn find(s: &str) -> Option<u32> {
    if let &[b] = s.as_bytes()
        && ASCII.contains(&b)
    {
        return Some((CODES.len() + CONTROL_TEXTS.len() + usize::from(b - ASCII.start())) as u32);
    }
    if let Some(i) = CONTROL_TEXTS.iter().position(|t| *t == s) {
        return Some((CODES.len() + i) as u32);
    }
    // Codes are short ASCII words starting with a capital; the list is small enough to scan.
    if s.len() < 2 || !s.as_bytes()[0].is_ascii_uppercase() {
        return None;
    }
    CODES.iter().position(|c| *c == s).map(|i| i as u32)
}

/// Every printable ASCII character as a one-character `&'static str`.
const ASCII_STRS: [&str; 95] = [
    " ", "!", "\"", "#", "$", "%", "&", "'", "(", ")", "*", "+", ",", "-", ".", "/", "0", "1", "2", "3", "4",
    "5", "6", "7", "8", "9", ":", ";", "<", "=", ">", "?", "@", "A", "B", "C", "D", "E", "F", "G", "H", "I",
    "J", "K", "L", "M", "N", "O", "P", "Q", "R", "S", "T", "U", "V", "W", "X", "Y", "Z", "[", "\\", "]", "^",
    "_", "`", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s",
    "t", "u", "v", "w", "x", "y", "z", "{", "|", "}", "~",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_finds_itself_and_ids_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for id in 0..LEN {
            let s = get(id);
            assert!(seen.insert(s), "{s:?} is in the dictionary twice");
            assert_eq!(find(s), Some(id as u32), "{s:?}");
        }
        assert_eq!(find("KeyA"), Some(19));
        assert_eq!(find("a"), Some(173 + 65));
        assert_eq!(find("Keya"), None);
        assert_eq!(find(""), None);
        assert_eq!(find("é"), None);
    }

    #[test]
    fn the_list_is_frozen() {
        // Ids are stored in blocks: this fails if an entry moved, was removed or was renamed.
        assert_eq!(LEN, 268);
        assert_eq!(
            (get(0), get(19), get(62), get(168), get(169), get(173), get(267)),
            ("Backquote", "KeyA", "Space", "Unidentified", "\t", " ", "~")
        );
    }
}
