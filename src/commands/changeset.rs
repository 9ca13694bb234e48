//! `b2m create-changeset`, `b2m execute-changeset`, `b2m changesets`.

use serde::Serialize;

use crate::changeset::{self, Kind, create, ledger};
use crate::cli::ChangesetKind;
use crate::engine::Context;
use crate::engine::runner;
use crate::error::{ExitStatus, Result};
use crate::output::table;

/// `b2m create-changeset PHRASE [--kind]`.
pub fn create(ctx: &Context, phrase: &str, kind: ChangesetKind) -> Result<ExitStatus> {
    let kind = match kind {
        ChangesetKind::Py => Kind::Py,
        ChangesetKind::Sh => Kind::Sh,
        ChangesetKind::Sql => Kind::Sql,
    };
    let created = create::create(&ctx.settings.changesets, phrase, kind)?;
    ctx.out.result(&created, || format!("created `{}`", created.path));
    Ok(ExitStatus::Success)
}

/// `b2m execute-changeset NAME [--retry]`.
pub fn execute(ctx: &Context, name: &str, retry: bool) -> Result<ExitStatus> {
    let lock = ctx.lock()?;
    let script = changeset::resolve(&ctx.settings.changesets, name)?;
    let executed = runner::execute(ctx, &lock, &script, retry)?;
    ctx.out.result(&executed, String::new);
    Ok(ExitStatus::Success)
}

/// One row of `b2m changesets`.
#[derive(Serialize)]
struct Row {
    name: String,
    kind: Option<Kind>,
    state: String,
    /// Where and when it ran, for people.
    ran: Option<String>,
    /// The script differs from the one that ran.
    edited: bool,
    /// The ledger has it but there is no script here.
    script_missing: bool,
}

/// `b2m changesets [--pending]`.
pub fn list(ctx: &Context, pending_only: bool) -> Result<ExitStatus> {
    let scripts = changeset::scripts(&ctx.settings.changesets)?;
    let entries = ledger::all(ctx.store.as_ref())?;
    let mut rows = Vec::new();
    for s in &scripts {
        let entry = entries.iter().find(|e| e.name == s.name);
        let edited = match entry {
            Some(e) if e.state == ledger::State::Done => changeset::script_sha256(&s.path)? != e.script_sha256,
            _ => false,
        };
        rows.push(Row {
            name: s.name.clone(),
            kind: Some(s.kind),
            state: entry.map_or("pending", |e| e.state.as_str()).to_string(),
            ran: entry.map(ledger::Entry::describe),
            edited,
            script_missing: false,
        });
    }
    for e in entries.iter().filter(|e| !scripts.iter().any(|s| s.name == e.name)) {
        rows.push(Row {
            name: e.name.clone(),
            kind: Some(e.kind),
            state: e.state.as_str().to_string(),
            ran: Some(e.describe()),
            edited: false,
            script_missing: true,
        });
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    if pending_only {
        rows.retain(|r| r.state != "done");
    }
    ctx.out.result(&rows, || {
        if rows.is_empty() {
            return if pending_only {
                "no pending changesets".into()
            } else {
                "no changesets yet: `b2m create-changeset PHRASE` makes one".into()
            };
        }
        let body: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let mut note = r.ran.clone().unwrap_or_default();
                if r.edited {
                    note.push_str("; EDITED after it ran");
                }
                if r.script_missing {
                    note.push_str("; no script here");
                }
                vec![r.name.clone(), r.kind.map_or("-", Kind::ext).to_string(), r.state.clone(), note]
            })
            .collect();
        table(&["CHANGESET", "KIND", "STATE", "NOTE"], &body)
    });
    Ok(ExitStatus::Success)
}
