//! `b2m import`: a project and bucket of the original b2m moved into b2m's layout (docs/import.md).
//! It runs before b2m's settings are loaded, since the project's `b2m.toml` may still be the
//! original's: the translation is checked as b2m's settings first, and written only once the
//! original's bucket holds no lock and every name in it can be imported.

use std::path::Path;

use serde::Serialize;

use crate::engine::Context;
use crate::engine::import::config::{self, ConfigReport, Flags, ProjectConfig};
use crate::engine::import::{self, DbRow, LocalRow, Original, Outcome};
use crate::error::{Error, ExitStatus, Result};
use crate::output::Output;
use crate::settings::Settings;

/// What `b2m import` did (`--json`).
#[derive(Debug, Serialize)]
pub struct Report {
    /// The original's root (`s3://bucket/path`).
    pub from: String,
    /// b2m's bucket.
    pub remote: String,
    /// What became of `b2m.toml`.
    pub config: ConfigReport,
    /// Every original database file.
    pub dbs: Vec<DbRow>,
    /// The databases the local db.toml names.
    pub local: Vec<LocalRow>,
    /// About the run as a whole.
    pub warnings: Vec<String>,
    /// False when a database or a local step failed (exit 1).
    pub ok: bool,
}

/// `b2m import [--remote URL] [--endpoint URL] [--region R]` in the project around `start`.
pub(super) fn run(start: &Path, flags: Flags, out: &Output) -> Result<ExitStatus> {
    let root = crate::settings::find_root(start)?;
    let config = config::read(&root, &flags)?;
    let settings = Settings::from_text(&root, &config.text)?;
    let result = import_into(&root, &config, &settings, out);
    super::record(&settings, out, &result);
    if result.is_ok() {
        announce(&settings, out);
    }
    result
}

/// The import itself: refusals first (a held lock, names to rename), then the configuration is
/// written, then the databases are imported under the local lock.
fn import_into(root: &Path, config: &ProjectConfig, settings: &Settings, out: &Output) -> Result<ExitStatus> {
    let original = Original::open(&settings.remote, &config.root)?;
    import::refuse_if_locked(&original)?;
    let survey = import::survey(&original)?;
    config::write(root, config)?;
    if let Some(folder) = settings.remote.url.strip_prefix("file://") {
        std::fs::create_dir_all(folder).map_err(|e| Error::io("cannot create", folder, e))?;
    }
    let ctx = Context::open(settings.clone(), out.clone())?;
    let _lock = ctx.lock()?;
    let done = import::import(&ctx, &original, &survey)?;
    let ok = done.dbs.iter().all(|r| r.outcome != Outcome::Failed) && done.local.iter().all(|r| r.outcome != import::LocalOutcome::Failed);
    for error in done.dbs.iter().filter_map(|r| r.error.as_ref().filter(|_| r.outcome == Outcome::Failed)) {
        out.info(&format!("not imported: {error}"));
    }
    let report = Report {
        from: original.url.clone(),
        remote: ctx.store.location().to_string(),
        config: config.report.clone(),
        dbs: done.dbs,
        local: done.local,
        warnings: done.warnings,
        ok,
    };
    out.report(&report, || human(&report));
    Ok(if ok { ExitStatus::Success } else { ExitStatus::Failure })
}

/// The report for people.
fn human(report: &Report) -> String {
    let mut text = format!("the original b2m's `{}` → b2m's `{}`\n", report.from, report.remote);
    let c = &report.config;
    if c.translated {
        text.push_str(&format!("`{}` translated (the original is kept as `{}`)", c.file, c.kept_as));
        if !c.commented_out.is_empty() {
            text.push_str(&format!("; kept as comments, b2m does not read them: {}", c.commented_out.join(", ")));
        }
        text.push_str("\ncredentials: set `B2M_ACCESS_KEY_ID` and `B2M_SECRET_ACCESS_KEY` (b2m does not read rclone's)\n");
    }
    let rows: Vec<Vec<String>> = report
        .dbs
        .iter()
        .map(|r| {
            let outcome = serde_json::to_value(r.outcome).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            let mut note: Vec<String> = r.error.iter().cloned().collect();
            if r.events > 0 {
                note.push(format!("{} event(s) of the original kept", r.events));
            }
            note.extend(r.notes.iter().cloned());
            vec![r.name.clone(), format!("v{}", r.version), r.from.clone(), outcome, note.join("; ")]
        })
        .collect();
    text.push_str(&crate::output::table(&["DB", "VERSION", "FROM", "OUTCOME", "NOTE"], &rows));
    for local in &report.local {
        text.push_str(&format!("local `{}` ({}): {}\n", local.file, local.key, local.detail));
    }
    for warning in &report.warnings {
        text.push_str(&format!("warning: {warning}\n"));
    }
    text
}

/// Announces each database whose current version the import published (one line each, to
/// `notify.webhook` — the original's `discord` — and `notify.command`).
fn announce(settings: &Settings, out: &Output) {
    let Some(done) = out.last_result() else { return };
    let imported: Vec<&serde_json::Value> = done["dbs"].as_array().into_iter().flatten().filter(|r| r["outcome"] == "imported").collect();
    let mut stems: Vec<&str> = imported.iter().filter_map(|r| r["name"].as_str()).collect();
    stems.dedup();
    for stem in stems {
        let of_stem: Vec<&&serde_json::Value> = imported.iter().filter(|r| r["name"] == stem).collect();
        let (first, last) = (of_stem.first(), of_stem.last());
        let published = crate::notify::Published {
            stem: stem.to_string(),
            from: first.and_then(|r| r["parent"].as_u64()),
            to: last.and_then(|r| r["version"].as_u64()).unwrap_or(0),
            made_by: "import".into(),
            size: None,
        };
        crate::notify::send(settings, out, &crate::notify::Event::published(settings, published));
    }
}
