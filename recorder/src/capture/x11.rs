//! The X11 backend: XInput2 raw events on the root window (every key, button, wheel tick and
//! motion of the master devices, whichever window has them, without grabbing anything), the
//! pointer's position from `QueryPointer`, the focused window from the window manager's
//! `_NET_ACTIVE_WINDOW` (EWMH) with its `WM_CLASS`, `_NET_WM_NAME` and `_NET_WM_PID`, and key
//! text from the server's keymap through xkbcommon.

use x11rb::connection::Connection;
use x11rb::protocol::Event;
use x11rb::protocol::xinput::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{
    Atom, AtomEnum, ChangeWindowAttributesAux, ConnectionExt as _, EventMask, Window,
};
use x11rb::rust_connection::RustConnection;

use tracevault_codecs::{Button, Screen};

use super::xkb::{Keymap, RuleNames};
use super::{Capture, CaptureError, Desktop, Input, codes};

struct Atoms {
    net_active_window: Atom,
    net_wm_name: Atom,
    net_wm_pid: Atom,
    utf8_string: Atom,
    xkb_rules_names: Atom,
}

/// Input from an X display.
pub struct X11Capture {
    conn: RustConnection,
    root: Window,
    atoms: Atoms,
    keymap: Keymap,
    desktop: Desktop,
    active: Window,
    pointer: (i32, i32),
    screen: Screen,
    /// Inputs decided while handling one X event, reported one by one.
    queue: std::collections::VecDeque<Input>,
    /// Raw motion came and the pointer's position has not been asked since.
    moved: bool,
}

fn lost(e: impl std::fmt::Display) -> CaptureError {
    CaptureError::Lost(e.to_string())
}

impl X11Capture {
    /// Connects to `display` (`None`: `$DISPLAY`) and selects raw input on the root window.
    pub fn connect(display: Option<&str>) -> Result<X11Capture, CaptureError> {
        let name = display.map(str::to_owned).or_else(|| std::env::var("DISPLAY").ok()).unwrap_or_default();
        let (conn, screen_num) = x11rb::connect(display)
            .map_err(|e| CaptureError::Connect { display: name.clone(), why: e.to_string() })?;
        let screen = &conn.setup().roots[screen_num];
        let root = screen.root;
        let size = Screen { w: u32::from(screen.width_in_pixels), h: u32::from(screen.height_in_pixels) };

        let version = conn
            .xinput_xi_query_version(2, 2)
            .map_err(|e| CaptureError::NoXInput(e.to_string()))?
            .reply()
            .map_err(|e| CaptureError::NoXInput(e.to_string()))?;
        if (version.major_version, version.minor_version) < (2, 2) {
            return Err(CaptureError::NoXInput(format!(
                "the server has {}.{}",
                version.major_version, version.minor_version
            )));
        }
        let mask = xinput::XIEventMask::RAW_KEY_PRESS
            | xinput::XIEventMask::RAW_KEY_RELEASE
            | xinput::XIEventMask::RAW_BUTTON_PRESS
            | xinput::XIEventMask::RAW_BUTTON_RELEASE
            | xinput::XIEventMask::RAW_MOTION;
        conn.xinput_xi_select_events(
            root,
            &[xinput::EventMask { deviceid: xinput::Device::ALL_MASTER.into(), mask: vec![mask] }],
        )
        .map_err(lost)?
        .check()
        .map_err(lost)?;
        conn.change_window_attributes(
            root,
            &ChangeWindowAttributesAux::new()
                .event_mask(EventMask::PROPERTY_CHANGE | EventMask::STRUCTURE_NOTIFY),
        )
        .map_err(lost)?
        .check()
        .map_err(lost)?;

        let atom = |name: &[u8]| -> Result<Atom, CaptureError> {
            Ok(conn.intern_atom(false, name).map_err(lost)?.reply().map_err(lost)?.atom)
        };
        let atoms = Atoms {
            net_active_window: atom(b"_NET_ACTIVE_WINDOW")?,
            net_wm_name: atom(b"_NET_WM_NAME")?,
            net_wm_pid: atom(b"_NET_WM_PID")?,
            utf8_string: atom(b"UTF8_STRING")?,
            xkb_rules_names: atom(b"_XKB_RULES_NAMES")?,
        };
        let rules = property(&conn, root, atoms.xkb_rules_names, AtomEnum::STRING.into())
            .and_then(|v| RuleNames::parse(&v))
            .unwrap_or_else(RuleNames::fallback);
        let keymap = Keymap::new(&rules)?;

        let mut capture = X11Capture {
            conn,
            root,
            atoms,
            keymap,
            desktop: Desktop {
                backend: "x11",
                screen: size,
                layout: rules.layout_label(),
                pointer: (0, 0),
                focus: None,
            },
            active: x11rb::NONE,
            pointer: (0, 0),
            screen: size,
            queue: Default::default(),
            moved: false,
        };
        capture.pointer = capture.query_pointer()?;
        capture.desktop.pointer = capture.pointer;
        capture.desktop.focus = capture.refresh_active();
        Ok(capture)
    }

