//! The rules every record is checked against, whatever brings it (`tracevault ingest`, the HTTP
//! service): a session record's fields, and the time of events (docs/FORMAT.md, "Ingest rules").

use tracevault_codecs::{Event, SessionMeta};

/// The largest `t` accepted: 2^53 - 1 µs (about 285 years), so every reader of the interchange
/// format (JavaScript, a Python float) reads it exactly.
pub const T_US_MAX: u64 = (1 << 53) - 1;

/// How far `t` may step back within a session: real recorders' clocks do step back a little
/// (one SapiMouse recording does by 16 ms); a larger step is an input error, such as a file
/// appended to itself.
pub const T_BACKWARDS_US_MAX: u64 = 1_000_000;

/// Checks a session record against the interchange rules (docs/FORMAT.md, "Ingest rules"): what
/// the ingest and the HTTP service both apply.
pub fn check_meta(meta: &SessionMeta) -> Result<(), String> {
    if let Some(t) = &meta.started_at
        && let Err(e) = t.parse::<jiff::Timestamp>()
    {
        return Err(format!(
            "field started_at: expected an RFC 3339 time such as \"2026-11-27T09:00:00Z\", found {t:?} ({e})"
        ));
    }
    Ok(())
}

/// Checks one batch of a session's events against the interchange rules on time (`t` at most
/// [`T_US_MAX`], never more than [`T_BACKWARDS_US_MAX`] before the event before it, or before the
/// session's latest stored event for the first): the index of the first event that breaks them,
/// and why.
pub fn check_times(previous_t_us: Option<u64>, events: &[Event]) -> Result<(), (usize, String)> {
    let mut last = previous_t_us;
    for (i, event) in events.iter().enumerate() {
        if event.t_us > T_US_MAX {
            return Err((
                i,
                format!(
                    "field t: expected at most {T_US_MAX} (microseconds since the session started), found {}",
                    event.t_us
                ),
            ));
        }
        if let Some(last) = last
            && event.t_us + T_BACKWARDS_US_MAX < last
        {
            return Err((
                i,
                format!(
                    "field t: {} goes back {} µs from the session's previous event ({last}); at most \
                     {T_BACKWARDS_US_MAX} µs back is accepted",
                    event.t_us,
                    last - event.t_us
                ),
            ));
        }
        last = Some(event.t_us);
    }
    Ok(())
}
