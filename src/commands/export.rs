//! `b2m export DB [--version N] FILE`: in a project with its settings, or anywhere with `--remote`
//! (or `B2M_REMOTE`) and no local state at all.

use std::path::{Path, PathBuf};

use crate::cli::BucketArgs as Bucket;
use crate::engine::Context;
use crate::error::{Error, ExitStatus, Result};
use crate::output::{Output, human_bytes};
use crate::settings::Settings;

/// Runs the export.
pub fn run(start: &Path, db: &str, file: &Path, version: Option<u64>, bucket: Bucket, out: &Output) -> Result<ExitStatus> {
    let scratch = tempfile::tempdir().map_err(|e| Error::io("cannot create a temp folder in", std::env::temp_dir(), e))?;
    let settings = settings(start, bucket, scratch.path())?;
    let ctx = Context::open(settings, out.clone())?;
    let dest = if file.is_absolute() { file.to_path_buf() } else { start.join(file) };
    let exported = crate::engine::export::export(&ctx, db, version, &dest)?;
    out.report(&exported, || {
        format!(
            "wrote `{}` v{} to `{}` ({} read, sha256 {} checked)",
            exported.name,
            exported.version,
            exported.file,
            human_bytes(exported.bytes),
            &exported.sha256[..12]
        )
    });
    Ok(ExitStatus::Success)
}

/// The project's settings; with `--remote`, or outside any project, settings for that bucket
/// alone, whose state lives in `scratch` and goes with it.
fn settings(start: &Path, bucket: Bucket, scratch: &Path) -> Result<Settings> {
    let url = bucket.remote.clone().or_else(|| std::env::var("B2M_REMOTE").ok().filter(|u| !u.is_empty()));
    if bucket.remote.is_none() {
        match Settings::load(start) {
            Ok(settings) => return Ok(settings),
            Err(e) if url.is_none() => {
                return Err(Error::config_hint(
                    format!("{e}"),
                    "outside a project, name the bucket: `b2m export DB FILE --remote s3://bucket/prefix`",
                ));
            }
            Err(_) => {}
        }
    }
    let quote = |s: &str| toml_edit::Value::from(s).to_string();
    let mut text = format!("[remote]\nurl = {}\n", quote(url.as_deref().unwrap_or_default()));
    for (key, value) in [("endpoint", &bucket.endpoint), ("region", &bucket.region)] {
        if let Some(value) = value {
            text.push_str(&format!("{key} = {}\n", quote(value)));
        }
    }
    Settings::from_text(&PathBuf::from(scratch), &text)
}
