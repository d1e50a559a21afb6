//! The detectors of personal data in text: what each finds, its placeholder, and the checks
//! (Luhn, mod-97, digit counts) that keep ordinary numbers ordinary. docs/ACTIONS.md
//! ("Redaction") lists them.

use std::sync::OnceLock;

use regex::Regex;

/// The kinds of personal data the detectors find, with their placeholders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pii {
    Jwt,
    ApiKey,
    Email,
    Iban,
    Card,
    Ipv4,
    Phone,
    /// A street address: a number and a street name with its kind (`221B Baker Street`,
    /// `Hauptstraße 5`), or whatever follows an address label (`Address: ...`).
    Address,
    /// A person's name after a form label (`Name: Grace Hopper`) or a greeting (`Dear Grace`).
    Name,
}

impl Pii {
    pub const ALL: [Pii; 9] = [
        Pii::Jwt,
        Pii::ApiKey,
        Pii::Email,
        Pii::Iban,
        Pii::Card,
        Pii::Ipv4,
        Pii::Phone,
        Pii::Address,
        Pii::Name,
    ];

    /// The recogniser's name, as `info.json` lists the ones that ran.
    pub fn name(self) -> &'static str {
        match self {
            Pii::Jwt => "jwt",
            Pii::ApiKey => "api_key",
            Pii::Email => "email",
            Pii::Iban => "iban",
            Pii::Card => "card",
            Pii::Ipv4 => "ipv4",
            Pii::Phone => "phone",
            Pii::Address => "street_address",
            Pii::Name => "name_after_label",
        }
    }

    pub fn placeholder(self) -> &'static str {
        match self {
            Pii::Jwt => "<JWT>",
            Pii::ApiKey => "<API_KEY>",
            Pii::Email => "<EMAIL>",
            Pii::Iban => "<IBAN>",
            Pii::Card => "<CARD>",
            Pii::Ipv4 => "<IPV4>",
            Pii::Phone => "<PHONE>",
            Pii::Address => "<ADDRESS>",
            Pii::Name => "<NAME>",
        }
    }

    fn pattern(self) -> &'static str {
        match self {
            Pii::Jwt => r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}",
            Pii::ApiKey => concat!(
                r"(?-u:\b)(?:(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
                r"|gh[pousr]_[A-Za-z0-9]{30,}",
                r"|github_pat_[A-Za-z0-9_]{30,}",
                r"|xox[abposr]-[A-Za-z0-9-]{10,}",
                r"|(?:AKIA|ASIA)[0-9A-Z]{16}",
                r"|AIza[0-9A-Za-z_-]{35}",
                r"|sk-[A-Za-z0-9_-]{20,}",
                r"|glpat-[A-Za-z0-9_-]{20,})"
            ),
            Pii::Email => r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
            Pii::Iban => r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?-u:\b)",
            Pii::Card => r"(?-u:\b)[0-9](?:[ -]?[0-9]){12,18}(?-u:\b)",
            Pii::Ipv4 => {
                r"(?-u:\b)(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?-u:\b)"
            }
            Pii::Phone => r"(?:\+|(?-u:\b))[0-9][0-9 ().-]{6,}[0-9](?-u:\b)",
            // The part that is personal data is the group `pii` where there is one.
            Pii::Address => concat!(
                // After a label: the rest of the line (at most 80 characters).
                r"(?i:(?-u:\b)(?:shipping address|billing address|street address|address|street|adresse|anschrift|straße|strasse))",
                r"[ \t]*[:=][ \t]*(?P<pii>[^\r\n;|]{3,80})",
                // A number, one to four capitalised words, and the street's kind.
                r"|(?-u:\b)(?P<pii2>[0-9]{1,5}[A-Za-z]?,?[ ]+(?:\p{Lu}[\p{L}.'-]*[ ]+){1,4}",
                r"(?i:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|",
                r"terrace|close|square|sq|parkway|pkwy|highway|hwy|crescent|gardens|row|mews)(?-u:\b)\.?)",
                // German and Dutch style: the street (one word ending in its kind) then the number.
                r"|(?:^|[^\p{L}\p{N}])(?P<pii3>\p{Lu}[\p{L}-]*(?i:straße|strasse|str\.|weg|allee|platz|gasse|damm|ufer|straat|laan|gracht)",
                r"[ ]+[0-9]{1,4}[a-z]?(?-u:\b))"
            ),
            Pii::Name => concat!(
                // After a form label: one to four words.
                r"(?i:(?-u:\b)(?:full name|first name|last name|given name|family name|surname|name|contact|recipient|attn|",
                r"vorname|nachname|prénom|nom))[ \t]*[:=][ \t]*",
                r"(?P<pii>\p{L}[\p{L}'-]+(?:[ ]+\p{L}[\p{L}'-]*){0,3})",
                // After a greeting: one to three capitalised words.
                r"|(?-u:\b)(?:Dear|Hi|Hello|Hallo|Liebe|Lieber|Bonjour|Cher|Chère)[ ]+",
                r"(?P<pii2>\p{Lu}\p{Ll}+(?:[ ]+\p{Lu}\p{Ll}+){0,2})"
            ),
        }
    }

    /// Whether a match is really of this kind (checksums, digit counts).
    fn accepts(self, found: &str) -> bool {
        match self {
            Pii::Card => luhn(found),
            Pii::Iban => iban_ok(found),
            Pii::Phone => (8..=15).contains(&found.chars().filter(char::is_ascii_digit).count()),
            // `name: str` in code, `Hello World`: words that are not names.
            Pii::Name => {
                !found.split(' ').next().is_some_and(|w| NOT_NAMES.contains(&w.to_lowercase().as_str()))
            }
            _ => true,
        }
    }
}

