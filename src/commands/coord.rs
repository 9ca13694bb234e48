//! `b2m lock`, `b2m unlock`, `b2m doctor`, `b2m gc`.

use serde::Serialize;

use crate::coord::Protocol;
use crate::coord::doctor::{self, Conditional};
use crate::coord::lease::LeaseInfo;
use crate::engine::{Context, gc, resolve_db};
use crate::error::Result;

fn stem_of(ctx: &Context, db: &str) -> Result<String> {
    let local = ctx.local_manifest()?.entries();
    let remote = crate::engine::remote::read_manifest(ctx.store.as_ref())?.map(|m| m.manifest.entries()).unwrap_or_default();
    resolve_db(db, &local, &remote)
}

/// `b2m lock DB`.
pub fn lock(ctx: &Context, db: &str) -> Result<u8> {
    let stem = stem_of(ctx, db)?;
    let info = ctx.leases()?.acquire_manual(&stem)?;
    ctx.out.info(&format!("locked `{stem}` until `b2m unlock {stem}` (expires {})", info.expires_at));
    ctx.out.result(&info, String::new);
    Ok(0)
}

#[derive(Serialize)]
struct Unlocked {
    name: String,
    removed: Vec<LeaseInfo>,
}

/// `b2m unlock DB [--force]`.
pub fn unlock(ctx: &Context, db: &str, force: bool) -> Result<u8> {
    let stem = stem_of(ctx, db)?;
    let removed = ctx.leases()?.unlock(&stem, force)?;
    for lease in &removed {
        ctx.out.info(&format!("removed the lease on `{stem}` held by {}", lease.describe()));
    }
    if removed.is_empty() {
        ctx.out.info(&format!("`{stem}` had no lease"));
    }
    ctx.out.result(&Unlocked { name: stem, removed }, String::new);
    Ok(0)
}

#[derive(Serialize)]
struct DoctorReport {
    #[serde(flatten)]
    probe: doctor::Probe,
    locking: String,
    auto_uses: String,
}

/// `b2m doctor`.
pub fn doctor(ctx: &Context) -> Result<u8> {
    let probe = doctor::probe(&ctx.store)?;
    ctx.state.set_doctor_finding(&ctx.settings.remote.url, probe.conditional.as_str())?;
    let auto_uses = match ctx.auto_protocol()? {
        Protocol::Conditional => "conditional",
        Protocol::Lease => "lease",
    };
    let locking = format!("{:?}", ctx.settings.remote.locking).to_lowercase();
    let report = DoctorReport { probe, locking, auto_uses: auto_uses.into() };
    ctx.out.result(&report, || {
        let p = &report.probe;
        let skew = p.clock_skew_secs.map_or_else(|| "unknown".to_string(), |s| format!("{s:+.1} s"));
        let conditional = match p.conditional {
            Conditional::Unsupported => "not supported (refused)".to_string(),
            Conditional::Ignored => "accepted but ignored".to_string(),
            Conditional::NonAtomic => format!("checked but not atomic (winners per race: {:?})", p.race_winners),
            Conditional::Atomic => format!("atomic (one winner in each of {} races)", p.race_winners.len()),
        };
        let warn = if p.clock_skew_secs.is_some_and(|s| s.abs() > 30.0) { "  ← fix this machine's clock (NTP): leases compare times" } else { "" };
        format!(
            "bucket       {} (reachable, credentials accepted, {} objects under the prefix)\nclock skew   {skew}{warn}\nconditional  {conditional}\nlocking      {} → {} (recorded in .b2m/)\nprobe took   {} ms",
            p.location, p.objects, report.locking, if report.locking == "auto" { report.auto_uses.as_str() } else { report.locking.as_str() }, p.millis
        )
    });
    Ok(0)
}

/// `b2m gc [--dry-run]`.
pub fn gc(ctx: &Context, dry_run: bool) -> Result<u8> {
    let _lock = if dry_run { None } else { Some(ctx.lock()?) };
    let found = gc::find_garbage(ctx)?;
    if !dry_run {
        gc::remove(ctx, &found)?;
    }
    ctx.out.result(&found, || {
        if found.is_empty() {
            return "nothing to collect".into();
        }
        let verb = if dry_run { "would remove" } else { "removed" };
        found.iter().map(|g| format!("{verb} {}  ({})", g.key, g.reason)).collect::<Vec<_>>().join("\n")
    });
    Ok(0)
}
