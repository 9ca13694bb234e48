//! One file per command, thin: resolve settings, call the engine, hand the result to output.

mod changeset;
mod check;
mod coord;
mod demo;
mod export;
mod hooks;
mod import;
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
    let mut out = Output::new(cli.global.json, cli.global.quiet, cli.global.verbose);
    if cli.global.progress_lines {
        out = out.with_progress_lines();
    }
    let start = match &cli.global.directory {
        Some(dir) => std::fs::canonicalize(dir).map_err(|e| Error::config(format!("cannot use `-C {}`: {e}", dir.display())))?,
        None => std::env::current_dir().map_err(|e| Error::io("cannot read", PathBuf::from("."), e))?,
    };
    let command = match cli.command {
        Some(command) => command,
        None if crate::screen::can_open(cli.global.json) => return crate::screen::run(&Settings::load(&start)?, cli.global.verbose),
        None => Command::Status { dbs: Vec::new(), exit_code: false },
    };
    let command = match without_project(command, &start, &out) {
        Ok(done) => return done,
        Err(command) => *command,
    };
    let settings = Settings::load(&start)?;
    let notable = notable(&command);
    let publishes = publishes(&command);
    let logged = changes_state(&command);
    let result = dispatch(command, &settings, &out);
    if let Some((kind, message)) = notable.and_then(|(name, on_success)| event_of(name, on_success, &result)) {
        crate::notify::send(&settings, &out, &crate::notify::Event::new(&settings, &kind, &message));
    }
    if let (Ok(_), Some(made_by), Some(done)) = (&result, publishes, out.last_result()) {
        for published in published_versions(&settings, made_by, &done) {
            crate::notify::send(&settings, &out, &crate::notify::Event::published(&settings, published));
        }
    }
    if logged {
        record(&settings, &out, &result);
    }
    result
}

/// What each published version a command's result (`done`, as `--json` gives it) names.
fn published_versions(settings: &Settings, made_by: &str, done: &serde_json::Value) -> Vec<crate::notify::Published> {
    use crate::notify::Published;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    match made_by {
        "upload" if done["uploaded"] == true => vec![Published {
            stem: text(&done["name"]),
            from: done["parent"].as_u64(),
            to: done["version"].as_u64().unwrap_or(0),
            // A changeset's script publishing through `b2m upload`.
            made_by: if settings.changeset.is_some() { "changeset" } else { "upload" }.into(),
            size: done["size"].as_u64(),
        }],
        "merge" => vec![Published {
            stem: text(&done["name"]),
            from: done["onto"].as_u64(),
            to: done["version"].as_u64().unwrap_or(0),
            made_by: "merge".into(),
            size: None,
        }],
        "rollback" => vec![Published {
            stem: text(&done["name"]),
            from: done["from"].as_u64(),
            to: done["version"].as_u64().unwrap_or(0),
            made_by: "rollback".into(),
            size: None,
        }],
        "changeset" if done["outcome"] == "ran" => done["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                let to = v["version"].as_u64().unwrap_or(0);
                Published { stem: text(&v["stem"]), from: to.checked_sub(1), to, made_by: "changeset".into(), size: None }
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The commands that publish versions, and what made them.
fn publishes(command: &Command) -> Option<&'static str> {
    match command {
        Command::Upload { .. } => Some("upload"),
        Command::Merge { .. } => Some("merge"),
        Command::Rollback { .. } => Some("rollback"),
        Command::ExecuteChangeset { .. } => Some("changeset"),
        _ => None,
    }
}

/// Whether a command may change state here or in the bucket: those leave a line in the log.
fn changes_state(command: &Command) -> bool {
    !matches!(
        command,
        Command::Status { .. }
            | Command::History { .. }
            | Command::Fleet
            | Command::Changesets { .. }
            | Command::Check { .. }
            | Command::Server { action: crate::cli::ServerAction::Running }
    )
}

/// Appends the command's line to the activity log (a failure to is a warning).
fn record(settings: &Settings, out: &Output, result: &Result<ExitStatus>) {
    let (outcome, error) = match result {
        Ok(ExitStatus::Success) => ("ok".to_string(), None),
        Ok(status) => (format!("{status:?}").to_lowercase(), None),
        Err(e) => (e.kind().to_string(), Some(e.hint().map_or_else(|| e.to_string(), |h| format!("{e}; {h}")))),
    };
    let line = crate::activity::Line {
        at: crate::util::now_rfc3339(),
        by: crate::util::user_at_host(),
        command: std::env::args().skip(1).collect(),
        outcome,
        error,
        result: out.last_result(),
        requests: out.requests_so_far(),
    };
    if let Err(e) = crate::activity::append(&settings.state_dir, &line, crate::activity::MAX_BYTES) {
        out.info(&format!("warning: could not write the activity log `{}`: {e}", crate::activity::path(&settings.state_dir).display()));
    }
}

/// Runs a command that needs no project settings loaded first (`init`, `demo`, `hooks`,
/// `completions`, `import`); hands any other back.
fn without_project(command: Command, start: &Path, out: &Output) -> std::result::Result<Result<ExitStatus>, Box<Command>> {
    match command {
        Command::Init { bucket } => Ok(init::run(start, bucket.remote, bucket.endpoint, bucket.region, out)),
        Command::Export { db, file, version, bucket } => Ok(export::run(start, &db, &file, version, bucket, out)),
        Command::Demo { dir } => Ok(demo::run(dir, out)),
        Command::Hooks { action } => Ok(hooks::run(start, out, action)),
        // The project's b2m.toml may still be the original b2m's: import translates it first.
        Command::Import { bucket } => {
            let crate::cli::BucketArgs { remote, endpoint, region } = bucket;
            Ok(import::run(start, crate::engine::import::config::Flags { remote, endpoint, region }, out))
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "b2m", &mut script);
            crate::output::print_stdout(&String::from_utf8_lossy(&script));
            Ok(Ok(ExitStatus::Success))
        }
        command => Err(Box::new(command)),
    }
}

/// Commands whose outcome may be worth a notification: their name, and whether success is news.
fn notable(command: &Command) -> Option<(&'static str, bool)> {
    match command {
        Command::Preflight { .. } => Some(("preflight", false)),
        Command::ExecuteChangeset { .. } => Some(("changeset", false)),
        Command::Merge { .. } => Some(("merge", false)),
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
        Command::Notify { message } => {
            if settings.notify_webhook.is_none() && settings.notify_command.is_none() {
                return Err(Error::config_hint(
                    "`b2m.toml` has no `notify.webhook` or `notify.command`: there is nowhere to send it",
                    "add `[notify]` with `webhook = \"https://…\"` or `command = \"…\"` to `b2m.toml`",
                ));
            }
            crate::notify::send(settings, out, &crate::notify::Event::new(settings, crate::notify::MESSAGE, &message));
            out.result(&serde_json::json!({ "sent": message }), String::new);
            Ok(ExitStatus::Success)
        }
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
        Command::Init { .. }
        | Command::Demo { .. }
        | Command::Hooks { .. }
        | Command::Completions { .. }
        | Command::Import { .. }
        | Command::Export { .. } => {
            unreachable!("run() runs the commands without a project before it loads the settings")
        }
    }
}
