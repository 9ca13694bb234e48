//! What the screen knows and how keys change it: no terminal, no bucket, no processes here.
//! A key gives [`Action`]s for the loop to carry out; what comes back ([`Loaded`], progress, an
//! operation's end) is folded in.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::engine::changesets::Row as Changeset;
use crate::engine::fleet::Server;
use crate::engine::history::History;
use crate::engine::status::DbStatus;

/// An operation the screen runs beside itself, as the command of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `b2m upload DB`.
    Upload,
    /// `b2m download DB`.
    Download,
    /// `b2m download DB --force`: drops local changes (asked first).
    DownloadForce,
    /// `b2m merge DB`.
    Merge,
    /// `b2m rollback DB --to N` (asked first).
    Rollback(u64),
}

impl Op {
    /// The command line after `b2m`.
    pub fn args(&self, stem: &str) -> Vec<String> {
        let mut args = match self {
            Op::Upload => vec!["upload".to_string()],
            Op::Download | Op::DownloadForce => vec!["download".to_string()],
            Op::Merge => vec!["merge".to_string()],
            Op::Rollback(_) => vec!["rollback".to_string()],
        };
        args.push(stem.to_string());
        match self {
            Op::DownloadForce => args.push("--force".into()),
            Op::Rollback(to) => args.extend(["--to".to_string(), to.to_string()]),
            _ => {}
        }
        args
    }

    /// `upload`, `download`, ….
    pub fn name(&self) -> &'static str {
        match self {
            Op::Upload => "upload",
            Op::Download | Op::DownloadForce => "download",
            Op::Merge => "merge",
            Op::Rollback(_) => "rollback",
        }
    }
}

/// What the loop is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read the status again (what `b2m status` costs).
    Refresh,
    /// Run an operation on a database.
    Start(Op, String),
    /// Stop the operation on a database, as Ctrl-C stops a command.
    Cancel(String),
    /// Read a database's history.
    LoadHistory(String),
    /// Read the fleet.
    LoadFleet,
    /// Read the changesets.
    LoadChangesets,
    /// Leave (running operations are cancelled first).
    Quit,
    /// Ctrl-C: cancel everything, leave with 130.
    Interrupt,
}

/// What a background read brought back.
#[derive(Debug)]
pub enum Loaded {
    /// The status of every database, and the requests it cost.
    Status { rows: Vec<DbStatus>, requests: u64, at: String },
    /// Who published the versions the table shows that were not seen before, by (stem,
    /// version), and the requests that cost.
    LastPublish { found: Vec<(String, u64, Publish)>, requests: u64 },
    /// A database's history.
    History(History),
    /// The fleet.
    Fleet(Vec<Server>),
    /// The changesets.
    Changesets(Vec<Changeset>),
    /// A read failed: the error, as the command prints it.
    Failed(String),
}

/// Who published a version, when, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// `user@host`.
    pub by: String,
    /// RFC 3339.
    pub at: String,
    /// `upload`, `merge`, `changeset`, `rollback`.
    pub made_by: String,
    /// Bytes.
    pub size: u64,
}

/// One step of an operation (`snapshot`, `upload`, `download`, …) and where it stands.
#[derive(Debug, Clone)]
pub struct Step {
    /// Its name, as the command's progress bar names it.
    pub name: String,
    /// `bytes`, `pages`, or empty.
    pub unit: String,
    /// Done so far.
    pub done: u64,
    /// Of how many (0: unknown).
    pub total: u64,
    /// Recent (time, done) samples, for the speed.
    samples: VecDeque<(Instant, u64)>,
}

impl Step {
    /// Units per second over the last few seconds.
    pub fn speed(&self) -> Option<f64> {
        let (first, last) = (self.samples.front()?, self.samples.back()?);
        let seconds = last.0.duration_since(first.0).as_secs_f64();
        (seconds >= 0.2).then(|| last.1.saturating_sub(first.1) as f64 / seconds)
    }

    /// Time left at the current speed.
    pub fn eta(&self) -> Option<Duration> {
        let speed = self.speed().filter(|s| *s > 0.0)?;
        (self.total > self.done).then(|| Duration::from_secs_f64((self.total - self.done) as f64 / speed))
    }
}

/// An operation in flight, with where its progress stands.
#[derive(Debug, Clone)]
pub struct Running {
    /// What runs.
    pub op: Op,
    /// Its steps so far (two may run side by side: a snapshot and its upload).
    pub steps: Vec<Step>,
    /// The step that moved last: the one shown.
    current: Option<usize>,
    /// Asked to stop.
    pub cancelling: bool,
}

impl Running {
    fn new(op: Op) -> Self {
        Running { op, steps: Vec::new(), current: None, cancelling: false }
    }

    /// The step shown: the one that moved last.
    pub fn step(&self) -> Option<&Step> {
        self.steps.get(self.current?)
    }

