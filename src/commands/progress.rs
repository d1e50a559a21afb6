//! Progress bars for work that takes more than a second: on stderr, only for a person watching a
//! terminal, never with `--quiet`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

/// Set by `--quiet`.
pub static QUIET: AtomicBool = AtomicBool::new(false);

/// A bar of `len` steps named `what`; hidden when quiet, asked to be, or not on a terminal.
pub fn bar(len: u64, what: &str, quiet: bool) -> ProgressBar {
    if quiet || QUIET.load(Ordering::Relaxed) || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{prefix:>16} [{bar:40}] {pos}/{len} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(what.to_owned());
    bar
}

/// A bar counting bytes, with the rate.
pub fn bytes_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>16} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// A spinner for work whose size is not known in advance.
pub fn spinner(what: &str, quiet: bool) -> ProgressBar {
    let bar = bar(0, what, quiet);
    if !bar.is_hidden() {
        bar.set_style(
            ProgressStyle::with_template("{prefix:>16} {spinner} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
    }
    bar
}
