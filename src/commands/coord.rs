//! `b2m lock`, `b2m unlock`, `b2m doctor`, `b2m gc`.

use serde::Serialize;

use crate::coord::doctor::{self, Conditional};
use crate::coord::lease::{CLOCK_ALLOWANCE, LeaseInfo};
use crate::coord::protocol::{self, BucketRecord, Protocol};
use crate::engine::{Context, gc, resolve_db};
use crate::error::{ExitStatus, Result};

fn stem_of(ctx: &Context, db: &str) -> Result<String> {
    let local = ctx.local_manifest()?;
    let remote = crate::engine::remote::read_manifest(ctx.store.as_ref())?.map(|m| m.manifest.entries()).unwrap_or_default();
    resolve_db(db, &local, &remote)
}

/// `b2m lock DB`.
pub fn lock(ctx: &Context, db: &str) -> Result<ExitStatus> {
    let stem = stem_of(ctx, db)?;
    let info = ctx.leases().acquire_manual(&stem)?;
    ctx.out.info(&format!("locked `{stem}` until `b2m unlock {stem}` (expires {})", info.expires_at));
    ctx.out.info(&format!(
        "everyone waits for it, you too; to publish under this lock, run b2m with `B2M_LEASE_TOKEN={}` in its environment",
        info.id
    ));
    ctx.out.result(&info, String::new);
    Ok(ExitStatus::Success)
}

#[derive(Serialize)]
struct Unlocked {
    name: String,
    removed: Vec<LeaseInfo>,
}

/// `b2m unlock DB [--force]`.
pub fn unlock(ctx: &Context, db: &str, force: bool) -> Result<ExitStatus> {
    let stem = stem_of(ctx, db)?;
    let removed = ctx.leases().unlock(&stem, force)?;
    for lease in &removed {
        ctx.out.info(&format!("removed the lease on `{stem}` held by {}", lease.describe()));
    }
    if removed.is_empty() {
        ctx.out.info(&format!("`{stem}` had no lease"));
    }
    ctx.out.result(&Unlocked { name: stem, removed }, String::new);
    Ok(ExitStatus::Success)
}

#[derive(Serialize)]
struct DoctorReport {
    #[serde(flatten)]
    probe: doctor::Probe,
    /// The protocol now recorded in the bucket's `bucket.json`.
    protocol: Protocol,
    /// What `remote.locking` says here.
    locking: String,
    /// Whether `remote.locking` agrees with the bucket (`auto` always does).
    locking_agrees: bool,
}

/// `b2m doctor`: probes the bucket and records in its `bucket.json` the protocol every machine
/// follows (conditional only where every race had exactly one winner).
pub fn doctor(ctx: &Context) -> Result<ExitStatus> {
    let probe = doctor::probe(&ctx.store)?;
    let protocol = if probe.conditional == Conditional::Atomic { Protocol::Conditional } else { Protocol::Lease };
    let record = BucketRecord {
        protocol,
        conditional_writes: probe.conditional,
        race_winners: probe.race_winners.clone(),
        versioning: probe.retention.versioning.clone(),
        recorded_at: crate::util::now_rfc3339(),
        recorded_by: crate::util::user_at_host(),
        b2m_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    protocol::write(ctx.store.as_ref(), &record)?;
    let locking_agrees = protocol::resolve(ctx.settings.remote.locking, Some(&record), ctx.store.location()).is_ok();
    let locking = format!("{:?}", ctx.settings.remote.locking).to_lowercase();
    let report = DoctorReport { probe, protocol, locking, locking_agrees };
    ctx.out.result(&report, || {
        let p = &report.probe;
        let skew = p.clock_skew_secs.map_or_else(|| "unknown".to_string(), |s| format!("{s:+.1} s"));
        let conditional = match p.conditional {
            Conditional::Unsupported => "not supported (refused)".to_string(),
            Conditional::Ignored => "accepted but ignored".to_string(),
            Conditional::NonAtomic => format!("checked but not atomic (winners per race: {:?})", p.race_winners),
            Conditional::Atomic => format!("atomic (one winner in each of {} races)", p.race_winners.len()),
        };
        // Leases tolerate CLOCK_ALLOWANCE between any two machines: each may be off by half.
        let limit = CLOCK_ALLOWANCE.as_secs_f64() / 2.0;
        let warn = if p.clock_skew_secs.is_some_and(|s| s.abs() > limit) {
            format!("  ← fix this machine's clock (NTP): leases allow {limit:.0} s each way")
        } else {
            String::new()
        };
        let versioning = match p.retention.versioning.as_deref() {
            Some("Enabled") => "enabled: deleted and overwritten objects are kept as hidden versions; b2m deletes its own leases and orphans by version id",
            Some("Suspended") => "suspended: versions made before suspension are kept",
            _ => "off (or not reported)",
        };
        let uploads = match &p.multipart_answer {
            None => "in parts (multipart)".to_string(),
            Some(root) => format!(
                "one PUT per object, up to 5 GiB: CreateMultipartUpload answers `<{root}>`, not S3's `<InitiateMultipartUploadResult>`"
            ),
        };
        let lifecycle = if p.retention.lifecycle.is_empty() { "no rules".to_string() } else { p.retention.lifecycle.join("; ") };
        let agrees = if report.locking_agrees {
            String::new()
        } else {
            "  ← contradicts the bucket: set `remote.locking = \"auto\"` in b2m.toml".to_string()
        };
        format!(
            "bucket       {} (reachable, credentials accepted, {} objects under the prefix)\nclock skew   {skew}{warn}\nconditional  {conditional}\nprotocol     {} (recorded in the bucket's bucket.json; every machine follows it)\nlocking      {}{agrees}\nuploads      {uploads}\nversioning   {versioning}\nlifecycle    {lifecycle}\nprobe took   {} ms",
            p.location, p.objects, report.protocol.as_str(), report.locking, p.millis
        )
    });
    Ok(if report.locking_agrees { ExitStatus::Success } else { ExitStatus::Error })
}

/// `b2m gc [--keep N] [--dry-run]`.
pub fn gc(ctx: &Context, dry_run: bool, keep: Option<u64>) -> Result<ExitStatus> {
    let _lock = if dry_run { None } else { Some(ctx.lock()?) };
    let collected = gc::collect(ctx, dry_run, keep)?;
    ctx.out.result(&collected, || {
        let verb = if dry_run { "would remove" } else { "removed" };
        let mut lines: Vec<String> = collected.removed.iter().map(|g| format!("{verb} {}  ({})", g.key, g.reason)).collect();
        lines.extend(collected.notes.iter().map(|n| format!("note: {n}")));
        if collected.removed.is_empty() {
            lines.push("nothing to collect".into());
        } else {
            lines.push(format!("{} {} object(s), {}", verb, collected.removed.len(), crate::output::human_bytes(collected.bytes)));
        }
        lines.join("\n")
    });
    Ok(ExitStatus::Success)
}
