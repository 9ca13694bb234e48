//! `b2m server stop|start|running`: runs the command `[server]` configures, in the project root,
//! bounded by `server.timeout` (see `engine::server`).

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::ServerAction;
use crate::engine::Context;
use crate::error::{Error, ExitStatus, Result};

#[derive(Serialize)]
struct Ran {
    action: &'static str,
    command: String,
    millis: u128,
}

/// `b2m server stop|start|running`.
pub fn run(ctx: &Context, action: ServerAction) -> Result<ExitStatus> {
    let server = ctx.settings.server.as_ref();
    let (what, command) = match action {
        ServerAction::Stop => ("stop", server.and_then(|s| s.stop.clone())),
        ServerAction::Start => ("start", server.and_then(|s| s.start.clone())),
        ServerAction::Running => ("running", server.and_then(|s| s.running.clone())),
    };
    let Some(command) = command else {
        return Err(Error::config_hint(
            format!("`b2m.toml` has no `server.{what}`"),
            format!("add `[server]` with `{what} = \"…\"` to `b2m.toml`"),
        ));
    };
    let timeout = ctx.settings.server.as_ref().map_or(Duration::from_secs(120), |s| s.timeout);
    if let ServerAction::Running = action {
        let running = crate::engine::server::is_running(ctx, &command, timeout)?;
        #[derive(Serialize)]
        struct Answer {
            running: bool,
        }
        ctx.out.result(&Answer { running }, || if running { "the server runs".into() } else { "the server is not running".into() });
        return Ok(if running { ExitStatus::Success } else { ExitStatus::Failure });
    }
    let started = Instant::now();
    crate::engine::server::run_command(ctx, what, &command, timeout)?;
    let ran = Ran { action: what, command, millis: started.elapsed().as_millis() };
    ctx.out.result(&ran, || format!("ran `server.{}` (`{}`) in {} ms", ran.action, ran.command, ran.millis));
    Ok(ExitStatus::Success)
}
