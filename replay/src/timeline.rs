//! The auditor's readable timeline of a session's steps.

use std::fmt::Write as _;

use crate::step::{Action, Step};

fn clock(us: u64) -> String {
    let ms = us / 1000;
    format!("{:02}:{:02}:{:02}.{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
}

/// One line per step: time since the session started, episode and step, the action in words, the
/// app, and the events it came from.
pub fn line(step: &Step) -> String {
    let what = match &step.action {
        Action::Click { x, y, modifiers, .. } if !modifiers.is_empty() => {
            format!("{} at ({x}, {y}) with {}", step.action.name(), modifiers.join("+"))
        }
        Action::Click { x, y, .. } => format!("{} at ({x}, {y})", step.action.name()),
        Action::Drag { from, to, path, .. } => {
            format!("drag ({}, {}) -> ({}, {}) through {} points", from.0, from.1, to.0, to.1, path.len())
        }
        Action::MouseDown { button, x, y } => format!("{} button down at ({x}, {y})", button.name()),
        Action::MouseUp { button, x, y } => format!("{} button up at ({x}, {y})", button.name()),
        Action::Scroll { dx, dy, x, y, modifiers } => {
            let with =
                if modifiers.is_empty() { String::new() } else { format!(" with {}", modifiers.join("+")) };
            format!("scroll dx {dx} dy {dy} (up, right positive) at ({x}, {y}){with}")
        }
        Action::Type { secure: true, .. } => "type into a secure field (nothing recorded)".to_owned(),
        Action::Type { text, inferred: true, .. } => format!("type {text:?} (text inferred from key codes)"),
        Action::Type { text, .. } => format!("type {text:?}"),
        Action::Press { code, .. } => format!("press {code}"),
        Action::KeyDown { code, .. } => format!("hold {code} down"),
        Action::KeyUp { code, .. } => format!("release {code}"),
        Action::Hotkey { modifiers, code, .. } => format!("hotkey {}+{code}", modifiers.join("+")),
        Action::Move { path } => match path.last() {
            Some(p) => format!("move to ({}, {})", p.0, p.1),
            None => "move".to_owned(),
        },
        Action::Wait { ms } => format!("wait {:.1} s", *ms as f64 / 1000.0),
        Action::Focus { app, title: Some(t) } => format!("focus {app}: {t}"),
        Action::Focus { app, title: None } => format!("focus {app}"),
    };
    let mut out = String::new();
    let _ = write!(out, "{}  e{} s{:<4} {what}", clock(step.t_start_us), step.episode, step.step);
    if let Some(app) = &step.app {
        let _ = write!(out, "  [{app}]");
    }
    let l = &step.lineage;
    if l.events > 0 {
        let _ = write!(out, "  (events {}..={}, block {})", l.first_event, l.last_event, l.block);
    }
    out
}

/// An audited replay as an auditor reads it: who, where, when, what the proof covered, then one
/// line per step (what `tracevault replay` prints, locally or through a server).
pub fn render(replay: &crate::AuditedReplay) -> String {
    let (m, session, proof) = (&replay.session.meta, &replay.session, &replay.proof);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "session {} of {} on {}, started {}: {} events, {} steps",
        m.session,
        m.user,
        m.device.as_deref().unwrap_or("an unknown device"),
        m.started_at.as_deref().unwrap_or("at an unknown time"),
        session.events,
        session.steps.len()
    );
    let _ = writeln!(
        out,
        "integrity: {} sealed block(s) proven under the signed head of {} frames{}",
        proof.frames.len(),
        proof.head.tree_size,
        if proof.unsealed_events > 0 {
            format!(" ({} newest events not yet sealed)", proof.unsealed_events)
        } else {
            String::new()
        }
    );
    for step in &session.steps {
        let _ = writeln!(out, "{}", line(step));
    }
    out
}