/// First words after a name label or a greeting that are not a person's name: types and values
/// in code (`name: str`, YAML `name: build`) and greetings to a group (`Hello World`, `Hi Team`).
const NOT_NAMES: &[&str] = &[
    "str",
    "string",
    "int",
    "integer",
    "bool",
    "boolean",
    "float",
    "double",
    "number",
    "list",
    "dict",
    "any",
    "none",
    "null",
    "true",
    "false",
    "object",
    "array",
    "optional",
    "build",
    "test",
    "tests",
    "deploy",
    "main",
    "world",
    "team",
    "all",
    "everyone",
    "there",
    "folks",
    "guys",
    "friends",
    "colleagues",
];

fn detectors() -> &'static [(Pii, Regex)] {
    static DETECTORS: OnceLock<Vec<(Pii, Regex)>> = OnceLock::new();
    DETECTORS.get_or_init(|| {
        Pii::ALL
            .iter()
            .map(|&p| (p, Regex::new(p.pattern()).expect("the detectors' patterns are valid")))
            .collect()
    })
}

/// The Luhn check of a card number (spaces and dashes ignored).
pub fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d })
        .sum();
    sum.is_multiple_of(10)
}

/// The ISO 13616 mod-97 check of an IBAN (spaces ignored).
pub fn iban_ok(s: &str) -> bool {
    let compact: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let rearranged = compact[4..].iter().chain(&compact[..4]);
    let mut rem: u32 = 0;
    for c in rearranged {
        let v = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

/// Where personal data is in `text`: (start, end, kind), in order, not overlapping. Detectors run
/// in the order of [`Pii::ALL`]; a match that fails its check (Luhn, mod-97, digit count) is tried
/// again shorter (a card number followed by its CVV, an IBAN followed by an amount).
pub fn spans(text: &str) -> Vec<(usize, usize, Pii)> {
    let mut found: Vec<(usize, usize, Pii)> = Vec::new();
    for (pii, re) in detectors() {
        let grouped = re.capture_names().flatten().next().is_some();
        let matches: Vec<regex::Match> = if grouped {
            re.captures_iter(text)
                .filter_map(|c| c.name("pii").or_else(|| c.name("pii2")).or_else(|| c.name("pii3")))
                .collect()
        } else {
            re.find_iter(text).collect()
        };
        for m in matches {
            let accepted = if pii.accepts(m.as_str()) {
                Some(m.end())
            } else if matches!(pii, Pii::Card | Pii::Iban) {
                // Shorter candidates ending on an alphanumeric character, longest first.
                (m.start() + 1..m.end())
                    .rev()
                    .filter(|&end| {
                        text.is_char_boundary(end)
                            && text[..end].ends_with(|c: char| c.is_ascii_alphanumeric())
                    })
                    .find(|&end| pii.accepts(&text[m.start()..end]))
            } else {
                None
            };
            if let Some(end) = accepted
                && !found.iter().any(|&(s, e, _)| m.start() < e && s < end)
            {
                found.push((m.start(), end, *pii));
            }
        }
    }
    found.sort_unstable_by_key(|&(s, _, _)| s);
    found
}

/// `text` with every detected piece of personal data replaced by its placeholder, and whether
/// anything was.
pub fn scrub(text: &str) -> (String, bool) {
    let pieces = scrub_pieces(&[text]);
    let changed = pieces[0] != text;
    (pieces.into_iter().next().unwrap_or_default(), changed)
}

/// Scrubs text typed in pieces as if it were one text: personal data split across pieces (typing
/// interrupted by a pause or a pointer move) is found in their concatenation, and each piece loses
/// its part of it (the part becomes the placeholder).
pub fn scrub_pieces(pieces: &[&str]) -> Vec<String> {
    let joined: String = pieces.concat();
    let found = spans(&joined);
    let mut out = Vec::with_capacity(pieces.len());
    let mut offset = 0;
    for piece in pieces {
        let (start, end) = (offset, offset + piece.len());
        let mut text = String::with_capacity(piece.len());
        let mut at = start;
        for &(s, e, pii) in found.iter().filter(|&&(s, e, _)| s < end && start < e) {
            let (s, e) = (s.max(start), e.min(end));
            text.push_str(&joined[at..s]);
            text.push_str(pii.placeholder());
            at = e;
        }
        text.push_str(&joined[at..end]);
        out.push(text);
        offset = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A canary of every kind the detectors know, as someone would type it.
    pub const CANARIES: [(Pii, &str); 9] = [
        (Pii::Email, "ada.lovelace@example.com"),
        (Pii::Phone, "+44 20 7946 0958"),
        (Pii::Card, "4111 1111 1111 1111"),
        (Pii::Iban, "GB82 WEST 1234 5698 7654 32"),
        (Pii::Ipv4, "192.168.10.42"),
        (Pii::ApiKey, "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
        (Pii::ApiKey, "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"),
        (Pii::ApiKey, "AKIAIOSFODNN7EXAMPLE"),
        (
            Pii::Jwt,
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        ),
    ];

    #[test]
    fn every_kind_of_canary_becomes_its_placeholder() {
        for (pii, canary) in CANARIES {
            let text = format!("note: {canary} (call me)");
            let (out, changed) = scrub(&text);
            assert!(changed && !out.contains(canary), "{pii:?}: {out}");
            assert!(out.contains(pii.placeholder()), "{pii:?}: {out}");
            assert!(out.starts_with("note: ") && out.ends_with(" (call me)"), "{out}");
        }
    }

    #[test]
    fn checksums_keep_ordinary_numbers_ordinary() {
        assert!(luhn("4111 1111 1111 1111") && !luhn("4111 1111 1111 1112"));
        assert!(iban_ok("GB82 WEST 1234 5698 7654 32") && !iban_ok("GB82 WEST 1234 5698 7654 33"));
        // Sixteen digits failing Luhn: no card, and too many digits for a phone number.
        assert_eq!(scrub("order 4111 1111 1111 1112 shipped").0, "order 4111 1111 1111 1112 shipped");
        assert_eq!(scrub("meet at 10:30 in room 4").0, "meet at 10:30 in room 4");
        assert_eq!(scrub("version 1.2.3").0, "version 1.2.3");
    }

    #[test]
    fn data_split_across_pieces_is_found_and_failed_checks_retry_shorter() {
        let pieces = scrub_pieces(&["card 4111 1111", " 1111 1111 thanks"]);
        assert_eq!(pieces, ["card <CARD>", "<CARD> thanks"]);
        assert_eq!(scrub("4111 1111 1111 1111 123").0, "<CARD> 123", "a card followed by its CVV");
        assert_eq!(scrub("BE68 5390 0754 7034 2500").0, "<IBAN> 2500", "an IBAN followed by an amount");
        assert_eq!(scrub("risk-management-framework-v2 review").0, "risk-management-framework-v2 review");
        assert_eq!(scrub("ASIAIOSFODNN7EXAMPLE").0, "<API_KEY>");
    }

    #[test]
    fn names_after_a_label_and_street_addresses_are_found() {
        for (text, want) in [
            ("Name: Grace Hopper\n", "Name: <NAME>\n"),
            ("full name = grace brewster hopper", "full name = <NAME>"),
            ("Dear Grace, thanks", "Dear <NAME>, thanks"),
            ("ship to 221B Baker Street, London", "ship to <ADDRESS>, London"),
            ("1600 Pennsylvania Avenue NW", "<ADDRESS> NW"),
            ("wohnt in der Hauptstraße 5a in Köln", "wohnt in der <ADDRESS> in Köln"),
            ("Address: 12 rue de Rivoli, Paris", "Address: <ADDRESS>"),
        ] {
            assert_eq!(scrub(text).0, want, "{text}");
        }
        // Ordinary text stays as it is.
        for text in [
            "the name of the game",
            "take the 5 Main Line",
            "hi there",
            "chapter 3 ends",
            "During 2020 we grew",
            "Spring 2024 release",
            "def f(name: str) -> None",
            "Hello World",
            "Hi Team, the build is green",
        ] {
            assert_eq!(scrub(text).0, text);
        }
    }
}
