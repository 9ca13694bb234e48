//! `b2m server stop|start`: runs the command `[server]` configures, in the project root, bounded
//! by `server.timeout`. The command is split into words (with `'…'`/`"…"` quoting) and run
//! directly, never through a shell: put pipes or `&&` in a script and name the script.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::ServerAction;
use crate::engine::Context;
use crate::error::{Error, ExitStatus, Result};

/// Splits a command line into words: whitespace separates, `'…'` and `"…"` group.
pub fn split_words(line: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(Error::config(format!("unclosed quote in `{line}`")));
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[derive(Serialize)]
struct Ran {
    action: &'static str,
    command: String,
    millis: u128,
}

/// How a bounded command ended.
pub(crate) enum Ended {
    /// It exited 0.
    Succeeded,
    /// It exited otherwise.
    Failed(std::process::ExitStatus),
    /// It ran past its time and was killed.
    TimedOut,
}

/// Runs the command line `command` (split into words, no shell) in `dir`, with `stdin` (or
/// nothing) on its stdin; kills it past `timeout`. Its output is appended to the file `output`
/// and copied to stderr as it comes, until the command returns: never a pipe of ours, so a daemon
/// it starts (`nohup ./serve &`) may keep writing there without holding b2m open, or dying of
/// SIGPIPE once b2m is gone.
pub(crate) fn run_bounded(
    dir: &std::path::Path,
    command: &str,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    output: &std::path::Path,
) -> Result<Ended> {
    let words = split_words(command)?;
    let Some((program, args)) = words.split_first() else { return Err(Error::config(format!("the command `{command}` is empty"))) };
    if let Some(parent) = output.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("cannot create", parent, e))?;
    }
    let file = std::fs::OpenOptions::new().create(true).append(true).open(output).map_err(|e| Error::io("cannot open", output, e))?;
    let from = file.metadata().map_err(|e| Error::io("cannot read", output, e))?.len();
    let file_too = file.try_clone().map_err(|e| Error::io("cannot open", output, e))?;
    let expr = duct::cmd(program, args).dir(dir).stdout_file(file).stderr_file(file_too).unchecked();
    let expr = match stdin {
        Some(bytes) => expr.stdin_bytes(bytes),
        None => expr.stdin_null(),
    };
    let handle = expr.start().map_err(|e| Error::io("cannot run", std::path::PathBuf::from(program), e))?;
    match crate::process::follow(&handle, output, from, Some(timeout)).map_err(|e| Error::io("cannot wait for", program.as_str(), e))? {
        Some(status) if status.success() => Ok(Ended::Succeeded),
        Some(status) => Ok(Ended::Failed(status)),
        None => Ok(Ended::TimedOut),
    }
}

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
        let running = is_running(ctx, &command, timeout)?;
        #[derive(Serialize)]
        struct Answer {
            running: bool,
        }
        ctx.out.result(&Answer { running }, || if running { "the server runs".into() } else { "the server is not running".into() });
        return Ok(if running { ExitStatus::Success } else { ExitStatus::Failure });
    }
    let started = Instant::now();
    run_command(ctx, what, &command, timeout)?;
    let ran = Ran { action: what, command, millis: started.elapsed().as_millis() };
    ctx.out.result(&ran, || format!("ran `server.{}` (`{}`) in {} ms", ran.action, ran.command, ran.millis));
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_a_shell_without_one() {
        assert_eq!(split_words("make stop-prod").expect("words"), vec!["make", "stop-prod"]);
        assert_eq!(split_words(r#"sh -c 'a b' "c d"e"#).expect("words"), vec!["sh", "-c", "a b", "c de"]);
        assert_eq!(split_words("x ''").expect("words"), vec!["x", ""]);
        assert!(split_words("a 'b").is_err());
    }
}
