//! `b2m upload`, `b2m download`, `b2m fetch-db-toml`.

use serde::Serialize;

use crate::engine::{Context, fetch, fleet, history, merge, publish, restore, rollback};
use crate::error::{ExitStatus, Result};

/// `b2m upload DB`.
pub fn upload(ctx: &Context, db: &str) -> Result<ExitStatus> {
    let _lock = ctx.lock()?;
    let published = publish::upload(ctx, db)?;
    ctx.out.result(&published, String::new);
    Ok(ExitStatus::Success)
}

/// `b2m download DB [--force]`.
pub fn download(ctx: &Context, db: &str, force: bool) -> Result<ExitStatus> {
    let _lock = ctx.lock()?;
    let fetched = fetch::download(ctx, db, force)?;
    ctx.out.result(&fetched, String::new);
    Ok(ExitStatus::Success)
}

/// `b2m download --all`.
pub fn download_all(ctx: &Context) -> Result<ExitStatus> {
    let _lock = ctx.lock()?;
    let done = crate::engine::preflight::download_all(ctx)?;
    ctx.out.result(&done, String::new);
    Ok(ExitStatus::Success)
}

#[derive(Serialize)]
struct ManifestWritten {
    path: String,
}

/// `b2m fetch-db-toml`.
pub fn fetch_db_toml(ctx: &Context) -> Result<ExitStatus> {
    let _lock = ctx.lock()?;
    let path = fetch::fetch_manifest(ctx)?;
    ctx.out.result(&ManifestWritten { path: path.display().to_string() }, String::new);
    Ok(ExitStatus::Success)
}

/// `b2m restore DB [FILE]`.
pub fn restore(ctx: &Context, db: &str, file: Option<&std::path::Path>) -> Result<ExitStatus> {
    let _lock = ctx.lock()?;
    let restored = restore::restore(ctx, db, file)?;
    ctx.out.result(&restored, String::new);
    Ok(ExitStatus::Success)
}

/// `b2m merge DB`.
pub fn merge(ctx: &Context, db: &str) -> Result<ExitStatus> {
    let _lock = ctx.lock()?;
    let merged = merge::merge(ctx, db)?;
    ctx.out.result(&merged, String::new);
    Ok(ExitStatus::Success)
}

/// `b2m history DB`.
pub fn history(ctx: &Context, db: &str) -> Result<ExitStatus> {
    let history = history::history(ctx, db)?;
    ctx.out.result(&history, || {
        let rows: Vec<Vec<String>> = history
            .versions
            .iter()
            .map(|v| {
                let by = match (&v.changeset, v.made_by.as_str()) {
                    (Some(c), _) => format!("changeset {c}"),
                    (None, made) => made.to_string(),
                };
                vec![
                    format!("v{}{}", v.version, if v.current { " *" } else { "" }),
                    v.sha256[..12.min(v.sha256.len())].to_string(),
                    crate::output::human_bytes(v.size),
                    v.created_at.clone(),
                    v.created_by.clone(),
                    by,
                    v.parent.map_or_else(|| "-".into(), |p| format!("v{p}")),
                    if v.schema_changed { "schema changed".into() } else { String::new() },
                ]
            })
            .collect();
        let mut text = crate::output::table(&["VERSION", "SHA256", "SIZE", "CREATED", "BY", "MADE BY", "PARENT", "NOTE"], &rows);
        text.push_str("* = what the bucket's db.toml names\n");
        if let Some(t) = &history.trimmed {
            text.push_str(&format!("versions up to v{} were trimmed by `b2m gc --keep {}` on {} ({})\n", t.below, t.keep, t.at, t.by));
        } else if !history.complete {
            text.push_str("the history goes on, but an older version's metadata is missing\n");
        }
        if history.orphans > 0 {
            text.push_str(&format!("{} object(s) were never published (`b2m gc` removes them)\n", history.orphans));
        }
        text.push_str(&imported_lines(&history));
        text
    });
    Ok(ExitStatus::Success)
}

/// What the history table cannot show of the versions `b2m import` made: where each came from,
/// and the original b2m's events for it, oldest first.
fn imported_lines(history: &history::History) -> String {
    let mut text = String::new();
    for v in &history.versions {
        let Some(imported) = &v.imported else { continue };
        text.push_str(&format!(
            "v{} was imported from the original b2m's `{}` ({}) on {} by {}\n",
            v.version, imported.from, imported.root, imported.at, imported.by
        ));
        for e in &imported.events {
            let size = u64::try_from(e.size_bytes).map(crate::output::human_bytes).unwrap_or_default();
            text.push_str(&format!("  #{} {} {} {} {size}\n", e.sequence_id, e.datetime, e.who(), e.status));
        }
        for note in &imported.notes {
            text.push_str(&format!("  note: {note}\n"));
        }
    }
    text
}

/// `b2m rollback DB [--to N]`.
pub fn rollback(ctx: &Context, db: &str, to: Option<u64>) -> Result<ExitStatus> {
    let _lock = ctx.lock()?;
    let done = rollback::rollback(ctx, db, to)?;
    ctx.out.result(&done, String::new);
    Ok(ExitStatus::Success)
}

/// `b2m fleet`.
pub fn fleet(ctx: &Context) -> Result<ExitStatus> {
    let servers = fleet::fleet(ctx)?;
    ctx.out.result(&servers, || {
        if servers.is_empty() {
            return "no server has run `b2m preflight` yet".into();
        }
        // Two checkouts on one host share a name: `host:folder` tells them apart.
        let shared = |name: &str| servers.iter().filter(|s| s.record.name == name).count() > 1;
        let rows: Vec<Vec<String>> = servers
            .iter()
            .map(|s| {
                let dbs: Vec<String> = s
                    .record
                    .dbs
                    .iter()
                    .zip(&s.behind)
                    .map(|(d, (_, behind))| {
                        if *behind > 0 {
                            format!("{} v{} (BEHIND {behind})", d.stem, d.version)
                        } else {
                            format!("{} v{}", d.stem, d.version)
                        }
                    })
                    .collect();
                let name = if shared(&s.record.name) { format!("{}:{}", s.record.name, s.record.root) } else { s.record.name.clone() };
                vec![
                    name,
                    s.record.at.clone(),
                    dbs.join(", "),
                    s.record.last_changeset.clone().unwrap_or_else(|| "-".into()),
                    s.record.b2m_version.clone(),
                ]
            })
            .collect();
        crate::output::table(&["SERVER", "SEEN", "RUNS", "LAST CHANGESET", "B2M"], &rows)
    });
    Ok(ExitStatus::Success)
}
