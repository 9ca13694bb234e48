//! b2m keeps a team's SQLite databases in a Backblaze B2 (or any S3-compatible) bucket as the
//! single source of truth, and makes every server start safe. See README.md and `docs/`.
//!
//! The flow: parse ([`cli`]), resolve ([`settings`]), act ([`commands`] over the [`engine`]).

pub mod activity;
pub mod changeset;
pub mod cli;
pub mod commands;
pub mod coord;
pub mod engine;
pub mod error;
pub mod fsutil;
pub mod interrupt;
pub mod layout;
pub mod manifest;
pub mod names;
pub mod notify;
pub mod output;
pub mod pages;
pub mod process;
pub mod screen;
pub mod settings;
pub mod sqlite;
pub mod store;
pub(crate) mod telemetry;
pub mod util;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;

/// The seed's flag spellings, kept for old scripts: `--status DB` is `status DB`,
/// `--create-changeset P` is `create-changeset P`: `--` before any subcommand's name, derived
/// from the clap definition, so a new subcommand needs no list kept by hand. Rewritten only when
/// no subcommand was given.
pub fn rewrite_legacy(args: Vec<OsString>) -> Vec<OsString> {
    let command = <Cli as clap::CommandFactory>::command();
    let subcommands: Vec<String> = command.get_subcommands().map(|c| c.get_name().to_string()).chain(["help".to_string()]).collect();
    let mut out = args.clone();
    let mut i = 1;
    while i < args.len() {
        let arg = args[i].to_string_lossy();
        if subcommands.iter().any(|s| *s == arg) {
            return args;
        }
        if let Some(sub) = arg.strip_prefix("--").filter(|name| subcommands.iter().any(|s| s == name) && *name != "help") {
            out[i] = OsString::from(sub);
            return out;
        }
        if arg == "-C" {
            i += 1;
        }
        i += 1;
    }
    args
}

/// The one entry point: parse, run, print an error once, return the exit code.
pub fn main() -> ExitCode {
    if let Some(code) = process::launch_if_asked() {
        return code;
    }
    // A b2m call made by a changeset's script dies with the script (and so with its runner).
    if settings::runs_under_changeset() {
        let _ = process::die_with_parent(None);
    }
    let args = rewrite_legacy(std::env::args_os().collect());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    telemetry::init(cli.global.verbose, settings::secrets());
    interrupt::install();
    let json = cli.global.json;
    match commands::run(cli) {
        Ok(status) => status.into(),
        Err(e) => {
            let (message, hint) = telemetry::error_words(&e);
            let line = hint.as_ref().map_or_else(|| message.clone(), |h| format!("{message}; {h}"));
            eprintln!("error: {line}");
            if json {
                let error = serde_json::json!({"error": {"kind": e.kind(), "message": message, "hint": hint}});
                output::print_stdout(&format!("{error}\n"));
            }
            e.status().into()
        }
    }
}
