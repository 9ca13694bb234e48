//! Drawing the screen from [`App`]: the table of databases with a progress line under each one
//! that moves, the selected one's details, the pending changesets and the fleet, a message line,
//! the keys; and over it, help, a history, the fleet, the changesets or a question. It fits 80×24.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Table, TableState, Wrap};

use super::app::{App, Overlay, Running, Step};
use crate::engine::fleet::Server;
use crate::engine::status::{DbStatus, Status};
use crate::output::human_bytes;

/// The keys, as the help and the bottom line name them.
pub const KEYS: &[(&str, &str)] = &[
    ("↑ ↓", "move"),
    ("u", "upload the selected database"),
    ("d / p", "download it (refused over local changes)"),
    ("D", "download it over local changes (asks first)"),
    ("m", "merge local changes onto the bucket's version"),
    ("h / Enter", "its history (b: roll back to a version, asks first)"),
    ("x / c", "cancel its operation (as Ctrl-C; c asks first)"),
    ("c", "the changesets (when nothing runs on the row)"),
    ("f", "the fleet"),
    ("r", "refresh (what `b2m status` costs)"),
    ("?", "this help"),
    ("q / Esc", "quit (asks first while an operation runs)"),
];

/// Draws everything.
pub fn draw(frame: &mut Frame, app: &App) {
    let [title, table, detail, bottom, message, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Length(2),
        Constraint::Length(5),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(title_line(app)), title);
    draw_table(frame, app, table);
    frame.render_widget(Paragraph::new(detail_lines(app)).wrap(Wrap { trim: true }), detail);
    let [changesets, fleet] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(bottom);
    frame.render_widget(Paragraph::new(pending_lines(app)).block(Block::bordered().title(" Pending changesets ")), changesets);
    frame.render_widget(Paragraph::new(fleet_lines(app)).block(Block::bordered().title(" Fleet ")), fleet);
    if let Some((text, error)) = &app.message {
        let style = if *error { Style::new().fg(Color::Red) } else { Style::new().fg(Color::Green) };
        frame.render_widget(Paragraph::new(Span::styled(text.as_str(), style)), message);
    }
    let hint = "u upload  d download  m merge  h history  x cancel  r refresh  ? more  q quit";
    frame.render_widget(Paragraph::new(Span::styled(hint, Style::new().add_modifier(Modifier::DIM))), keys);
    draw_overlay(frame, app);
}

fn title_line(app: &App) -> Line<'static> {
    let refreshed = match &app.refreshed {
        Some((at, requests)) => format!("refreshed {at} · {requests} request{}", if *requests == 1 { "" } else { "s" }),
        None => "reading the bucket…".into(),
    };
    Line::from(vec![
        Span::styled(" b2m ", Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED)),
        Span::raw(format!(" {} · {refreshed}", app.location)),
    ])
}

fn draw_table(frame: &mut Frame, app: &App, area: Rect) {
    let header =
        Row::new(["DB", "STATUS", "LOCAL", "BUCKET", "LEASE", "CHG", "LAST PUBLISH"]).style(Style::new().add_modifier(Modifier::BOLD));
    let mut rows = Vec::new();
    let mut progress = Vec::new();
    let mut selected = None;
    for (i, db) in app.rows.iter().enumerate() {
        if i == app.selected {
            selected = Some(rows.len());
        }
        rows.push(db_row(app, db));
        if let Some(running) = app.running.get(&db.name) {
            // A line of its own under the row, drawn across every column once the table is.
            progress.push((rows.len(), progress_text(running)));
            rows.push(Row::new([""]));
        }
    }
    let empty = app.rows.is_empty() && app.refreshed.is_some();
    let widths = [
        Constraint::Fill(2),
        Constraint::Length(15),
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Length(10),
        Constraint::Length(3),
        Constraint::Fill(3),
    ];
    let title = if empty { " Databases: none in db.toml or in the bucket yet " } else { " Databases " };
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ")
        .highlight_spacing(ratatui::widgets::HighlightSpacing::Always);
    let mut state = TableState::default().with_selected(selected);
    frame.render_stateful_widget(table, area, &mut state);
    let visible = usize::from(inner.height.saturating_sub(1));
    for (index, text) in progress {
        let Some(line) = index.checked_sub(state.offset()).filter(|line| *line < visible) else { continue };
        let at = Rect { y: inner.y + 1 + line as u16, height: 1, ..inner };
        frame.render_widget(Paragraph::new(Span::styled(text, Style::new().fg(Color::Cyan))), at);
    }
}