    fn progress(&mut self, name: &str, unit: &str, done: u64, total: u64, now: Instant) {
        let index = match self.steps.iter().position(|s| s.name == name) {
            Some(index) => index,
            None => {
                let step = Step { name: name.into(), unit: unit.into(), done, total, samples: VecDeque::new() };
                self.steps.push(step);
                self.current = self.current.or(Some(self.steps.len() - 1));
                self.steps.len() - 1
            }
        };
        let step = &mut self.steps[index];
        if done != step.done || step.samples.is_empty() {
            self.current = Some(index);
        }
        (step.done, step.total) = (done, total);
        step.samples.push_back((now, done));
        while step.samples.len() > 2 && step.samples.front().is_some_and(|(at, _)| now.duration_since(*at) > Duration::from_secs(3)) {
            step.samples.pop_front();
        }
    }
}

/// A question asked before something that cannot be undone from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    /// The question, one or two sentences.
    pub question: String,
    /// What `y` does.
    pub then: Action,
}

/// What covers the table, if anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Overlay {
    /// The table alone.
    #[default]
    None,
    /// The keys.
    Help,
    /// The history of a database (loading until it arrives), and the version selected in it.
    History { stem: String, selected: usize },
    /// Every server of the fleet.
    Fleet,
    /// Every changeset.
    Changesets,
    /// A question.
    Confirm(Confirm),
}

/// The screen's state.
#[derive(Debug, Default)]
pub struct App {
    /// Where the bucket is.
    pub location: String,
    /// One row per database, in db.toml order.
    pub rows: Vec<DbStatus>,
    /// Who published the versions shown.
    pub published: HashMap<(String, u64), Publish>,
    /// The selected row.
    pub selected: usize,
    /// What covers the table.
    pub overlay: Overlay,
    /// Operations in flight, by database.
    pub running: BTreeMap<String, Running>,
    /// The last outcome or refusal, and whether it is an error.
    pub message: Option<(String, bool)>,
    /// When the status was last read, and its requests.
    pub refreshed: Option<(String, u64)>,
    /// The history last read.
    pub history: Option<History>,
    /// The fleet last read.
    pub fleet: Option<Vec<Server>>,
    /// The changesets last read.
    pub changesets: Option<Vec<Changeset>>,
}

impl App {
    /// A screen on the bucket at `location`, before anything is read.
    pub fn new(location: &str) -> Self {
        App { location: location.to_string(), ..App::default() }
    }

    /// The selected database's name.
    pub fn selected_stem(&self) -> Option<&str> {
        self.rows.get(self.selected).map(|r| r.name.as_str())
    }

    /// What a key asks for.
    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Action> {
        if key.kind == KeyEventKind::Release {
            return Vec::new();
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return vec![Action::Interrupt];
        }
        match std::mem::take(&mut self.overlay) {
            Overlay::None => self.on_table_key(key.code),
            Overlay::Confirm(confirm) => match key.code {
                KeyCode::Char('y' | 'Y') => vec![confirm.then],
                KeyCode::Char('n' | 'N') | KeyCode::Esc | KeyCode::Char('q') => Vec::new(),
                _ => {
                    self.overlay = Overlay::Confirm(confirm);
                    Vec::new()
                }
            },
            Overlay::History { stem, selected } => self.on_history_key(key.code, stem, selected),
            overlay => {
                if !matches!(key.code, KeyCode::Esc | KeyCode::Char('q' | 'h' | 'f' | 'c' | '?') | KeyCode::Enter) {
                    self.overlay = overlay;
                }
                Vec::new()
            }
        }
    }

    fn on_table_key(&mut self, code: KeyCode) -> Vec<Action> {
        let stem = self.selected_stem().map(str::to_string);
        match (code, stem) {
            (KeyCode::Up | KeyCode::Char('k'), _) => self.selected = self.selected.saturating_sub(1),
            (KeyCode::Down | KeyCode::Char('j'), _) => self.selected = (self.selected + 1).min(self.rows.len().saturating_sub(1)),
            (KeyCode::Char('r'), _) => return vec![Action::Refresh],
            (KeyCode::Char('?'), _) => self.overlay = Overlay::Help,
            (KeyCode::Char('f'), _) => {
                self.overlay = Overlay::Fleet;
                return vec![Action::LoadFleet];
            }
            (KeyCode::Char('q') | KeyCode::Esc, _) => return self.quit(),
            (KeyCode::Char('c'), Some(stem)) if self.running.contains_key(&stem) => self.ask_cancel(&stem),
            (KeyCode::Char('c'), _) => {
                self.overlay = Overlay::Changesets;
                return vec![Action::LoadChangesets];
            }
            (KeyCode::Char('x'), Some(stem)) if self.running.contains_key(&stem) => return vec![Action::Cancel(stem)],
            (KeyCode::Char('h') | KeyCode::Enter, Some(stem)) => {
                self.history = None;
                self.overlay = Overlay::History { stem: stem.clone(), selected: 0 };
                return vec![Action::LoadHistory(stem)];
            }
            (KeyCode::Char(key @ ('u' | 'd' | 'p' | 'D' | 'm')), Some(stem)) => return self.operate(key, stem),
            _ => {}
        }
        Vec::new()
    }

