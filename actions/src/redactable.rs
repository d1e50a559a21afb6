//! Redactable values: decrypted events read for a redacted export, and the steps they reduce to,
//! wrapped so that nothing outside this crate can read them. A [`Redactable`] block goes into a
//! [`RedactableReducer`]; its steps come out redactable; only [`Redactor::open`] opens them, and only
//! by redacting them with the default policy. So a caller the log allows only redacted exports
//! (the `ml` role) can be handed its events without being able to read them.

use tracevault_codecs::{Event, Screen};

use crate::redact::{Policy, Redactor};
use crate::reduce::{ReduceConfig, Reducer};
use crate::step::{Absorbed, Step};

/// One block of a session's events, with where it sits in the session.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// The block's number in the session (for the open block: the number it will get when sealed).
    pub block: u32,
    /// The session-wide index of its first event.
    pub seq_first: u64,
    pub events: Vec<Event>,
}

/// A value that only this crate can read. Anyone may seal one; no one outside may open it.
pub struct Redactable<T>(T);

impl<T> Redactable<T> {
    pub fn new(value: T) -> Redactable<T> {
        Redactable(value)
    }
}

impl Redactable<Block> {
    /// The block's number, position and size: not personal data.
    pub fn block(&self) -> u32 {
        self.0.block
    }

    pub fn seq_first(&self) -> u64 {
        self.0.seq_first
    }

    pub fn len(&self) -> usize {
        self.0.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.events.is_empty()
    }
}

impl<T> std::fmt::Debug for Redactable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactable(<only a reducer and a redactor read this>)")
    }
}

/// A [`Reducer`] fed redactable blocks: its steps come out redactable.
pub struct RedactableReducer {
    reducer: Reducer,
    steps: Vec<Step>,
}

impl RedactableReducer {
    pub fn new(config: ReduceConfig, screen: Option<Screen>) -> RedactableReducer {
        RedactableReducer { reducer: Reducer::new(config, screen), steps: Vec::new() }
    }

    /// The keyboard layout the session declared (see [`Reducer::with_layout`]).
    pub fn with_layout(self, layout: Option<&str>) -> RedactableReducer {
        RedactableReducer { reducer: self.reducer.with_layout(layout), steps: self.steps }
    }

    /// Feeds the next block, in session order.
    pub fn push(&mut self, block: &Redactable<Block>) {
        let b = &block.0;
        self.reducer.push_block(b.block, b.seq_first, &b.events);
        self.steps.extend(self.reducer.drain());
    }

    /// The session's steps, redactable, and the events no step took (not personal data).
    pub fn finish(self) -> (Redactable<Vec<Step>>, Option<Absorbed>) {
        let RedactableReducer { reducer, mut steps } = self;
        let (rest, absorbed) = reducer.finish();
        steps.extend(rest);
        (Redactable(steps), absorbed)
    }
}

impl Redactor {
    /// Opens a session's redactable steps by redacting them: the only way out of a [`Redactable`]. A
    /// redactor without redaction ([`Policy::None`]) refuses.
    pub fn open(&self, steps: Redactable<Vec<Step>>) -> Result<Vec<Step>, String> {
        if self.policy() != Policy::Default {
            return Err("redactable steps open only through the default redaction".into());
        }
        let mut steps = steps.0;
        self.steps(&mut steps);
        Ok(steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracevault_codecs::{EventKind, Key};

    fn typed(text: &str) -> Redactable<Block> {
        let events = text
            .chars()
            .enumerate()
            .map(|(i, c)| Event {
                t_us: i as u64 * 100_000,
                kind: EventKind::KeyDown(Key {
                    code: "KeyA".into(),
                    text: Some(c.to_string()),
                    secure: false,
                }),
            })
            .collect();
        Redactable::new(Block { block: 0, seq_first: 0, events })
    }

    #[test]
    fn redactable_steps_open_only_redacted() {
        let mut reducer = RedactableReducer::new(ReduceConfig::default(), None);
        reducer.push(&typed("mail me at ada@example.com"));
        let (steps, _) = reducer.finish();
        let none = Redactor::new(Policy::None, &[], None).unwrap();
        assert!(none.open(steps).is_err(), "no way out without the redaction");
        let mut reducer = RedactableReducer::new(ReduceConfig::default(), None);
        reducer.push(&typed("mail me at ada@example.com"));
        let (steps, _) = reducer.finish();
        let steps = Redactor::new(Policy::Default, &[], None).unwrap().open(steps).unwrap();
        let text = format!("{steps:?}");
        assert!(!text.contains("ada@example.com"), "{text}");
        assert!(!format!("{:?}", typed("secret")).contains("secret"), "Debug shows nothing inside");
    }
}