fn db_row<'a>(app: &App, db: &'a DbStatus) -> Row<'a> {
    let version = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| format!("v{v}"));
    let last = app.last_publish(db).map(|p| format!("{} {} {}", short_user(&p.by), age(&p.at), p.made_by)).unwrap_or_default();
    let style = match db.status {
        Status::UpToDate => Style::new(),
        Status::Conflict | Status::Unmanaged => Style::new().fg(Color::Red),
        _ => Style::new().fg(Color::Yellow),
    };
    Row::new([
        Cell::from(db.name.as_str()),
        Cell::from(Span::styled(db.status.as_str(), style)),
        Cell::from(version(db.local_version)),
        Cell::from(version(db.remote_version)),
        Cell::from(db.locked_by.as_deref().map(short_user).unwrap_or_default()),
        Cell::from(if db.local_changes { "yes" } else { "" }),
        Cell::from(last),
    ])
}

/// `  └ upload [#####-------]  45% 452.0 MiB / 1.0 GiB · 120.3 MiB/s · 8s left`.
pub fn progress_text(running: &Running) -> String {
    let op = running.op.name();
    let cancelling = if running.cancelling { " (cancelling)" } else { "" };
    let Some(step) = running.step() else { return format!("  └ {op}: starting{cancelling}") };
    let amount = |n: u64| if step.unit == "bytes" { human_bytes(n) } else { n.to_string() };
    let mut text = if step.name == op { format!("  └ {op}{cancelling}") } else { format!("  └ {op}{cancelling}: {}", step.name) };
    if step.total > 0 {
        let share = (step.done as f64 / step.total as f64).clamp(0.0, 1.0);
        let filled = (share * 12.0).round() as usize;
        text.push_str(&format!(" [{}{}] {:>3.0}%", "#".repeat(filled), "-".repeat(12 - filled), share * 100.0));
        text.push_str(&format!(" {} / {}", amount(step.done), amount(step.total)));
    } else if step.done > 0 {
        text.push_str(&format!(" {}", amount(step.done)));
    }
    text.push_str(&speed_text(step));
    if step.unit == "pages" {
        text.push_str(" pages");
    }
    text
}

fn speed_text(step: &Step) -> String {
    let Some(speed) = step.speed() else { return String::new() };
    let per_second = if step.unit == "bytes" { format!("{}/s", human_bytes(speed as u64)) } else { format!("{speed:.0}/s") };
    match step.eta() {
        Some(eta) => format!(" · {per_second} · {} left", duration_text(eta.as_secs())),
        None => format!(" · {per_second}"),
    }
}

