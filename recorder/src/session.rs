//! A recording from start to end: the capture on its thread, every input masked, stamped with
//! the monotonic time since the start and recorded into sealed batches, the delivery thread
//! draining the spool, until the stop flag (SIGINT, SIGTERM) or the display goes away.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tracevault_codecs::sealed::PublicKey;
use tracevault_codecs::{Event, EventKind, SessionMeta};

use crate::atspi::SecureFields;
use crate::capture::{self, Capture, CaptureError};
use crate::mask::{Masker, Policy};
use crate::{BatchPolicy, Delivery, Recorder, RecorderError, Spool, SpoolError, spawn_delivery};

/// What a recording needs.
pub struct Options {
    pub server: String,
    pub token: String,
    /// The pseudonymous id of the person recorded.
    pub user: String,
    pub device: String,
    /// The session id (default: device, start time and a random suffix).
    pub session: Option<String>,
    /// The version of the consent the person gave, recorded as `recorder.consent`.
    pub consent: String,
    pub policy: Policy,
    pub spool: PathBuf,
    pub spool_bytes: u64,
    pub batch: BatchPolicy,
    /// How long to keep delivering after the stop (what is left stays in the spool).
    pub drain: Duration,
    /// Free labels for the session.
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Recorder(#[from] RecorderError),
    #[error(
        "no key to seal with: the server's key could not be fetched ({0}) and none is cached in the spool from an earlier run"
    )]
    NoKey(String),
    #[error("the pause hotkey: {0}")]
    Hotkey(String),
}

/// What a recording did.
#[derive(Debug)]
pub struct Summary {
    pub session: String,
    pub events: u64,
    /// Key events recorded without their text (secure input, sensitive apps).
    pub masked: u64,
    /// Requests still in the spool when the recorder stopped (sent by the next run).
    pub undelivered: usize,
}

const KEY_FILE: &str = "server-key";

/// The server's key: fetched, and cached in the spool directory so a recorder can start while
/// the server is down. (It is a public key: the cache needs no protection beyond integrity of
/// the device, and a changed key on the server is picked up on the next start.)
fn server_key(delivery: &Delivery, spool: &std::path::Path) -> Result<PublicKey, SessionError> {
    let cached = spool.join(KEY_FILE);
    match delivery.server_key() {
        Ok(key) => {
            if let Err(e) = std::fs::write(&cached, key.to_hex()) {
                tracing::warn!("could not cache the server's key in {}: {e}", cached.display());
            }
            Ok(key)
        }
        Err(why) => {
            let text = std::fs::read_to_string(&cached).map_err(|_| SessionError::NoKey(why.clone()))?;
            let key = PublicKey::from_hex(text.trim()).map_err(|_| SessionError::NoKey(why.clone()))?;
            tracing::warn!(
                "the server is not reachable ({why}): sealing to the key cached from an earlier run"
            );
            Ok(key)
        }
    }
}

fn session_id(device: &str) -> String {
    let mut random = [0u8; 4];
    getrandom::fill(&mut random).expect("the OS has randomness");
    let now = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
    format!("{device}-{now}-{}", hex::encode(random))
}

/// How long a focus that received no input must last to be recorded: a window manager
/// switching windows often unfocuses everything first (openbox sets `_NET_ACTIVE_WINDOW` to
/// None between the two), and alt+tab passes over windows nobody used. Generous, because a
/// loaded machine can stretch the window manager's two steps apart.
const FOCUS_SETTLE_US: u64 = 1_000_000;

/// Holds back a focus change until it has lasted [`FOCUS_SETTLE_US`] or an input (a key
/// press, a button press, the wheel) went to it; a focus replaced before either is not
/// recorded. Pointer moves and releases wait with it, in order (they are not input to the
/// focused window). A focus that came while a button was down (click-to-focus: the window
/// manager focuses on the press) is recorded right after that button's release, at its time,
/// so the click and the focus it caused stay two steps.
#[derive(Default)]
struct Settle {
    focus: Option<Event>,
    /// The held focus came while a button was down.
    during_press: bool,
    buttons_down: u32,
    waiting: Vec<Event>,
}