    /// `u`, `d`/`p`, `D`, `m` on a database.
    fn operate(&mut self, key: char, stem: String) -> Vec<Action> {
        if let Some(running) = self.running.get(&stem) {
            self.say(format!("{stem}: its {} is still running; wait, or `x` to cancel it", running.op.name()), true);
            return Vec::new();
        }
        let op = match key {
            'u' => Op::Upload,
            'm' => Op::Merge,
            'D' => {
                let question = format!(
                    "Download the bucket's version of {stem} over the local file, dropping its local changes? \
                     (The file replaced is kept in the db folder's `replaced` folder.)"
                );
                self.overlay = Overlay::Confirm(Confirm { question, then: Action::Start(Op::DownloadForce, stem) });
                return Vec::new();
            }
            _ => Op::Download,
        };
        vec![Action::Start(op, stem)]
    }

    fn on_history_key(&mut self, code: KeyCode, stem: String, selected: usize) -> Vec<Action> {
        let versions = self.history.as_ref().filter(|h| h.name == stem).map(|h| h.versions.clone()).unwrap_or_default();
        let selected = match code {
            KeyCode::Up | KeyCode::Char('k') => selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => (selected + 1).min(versions.len().saturating_sub(1)),
            KeyCode::Esc | KeyCode::Char('q' | 'h') => return Vec::new(),
            KeyCode::Char('b') => match versions.get(selected) {
                Some(v) if v.current => {
                    self.say(format!("{stem}: v{} is already the published version", v.version), true);
                    selected
                }
                Some(v) => {
                    let question = format!(
                        "Roll {stem} back to v{}? This publishes a new version with v{}'s content, \
                         and every server fetches it at its next start.",
                        v.version, v.version
                    );
                    self.overlay = Overlay::Confirm(Confirm { question, then: Action::Start(Op::Rollback(v.version), stem) });
                    return Vec::new();
                }
                None => selected,
            },
            _ => selected,
        };
        self.overlay = Overlay::History { stem, selected };
        Vec::new()
    }

    fn ask_cancel(&mut self, stem: &str) {
        let op = self.running.get(stem).map_or("operation", |r| r.op.name());
        let question =
            format!("Cancel the {op} of {stem}? It stops as a Ctrl-C stops `b2m {op}`: leases released, temporary files removed.");
        self.overlay = Overlay::Confirm(Confirm { question, then: Action::Cancel(stem.to_string()) });
    }

    /// `q`: at once, or asked first while operations run.
    fn quit(&mut self) -> Vec<Action> {
        if self.running.is_empty() {
            return vec![Action::Quit];
        }
        let names: Vec<String> = self.running.iter().map(|(stem, r)| format!("the {} of {stem}", r.op.name())).collect();
        let question = format!("Quit? This cancels {} (as a Ctrl-C would).", names.join(" and "));
        self.overlay = Overlay::Confirm(Confirm { question, then: Action::Quit });
        Vec::new()
    }

    /// Shows a line under the table.
    pub fn say(&mut self, message: String, error: bool) {
        self.message = Some((message, error));
    }

    /// An operation was started.
    pub fn started(&mut self, stem: &str, op: Op) {
        self.say(format!("{stem}: {} started", op.name()), false);
        self.running.insert(stem.to_string(), Running::new(op));
    }

    /// A cancel was asked for.
    pub fn cancelling(&mut self, stem: &str) {
        if let Some(running) = self.running.get_mut(stem) {
            running.cancelling = true;
            let message = format!("{stem}: cancelling the {}…", running.op.name());
            self.say(message, false);
        }
    }

    /// A progress report of the operation on `stem`.
    pub fn on_progress(&mut self, stem: &str, step: &str, unit: &str, done: u64, total: u64, now: Instant) {
        if let Some(running) = self.running.get_mut(stem) {
            running.progress(step, unit, done, total, now);
        }
    }

    /// The operation on `stem` ended: its outcome as the command said it. The status is read
    /// again.
    pub fn on_finished(&mut self, stem: &str, outcome: Result<String, String>) -> Vec<Action> {
        self.running.remove(stem);
        match outcome {
            Ok(done) => self.say(format!("{stem}: {done}"), false),
            Err(error) => self.say(format!("{stem}: {error}"), true),
        }
        vec![Action::Refresh]
    }

    /// A background read came back.
    pub fn on_loaded(&mut self, loaded: Loaded) {
        match loaded {
            Loaded::Status { rows, requests, at } => {
                self.rows = rows;
                self.selected = self.selected.min(self.rows.len().saturating_sub(1));
                self.refreshed = Some((at, requests));
            }
            Loaded::LastPublish { found, requests } => {
                self.published.extend(found.into_iter().map(|(stem, version, publish)| ((stem, version), publish)));
                if let Some((_, total)) = &mut self.refreshed {
                    *total += requests;
                }
            }
            Loaded::History(history) => self.history = Some(history),
            Loaded::Fleet(fleet) => self.fleet = Some(fleet),
            Loaded::Changesets(changesets) => self.changesets = Some(changesets),
            Loaded::Failed(error) => self.say(error, true),
        }
    }

    /// The last publish of a row's bucket version, if known.
    pub fn last_publish(&self, row: &DbStatus) -> Option<&Publish> {
        self.published.get(&(row.name.clone(), row.remote_version?))
    }
}
