//! The server's own commands (`[server]` in b2m.toml): `stop`, `start` and `running`, run in the
//! project root, each bounded by `server.timeout`. A command is split into words (with `'…'`/`"…"`
//! quoting) and run directly, never through a shell: put pipes or `&&` in a script and name it.

use std::time::Duration;

use super::Context;
use crate::error::{Error, Result};
use crate::process::{Ended, run_bounded};

/// Runs `server.<what>` (`command`) in the project root within `timeout`; its output goes to stderr.
pub fn run_command(ctx: &Context, what: &str, command: &str, timeout: Duration) -> Result<()> {
    let output = ctx.settings.state_dir.join("server.out");
    let ended = run_bounded(&ctx.settings.root, command, None, timeout, &output)
        .map_err(|e| Error::config_hint(format!("cannot run `server.{what}` (`{command}`): {e}"), "fix `[server]` in `b2m.toml`"))?;
    match ended {
        Ended::Succeeded => Ok(()),
        Ended::Failed(status) => Err(Error::refused(
            format!("`server.{what}` (`{command}`) failed with {status}"),
            "see its output above, and fix `[server]` in `b2m.toml` or the server",
        )),
        Ended::TimedOut => Err(Error::refused(
            format!("`server.{what}` (`{command}`) did not return within {} s; it was stopped", timeout.as_secs()),
            "a start must return (daemonise the server), or raise `server.timeout` in `b2m.toml`",
        )),
    }
}

/// Runs `server.running` (`command`) within `timeout`: whether the server runs (exit 0).
pub fn is_running(ctx: &Context, command: &str, timeout: Duration) -> Result<bool> {
    let output = ctx.settings.state_dir.join("server.out");
    let ended = run_bounded(&ctx.settings.root, command, None, timeout, &output)
        .map_err(|e| Error::config_hint(format!("cannot run `server.running` (`{command}`): {e}"), "fix `[server]` in `b2m.toml`"))?;
    match ended {
        Ended::Succeeded => Ok(true),
        Ended::Failed(_) => Ok(false),
        Ended::TimedOut => Err(Error::refused(
            format!("`server.running` (`{command}`) did not return within {} s; it was stopped", timeout.as_secs()),
            "make `server.running` answer at once (exit 0 when the server runs), or raise `server.timeout` in `b2m.toml`",
        )),
    }
}
