//! Redaction: what of a step may leave tracevault in an export. Applied to every step before
//! anything is written. docs/ACTIONS.md ("Redaction") lists the detectors and their placeholders.
//!
//! - `default`: secure fields hold nothing (the log never stored them); typed text and window
//!   titles matching a PII detector become a typed placeholder (`<EMAIL>`, `<CARD>`, ...); steps in
//!   apps on the sensitive list keep only their action kind and timing; user ids become
//!   HMAC-SHA256(export key, user id), a fresh random key per export unless one is given, so two
//!   exports cannot be joined on the person.
//! - `none`: everything as recorded, for auditors only.

use std::sync::OnceLock;

use hmac::{Hmac, KeyInit, Mac};
use regex::Regex;
use sha2::Sha256;

use crate::step::{Action, Step};

/// Which redaction an export applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Default,
    None,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Default => "default",
            Policy::None => "none",
        }
    }
}

impl std::str::FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Policy, String> {
        match s {
            "default" => Ok(Policy::Default),
            "none" => Ok(Policy::None),
            other => Err(format!("unknown redaction {other:?}, expected default or none")),
        }
    }
}

/// Apps whose steps keep only action kinds and timing, by default (matched case-insensitively
/// against the focused app's name, as a substring).
pub const SENSITIVE_APPS: &[&str] = &[
    "1password",
    "bitwarden",
    "keepass",
    "lastpass",
    "keychain",
    "dashlane",
    "signal",
    "whatsapp",
    "telegram",
    "messages",
    "banking",
];

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
}

impl Pii {
    pub const ALL: [Pii; 7] =
        [Pii::Jwt, Pii::ApiKey, Pii::Email, Pii::Iban, Pii::Card, Pii::Ipv4, Pii::Phone];

    pub fn placeholder(self) -> &'static str {
        match self {
            Pii::Jwt => "<JWT>",
            Pii::ApiKey => "<API_KEY>",
            Pii::Email => "<EMAIL>",
            Pii::Iban => "<IBAN>",
            Pii::Card => "<CARD>",
            Pii::Ipv4 => "<IPV4>",
            Pii::Phone => "<PHONE>",
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
        }
    }

    /// Whether a match is really of this kind (checksums, digit counts).
    fn accepts(self, found: &str) -> bool {
        match self {
            Pii::Card => luhn(found),
            Pii::Iban => iban_ok(found),
            Pii::Phone => (8..=15).contains(&found.chars().filter(char::is_ascii_digit).count()),
            _ => true,
        }
    }
}

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
        for m in re.find_iter(text) {
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

/// What an export applies to each step and each user id.
pub struct Redactor {
    policy: Policy,
    sensitive: Vec<String>,
    key: [u8; 32],
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor").field("policy", &self.policy).field("sensitive", &self.sensitive).finish()
    }
}

