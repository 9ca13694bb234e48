//! `b2m create-changeset`, `b2m execute-changeset`, `b2m changesets`.

use crate::changeset::{self, Kind, create};
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

/// `b2m changesets [--pending]`.
pub fn list(ctx: &Context, pending_only: bool) -> Result<ExitStatus> {
    let mut rows = crate::engine::changesets::list(ctx)?;
    if pending_only {
        rows.retain(crate::engine::changesets::Row::pending);
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
                let note = r.note();
                vec![r.name.clone(), r.kind.map_or("-", Kind::ext).to_string(), r.state.clone(), note]
            })
            .collect();
        table(&["CHANGESET", "KIND", "STATE", "NOTE"], &body)
    });
    Ok(ExitStatus::Success)
}
