//! The panels drawn over the table: a database's history, the fleet, the changesets.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Clear, Paragraph, Row, Table, TableState};

use super::app::App;
use crate::output::human_bytes;

fn header(cells: &[&'static str]) -> Row<'static> {
    Row::new(cells.to_vec()).style(Style::new().add_modifier(Modifier::BOLD))
}

fn waiting(frame: &mut Frame, area: Rect, title: String) {
    frame.render_widget(Paragraph::new("reading the bucket…").block(Block::bordered().title(title)), area);
}

/// The history of `stem`, newest first, with the version `selected`.
pub fn history(frame: &mut Frame, app: &App, stem: &str, selected: usize, area: Rect) {
    frame.render_widget(Clear, area);
    let title = format!(" History of {stem} (b: roll back to the selected version · Esc closes) ");
    let Some(history) = app.history.as_ref().filter(|h| h.name == stem) else { return waiting(frame, area, title) };
    let rows: Vec<Row> = history
        .versions
        .iter()
        .map(|v| {
            let made = v.changeset.as_ref().map_or_else(|| v.made_by.clone(), |c| format!("changeset {c}"));
            Row::new(vec![
                format!("v{}{}", v.version, if v.current { " *" } else { "" }),
                v.created_at.get(..16).unwrap_or(&v.created_at).replace('T', " "),
                v.created_by.clone(),
                made,
                human_bytes(v.size),
            ])
        })
        .collect();
    let widths = [Constraint::Length(6), Constraint::Length(16), Constraint::Fill(2), Constraint::Fill(2), Constraint::Length(10)];
    let table = Table::new(rows, widths)
        .header(header(&["VER", "WHEN (UTC)", "BY", "MADE BY", "SIZE"]))
        .block(Block::bordered().title(title))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    frame.render_stateful_widget(table, area, &mut TableState::default().with_selected(Some(selected)));
}

/// Every server that ran `b2m preflight`.
pub fn fleet(frame: &mut Frame, app: &App, area: Rect) {
    frame.render_widget(Clear, area);
    let title = " Fleet (Esc closes) ".to_string();
    let Some(servers) = &app.fleet else { return waiting(frame, area, title) };
    let rows: Vec<Row> = servers
        .iter()
        .map(|s| {
            let dbs: Vec<String> = s.record.dbs.iter().map(|d| format!("{} v{}", d.stem, d.version)).collect();
            Row::new(vec![
                super::view::server_name(servers, s),
                dbs.join(", "),
                super::view::behind_text(s),
                s.record.at.get(..16).unwrap_or(&s.record.at).replace('T', " "),
            ])
        })
        .collect();
    let widths = [Constraint::Fill(2), Constraint::Fill(3), Constraint::Fill(2), Constraint::Length(16)];
    let table = Table::new(rows, widths).header(header(&["SERVER", "RUNS", "STATE", "LAST START"])).block(Block::bordered().title(title));
    frame.render_widget(table, area);
}

/// Every changeset, pending or run.
pub fn changesets(frame: &mut Frame, app: &App, area: Rect) {
    frame.render_widget(Clear, area);
    let title = " Changesets (Esc closes) ".to_string();
    let Some(all) = &app.changesets else { return waiting(frame, area, title) };
    let rows: Vec<Row> = all.iter().map(|c| Row::new(vec![c.name.clone(), c.state.clone(), c.note()])).collect();
    let widths = [Constraint::Fill(3), Constraint::Length(8), Constraint::Fill(3)];
    let table = Table::new(rows, widths).header(header(&["CHANGESET", "STATE", "NOTE"])).block(Block::bordered().title(title));
    frame.render_widget(table, area);
}
