//! Processes b2m starts that must not outlive it. A changeset's script runs under a launcher —
//! this same binary, started with `B2M_EXEC_WITH_PARENT=<pid>` — that asks the kernel to kill it
//! when its parent dies and then becomes the script (exec keeps that request). The b2m commands a
//! script runs ask the same for themselves. So a runner killed with `kill -9` takes its script,
//! and the script's b2m calls, with it: nothing it started publishes after its claim is gone.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::error::{Error, Result};

/// Set (to the parent's pid) when this process is only to launch the program in its arguments.
pub const LAUNCH: &str = "B2M_EXEC_WITH_PARENT";

/// When this process is a launcher: arranges to die with the parent, then execs the program its
/// arguments name (returning only if that failed, with the exit code to end with).
pub fn launch_if_asked() -> Option<ExitCode> {
    let parent = std::env::var(LAUNCH).ok()?;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if let Err(e) = die_with_parent(parent.trim().parse().ok()) {
        eprintln!("error: the changeset was not started: {e}");
        return Some(ExitCode::from(1));
    }
    let Some((program, rest)) = args.split_first() else {
        eprintln!("error: `{LAUNCH}` is set but no program was named");
        return Some(ExitCode::from(2));
    };
    let err = std::process::Command::new(program).args(rest).env_remove(LAUNCH).exec();
    eprintln!("error: cannot run `{}`: {err}", program.to_string_lossy());
    Some(ExitCode::from(if err.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 }))
}

/// Asks the kernel to kill this process when its parent dies. With `expected`, fails if the
/// parent is already another process (the one that started us died before we asked).
pub fn die_with_parent(expected: Option<i32>) -> std::io::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    let parent = rustix::process::getppid().map(|p| p.as_raw_pid());
    if let Some(expected) = expected
        && parent != Some(expected)
    {
        return Err(std::io::Error::other(format!("its runner (pid {expected}) is gone")));
    }
    Ok(())
}

/// `program` as the `PATH` finds it (a path with a `/` is taken as it is).
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Waits for the process `handle` runs, copying to stderr what it appends to the file `output`
/// (from byte `from` on) as it comes. Past `timeout` it is killed and `None` returned. The wait is
/// for the process, not for its output: whoever else keeps the file open (a daemon it started)
/// holds nothing up.
pub fn follow(
    handle: &duct::Handle,
    output: &Path,
    from: u64,
    timeout: Option<std::time::Duration>,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    use std::io::{Read, Seek, Write};
    let mut file = std::fs::File::open(output)?;
    file.seek(std::io::SeekFrom::Start(from))?;
    let started = std::time::Instant::now();
    loop {
        let waited = handle.try_wait()?.map(|o| o.status);
        let mut new = Vec::new();
        if file.read_to_end(&mut new).is_ok() && !new.is_empty() {
            let _ = std::io::stderr().write_all(&new);
        }
        if waited.is_some() {
            return Ok(waited);
        }
        if timeout.is_some_and(|t| started.elapsed() > t) {
            let _ = handle.kill();
            return Ok(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

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

/// How a bounded command ended.
pub enum Ended {
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
pub fn run_bounded(
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
    match follow(&handle, output, from, Some(timeout)).map_err(|e| Error::io("cannot wait for", program.as_str(), e))? {
        Some(status) if status.success() => Ok(Ended::Succeeded),
        Some(status) => Ok(Ended::Failed(status)),
        None => Ok(Ended::TimedOut),
    }
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
