//! Reads SapiMouse recordings (Antal, Fejer, Buza, SACI 2021): real human mouse input, used as
//! the ground truth in tests and benchmarks.
//!
//! Each CSV file is one session: `client timestamp` (ms), `button` (NoButton, Left, Right,
//! Other), `state` (Move, Drag, Pressed, Released), `x`, `y`. Move and Drag become `move` events
//! (the button held during a drag is implied by the preceding `down`), Pressed and Released become
//! `down` and `up`. Time counts from the earliest timestamp in the file, so the few timestamps
//! that go backwards stay non-negative and keep their order in the file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tracevault_codecs::{Button, Event, EventKind, SessionMeta};

/// One recording as a session.
#[derive(Clone, Debug)]
pub struct Recording {
    pub meta: SessionMeta,
    pub events: Vec<Event>,
}

/// The fixtures subset kept in this repository (tests/fixtures/sapimouse).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sapimouse")
}

/// The full data set beside the project, if it is there: `$TRACEVAULT_SAPIMOUSE`, else
/// `../shared/data/sapimouse` from the project root.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("TRACEVAULT_SAPIMOUSE") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/sapimouse"),
    };
    dir.is_dir().then_some(dir)
}

/// Reads every `user*/*.csv` under `dir`, in path order.
pub fn load_dir(dir: &Path) -> Result<Vec<Recording>> {
    let mut files = Vec::new();
    for user in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let user = user?.path();
        if !user.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&user).with_context(|| format!("reading {}", user.display()))? {
            let file = file?.path();
            if file.extension().is_some_and(|e| e == "csv") {
                files.push(file);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("no SapiMouse recordings (user*/*.csv) under {}", dir.display());
    }
    files.iter().map(|f| load_file(f)).collect()
}

/// Reads one recording. The session id is `sapimouse-<user>-<file stem>`, the user its folder.
pub fn load_file(path: &Path) -> Result<Recording> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let user = path
        .parent()
        .and_then(Path::file_name)
        .map_or_else(|| "unknown".to_owned(), |n| n.to_string_lossy().into_owned());
    let stem = path.file_stem().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let events = parse(&text).with_context(|| format!("in {}", path.display()))?;
    Ok(Recording {
        meta: SessionMeta {
            session: format!("sapimouse-{user}-{stem}"),
            user,
            device: None,
            screen: None,
            started_at: None,
            layout: None,
            labels: [("source".to_owned(), "sapimouse".to_owned())].into(),
        },
        events,
    })
}

/// Parses one recording's CSV text.
pub fn parse(text: &str) -> Result<Vec<Event>> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line_no == 1 && line.starts_with("client timestamp") || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.trim_end_matches('\r').split(',').collect();
        let [t, button, state, x, y] = fields[..] else {
            bail!("line {line_no}: expected 5 comma-separated fields, found {}", fields.len());
        };
        let num = |name: &str, v: &str| -> Result<i64> {
            v.parse()
                .with_context(|| format!("line {line_no}: field `{name}`: expected an integer, found {v:?}"))
        };
        let (t_ms, x, y) = (num("client timestamp", t)?, num("x", x)?, num("y", y)?);
        let coord = |name: &str, v: i64| -> Result<i32> {
            i32::try_from(v).with_context(|| format!("line {line_no}: field `{name}`: {v} is out of range"))
        };
        let (x, y) = (coord("x", x)?, coord("y", y)?);
        let button = match button {
            "NoButton" => None,
            "Left" => Some(Button::Left),
            "Right" => Some(Button::Right),
            "Other" => Some(Button::Other),
            other => bail!(
                "line {line_no}: field `button`: expected NoButton, Left, Right or Other, found {other:?}"
            ),
        };
        let kind = match (state, button) {
            ("Move" | "Drag", _) => EventKind::Move { x, y },
            ("Pressed", Some(button)) => EventKind::Down { button, x, y },
            ("Released", Some(button)) => EventKind::Up { button, x, y },
            ("Pressed" | "Released", None) => {
                bail!("line {line_no}: field `button`: a {state} event needs a button, found NoButton")
            }
            (other, _) => bail!(
                "line {line_no}: field `state`: expected Move, Drag, Pressed or Released, found {other:?}"
            ),
        };
        rows.push((t_ms, kind));
    }
    let t0 = rows.iter().map(|(t, _)| *t).min().unwrap_or(0);
    Ok(rows.into_iter().map(|(t_ms, kind)| Event { t_us: (t_ms - t0) as u64 * 1000, kind }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_states_and_keeps_backward_time() {
        let csv = "client timestamp,button,state,x,y\n100,NoButton,Move,5,6\n90,Left,Pressed,5,6\n120,Left,Drag,7,8\n130,Left,Released,7,8\n";
        let events = parse(csv).unwrap();
        assert_eq!(events[0], Event { t_us: 10_000, kind: EventKind::Move { x: 5, y: 6 } });
        assert_eq!(events[1], Event { t_us: 0, kind: EventKind::Down { button: Button::Left, x: 5, y: 6 } });
        assert_eq!(events[2].kind, EventKind::Move { x: 7, y: 8 });
        assert_eq!(events[3].kind, EventKind::Up { button: Button::Left, x: 7, y: 8 });
    }

    #[test]
    fn bad_rows_name_line_and_field() {
        let e = parse("client timestamp,button,state,x,y\n1,NoButton,Move,5,6\n2,NoButton,Hover,5,6\n")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 3: field `state`: expected Move, Drag, Pressed or Released, found \"Hover\""
        );
        let e = parse("1,NoButton,Move,5\n").unwrap_err();
        assert_eq!(e.to_string(), "line 1: expected 5 comma-separated fields, found 4");
    }

    #[test]
    fn fixtures_load() {
        let recordings = load_dir(&fixtures_dir()).unwrap();
        assert_eq!(recordings.len(), 4);
        assert_eq!(recordings.iter().map(|r| r.events.len()).sum::<usize>(), 17_100);
    }
}
