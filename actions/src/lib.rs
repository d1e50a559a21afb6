//! tracevault-actions: the action reduction (events to steps), the redaction applied before
//! anything reaches a training set, and [`Redactable`], the wrapper that keeps decrypted events
//! and unredacted steps from anyone who may only have them redacted.
//!
//! # Layout
//! - [`reduce`]: the action reduction state machine (docs/ACTIONS.md states every rule).
//! - [`keys`]: keyboard layouts (text from key codes) and PyAutoGUI's key names.
//! - [`step`]: a step: action, arguments, PyAutoGUI call, lineage; its JSON form.
//! - [`redact`]: the redaction policies.
//! - [`redactable`]: values only this crate can open: events read for a redacted export go in, and
//!   only redacted steps come out.
//!
//! It sits below the log (tracevault-core), so the log itself can hand a caller that may only
//! export redacted data its events as [`Redactable`] values, and no front end can open them.
//!
//! # Example
//! ```
//! use tracevault_actions::{Block, Policy, ReduceConfig, Redactable, RedactableReducer, Redactor};
//! use tracevault_codecs::{Event, EventKind, Key};
//!
//! # fn main() -> Result<(), String> {
//! let key = |t_us, code: &str, text: &str| Event {
//!     t_us,
//!     kind: EventKind::KeyDown(Key { code: code.into(), text: Some(text.into()), secure: false }),
//! };
//! let events = vec![key(0, "KeyH", "h"), key(100_000, "KeyI", "i")];
//! // What the log hands an ML export: redactable; only a reducer and a redactor see inside.
//! let block = Redactable::new(Block { block: 0, seq_first: 0, events });
//! let mut reducer = RedactableReducer::new(ReduceConfig::default(), None);
//! reducer.push(&block);
//! let (steps, _absorbed) = reducer.finish();
//! let redactor = Redactor::new(Policy::Default, &[], None)?;
//! let steps = redactor.open(steps)?;
//! assert_eq!(steps.len(), 1);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod keys;
pub mod redact;
pub mod redactable;
pub mod reduce;
pub mod step;

pub use keys::Layout;
pub use redact::{Policy, Redactor};
pub use redactable::{Block, Redactable, RedactableReducer};
pub use reduce::{ReduceConfig, Reducer, reduce};
pub use step::{Absorbed, Action, Fields, Lineage, Step};
