//! The screen: `b2m` with no command, in a terminal (README, "The screen"; docs/screen.md).
//!
//! One loop owns the terminal and the state ([`app::App`]); keys, background reads ([`load`]) and
//! operations ([`ops`], each the command of the same name in a child process) arrive as
//! [`Event`]s on one channel. The terminal is restored on every way out: a return, an error, a
//! panic (the hook runs before the abort), a signal (the interrupt handler's clean-up).

pub mod app;
pub mod load;
pub mod ops;
mod panels;
pub mod view;

use std::io::IsTerminal;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use app::{Action, App, Loaded};
use load::Request;
use ops::Ops;

use crate::error::{Error, ExitStatus, Result};
use crate::settings::Settings;

/// What reaches the loop.
#[derive(Debug)]
pub enum Event {
    /// A key.
    Key(crossterm::event::KeyEvent),
    /// The terminal changed size.
    Resize,
    /// Where the bucket is.
    Location(String),
    /// A background read came back.
    Loaded(Loaded),
    /// An operation's progress.
    Progress { stem: String, step: String, unit: String, done: u64, total: u64 },
    /// An operation ended: what it did, or its error, in the command's words.
    Finished { stem: String, outcome: std::result::Result<String, String> },
}

/// Whether plain `b2m` opens the screen: a terminal on both ends, and no `--json`.
pub fn can_open(json: bool) -> bool {
    !json && std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// Shortest gap between two frames, and the longest while an operation runs (about 12 a second).
const MIN_FRAME: Duration = Duration::from_millis(40);
const MAX_FRAME_WHILE_RUNNING: Duration = Duration::from_millis(80);
/// How long quitting waits for cancelled operations (a command's clean-up waits up to 40 s).
const CANCEL_WAIT: Duration = Duration::from_secs(60);

/// Frames drawn, in all and while operations ran (for `-v`).
#[derive(Default)]
struct Frames {
    all: u64,
    while_running: u64,
    running_time: Duration,
}

/// Runs the screen until `q` (0) or Ctrl-C (130).
pub fn run(settings: &Settings, verbose: u8) -> Result<ExitStatus> {
    let exe = std::env::current_exe().map_err(|e| Error::config(format!("cannot find the b2m binary to run operations with: {e}")))?;
    let (events_in, events) = std::sync::mpsc::channel();
    let mut terminal = Screen::enter()?;
    read_keys(events_in.clone());
    let loader = load::start(settings.clone(), events_in.clone());
    let ops = Ops::new(exe, settings.root.clone(), events_in);
    let interrupter = ops.interrupter();
    let _on_signal = crate::interrupt::on_interrupt(move || {
        restore();
        interrupter();
    });
    for request in [Request::Refresh, Request::Changesets, Request::Fleet] {
        let _ = loader.send(request);
    }
    let mut app = App::new("");
    let mut frames = Frames::default();
    let status = event_loop(&mut terminal, &mut app, &events, &loader, &ops, &mut frames)?;
    drop(terminal);
    if verbose > 0 {
        let rate = frames.while_running as f64 / frames.running_time.as_secs_f64().max(f64::EPSILON);
        eprintln!("b2m: the screen drew {} frames; {} while operations ran, {rate:.1} a second", frames.all, frames.while_running);
    }
    Ok(status)
}

fn event_loop(
    terminal: &mut Screen,
    app: &mut App,
    events: &Receiver<Event>,
    loader: &Sender<Request>,
    ops: &Ops,
    frames: &mut Frames,
) -> Result<ExitStatus> {
    let mut leaving: Option<(ExitStatus, Instant)> = None;
    let mut last_frame = Instant::now() - MAX_FRAME_WHILE_RUNNING;
    let mut dirty = true;
    loop {
        let running = !app.running.is_empty();
        if dirty && last_frame.elapsed() >= MIN_FRAME || running && last_frame.elapsed() >= MAX_FRAME_WHILE_RUNNING {
            let gap = last_frame.elapsed();
            terminal.draw(app)?;
            frames.all += 1;
            if running {
                frames.while_running += 1;
                frames.running_time += gap.min(Duration::from_secs(1));
            }
            (last_frame, dirty) = (Instant::now(), false);
        }
        if let Some((status, since)) = leaving
            && (app.running.is_empty() || since.elapsed() > CANCEL_WAIT)
        {
            return Ok(status);
        }
        let wait = if running || dirty { MIN_FRAME } else { Duration::from_secs(1) };
        let event = match events.recv_timeout(wait) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => {
                dirty = true; // "5m ago" moves on
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return Ok(ExitStatus::Success),
        };
        dirty = true;
        for action in handle(app, event) {
            if let Some(status) = act(app, action, loader, ops) {
                ops.cancel_all();
                leaving = leaving.or(Some((status, Instant::now())));
            }
        }
    }
}

/// Folds an event into the state; returns what it asks for.
fn handle(app: &mut App, event: Event) -> Vec<Action> {
    match event {
        Event::Key(key) => {
            crate::util::failpoint("screen-key");
            app.on_key(key)
        }
        Event::Resize => Vec::new(),
        Event::Location(location) => {
            app.location = location;
            Vec::new()
        }
        Event::Loaded(loaded) => {
            app.on_loaded(loaded);
            Vec::new()
        }
        Event::Progress { stem, step, unit, done, total } => {
            app.on_progress(&stem, &step, &unit, done, total, Instant::now());
            Vec::new()
        }
        Event::Finished { stem, outcome } => app.on_finished(&stem, outcome),
    }
}

/// Carries out an action; returns the exit status when it is time to leave.
fn act(app: &mut App, action: Action, loader: &Sender<Request>, ops: &Ops) -> Option<ExitStatus> {
    let ask = |request| {
        let _ = loader.send(request);
    };
    match action {
        Action::Refresh => ask(Request::Refresh),
        Action::LoadHistory(stem) => ask(Request::History(stem)),
        Action::LoadFleet => ask(Request::Fleet),
        Action::LoadChangesets => ask(Request::Changesets),
        Action::Start(op, stem) => match ops.start(&op, &stem) {
            Ok(()) => app.started(&stem, op),
            Err(e) => app.say(format!("{stem}: cannot start `b2m {}`: {e}", op.name()), true),
        },
        Action::Cancel(stem) => {
            ops.cancel(&stem);
            app.cancelling(&stem);
        }
        Action::Quit => return Some(ExitStatus::Success),
        Action::Interrupt => return Some(ExitStatus::External(130)),
    }
    None
}

/// Sends keys and resizes to the loop, until it is gone.
fn read_keys(events: Sender<Event>) {
    std::thread::spawn(move || {
        loop {
            let event = match crossterm::event::read() {
                Ok(crossterm::event::Event::Key(key)) => Event::Key(key),
                Ok(crossterm::event::Event::Resize(..)) => Event::Resize,
                Ok(_) => continue,
                Err(_) => return,
            };
            if events.send(event).is_err() {
                return;
            }
        }
    });
}

/// The terminal in raw mode on the alternate screen, for as long as this lives.
struct Screen {
    terminal: Terminal<CrosstermBackend<std::io::Stdout>>,
}

impl Screen {
    fn enter() -> Result<Self> {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        let failed = |e: std::io::Error| Error::config(format!("cannot open the screen on this terminal: {e}"));
        let screen = Screen { terminal: Terminal::new(CrosstermBackend::new(std::io::stdout())).map_err(failed)? };
        // From here on, dropping `screen` gives the terminal back.
        crossterm::terminal::enable_raw_mode().map_err(failed)?;
        crossterm::execute!(std::io::stdout(), crossterm::terminal::EnterAlternateScreen, crossterm::cursor::Hide).map_err(failed)?;
        Ok(screen)
    }

    fn draw(&mut self, app: &App) -> Result<()> {
        self.terminal.draw(|frame| view::draw(frame, app)).map_err(|e| Error::config(format!("cannot draw the screen: {e}")))?;
        Ok(())
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        // During a panic the hook has given the terminal back already (and must: a release build
        // aborts, unwinding nothing).
        if !std::thread::panicking() {
            restore();
        }
    }
}

/// Gives the terminal back as it was: cooked mode, the main screen, a cursor.
fn restore() {
    let _ = crossterm::terminal::disable_raw_mode();
    let _ = crossterm::execute!(std::io::stdout(), crossterm::terminal::LeaveAlternateScreen, crossterm::cursor::Show);
}
