//! End-to-end tests of the tracevault package, one file per scenario.

mod cli;
mod privacy_cli;
mod sapimouse_round_trip;