impl Settle {
    fn push(&mut self, event: Event, out: &mut Vec<Event>) {
        match event.kind {
            EventKind::Focus { .. } => {
                // A focus replaced before it settled is dropped; what waited with it is not.
                self.focus = None;
                self.flush(out);
                self.focus = Some(event);
                self.during_press = self.buttons_down > 0;
            }
            EventKind::Up { .. } if self.focus.is_some() && self.during_press => {
                // Click-to-focus: the focus moves after the click's release, at its time, and
                // still settles as any other (the window manager's passing unfocus on the way
                // is replaced by the window it focuses).
                self.buttons_down = self.buttons_down.saturating_sub(1);
                self.during_press = false;
                out.append(&mut self.waiting);
                if let Some(focus) = &mut self.focus {
                    focus.t_us = focus.t_us.max(event.t_us);
                }
                out.push(event);
            }
            EventKind::Move { .. } | EventKind::Up { .. } | EventKind::KeyUp(_) if self.focus.is_some() => {
                if matches!(event.kind, EventKind::Up { .. }) {
                    self.buttons_down = self.buttons_down.saturating_sub(1);
                }
                self.waiting.push(event);
            }
            _ => {
                match event.kind {
                    EventKind::Down { .. } => self.buttons_down += 1,
                    EventKind::Up { .. } => self.buttons_down = self.buttons_down.saturating_sub(1),
                    _ => {}
                }
                self.flush(out);
                out.push(event);
            }
        }
    }

    fn tick(&mut self, now_us: u64, out: &mut Vec<Event>) {
        if self.focus.as_ref().is_some_and(|f| now_us.saturating_sub(f.t_us) >= FOCUS_SETTLE_US) {
            self.flush(out);
        }
    }

    /// The held focus, then what waited with it.
    fn flush(&mut self, out: &mut Vec<Event>) {
        out.extend(self.focus.take());
        out.append(&mut self.waiting);
    }
}

