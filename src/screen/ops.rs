//! Operations the screen runs beside itself: each is the command of the same name, run as a child
//! `b2m … --json --progress-lines`, so it refuses what the command refuses with the same words,
//! and a cancel is the command's own Ctrl-C (leases released, temporary files removed, exit 130).

use std::collections::{HashMap, VecDeque};
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use super::Event;
use super::app::Op;
use crate::output::PROGRESS_LINE;

/// The children running, by database.
type Children = Arc<Mutex<HashMap<String, Arc<duct::Handle>>>>;

/// Starts, cancels and watches the operations.
pub struct Ops {
    exe: PathBuf,
    root: PathBuf,
    children: Children,
    events: Sender<Event>,
}

impl Ops {
    /// Operations on the project at `root`, run by the binary `exe`, reporting to `events`.
    pub fn new(exe: PathBuf, root: PathBuf, events: Sender<Event>) -> Self {
        Ops { exe, root, children: Arc::default(), events }
    }

    /// Starts `op` on `stem`; its progress and its end arrive as events.
    pub fn start(&self, op: &Op, stem: &str) -> std::io::Result<()> {
        let (reader, writer) = os_pipe::pipe()?;
        let mut args: Vec<std::ffi::OsString> = vec!["-C".into(), self.root.clone().into(), "--json".into(), "--progress-lines".into()];
        args.extend(op.args(stem).into_iter().map(Into::into));
        let expression = duct::cmd(&self.exe, args).stdin_null().stdout_capture().stderr_file(writer).unchecked();
        let handle = Arc::new(expression.start()?);
        // Our copy of the pipe's writing end closes with the expression: the reader ends with the child.
        drop(expression);
        lock(&self.children).insert(stem.to_string(), handle.clone());
        let (children, events, stem, op) = (self.children.clone(), self.events.clone(), stem.to_string(), op.clone());
        std::thread::spawn(move || watch(reader, &handle, &children, &events, &stem, &op));
        Ok(())
    }

    /// Asks the operation on `stem` to stop, as Ctrl-C would.
    pub fn cancel(&self, stem: &str) {
        if let Some(handle) = lock(&self.children).get(stem) {
            interrupt(handle);
        }
    }

    /// Asks every operation to stop.
    pub fn cancel_all(&self) {
        for handle in lock(&self.children).values() {
            interrupt(handle);
        }
    }

    /// A closure that interrupts every child: for a signal or a panic, when nothing else may run.
    pub fn interrupter(&self) -> impl Fn() + Send + Sync + 'static {
        let children = self.children.clone();
        move || {
            for handle in lock(&children).values() {
                interrupt(handle);
            }
        }
    }
}

fn lock(children: &Children) -> std::sync::MutexGuard<'_, HashMap<String, Arc<duct::Handle>>> {
    children.lock().unwrap_or_else(|e| e.into_inner())
}

/// SIGINT to the child: what Ctrl-C sends a command.
fn interrupt(handle: &duct::Handle) {
    for pid in handle.pids() {
        if let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        }
    }
}

/// Reads the child's stderr until it ends, sending its progress; then sends its outcome.
fn watch(reader: os_pipe::PipeReader, handle: &duct::Handle, children: &Children, events: &Sender<Event>, stem: &str, op: &Op) {
    let mut said: VecDeque<String> = VecDeque::new();
    for line in std::io::BufReader::new(reader).lines().map_while(std::result::Result::ok) {
        match parse_progress(&line) {
            Some((step, unit, done, total)) => {
                let _ = events.send(Event::Progress { stem: stem.to_string(), step, unit, done, total });
            }
            None if !line.trim().is_empty() => {
                said.push_back(line);
                if said.len() > 4 {
                    said.pop_front();
                }
            }
            None => {}
        }
    }
    let outcome = match handle.wait() {
        Ok(output) => outcome_of(op, output.status.code(), &output.stdout, &said),
        Err(e) => Err(format!("cannot run `b2m {}`: {e}", op.name())),
    };
    lock(children).remove(stem);
    let _ = events.send(Event::Finished { stem: stem.to_string(), outcome });
}

/// `b2m-progress<TAB>step<TAB>unit<TAB>done<TAB>total`.
pub fn parse_progress(line: &str) -> Option<(String, String, u64, u64)> {
    let mut fields = line.strip_prefix(PROGRESS_LINE)?.strip_prefix('\t')?.split('\t');
    let (step, unit) = (fields.next()?.to_string(), fields.next()?.to_string());
    Some((step, unit, fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

/// What the command's exit and its `--json` answer say, in the command's own words.
pub fn outcome_of(op: &Op, code: Option<i32>, stdout: &[u8], said: &VecDeque<String>) -> Result<String, String> {
    let answer: Option<serde_json::Value> = serde_json::from_slice(stdout).ok();
    match code {
        Some(0) => Ok(done_text(op, answer.as_ref())),
        Some(130) | None => Err(format!("{} cancelled: stopped as Ctrl-C stops it (leases released, temporary files removed)", op.name())),
        Some(_) => {
            let error = answer.as_ref().map(|a| &a["error"]);
            match error.and_then(|e| e["message"].as_str()) {
                Some(message) => Err(match error.and_then(|e| e["hint"].as_str()) {
                    Some(hint) => format!("{message}; {hint}"),
                    None => message.to_string(),
                }),
                None => Err(said.back().cloned().unwrap_or_else(|| format!("`b2m {}` failed", op.name()))),
            }
        }
    }
}

fn done_text(op: &Op, answer: Option<&serde_json::Value>) -> String {
    let version = answer.and_then(|a| a["version"].as_u64());
    match (op, version) {
        (Op::Upload, _) if answer.is_some_and(|a| a["uploaded"] == false) => "nothing to upload: the bucket has this content".into(),
        (Op::Upload | Op::Merge | Op::Rollback(_), Some(v)) => format!("{} done: published v{v}", op.name()),
        (_, Some(v)) => format!("{} done: now at v{v}", op.name()),
        _ => format!("{} done", op.name()),
    }
}