impl Redactor {
    /// `key`: the export key user ids are hashed with (random when `None`: unlinkable exports).
    pub fn new(policy: Policy, sensitive: &[String], key: Option<[u8; 32]>) -> Result<Redactor, String> {
        let key = match key {
            Some(k) => k,
            None => {
                let mut k = [0u8; 32];
                getrandom_fill(&mut k)?;
                k
            }
        };
        Ok(Redactor { policy, sensitive: sensitive.iter().map(|s| s.to_lowercase()).collect(), key })
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The user id as the export shows it.
    pub fn user(&self, user: &str) -> String {
        match self.policy {
            Policy::None => user.to_owned(),
            Policy::Default => self.hash(b"user", user),
        }
    }

    fn sensitive_app(&self, app: Option<&str>) -> bool {
        app.is_some_and(|a| {
            let a = a.to_lowercase();
            self.sensitive.iter().any(|s| a.contains(s.as_str()))
        })
    }

    /// The session id as the export shows it: under `default` a keyed hash too, or sessions
    /// shared by two exports would link the two hashes of their person.
    pub fn session(&self, session: &str) -> String {
        match self.policy {
            Policy::None => session.to_owned(),
            Policy::Default => format!("s-{}", self.hash(b"session", session)),
        }
    }

    fn hash(&self, domain: &[u8], id: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(domain);
        mac.update(b"\0");
        mac.update(id.as_bytes());
        let tag = mac.finalize().into_bytes();
        hex::encode(&tag[..16])
    }

    /// Free text the export shows as it is (a session's labels), scrubbed by the detectors
    /// under the default policy.
    pub fn text(&self, text: &str) -> String {
        match self.policy {
            Policy::None => text.to_owned(),
            Policy::Default => scrub(text).0,
        }
    }

    /// Redacts a session's steps: typed text scrubbed as one across the pieces a pause, a pointer
    /// move or a scroll split it into (in one app), window titles scrubbed, steps in sensitive
    /// apps reduced to their kind and timing.
    pub fn steps(&self, steps: &mut [Step]) {
        if self.policy == Policy::None {
            return;
        }
        let mut i = 0;
        while i < steps.len() {
            if !matches!(steps[i].action, Action::Type { secure: false, .. }) {
                i += 1;
                continue;
            }
            let app = steps[i].app.clone();
            let mut run = vec![i];
            let mut j = i + 1;
            while j < steps.len() {
                match &steps[j].action {
                    Action::Type { secure: false, .. } if steps[j].app == app => run.push(j),
                    Action::Move { .. } | Action::Wait { .. } | Action::Scroll { .. } => {}
                    _ => break,
                }
                j += 1;
            }
            let texts: Vec<String> = run
                .iter()
                .map(|&k| match &steps[k].action {
                    Action::Type { text, .. } => text.clone(),
                    _ => unreachable!("the run holds type steps"),
                })
                .collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            for (&k, scrubbed) in run.iter().zip(scrub_pieces(&refs)) {
                if let Action::Type { text, .. } = &mut steps[k].action {
                    *text = scrubbed;
                }
            }
            i = j;
        }
        for step in steps.iter_mut() {
            let sensitive = self.sensitive_app(step.app.as_deref())
                || matches!(&step.action, Action::Focus { app, .. } if self.sensitive_app(Some(app)));
            if sensitive {
                step.redacted = true;
            } else if let Action::Focus { title: Some(title), .. } = &mut step.action {
                *title = scrub(title).0;
            }
        }
    }

    /// Redacts one step on its own (see [`Redactor::steps`] for a session's).
    pub fn step(&self, step: &mut Step) {
        self.steps(std::slice::from_mut(step));
    }
}

fn getrandom_fill(out: &mut [u8]) -> Result<(), String> {
    getrandom::fill(out).map_err(|e| format!("no random bytes from the operating system: {e}"))
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
    fn a_session_is_scrubbed_across_pauses_and_moves_and_sensitive_apps_keep_only_timing() {
        use crate::step::{Lineage, Step};
        let step = |action: Action, app: &str| Step {
            episode: 0,
            step: 0,
            t_start_us: 0,
            t_end_us: 0,
            action,
            app: Some(app.into()),
            screen: None,
            lineage: Lineage { block: 0, first_event: 0, last_event: 0, events: 1 },
            redacted: false,
        };
        let typed = |t: &str| Action::Type { text: t.into(), secure: false, inferred: false };
        let mut steps = vec![
            step(typed("mail ada.love"), "chat"),
            step(Action::Wait { ms: 1500 }, "chat"),
            step(Action::Move { path: vec![(1, 1, 1)] }, "chat"),
            step(typed("lace@example.com now"), "chat"),
            step(typed("hunter2"), "1Password"),
        ];
        let r = Redactor::new(Policy::Default, &["1password".to_owned()], Some([5; 32])).unwrap();
        r.steps(&mut steps);
        assert_eq!(steps[0].action, typed("mail <EMAIL>"));
        assert_eq!(steps[3].action, typed("<EMAIL> now"));
        assert!(steps[4].redacted && !steps[0].redacted);
        assert_ne!(r.session("s-1"), "s-1");
        assert_eq!(r.session("s-1"), r.session("s-1"));
    }

    #[test]
    fn user_ids_are_keyed_hashes_that_differ_between_exports() {
        let a = Redactor::new(Policy::Default, &[], Some([1; 32])).unwrap();
        let b = Redactor::new(Policy::Default, &[], Some([2; 32])).unwrap();
        assert_eq!(a.user("u-17"), a.user("u-17"));
        assert_ne!(a.user("u-17"), b.user("u-17"));
        assert_ne!(a.user("u-17"), a.user("u-18"));
        assert_eq!(a.user("u-17").len(), 32);
        let none = Redactor::new(Policy::None, &[], None).unwrap();
        assert_eq!(none.user("u-17"), "u-17");
    }
}
