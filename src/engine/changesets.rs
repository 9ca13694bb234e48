//! What `b2m changesets` lists: each script here and each ledger entry, with its state.

use serde::Serialize;

use super::Context;
use crate::changeset::{self, Kind, ledger};
use crate::error::Result;

/// One changeset: a script here, the ledger's record of it, or both.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `20260101T000000Z-add-index`.
    pub name: String,
    /// Its language.
    pub kind: Option<Kind>,
    /// `pending`, `running`, `done`, `failed`.
    pub state: String,
    /// Where and when it ran, for people.
    pub ran: Option<String>,
    /// The script differs from the one that ran.
    pub edited: bool,
    /// The ledger has it but there is no script here.
    pub script_missing: bool,
}

impl Row {
    /// Whether it has yet to run to the end.
    pub fn pending(&self) -> bool {
        self.state != "done"
    }

    /// What people read beside it.
    pub fn note(&self) -> String {
        let mut note = self.ran.clone().unwrap_or_default();
        if self.edited {
            note.push_str("; EDITED after it ran");
        }
        if self.script_missing {
            note.push_str("; no script here");
        }
        note
    }
}

/// Every changeset, by name (the ledger costs a listing and a read per entry).
pub fn list(ctx: &Context) -> Result<Vec<Row>> {
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
    Ok(rows)
}
