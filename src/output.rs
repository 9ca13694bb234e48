//! What people and machines see: results on stdout (a table, or JSON with `--json`); messages,
//! progress bars and errors on stderr.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// The bucket requests a command's store has sent so far.
pub type Requests = std::sync::Arc<dyn Fn() -> u64 + Send + Sync>;

/// How to talk to the user.
#[derive(Clone)]
pub struct Output {
    /// `--json`: the result alone on stdout, as JSON.
    pub json: bool,
    /// `-q`: no messages.
    pub quiet: bool,
    /// `-v` count.
    pub verbose: u8,
    progress: bool,
    /// `--progress-lines`: the bars' positions as lines on stderr (for the screen that runs this).
    lines: Option<ProgressLines>,
    /// The bucket requests of the command's store, once it has one: every JSON result names them.
    requests: std::sync::Arc<std::sync::OnceLock<Requests>>,
    /// The command's result as JSON, whatever was printed: for the activity log.
    last: std::sync::Arc<std::sync::Mutex<Option<serde_json::Value>>>,
}

impl Output {
    /// Output for the given flags; progress bars only on a terminal, never with `--json`, `-q`, `-v`.
    pub fn new(json: bool, quiet: bool, verbose: u8) -> Self {
        let progress = !json && !quiet && verbose == 0 && std::io::stderr().is_terminal();
        Output { json, quiet, verbose, progress, lines: None, requests: Default::default(), last: Default::default() }
    }

    /// Reports every bar's position as a line on stderr, ten times a second, instead of drawing
    /// it: `b2m-progress<TAB>step<TAB>unit<TAB>position<TAB>length` (the screen runs commands so).
    pub fn with_progress_lines(mut self) -> Self {
        self.progress = false;
        self.lines = Some(ProgressLines::default());
        self
    }

    /// A message for the user, on stderr.
    pub fn info(&self, message: &str) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    /// A byte-counting progress bar (hidden when progress is off).
    pub fn bytes_bar(&self, len: u64, message: &str) -> ProgressBar {
        self.bar(len, message, "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
    }

    /// A page-counting progress bar for snapshots.
    pub fn pages_bar(&self, message: &str) -> ProgressBar {
        self.bar(0, message, "{msg:>12} [{bar:30}] {pos}/{len} pages")
    }

    /// A page-counting bar drawn only once [`Output::show`] is called: for work that starts beside
    /// another bar (two bars on one line would overwrite each other).
    pub fn later_pages_bar(&self, message: &str) -> ProgressBar {
        let bar = self.pages_bar(message);
        bar.set_draw_target(ProgressDrawTarget::hidden());
        bar
    }

    /// Starts drawing a bar from [`Output::later_pages_bar`].
    pub fn show(&self, bar: &ProgressBar) {
        if self.progress {
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    /// A spinner for work of unknown length (integrity checks).
    pub fn spinner(&self, message: &str) -> ProgressBar {
        if let Some(lines) = &self.lines {
            return lines.track(0, message, "");
        }
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{msg:>12} {spinner} {elapsed}") {
            bar.set_style(style);
        }
        bar.set_message(message.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    }

    fn bar(&self, len: u64, message: &str, template: &str) -> ProgressBar {
        if let Some(lines) = &self.lines {
            return lines.track(len, message, if template.contains("bytes") { "bytes" } else { "pages" });
        }
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(message.to_string());
        bar
    }

    /// Counts the requests of the first store a command opens into its results.
    pub fn count_requests_of(&self, requests: Requests) {
        let _ = self.requests.set(requests);
    }

    /// [`Output::result`] of a command that reports what it did: with `-q`, no human text.
    pub fn report<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) {
        self.result(value, || if self.quiet { String::new() } else { human() });
    }

    /// Prints a command's result: JSON with `--json`, else the human text (if any). A JSON object
    /// gains `"requests"`, the bucket requests the command made, unless it names them itself.
    pub fn result<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) {
        let mut value = match serde_json::to_value(value) {
            Ok(value) => value,
            Err(e) => return eprintln!("error: cannot render the result as JSON: {e}"),
        };
        if let (serde_json::Value::Object(fields), Some(store)) = (&mut value, self.requests.get()) {
            fields.entry("requests").or_insert_with(|| store().into());
        }
        if self.json {
            match serde_json::to_string_pretty(&value) {
                Ok(text) => print_stdout(&format!("{text}\n")),
                Err(e) => eprintln!("error: cannot render the result as JSON: {e}"),
            }
        } else {
            let text = human();
            if !text.is_empty() {
                print_stdout(&format!("{}\n", text.trim_end()));
            }
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some(value);
        }
    }

    /// The result the command printed, as JSON (for the activity log).
    pub fn last_result(&self) -> Option<serde_json::Value> {
        self.last.lock().ok().and_then(|last| last.clone())
    }

    /// The bucket requests the command's store has made so far (0 before it opened one).
    pub fn requests_so_far(&self) -> u64 {
        self.requests.get().map_or(0, |count| count())
    }
}

/// The bars of a command run with `--progress-lines`, and the thread that reports them.
#[derive(Clone, Default)]
struct ProgressLines {
    bars: std::sync::Arc<std::sync::Mutex<Vec<indicatif::WeakProgressBar>>>,
    reporting: std::sync::Arc<std::sync::OnceLock<()>>,
}

/// The prefix of a progress line.
pub const PROGRESS_LINE: &str = "b2m-progress";

impl ProgressLines {
    /// A hidden bar whose position is reported, in `unit`s (`bytes`, `pages`, or none).
    fn track(&self, len: u64, message: &str, unit: &str) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
        // indicatif expands tabs in a message: the unit follows an ASCII unit separator.
        bar.set_message(format!("{}\u{1f}{unit}", message.replace(['\t', '\n', '\u{1f}'], " ")));
        if let Ok(mut bars) = self.bars.lock() {
            bars.push(bar.downgrade());
        }
        let bars = self.bars.clone();
        self.reporting.get_or_init(|| {
            std::thread::spawn(move || report_progress(&bars));
        });
        bar
    }
}

/// Every tenth of a second, a line per live bar on stderr.
fn report_progress(bars: &std::sync::Mutex<Vec<indicatif::WeakProgressBar>>) {
    loop {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let live: Vec<ProgressBar> = match bars.lock() {
            Ok(mut bars) => {
                bars.retain(|bar| bar.upgrade().is_some_and(|bar| !bar.is_finished()));
                bars.iter().filter_map(indicatif::WeakProgressBar::upgrade).collect()
            }
            Err(_) => return,
        };
        for bar in live {
            eprintln!("{PROGRESS_LINE}\t{}\t{}\t{}", bar.message().replace('\u{1f}', "\t"), bar.position(), bar.length().unwrap_or(0));
        }
    }
}

/// Writes `text` to stdout. A stdout nobody reads any more (`b2m status | head -1`) is no error:
/// the command ends as it would have, saying nothing more, as Unix tools do.
pub fn print_stdout(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: cannot write to stdout: {e}");
    }
}

/// Lays rows out in aligned columns under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.clone()));
        out.push('\n');
    }
    out
}

/// `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}