    fn query_pointer(&self) -> Result<(i32, i32), CaptureError> {
        let p = self.conn.query_pointer(self.root).map_err(lost)?.reply().map_err(lost)?;
        Ok((i32::from(p.root_x), i32::from(p.root_y)))
    }

    /// Reads `_NET_ACTIVE_WINDOW`; when it names another window, watches that window's title
    /// and returns its focus input.
    fn refresh_active(&mut self) -> Option<Input> {
        let active = property(&self.conn, self.root, self.atoms.net_active_window, AtomEnum::WINDOW.into())
            .and_then(|v| v.get(..4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]])))
            .unwrap_or(x11rb::NONE);
        if active == self.active {
            return None;
        }
        self.active = active;
        if active == x11rb::NONE {
            return Some(Input::Focus { app: "desktop".into(), instance: None, title: None, pid: None });
        }
        // The window may be gone already: then the next change says where focus went.
        let _ = self
            .conn
            .change_window_attributes(
                active,
                &ChangeWindowAttributesAux::new().event_mask(EventMask::PROPERTY_CHANGE),
            )
            .map(|c| c.ignore_error());
        Some(self.focus_of(active))
    }

    fn focus_of(&self, window: Window) -> Input {
        let class = property(&self.conn, window, AtomEnum::WM_CLASS.into(), AtomEnum::STRING.into());
        // WM_CLASS is "instance\0Class\0": the class names the application; the instance goes
        // along for the policy (x11-ssh-askpass is instance `ssh-askpass`, class `SshAskpass`).
        let parts: Vec<String> = class
            .map(|v| {
                v.split(|&b| b == 0)
                    .filter(|p| !p.is_empty())
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let (instance, app) = match parts.as_slice() {
            [instance, class, ..] => (Some(instance.clone()), class.clone()),
            [only] => (None, only.clone()),
            [] => (None, "unknown".to_owned()),
        };
        let title = property(&self.conn, window, self.atoms.net_wm_name, self.atoms.utf8_string)
            .or_else(|| property(&self.conn, window, AtomEnum::WM_NAME.into(), AtomEnum::ANY.into()))
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .filter(|t| !t.is_empty());
        let pid = property(&self.conn, window, self.atoms.net_wm_pid, AtomEnum::CARDINAL.into())
            .and_then(|v| v.get(..4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]])));
        Input::Focus { app, instance, title, pid }
    }

    /// Asks where the pointer is if it moved since the last time: once per burst of raw motion
    /// (a 1000 Hz mouse sends several per X read), and before any other input, so a move is
    /// always recorded before what follows it.
    fn settle_motion(&mut self) -> Result<(), CaptureError> {
        if std::mem::take(&mut self.moved) {
            let at = self.query_pointer()?;
            if at != self.pointer {
                self.pointer = at;
                self.queue.push_back(Input::Move { x: at.0, y: at.1 });
            }
        }
        Ok(())
    }

    fn handle(&mut self, event: Event) -> Result<(), CaptureError> {
        if !matches!(event, Event::XinputRawMotion(_)) {
            self.settle_motion()?;
        }
        match event {
            Event::XinputRawKeyPress(e) => {
                let repeat = e.flags.contains(xinput::KeyEventFlags::KEY_REPEAT);
                self.key(e.detail, true, repeat);
            }
            Event::XinputRawKeyRelease(e) => self.key(e.detail, false, false),
            Event::XinputRawButtonPress(e) => self.button(e.detail, true)?,
            Event::XinputRawButtonRelease(e) => self.button(e.detail, false)?,
            Event::XinputRawMotion(_) => self.moved = true,
            Event::PropertyNotify(e) if e.window == self.root && e.atom == self.atoms.net_active_window => {
                if let Some(focus) = self.refresh_active() {
                    self.queue.push_back(focus);
                }
            }
            Event::PropertyNotify(e)
                if e.window == self.active
                    && (e.atom == self.atoms.net_wm_name || e.atom == u32::from(AtomEnum::WM_NAME)) =>
            {
                let focus = self.focus_of(self.active);
                self.queue.push_back(focus);
            }
            Event::ConfigureNotify(e) if e.window == self.root => {
                let size = Screen { w: u32::from(e.width), h: u32::from(e.height) };
                if size != self.screen {
                    self.screen = size;
                    self.queue.push_back(Input::Screen(size));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn key(&mut self, keycode: u32, down: bool, repeat: bool) {
        let code = codes::w3c_code(keycode).unwrap_or("Unidentified").to_owned();
        // The text is what the key gives in the state before its own press is applied.
        let text = if down { self.keymap.text(keycode) } else { None };
        if !repeat {
            self.keymap.update(keycode, down);
        }
        self.queue.push_back(Input::Key { keycode, code, text, down, repeat });
    }

    fn button(&mut self, detail: u32, down: bool) -> Result<(), CaptureError> {
        let (x, y) = self.query_pointer()?;
        if (x, y) != self.pointer {
            self.pointer = (x, y);
            self.queue.push_back(Input::Move { x, y });
        }
        // Buttons 4 to 7 are the wheel (one press per tick; their releases say nothing).
        let wheel = match detail {
            4 => Some((0, -120)),
            5 => Some((0, 120)),
            6 => Some((-120, 0)),
            7 => Some((120, 0)),
            _ => None,
        };
        if let Some((dx, dy)) = wheel {
            if down {
                self.queue.push_back(Input::Wheel { dx, dy, x, y });
            }
            return Ok(());
        }
        let button = match detail {
            1 => Button::Left,
            2 => Button::Middle,
            3 => Button::Right,
            8 => Button::Back,
            9 => Button::Forward,
            _ => Button::Other,
        };
        self.queue.push_back(Input::Button { button, down, x, y });
        Ok(())
    }
}

/// A window property's bytes, or `None` if the window or the property is not there.
fn property(conn: &RustConnection, window: Window, atom: Atom, kind: Atom) -> Option<Vec<u8>> {
    let reply = conn.get_property(false, window, atom, kind, 0, 4096).ok()?.reply().ok()?;
    (reply.format != 0).then_some(reply.value)
}

impl Capture for X11Capture {
    fn desktop(&self) -> &Desktop {
        &self.desktop
    }

    fn next(&mut self) -> Result<Input, CaptureError> {
        loop {
            if let Some(input) = self.queue.pop_front() {
                return Ok(input);
            }
            let event = self.conn.wait_for_event().map_err(lost)?;
            self.handle(event)?;
            // What else has arrived already, before asking where the pointer is.
            while let Some(event) = self.conn.poll_for_event().map_err(lost)? {
                self.handle(event)?;
            }
            self.settle_motion()?;
        }
    }
}
