//! One file per command, thin: resolve settings, call the engine, hand the result to output.

mod changeset;
mod check;
mod coord;
mod demo;
mod hooks;
mod init;
mod preflight;
pub(crate) mod server;
mod status;
mod transfer;

use std::path::{Path, PathBuf};

use crate::cli::{Cli, Command};
use crate::engine::Context;
use crate::error::{Error, ExitStatus, Result};
use crate::output::Output;
use crate::settings::Settings;

pub use demo::demo;
pub use init::init;

/// Runs a parsed command line; returns the exit code. The settings are loaded once, for the
/// commands that work on a project, and the same settings say where its notification goes.
pub fn run(cli: Cli) -> Result<ExitStatus> {
    let out = Output::new(cli.global.json, cli.global.quiet, cli.global.verbose);
    let start = match &cli.global.directory {
        Some(dir) => std::fs::canonicalize(dir).map_err(|e| Error::config(format!("cannot use `-C {}`: {e}", dir.display())))?,
        None => std::env::current_dir().map_err(|e| Error::io("cannot read", PathBuf::from("."), e))?,
    };
    let command = match without_project(cli.command, &start, &out) {
        Ok(done) => return done,
        Err(command) => command,
    };
    let settings = Settings::load(&start)?;
    let notable = notable(&command);
    let result = dispatch(command, &settings, &out);
    if let Some((kind, message)) = notable.and_then(|(name, on_success)| event_of(name, on_success, &result)) {
        crate::notify::send(&settings, &out, &crate::notify::Event::new(&settings, &kind, &message));
    }
    result
}

/// Runs a command that needs no project (`init`, `demo`, `hooks`, `completions`); hands any other
/// back.
fn without_project(command: Command, start: &Path, out: &Output) -> std::result::Result<Result<ExitStatus>, Command> {
    match command {
        Command::Init { remote, endpoint, region } => Ok(init::run(start, remote, endpoint, region, out)),
        Command::Demo { dir } => Ok(demo::run(dir, out)),
        Command::Hooks { action } => Ok(hooks::run(start, out, action)),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "b2m", &mut script);
            crate::output::print_stdout(&String::from_utf8_lossy(&script));
            Ok(Ok(ExitStatus::Success))
        }
        command => Err(command),
    }
}

/// Commands whose outcome may be worth a notification: their name, and whether success is news.
fn notable(command: &Command) -> Option<(&'static str, bool)> {
    match command {
        Command::Preflight { .. } => Some(("preflight", false)),
        Command::ExecuteChangeset { .. } => Some(("changeset", false)),
        Command::Merge { .. } => Some(("merge", false)),
        Command::Rollback { .. } => Some(("rollback", true)),
        Command::Upload { .. } | Command::Download { .. } | Command::Status { .. } => Some(("sync", false)),
        _ => None,
    }
}

/// The event (kind, message) a command's outcome makes, if any.
fn event_of(name: &str, on_success: bool, result: &Result<ExitStatus>) -> Option<(String, String)> {
    match result {
        Ok(_) if on_success => Some((name.to_string(), format!("{name} done"))),
        Ok(_) => None,
        Err(e) if e.refusal() == crate::error::Refusal::Conflict => Some(("conflict".into(), e.to_string())),
        Err(e) if name == "preflight" => Some(("preflight_stopped".into(), format!("a server start was stopped: {e}"))),
        Err(e) if name == "changeset" || e.kind() == "changeset_failed" => Some(("changeset_failed".into(), e.to_string())),
        Err(e) if name == "merge" => Some(("merge_failed".into(), e.to_string())),
        Err(_) => None,
    }
}

/// Runs a command on the project of `settings`.
fn dispatch(command: Command, settings: &Settings, out: &Output) -> Result<ExitStatus> {
    let open = || Context::open(settings.clone(), out.clone());
    match command {
        Command::Status { dbs, exit_code } => status::run(&open()?, &dbs, exit_code),
        Command::Upload { db } => transfer::upload(&open()?, &db),
        Command::Download { db: Some(db), force, all: false } => transfer::download(&open()?, &db, force),
        Command::Download { .. } => transfer::download_all(&open()?),
        Command::Merge { db } => transfer::merge(&open()?, &db),
        Command::History { db } => transfer::history(&open()?, &db),
        Command::Fleet => transfer::fleet(&open()?),
        Command::Rollback { db, to } => transfer::rollback(&open()?, &db, to),
        Command::Restore { db, file } => transfer::restore(&open()?, &db, file.as_deref()),
        Command::FetchDbToml => transfer::fetch_db_toml(&open()?),
        Command::Lock { db } => coord::lock(&open()?, &db),
        Command::Unlock { db, force } => coord::unlock(&open()?, &db, force),
        Command::Preflight { strict } => preflight::run(&Context::open(settings.clone().for_preflight(), out.clone())?, strict),
        Command::CreateChangeset { phrase, kind } => changeset::create(&open()?, &phrase, kind),
        Command::ExecuteChangeset { name, retry } => changeset::execute(&open()?, &name, retry),
        Command::Changesets { pending } => changeset::list(&open()?, pending),
        Command::Server { action } => server::run(&open()?, action),
        Command::Check { offline, deep } => check::run(&open()?, offline, deep),
        Command::Doctor => coord::doctor(&open()?),
        Command::Gc { dry_run, keep } => coord::gc(&open()?, dry_run, keep),
        Command::Init { .. } | Command::Demo { .. } | Command::Hooks { .. } | Command::Completions { .. } => {
            unreachable!("run() runs the commands without a project before it loads the settings")
        }
    }
}
