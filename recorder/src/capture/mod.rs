//! Where input comes from: a backend per windowing system behind one trait, so a Windows or
//! macOS backend is one more module. X11 is the one there is ([`x11`]); Wayland gives no client
//! a global view of input by design and needs a compositor-side backend (not yet).
//!
//! A backend reports what it saw, as it saw it ([`Input`]): it does not mask. Masking is the
//! [`crate::mask`] layer's, between the backend and anything written, for every backend alike.

pub mod codes;
pub mod x11;
mod xkb;

use std::sync::mpsc;
use std::time::Instant;

use tracevault_codecs::{Button, Screen};

pub use xkb::{RuleNames, XkbError};

/// One input as a backend saw it. Keys carry the X keycode (or the platform's) so a release
/// can be matched to its press, and the text the keymap gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Key {
        keycode: u32,
        code: String,
        text: Option<String>,
        down: bool,
        repeat: bool,
    },
    Button {
        button: Button,
        down: bool,
        x: i32,
        y: i32,
    },
    /// Wheel ticks × 120, `dy > 0` down (the event model's units).
    Wheel {
        dx: i32,
        dy: i32,
        x: i32,
        y: i32,
    },
    Move {
        x: i32,
        y: i32,
    },
    /// The focused top-level window changed, or its title did. `pid` is the owning process when
    /// the window says (`_NET_WM_PID`): secure-input detection matches AT-SPI events by it.
    Focus {
        app: String,
        /// The X11 `WM_CLASS` instance name, for the policy only (not recorded).
        instance: Option<String>,
        title: Option<String>,
        pid: Option<u32>,
    },
    Screen(Screen),
}

/// What a backend knows about the desktop when it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desktop {
    /// `x11`, ...
    pub backend: &'static str,
    pub screen: Screen,
    /// The keyboard layout (`us`, `de(nodeadkeys)`, `us,ru`).
    pub layout: String,
    /// Where the pointer is at the start.
    pub pointer: (i32, i32),
    /// The focused window at the start, if any.
    pub focus: Option<Input>,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot connect to the X display {display}: {why}")]
    Connect { display: String, why: String },
    #[error("the X server has no XInput 2.2 (needed for raw input events): {0}")]
    NoXInput(String),
    #[error(transparent)]
    Keymap(#[from] XkbError),
    #[error("the connection to the display was lost: {0}")]
    Lost(String),
}

/// A source of input. `next` blocks until there is something to report.
pub trait Capture: Send {
    fn desktop(&self) -> &Desktop;
    fn next(&mut self) -> Result<Input, CaptureError>;
}

/// Runs a capture on its own thread, each input stamped with the monotonic time it arrived.
/// The thread ends when the receiver is dropped or the capture fails (the error is sent).
pub fn spawn(mut capture: Box<dyn Capture>) -> mpsc::Receiver<Result<(Instant, Input), CaptureError>> {
    let (tx, rx) = mpsc::sync_channel(4096);
    std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || {
            loop {
                let next = capture.next().map(|input| (Instant::now(), input));
                let failed = next.is_err();
                if tx.send(next).is_err() || failed {
                    return;
                }
            }
        })
        .expect("the capture thread starts");
    rx
}
