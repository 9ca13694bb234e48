//! Swapping a file under a running server (docs/decisions.md "Beside a writing server"): a server holds its db open and opens new
//! connections by the name its db.toml gave it at start, so renaming or replacing that file under
//! it loses rows or hands it an empty database. With `[server]` configured, b2m stops the server
//! before the first swap a command makes and starts it after the last — whether or not a process
//! has the file open at that instant: a server that opens a connection per request holds nothing
//! open between requests, yet opens the old name at the next one. Preflight stops it and leaves
//! the start to the wrapper that called it. Without `[server]`, b2m refuses to swap a file another
//! process has open, naming the process.

use std::cell::Cell;
use std::path::Path;

use super::Context;
use crate::error::{Error, Result};
use crate::fsutil::open_by_others;

/// How long a stopped server's processes may take to let go of the files.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The swaps one command makes.
pub struct Swaps<'a> {
    ctx: &'a Context,
    /// Whether this command stopped the server.
    stopped: Cell<bool>,
    /// Whether a [`Swaps::prepare`] succeeded: nothing else had the file open then.
    prepared: Cell<bool>,
    /// Whether `server.running` said the server was not running: nothing to stop or start.
    found_down: Cell<bool>,
}

impl<'a> Swaps<'a> {
    /// No swap made yet.
    pub fn new(ctx: &'a Context) -> Self {
        Swaps { ctx, stopped: Cell::new(false), prepared: Cell::new(false), found_down: Cell::new(false) }
    }

    fn can_stop(&self) -> bool {
        self.ctx.settings.server.as_ref().is_some_and(|s| s.stop.is_some())
    }

    /// Refuses at once, before anything is done, when another process has `path` open and b2m has
    /// no `server.stop` to run.
    pub fn check(&self, path: &Path) -> Result<()> {
        if self.can_stop() || self.stopped.get() {
            return Ok(());
        }
        match open_by_others(path) {
            Some(holder) => Err(refuse(path, &holder)),
            None => Ok(()),
        }
    }

    /// Just before `path` (a file db.toml names) is renamed, replaced or removed: stops the server
    /// (once per command) when `[server]` says how, and refuses if a process still has it open.
    pub fn prepare(&self, path: &Path) -> Result<()> {
        if !self.stopped.get() && !self.found_down.get() && self.can_stop() {
            let server = self.ctx.settings.server.as_ref();
            if let Some((stop, timeout)) = server.and_then(|s| Some((s.stop.clone()?, s.timeout))) {
                // b2m starts only what it stopped: a server `server.running` finds down stays down.
                match server.and_then(|s| s.running.as_deref()) {
                    Some(running) if !super::server::is_running(self.ctx, running, timeout)? => {
                        tracing::info!("`server.running` says the server is not running: not stopping or starting it");
                        self.found_down.set(true);
                    }
                    _ => {
                        self.ctx.out.info(&format!("stopping the server (`{stop}`) to swap `{}`", path.display()));
                        super::server::run_command(self.ctx, "stop", &stop, timeout)?;
                        self.stopped.set(true);
                    }
                }
            }
        }
        let mut holder = open_by_others(path);
        // A stop command may return before the process is gone (`kill` does): give it a moment.
        let deadline = std::time::Instant::now() + STOP_GRACE;
        while holder.is_some() && self.stopped.get() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
            holder = open_by_others(path);
        }
        match holder {
            Some(holder) if self.found_down.get() => Err(Error::refused(
                format!("`server.running` says the server is not running, yet {holder} has `{}` open; nothing was swapped", path.display()),
                "make `server.running` in `b2m.toml` exit 0 while any process of the server runs",
            )),
            Some(holder) if self.stopped.get() => Err(Error::refused(
                format!("{holder} still has `{}` open after `server.stop`; nothing was swapped", path.display()),
                "make `server.stop` in `b2m.toml` stop every process that opens the databases",
            )),
            Some(holder) => Err(refuse(path, &holder)),
            None => {
                self.prepared.set(true);
                Ok(())
            }
        }
    }

    /// Whether a [`Swaps::prepare`] of this command found nothing else holding the file: the
    /// server stopped, or none running.
    pub fn prepared(&self) -> bool {
        self.prepared.get()
    }

    /// Whether this command stopped the server.
    pub fn stopped(&self) -> bool {
        self.stopped.get()
    }

    /// Starts the server again if this command stopped it. `done` says what already happened, for
    /// the error should the start fail.
    pub fn restart(&self, done: &str) -> Result<()> {
        if !self.stopped.get() {
            return Ok(());
        }
        let Some((start, timeout)) = self.ctx.settings.server.as_ref().and_then(|s| Some((s.start.clone()?, s.timeout))) else {
            self.ctx.out.info("warning: the server was stopped and `b2m.toml` has no `server.start`: start it yourself");
            return Ok(());
        };
        self.ctx.out.info(&format!("starting the server (`{start}`)"));
        super::server::run_command(self.ctx, "start", &start, timeout).map_err(|e| {
            Error::refused(
                format!("{done}, but the server did not start again: {e}"),
                "the server is stopped: fix it and start it (`b2m server start`)",
            )
        })?;
        self.stopped.set(false);
        Ok(())
    }
}

fn refuse(path: &Path, holder: &str) -> Error {
    Error::refused(
        format!("{holder} has `{}` open; b2m does not swap a file a running server has open", path.display()),
        "stop the server first, or set `[server] stop` and `start` in `b2m.toml` so b2m stops and starts it around the swap",
    )
}
