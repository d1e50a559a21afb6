//! Redaction: what of a step may leave tracevault in an export. Applied to every step before
//! anything is written. docs/ACTIONS.md ("Redaction") lists the detectors and their placeholders.
//!
//! - `default`: secure fields hold nothing (the log never stored them); typed text and window
//!   titles matching a PII detector become a typed placeholder (`<EMAIL>`, `<CARD>`, ...); steps in
//!   apps on the sensitive list keep only their action kind and timing; user ids become
//!   HMAC-SHA256(export key, user id), a fresh random key per export unless one is given, so two
//!   exports cannot be joined on the person.
//! - `none`: everything as recorded, for auditors only.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::step::{Action, Step};

mod detect;
pub use detect::{Pii, iban_ok, luhn, scrub, scrub_pieces, spans};

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

/// Window titles that show a sensitive web app in a browser (a password manager's web vault, a
/// bank): matched case-insensitively as substrings of the title, like [`SENSITIVE_APPS`] on the
/// app. Chat apps are not on this list: their names ("Messages", "Signal") are ordinary words
/// in titles.
pub const SENSITIVE_TITLES: &[&str] = &[
    "1password",
    "bitwarden",
    "lastpass",
    "dashlane",
    "keeper vault",
    "nordpass",
    "proton pass",
    "web vault",
    "password manager",
    "online banking",
    "internet banking",
    "netbanking",
    "online-banking",
    "bank of america",
    "wells fargo",
    "chase online",
    "barclays",
    "hsbc",
    "santander",
    "sparkasse",
    "commerzbank",
    "deutsche bank",
    "paypal",
    "revolut",
    "monzo",
];

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
        // The window title in the foreground: a sensitive web app shows only in it.
        let mut title_sensitive = false;
        for step in steps.iter_mut() {
            if let Action::Focus { title, .. } = &step.action {
                title_sensitive = title.as_deref().is_some_and(sensitive_title);
            }
            let sensitive = self.sensitive_app(step.app.as_deref())
                || title_sensitive
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

/// Whether a window title shows a sensitive web app ([`SENSITIVE_TITLES`]).
pub fn sensitive_title(title: &str) -> bool {
    let title = title.to_lowercase();
    SENSITIVE_TITLES.iter().any(|s| title.contains(s))
}

/// The recognisers the default redaction runs, by name, as `info.json` lists them.
pub fn recognisers() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Pii::ALL.iter().map(|p| p.name()).collect();
    names.extend(["sensitive_apps", "sensitive_window_titles", "secure_fields"]);
    names
}

fn getrandom_fill(out: &mut [u8]) -> Result<(), String> {
    getrandom::fill(out).map_err(|e| format!("no random bytes from the operating system: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_sensitive_web_app_is_known_by_its_window_title() {
        use crate::step::{Lineage, Step};
        let step = |action: Action| Step {
            episode: 0,
            step: 0,
            t_start_us: 0,
            t_end_us: 0,
            action,
            app: Some("firefox".into()),
            screen: None,
            lineage: Lineage { block: 0, first_event: 0, last_event: 0, events: 1 },
            redacted: false,
        };
        let focus = |title: &str| Action::Focus { app: "firefox".into(), title: Some(title.into()) };
        let typed = |t: &str| Action::Type { text: t.into(), secure: false, inferred: false };
        let mut steps = vec![
            step(focus("Bitwarden Web Vault — Mozilla Firefox")),
            step(typed("correct horse battery staple")),
            step(focus("Online Banking | Sparkasse")),
            step(typed("1234")),
            step(focus("Wikipedia — Mozilla Firefox")),
            step(typed("hello")),
        ];
        Redactor::new(Policy::Default, &[], Some([5; 32])).unwrap().steps(&mut steps);
        let redacted: Vec<bool> = steps.iter().map(|s| s.redacted).collect();
        assert_eq!(redacted, [true, true, true, true, false, false]);
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