/// Records until `stop` is set or the capture ends. `capture` is the backend (X11 today).
pub fn record(
    capture: Box<dyn Capture>,
    options: Options,
    stop: Arc<AtomicBool>,
) -> Result<Summary, SessionError> {
    let desktop = capture.desktop().clone();
    let spool = Arc::new(Mutex::new(Spool::open(&options.spool, options.spool_bytes)?));
    let delivery = Delivery::new(&options.server, &options.token);
    let key = server_key(&delivery, &options.spool)?;

    let mut labels: std::collections::BTreeMap<String, String> = options.labels.iter().cloned().collect();
    labels.insert("recorder.consent".into(), options.consent.clone());
    labels.insert("recorder.policy".into(), options.policy.version.clone());
    labels.insert("recorder.backend".into(), desktop.backend.into());
    let meta = SessionMeta {
        session: options.session.clone().unwrap_or_else(|| session_id(&options.device)),
        user: options.user.clone(),
        device: Some(options.device.clone()),
        screen: Some(desktop.screen),
        started_at: Some(jiff::Timestamp::now().to_string()),
        layout: Some(desktop.layout.clone()),
        labels,
    };
    let fields = SecureFields::watch();
    let mut masker = Masker::new(options.policy, fields).map_err(SessionError::Hotkey)?;

    let start = Instant::now();
    let inputs = capture::spawn(capture);
    let mut recorder = Recorder::start(spool.clone(), key, &meta, options.batch)?;
    let stop_delivery = Arc::new(AtomicBool::new(false));
    let delivery_thread = spawn_delivery(delivery, spool.clone(), stop_delivery.clone(), options.drain);
    tracing::info!(
        "recording session {} of {} on {} ({}x{}, layout {})",
        meta.session,
        meta.user,
        options.device,
        desktop.screen.w,
        desktop.screen.h,
        desktop.layout
    );

    let mut out = Vec::new();
    if let Some(focus) = desktop.focus.clone() {
        masker.push(focus, &mut out);
    }
    masker.push(capture::Input::Move { x: desktop.pointer.0, y: desktop.pointer.1 }, &mut out);
    let mut settle = Settle::default();
    let mut ready = Vec::new();
    let mut events = 0u64;
    let mut record = |ready: &mut Vec<Event>, recorder: &mut Recorder| -> Result<(), RecorderError> {
        for event in ready.drain(..) {
            events += 1;
            recorder.record(event)?;
        }
        Ok(())
    };
    let mut ended = None;
    let mut t_us = 0u64;
    let now_us = || u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    let stamp =
        |at: Instant| u64::try_from(at.saturating_duration_since(start).as_micros()).unwrap_or(u64::MAX);
    loop {
        for kind in out.drain(..) {
            settle.push(Event { t_us, kind }, &mut ready);
        }
        record(&mut ready, &mut recorder)?;
        if stop.load(Ordering::Acquire) {
            break;
        }
        match inputs.recv_timeout(Duration::from_millis(50)) {
            Ok(Ok((at, input))) => {
                t_us = stamp(at);
                masker.push(input, &mut out);
            }
            Ok(Err(e)) => {
                ended = Some(e);
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        // On every turn, not only when input pauses: continuous motion must not hold a
        // focus or a batch back.
        settle.tick(now_us(), &mut ready);
        record(&mut ready, &mut recorder)?;
        recorder.tick()?;
    }
    // What the capture had already seen when the stop came is recorded too.
    while let Ok(Ok((at, input))) = inputs.try_recv() {
        t_us = stamp(at);
        masker.push(input, &mut out);
    }
    for kind in out.drain(..) {
        settle.push(Event { t_us, kind }, &mut ready);
    }
    // Keys and buttons still held are released, so the session has no press without its release.
    let end_us = now_us().max(t_us);
    masker.finish(&mut out);
    if masker.paused() {
        out.push(EventKind::Marker { label: "recorder.stopped-while-paused".into() });
    }
    for kind in out.drain(..) {
        settle.push(Event { t_us: end_us, kind }, &mut ready);
    }
    settle.flush(&mut ready);
    record(&mut ready, &mut recorder)?;
    let session = recorder.session().to_owned();
    recorder.close()?;
    stop_delivery.store(true, Ordering::Release);
    match delivery_thread.join() {
        Ok(result) => result?,
        Err(_) => tracing::error!("the delivery thread panicked; the spool keeps what it had"),
    }
    let undelivered = spool.lock().unwrap_or_else(|e| e.into_inner()).len();
    if let Some(e) = ended {
        tracing::error!("capture ended: {e}");
        return Err(e.into());
    }
    Ok(Summary { session, events, masked: masker.masked(), undelivered })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracevault_codecs::{Button, Key};

    fn focus(t_us: u64, app: &str) -> Event {
        Event { t_us, kind: EventKind::Focus { app: app.into(), title: None } }
    }

    fn settle(events: Vec<Event>) -> Vec<String> {
        let mut s = Settle::default();
        let mut out = Vec::new();
        for e in events {
            s.push(e, &mut out);
        }
        s.flush(&mut out);
        out.iter()
            .map(|e| match &e.kind {
                EventKind::Focus { app, .. } => format!("{} focus {app}", e.t_us),
                EventKind::Down { .. } => format!("{} down", e.t_us),
                EventKind::Up { .. } => format!("{} up", e.t_us),
                EventKind::Move { .. } => format!("{} move", e.t_us),
                EventKind::KeyDown(k) => format!("{} key {}", e.t_us, k.code),
                EventKind::KeyUp(k) => format!("{} release {}", e.t_us, k.code),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_passing_focus_is_dropped_and_a_focus_on_press_follows_the_release() {
        let down = |t| Event { t_us: t, kind: EventKind::Down { button: Button::Left, x: 1, y: 1 } };
        let up = |t| Event { t_us: t, kind: EventKind::Up { button: Button::Left, x: 1, y: 1 } };
        let mv = |t| Event { t_us: t, kind: EventKind::Move { x: 2, y: 2 } };
        let key = |t, code: &str| Event {
            t_us: t,
            kind: EventKind::KeyDown(Key { code: code.into(), text: None, secure: false }),
        };
        let release = |t, code: &str| Event {
            t_us: t,
            kind: EventKind::KeyUp(Key { code: code.into(), text: None, secure: false }),
        };
        assert_eq!(
            settle(vec![
                // The window manager unfocuses, then focuses the new window: one focus.
                key(10, "AltLeft"),
                key(20, "Tab"),
                focus(30, "desktop"),
                release(40, "Tab"),
                mv(45),
                release(50, "AltLeft"),
                focus(60, "Notes"),
                key(70, "KeyA"),
                // Click-to-focus: the focus is recorded after the click's release.
                down(100),
                focus(110, "Search"),
                mv(115),
                up(120),
                key(130, "KeyB"),
            ]),
            [
                "10 key AltLeft",
                "20 key Tab",
                "40 release Tab",
                "45 move",
                "50 release AltLeft",
                "60 focus Notes",
                "70 key KeyA",
                "100 down",
                "115 move",
                "120 up",
                "120 focus Search",
                "130 key KeyB",
            ]
        );
    }

    #[test]
    fn a_click_to_focus_through_no_window_is_one_focus() {
        let down = Event { t_us: 10, kind: EventKind::Down { button: Button::Left, x: 1, y: 1 } };
        let up = Event { t_us: 30, kind: EventKind::Up { button: Button::Left, x: 1, y: 1 } };
        assert_eq!(
            settle(vec![down, focus(20, "desktop"), up, focus(40, "Notes")]),
            ["10 down", "30 up", "40 focus Notes"]
        );
    }

    #[test]
    fn a_focus_that_lasts_is_recorded_without_input() {
        let mut s = Settle::default();
        let mut out = Vec::new();
        s.push(focus(1_000, "Notes"), &mut out);
        s.tick(500_000, &mut out);
        assert!(out.is_empty(), "not yet settled");
        s.tick(1_001_000, &mut out);
        assert_eq!(out, [focus(1_000, "Notes")]);
    }
}
