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

use std::path::PathBuf;

use crate::cli::{Cli, Command};
use crate::engine::Context;
use crate::error::{Error, ExitStatus, Result};
use crate::output::Output;
use crate::settings::Settings;

pub use demo::demo;
pub use init::init;

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> Result<ExitStatus> {
    let out = Output::new(cli.global.json, cli.global.quiet, cli.global.verbose);
    let start = match cli.global.directory {
        Some(dir) => std::fs::canonicalize(&dir).map_err(|e| Error::config(format!("cannot use `-C {}`: {e}", dir.display())))?,
        None => std::env::current_dir().map_err(|e| Error::io("cannot read", PathBuf::from("."), e))?,
    };
    let open = || Context::open(Settings::load(&start)?, out.clone());
    match cli.command {
        Command::Init { remote, endpoint, region } => init::run(&start, remote, endpoint, region, &out),
        Command::Demo { dir } => demo::run(dir, &out),
        Command::Status { dbs, exit_code } => status::run(&open()?, &dbs, exit_code),
        Command::Upload { db } => transfer::upload(&open()?, &db),
        Command::Download { db, force } => transfer::download(&open()?, &db, force),
        Command::Merge { db } => transfer::merge(&open()?, &db),
        Command::History { db } => transfer::history(&open()?, &db),
        Command::Fleet => transfer::fleet(&open()?),
        Command::Rollback { db, to } => transfer::rollback(&open()?, &db, to),
        Command::FetchDbToml => transfer::fetch_db_toml(&open()?),
        Command::Lock { db } => coord::lock(&open()?, &db),
        Command::Unlock { db, force } => coord::unlock(&open()?, &db, force),
        Command::Preflight { strict } => preflight::run(&start, &out, strict),
        Command::CreateChangeset { phrase, kind } => changeset::create(&open()?, &phrase, kind),
        Command::ExecuteChangeset { name, retry } => changeset::execute(&open()?, &name, retry),
        Command::Changesets { pending } => changeset::list(&open()?, pending),
        Command::Server { action } => server::run(&open()?, action),
        Command::Hooks { action } => hooks::run(&start, &out, action),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "b2m", &mut std::io::stdout());
            Ok(ExitStatus::Success)
        }
        Command::Check { offline, deep } => check::run(&open()?, offline, deep),
        Command::Doctor => coord::doctor(&open()?),
        Command::Gc { dry_run, keep } => coord::gc(&open()?, dry_run, keep),
    }
}
