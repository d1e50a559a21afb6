//! Secure input from the accessibility tree: where the desktop runs AT-SPI (GNOME, KDE, most
//! X11 desktops with at-spi2-core), every toolkit says which widget has the keyboard focus and
//! what its role is. A focused widget with the role *password text* (GTK's password entries,
//! Qt's `QLineEdit::Password`, a browser's `<input type=password>`) makes its process's input
//! secure until focus moves to a widget that is not one.
//!
//! The watcher runs on its own thread: it finds the accessibility bus through the session bus
//! (`org.a11y.Bus.GetAddress`), asks toolkits to publish (`org.a11y.Status.IsEnabled`: Qt and
//! GTK 4 publish nothing otherwise), registers for `object:state-changed:focused` with the
//! registry, and for each focus change asks the widget its role and the bus the sender's
//! process id. The capture's focus events carry the window's `_NET_WM_PID`, so the masker
//! can ask whether the focused window's process has a password field focused.
//!
//! Without a session bus or an accessibility bus the watcher says so once and reports nothing;
//! the window policy (crate::mask) still applies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use zbus::blocking::{Connection, MessageIterator};
use zbus::message::Type;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};
use zbus::{MatchRule, Message};

/// `ATSPI_ROLE_PASSWORD_TEXT` (at-spi2-core's `AtspiRole`).
const ROLE_PASSWORD_TEXT: u32 = 40;

#[derive(Default)]
struct State {
    /// Per process: its focused widget (its object path) and whether it is a password field.
    by_pid: HashMap<u32, (String, bool)>,
    /// What the last widget to gain focus was, anywhere: for windows that do not say their
    /// process or whose process AT-SPI does not know (Flatpak apps see another pid namespace).
    last: bool,
}

/// What AT-SPI says about secure input, shared with the masker.
#[derive(Clone, Default)]
pub struct SecureFields {
    state: Arc<Mutex<State>>,
}

impl SecureFields {
    /// A watcher that knows nothing (no AT-SPI on this desktop).
    pub fn none() -> SecureFields {
        SecureFields::default()
    }

    /// Starts the watcher thread. Errors reaching the buses are logged, not returned: secure
    /// input then rests on the window policy alone.
    pub fn watch() -> SecureFields {
        let fields = SecureFields::default();
        let state = fields.state.clone();
        let started = std::thread::Builder::new().name("atspi".into()).spawn(move || {
            if let Err(e) = run(&state) {
                tracing::warn!(
                    "AT-SPI is not available ({e}): password fields are recognised by the window policy only"
                );
            }
        });
        if let Err(e) = started {
            tracing::warn!("the AT-SPI watcher could not start: {e}");
        }
        fields
    }

    /// Whether the process owning the focused window (`None`: it did not say) has a password
    /// field focused.
    pub fn is_secure(&self, pid: Option<u32>) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match pid {
            Some(pid) => state.by_pid.get(&pid).map_or(state.last, |(_, secure)| *secure),
            None => state.last,
        }
    }
}

fn run(state: &Mutex<State>) -> zbus::Result<()> {
    let session = Connection::session()?;
    let address: String = session
        .call_method(Some("org.a11y.Bus"), "/org/a11y/bus", Some("org.a11y.Bus"), "GetAddress", &())?
        .body()
        .deserialize()?;
    let enable = session.call_method(
        Some("org.a11y.Bus"),
        "/org/a11y/bus",
        Some("org.freedesktop.DBus.Properties"),
        "Set",
        &("org.a11y.Status", "IsEnabled", zbus::zvariant::Value::from(true)),
    );
    if let Err(e) = enable {
        tracing::debug!("could not set org.a11y.Status.IsEnabled: {e}");
    }
    // A hung application must not stall the watcher: its role queries time out.
    let a11y = zbus::blocking::connection::Builder::address(address.as_str())?
        .method_timeout(std::time::Duration::from_millis(500))
        .build()?;
    let rule = MatchRule::builder()
        .msg_type(Type::Signal)
        .interface("org.a11y.atspi.Event.Object")?
        .member("StateChanged")?
        .arg(0, "focused")?
        .build();
    let events = MessageIterator::for_match_rule(rule, &a11y, Some(256))?;
    a11y.call_method(
        Some("org.a11y.atspi.Registry"),
        "/org/a11y/atspi/registry",
        Some("org.a11y.atspi.Registry"),
        "RegisterEvent",
        &("object:state-changed:focused", Vec::<String>::new(), ""),
    )?;
    tracing::info!("AT-SPI: watching focus changes on the accessibility bus");
    for message in events {
        let message = message?;
        if let Some(change) = focus_change(&a11y, &message) {
            let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
            let Change { pid, path, gained, password } = change;
            if gained {
                state.by_pid.insert(pid, (path, password));
                state.last = password;
                tracing::debug!(
                    "AT-SPI: process {pid} focused a {}field",
                    if password { "password " } else { "" }
                );
            } else if password {
                // A password field lost focus: no longer secure, unless another widget of the
                // process already reported gaining it (then that widget decides).
                if let Some(current) = state.by_pid.get_mut(&pid).filter(|(p, _)| *p == path) {
                    current.1 = false;
                }
            }
        }
    }
    Ok(())
}

/// A widget gained or lost focus.
struct Change {
    pid: u32,
    path: String,
    gained: bool,
    password: bool,
}

/// A `StateChanged` signal about focus: the sender's process, the widget, and whether it is a
/// password field. `None` for any other state or an answer that did not come (the widget is
/// gone, or its application did not answer in time).
fn focus_change(a11y: &Connection, message: &Message) -> Option<Change> {
    let header = message.header();
    let sender = header.sender()?.to_owned();
    let path = header.path()?.to_owned();
    let body = message.body();
    // at-spi2-core ≥ 2.?: (siiva{sv}); older: (siiv(so)). Only the first three matter.
    let (kind, gained) =
        match body.deserialize::<(String, i32, i32, OwnedValue, HashMap<String, OwnedValue>)>() {
            Ok((kind, gained, ..)) => (kind, gained),
            Err(_) => {
                let (kind, gained, _, _, _): (String, i32, i32, OwnedValue, (String, OwnedObjectPath)) =
                    body.deserialize().ok()?;
                (kind, gained)
            }
        };
    if kind != "focused" {
        return None;
    }
    let role: u32 = a11y
        .call_method(Some(sender.as_str()), path.as_str(), Some("org.a11y.atspi.Accessible"), "GetRole", &())
        .ok()?
        .body()
        .deserialize()
        .ok()?;
    let pid: u32 = a11y
        .call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            "GetConnectionUnixProcessID",
            &(sender.as_str(),),
        )
        .ok()?
        .body()
        .deserialize()
        .ok()?;
    Some(Change {
        pid,
        path: path.as_str().to_owned(),
        gained: gained != 0,
        password: role == ROLE_PASSWORD_TEXT,
    })
}
