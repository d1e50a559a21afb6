//! End-to-end tests of the tracevault package, one file per scenario.

mod bench;
mod cli;
mod export;
mod generate;
mod privacy_cli;
mod read_commands;
mod recorder_delivery;
mod recorder_x11;
mod sapimouse_round_trip;
mod service_cli;
mod structure;
mod viewer;
mod witness_cli;