/// `8s`, `2m10s`, `1h05m`.
pub fn duration_text(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `alice` of `alice@laptop (…)`.
fn short_user(by: &str) -> String {
    by.split(['@', ' ']).next().unwrap_or(by).to_string()
}

/// `5m ago` for an RFC 3339 time.
fn ago(at: &str) -> String {
    match age(at).as_str() {
        "now" => "now".into(),
        age => format!("{age} ago"),
    }
}

/// `5m`, `2h`, `3d` (or `now`) since an RFC 3339 time.
fn age(at: &str) -> String {
    let Ok(then) = chrono::DateTime::parse_from_rfc3339(at) else { return at.to_string() };
    let seconds = (chrono::Utc::now() - then.with_timezone(&chrono::Utc)).num_seconds().max(0) as u64;
    match seconds {
        s if s < 60 => "now".into(),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// `2026-12-04 10:21 UTC` for an RFC 3339 time.
pub fn when(at: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(at) {
        Ok(t) => t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M UTC").to_string(),
        Err(_) => at.to_string(),
    }
}

/// Two lines on the selected database: its file, the last publish in full, the lease, why.
fn detail_lines(app: &App) -> Vec<Line<'static>> {
    let Some(db) = app.rows.get(app.selected) else { return Vec::new() };
    let mut first = format!("{} ({})", db.name, db.path.as_deref().unwrap_or("no local file named"));
    if let Some(p) = app.last_publish(db) {
        let version = db.remote_version.unwrap_or_default();
        first.push_str(&format!(" · v{version} published by {} {} ({}, {})", p.by, when(&p.at), p.made_by, human_bytes(p.size)));
    }
    let mut second = Vec::new();
    if let Some(by) = &db.locked_by {
        second.push(format!("lease held by {by}"));
    }
    if let Some(why) = &db.detail {
        second.push(why.clone());
    }
    let second = Span::styled(second.join(" · "), Style::new().fg(Color::Yellow));
    vec![Line::from(first), Line::from(second)]
}

fn pending_lines(app: &App) -> Vec<Line<'static>> {
    let Some(all) = &app.changesets else { return vec![Line::from("reading…")] };
    let pending: Vec<_> = all.iter().filter(|c| c.pending()).collect();
    if pending.is_empty() {
        return vec![Line::from(format!("none ({} ran)", all.len()))];
    }
    pending.iter().map(|c| Line::from(format!("{} · {}", c.name, c.state))).collect()
}

fn fleet_lines(app: &App) -> Vec<Line<'static>> {
    let Some(servers) = &app.fleet else { return vec![Line::from("reading…")] };
    if servers.is_empty() {
        return vec![Line::from("no server has run `b2m preflight` yet")];
    }
    servers.iter().map(|s| Line::from(format!("{} · {} · {}", server_name(servers, s), behind_text(s), ago(&s.record.at)))).collect()
}

/// A server's name; `host:folder` when two checkouts on one host share it.
pub fn server_name(servers: &[Server], server: &Server) -> String {
    let name = &server.record.name;
    if servers.iter().filter(|s| s.record.name == *name).count() > 1 {
        let folder = server.record.root.rsplit('/').find(|part| !part.is_empty()).unwrap_or(&server.record.root);
        format!("{name}:{folder}")
    } else {
        name.clone()
    }
}

/// `current`, or `ipm-db 2 behind`.
pub fn behind_text(server: &Server) -> String {
    let behind: Vec<String> = server.behind.iter().filter(|(_, n)| *n > 0).map(|(stem, n)| format!("{stem} {n} behind")).collect();
    if behind.is_empty() { "current".into() } else { behind.join(", ") }
}

/// A rectangle of `width`×`height` in the middle of `area` (smaller if `area` is).
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let (width, height) = (width.min(area.width), height.min(area.height));
    Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height }
}

fn draw_overlay(frame: &mut Frame, app: &App) {
    let area = frame.area();
    match &app.overlay {
        Overlay::None => {}
        Overlay::Help => {
            let lines: Vec<Line> = KEYS.iter().map(|(key, what)| Line::from(format!(" {key:<10} {what}"))).collect();
            let popup = centered(area, 76, lines.len() as u16 + 2);
            frame.render_widget(Clear, popup);
            frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(" Keys (Esc closes) ")), popup);
        }
        Overlay::Confirm(confirm) => {
            let popup = centered(area, 64, 7);
            let text = vec![Line::from(confirm.question.clone()), Line::from(""), Line::from("[y] yes    [n] no")];
            frame.render_widget(Clear, popup);
            let block = Block::bordered().title(" Are you sure? ").border_style(Style::new().fg(Color::Yellow));
            frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }).block(block), popup);
        }
        Overlay::History { stem, selected } => super::panels::history(frame, app, stem, *selected, centered(area, 78, 20)),
        Overlay::Fleet => super::panels::fleet(frame, app, centered(area, 78, 20)),
        Overlay::Changesets => super::panels::changesets(frame, app, centered(area, 78, 20)),
    }
}
