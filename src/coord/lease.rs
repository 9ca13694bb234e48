//! Leases: one holder at a time per database (and one for the manifest), across machines.
//!
//! One protocol for every bucket and every machine, built on plain PUT/GET/LIST/DELETE (Backblaze
//! B2 has no conditional writes): each contender writes its own `locks/<name>/<id>.json`, then
//! lists `locks/<name>/`. It holds the lease when it sees no other live lease object; otherwise it
//! removes its own and tries again later. Under strong read-after-write and list consistency two
//! contenders can never both see themselves alone: whichever listed second wrote before it listed,
//! and so was seen. Conditional writes, where the bucket's record says they are atomic, only add a
//! guard on commits (see `coord::protocol`); they never replace the lease. `docs/coordination.md`
//! has the whole argument, including why every write under a lease lands before the lease could be
//! taken over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Refusal, Result};
use crate::layout;
use crate::output::Output;
use crate::settings::LeaseConfig;
use crate::store::{Condition, PutOutcome, Store};

/// Clocks of two machines may disagree by this much before a lease counts as expired; `b2m
/// doctor` warns when this machine's clock is further than half of it from the bucket's.
pub const CLOCK_ALLOWANCE: Duration = Duration::from_secs(10);
/// A manual `b2m lock` lasts this long unless released.
const MANUAL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest a write guarded by a lease may take, retries included.
const MAX_GUARDED_WRITE: Duration = Duration::from_secs(30);

/// What a lease object says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaseInfo {
    /// Unique id of this lease (also its token).
    pub id: String,
    /// `user@host`.
    pub owner: String,
    /// The host name, for people.
    pub host: String,
    /// This boot of this kernel and the pid namespace, to tell whether `pid` can be looked up
    /// here: host names repeat across containers and machines, these do not.
    #[serde(default)]
    pub machine: String,
    /// The holder's process id (`None` for a manual `b2m lock`, which outlives its process).
    pub pid: Option<u32>,
    /// The holder's process start time (clock ticks since boot), against pid reuse.
    #[serde(default)]
    pub pid_start: Option<u64>,
    /// `upload`, `commit`, `lock`…
    pub operation: String,
    /// `trying` while contending, `held` once won.
    pub state: String,
    /// RFC 3339.
    pub acquired_at: String,
    /// RFC 3339.
    pub expires_at: String,
}

impl LeaseInfo {
    fn expires(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.expires_at).ok().map(|t| t.with_timezone(&Utc))
    }

    /// Whether another machine may count the lease as run out (allowing for clock differences).
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires().is_none_or(|t| t + chrono::Duration::from_std(CLOCK_ALLOWANCE).unwrap_or_default() < now)
    }

    /// Whether the holder is a process on this host that no longer runs. A process we cannot
    /// inspect (another user's under `hidepid`) is alive: only a certain death frees a lease early.
    pub fn holder_is_dead_here(&self) -> bool {
        let Some(pid) = self.pid else { return false };
        if self.machine.is_empty() || self.machine != machine_identity() {
            return false;
        }
        if !process_exists(pid) {
            return true;
        }
        match (process_start(pid), self.pid_start) {
            (Some(now), Some(recorded)) => now != recorded,
            _ => false,
        }
    }

    /// Whether nobody holds this lease any more (expired, or its holder died on this host).
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        self.is_expired(now) || self.holder_is_dead_here()
    }

    /// `alice@build-1 (upload, pid 42, since 12:00:01Z)`.
    pub fn describe(&self) -> String {
        let pid = self.pid.map(|p| format!(", pid {p}")).unwrap_or_default();
        format!("{} ({}{pid}, since {})", self.owner, self.operation, self.acquired_at)
    }
}

/// `<boot id>/<pid namespace>`: where a pid means the same process as here.
fn machine_identity() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let ns = std::fs::read_link("/proc/self/ns/pid").map(|p| p.display().to_string()).unwrap_or_default();
    if boot.trim().is_empty() || ns.is_empty() { String::new() } else { format!("{}/{ns}", boot.trim()) }
}

/// Whether a process with this pid exists here: `kill(pid, 0)` answers even where `/proc` hides
/// other users' processes; only "no such process" means it is gone.
fn process_exists(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else { return true };
    !matches!(rustix::process::test_kill_process(pid), Err(rustix::io::Errno::SRCH))
}

/// Start time of a process in clock ticks since boot, from `/proc`; `None` if it cannot be read.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn new_info(operation: &str, ttl: Duration) -> LeaseInfo {
    let now = Utc::now();
    let manual = ttl == MANUAL_TTL;
    let pid = std::process::id();
    LeaseInfo {
        id: format!("{}-{}", now.format("%Y%m%dT%H%M%S%.6fZ"), uuid::Uuid::new_v4().simple()),
        owner: crate::util::user_at_host(),
        host: crate::util::host_name(),
        machine: machine_identity(),
        pid: (!manual).then_some(pid),
        pid_start: if manual { None } else { process_start(pid) },
        operation: operation.to_string(),
        state: "trying".into(),
        acquired_at: crate::util::now_rfc3339(),
        expires_at: expiry(now, ttl),
    }
}

fn expiry(from: DateTime<Utc>, ttl: Duration) -> String {
    (from + chrono::Duration::from_std(ttl).unwrap_or_default()).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn encode(info: &LeaseInfo) -> Vec<u8> {
    serde_json::to_vec_pretty(info).unwrap_or_default()
}

/// A lease found in the bucket.
#[derive(Debug, Clone)]
pub struct FoundLease {
    /// Its object key.
    pub key: String,
    /// The lease name (a db stem, `_manifest`, `claim-…`).
    pub name: String,
    /// What it says.
    pub info: LeaseInfo,
}

/// Every lease object in the bucket: one LIST, and one GET per lease object listed. Unreadable
/// objects (a probe's, a half-written one) are skipped.
pub fn list_leases(store: &dyn Store) -> Result<Vec<FoundLease>> {
    let mut out = Vec::new();
    for object in store.list(layout::LOCKS)? {
        let Some(name) = layout::lease_name_of(&object.key) else { continue };
        let Some(found) = store.get(&object.key)? else { continue };
        let Ok(info) = serde_json::from_slice::<LeaseInfo>(&found.body) else { continue };
        out.push(FoundLease { key: object.key.clone(), name: name.to_string(), info });
    }
    Ok(out)
}

/// Takes and releases leases on one store.
#[derive(Clone)]
pub struct Leases {
    store: Arc<dyn Store>,
    out: Output,
    config: LeaseConfig,
}

/// A lease we hold; renewed in the background, released when dropped.
pub struct HeldLease {
    inner: Arc<HeldInner>,
    renewer: Option<std::thread::JoinHandle<()>>,
    /// Releases the lease should the command be interrupted (Ctrl-C).
    on_interrupt: Option<crate::interrupt::Registration>,
}

struct HeldInner {
    store: Arc<dyn Store>,
    config: LeaseConfig,
    key: String,
    info: Mutex<LeaseInfo>,
    /// Versions of our lease object our writes made (on a store that keeps versions), oldest first.
    versions: Mutex<Vec<String>>,
    lost: AtomicBool,
    stop: (Mutex<bool>, std::sync::Condvar),
    /// A lease this process acts under by its token: someone else renews and releases it.
    borrowed: bool,
}

enum Attempt {
    Won(HeldLease),
    Busy(Option<LeaseInfo>),
}

fn jitter(max_ms: u64) -> u64 {
    u64::from(uuid::Uuid::new_v4().as_u128() as u32) % max_ms.max(1)
}

fn version_of(outcome: &PutOutcome) -> Option<String> {
    match outcome {
        PutOutcome::Written { version_id, .. } => version_id.clone(),
        PutOutcome::ConditionFailed => None,
    }
}

impl Leases {
    /// Leases on `store`.
    pub fn new(store: Arc<dyn Store>, out: Output, config: LeaseConfig) -> Self {
        Leases { store, out, config }
    }

    /// Takes the lease `name` for `operation`, waiting (and saying for whom) while someone else
    /// holds it; takes over an expired lease, or one whose holder died on this host, at once.
    pub fn acquire(&self, name: &str, operation: &str) -> Result<HeldLease> {
        self.acquire_with(name, operation, self.config.ttl)
    }

    /// `b2m lock`: a lease that outlives this process until `b2m unlock`. Locking again with the
    /// lock's token (`B2M_LEASE_TOKEN`) is a no-op that returns it.
    pub fn acquire_manual(&self, name: &str) -> Result<LeaseInfo> {
        let held = self.acquire_with(name, "lock", MANUAL_TTL)?;
        let info = held.info();
        held.keep();
        Ok(info)
    }

    fn acquire_with(&self, name: &str, operation: &str, ttl: Duration) -> Result<HeldLease> {
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut announced: Option<String> = None;
        loop {
            attempt += 1;
            let holder = match self.try_once(name, operation, ttl)? {
                Attempt::Won(held) => {
                    let ms = started.elapsed().as_secs_f64() * 1e3;
                    tracing::info!(lease = name, attempts = attempt, ms, "lease acquired");
                    return Ok(held);
                }
                Attempt::Busy(holder) => holder,
            };
            if started.elapsed() > self.config.wait {
                let who = holder.map_or_else(|| "other contenders".to_string(), |h| h.describe());
                return Err(Error::refused_as(
                    Refusal::LeaseHeld,
                    format!("the lease on `{name}` is held by {who}; gave up after {} s", self.config.wait.as_secs()),
                    format!("try again later, or run `b2m unlock {name} --force` if you are sure its holder is gone"),
                ));
            }
            match holder {
                Some(h) => {
                    if announced.as_deref() != Some(h.id.as_str()) {
                        self.out.info(&format!("waiting for the lease on `{name}`, held by {}", h.describe()));
                        announced = Some(h.id.clone());
                    }
                    std::thread::sleep(Duration::from_millis(250 + jitter(250)));
                }
                // Only other contenders: back off a random, growing while so one goes alone.
                None => std::thread::sleep(Duration::from_millis(jitter(25 << attempt.min(5)))),
            }
        }
    }

    fn try_once(&self, name: &str, operation: &str, ttl: Duration) -> Result<Attempt> {
        let mut info = new_info(operation, ttl);
        let key = layout::lease_key(name, &info.id);
        let mut versions: Vec<String> = version_of(&self.store.put(&key, &encode(&info), Condition::None)?).into_iter().collect();
        let now = Utc::now();
        let mut busy: Option<Option<LeaseInfo>> = None;
        let mut ours_by_token = None;
        for object in self.store.list(&layout::lease_folder(name))? {
            if object.key == key {
                continue;
            }
            let Some(found) = self.store.get(&object.key)? else { continue };
            let Ok(other) = serde_json::from_slice::<LeaseInfo>(&found.body) else {
                tracing::warn!(key = object.key, "ignoring an unreadable lease object");
                continue;
            };
            if other.is_stale(now) {
                tracing::info!(lease = object.key, holder = other.describe(), "removing a stale lease");
                self.store.purge(&object.key)?;
                continue;
            }
            let held = other.state == "held";
            if held && self.config.token.as_deref() == Some(other.id.as_str()) {
                ours_by_token = Some((object.key.clone(), other));
                continue;
            }
            if held || busy.is_none() {
                busy = Some(held.then_some(other));
            }
        }
        if let Some((token_key, token_info)) = ours_by_token {
            self.store.delete_versions(&key, &versions)?;
            return Ok(Attempt::Won(self.held(token_key, token_info, Vec::new(), true)));
        }
        if let Some(holder) = busy {
            self.store.delete_versions(&key, &versions)?;
            return Ok(Attempt::Busy(holder));
        }
        info.state = "held".into();
        versions.extend(version_of(&self.store.put(&key, &encode(&info), Condition::None)?));
        Ok(Attempt::Won(self.held(key, info, versions, false)))
    }

    fn held(&self, key: String, info: LeaseInfo, versions: Vec<String>, borrowed: bool) -> HeldLease {
        let manual = info.pid.is_none();
        let inner = Arc::new(HeldInner {
            store: self.store.clone(),
            config: self.config.clone(),
            key,
            info: Mutex::new(info),
            versions: Mutex::new(versions),
            lost: AtomicBool::new(false),
            stop: (Mutex::new(false), std::sync::Condvar::new()),
            borrowed,
        });
        let renewer = (!borrowed && !manual).then(|| {
            let inner = inner.clone();
            std::thread::spawn(move || inner.renew_until_stopped())
        });
        let on_interrupt = (!borrowed && !manual).then(|| {
            let inner = Arc::downgrade(&inner);
            crate::interrupt::on_interrupt(move || {
                if let Some(inner) = inner.upgrade() {
                    inner.release();
                }
            })
        });
        HeldLease { inner, renewer, on_interrupt }
    }

    /// The lease `name` this process acts under by its token (`B2M_LEASE_TOKEN`): a changeset's
    /// child acting under its runner's claim. Refused unless the bucket holds it, held and live
    /// (neither expired nor left by a holder that died on this host). Never renewed or released
    /// here; a write guarded by it is bounded by what is left of it, like any lease.
    pub fn borrow(&self, name: &str) -> Result<HeldLease> {
        let not_live = |why: &str| {
            Error::refused(
                format!("the claim `{name}` this process acts under {why}; nothing was published"),
                "its run is over: see `b2m changesets`, and run the changeset again with `b2m execute-changeset`",
            )
        };
        let Some(token) = &self.config.token else { return Err(not_live("has no token")) };
        let key = layout::lease_key(name, token);
        let Some(object) = self.store.get(&key)? else { return Err(not_live("is gone")) };
        let Ok(info) = serde_json::from_slice::<LeaseInfo>(&object.body) else { return Err(not_live("is unreadable")) };
        if info.state != "held" || info.is_stale(Utc::now()) {
            return Err(not_live("is no longer live"));
        }
        Ok(self.held(key, info, Vec::new(), true))
    }

    /// How long a write guarded by all of `leases` may take, retries included, so that it lands
    /// before any of them could be taken over: reads each lease back (it must still be ours), then
    /// takes the shortest time left, less a margin, at most 30 s. Refuses when too little is left.
    pub fn budget(&self, leases: &[&HeldLease]) -> Result<Duration> {
        let mut left = MAX_GUARDED_WRITE + self.config.margin();
        for lease in leases {
            left = left.min(lease.guaranteed()?);
        }
        match left.checked_sub(self.config.margin()) {
            Some(budget) if !budget.is_zero() => Ok(budget),
            _ => Err(Error::refused("a lease was about to expire before the write; nothing was written", "run the command again")),
        }
    }

    /// Removes the leases on `name`: only this user's own unless `force`. Returns what was removed.
    pub fn unlock(&self, name: &str, force: bool) -> Result<Vec<LeaseInfo>> {
        let me = crate::util::user_at_host();
        let mut removed = Vec::new();
        let mut others = Vec::new();
        for lease in list_leases(self.store.as_ref())?.into_iter().filter(|l| l.name == name) {
            if force || lease.info.owner == me || lease.info.is_stale(Utc::now()) {
                self.store.purge(&lease.key)?;
                removed.push(lease.info);
            } else {
                others.push(lease.info);
            }
        }
        if let Some(other) = others.first() {
            return Err(Error::refused_as(
                Refusal::LeaseHeld,
                format!("the lease on `{name}` is held by {}, not by you", other.describe()),
                format!("run `b2m unlock {name} --force` if you are sure"),
            ));
        }
        Ok(removed)
    }
}

/// Why a renewal did not happen.
enum NotRenewed {
    /// The lease is gone, taken over, or expired: never write it back.
    Lost(String),
    /// A passing failure (the network): try again at the next tick, while time is left.
    Transient(Error),
}

impl HeldInner {
    fn renew_until_stopped(&self) {
        let (lock, cvar) = &self.stop;
        let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            // The flag is checked before each wait: a release may come before the first wait.
            if *stopped {
                return;
            }
            let (guard, timeout) = cvar.wait_timeout(stopped, self.config.ttl / 4).unwrap_or_else(|e| e.into_inner());
            stopped = guard;
            if *stopped {
                return;
            }
            if timeout.timed_out() {
                match self.renew() {
                    Ok(()) => {}
                    Err(NotRenewed::Transient(e)) => tracing::warn!(lease = self.key, "could not renew the lease, will retry: {e}"),
                    Err(NotRenewed::Lost(why)) => {
                        tracing::warn!(lease = self.key, "the lease was lost: {why}");
                        self.lost.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            }
        }
    }

    /// Time left before anyone could take the lease over, by our clock: others count it expired
    /// only past `expires_at` + the clock allowance on theirs, which is at most the allowance
    /// ahead of ours.
    fn time_left(&self) -> Duration {
        let info = self.info.lock().unwrap_or_else(|e| e.into_inner());
        info.expires().and_then(|t| (t - Utc::now()).to_std().ok()).unwrap_or_default()
    }

    /// Whether the bucket still holds our lease object. A holder paused past its TTL may have
    /// been taken over (or force-unlocked); it must find out rather than write its lease back.
    fn still_ours(&self) -> Result<bool> {
        let id = self.info.lock().unwrap_or_else(|e| e.into_inner()).id.clone();
        let Some(object) = self.store.get(&self.key)? else { return Ok(false) };
        let Ok(current) = serde_json::from_slice::<LeaseInfo>(&object.body) else { return Ok(false) };
        if current.id != id || current.state != "held" {
            return Ok(false);
        }
        // A borrowed lease whose holder died here is over, though its time has not run out.
        if self.borrowed && current.holder_is_dead_here() {
            return Ok(false);
        }
        // A lease we act under by its token is renewed by its holder: take its latest expiry.
        if self.borrowed {
            *self.info.lock().unwrap_or_else(|e| e.into_inner()) = current;
        }
        Ok(true)
    }

    fn renew(&self) -> Result<(), NotRenewed> {
        if !self.still_ours().map_err(NotRenewed::Transient)? {
            return Err(NotRenewed::Lost("its object is gone or was replaced".into()));
        }
        // The renewal must land while the lease is still ours, or it could resurrect a lease
        // that someone else has taken over meanwhile.
        let within = self.time_left().checked_sub(self.config.margin()).filter(|d| !d.is_zero());
        let Some(within) = within else { return Err(NotRenewed::Lost("it expired before it could be renewed".into())) };
        let mut info = self.info.lock().unwrap_or_else(|e| e.into_inner()).clone();
        info.expires_at = expiry(Utc::now(), self.config.ttl);
        let written = self.store.put_within(&self.key, &encode(&info), Condition::None, within.min(MAX_GUARDED_WRITE));
        match written {
            Ok(outcome) => {
                self.versions.lock().unwrap_or_else(|e| e.into_inner()).extend(version_of(&outcome));
                *self.info.lock().unwrap_or_else(|e| e.into_inner()) = info;
                Ok(())
            }
            Err(e) => Err(NotRenewed::Transient(e.into())),
        }
    }

    fn stop_renewing(&self) {
        let (lock, cvar) = &self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cvar.notify_all();
    }

    fn release(&self) {
        self.stop_renewing();
        if self.borrowed {
            return;
        }
        let versions = self.versions.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Err(e) = self.store.delete_versions(&self.key, &versions) {
            tracing::warn!(lease = self.key, "could not release the lease (it will expire): {e}");
        }
    }
}

impl HeldLease {
    /// How long the lease is certainly still ours: it is read back from the bucket (gone, replaced
    /// or force-unlocked → an error), then the time to its expiry. The caller must not write under
    /// it when this fails.
    pub fn guaranteed(&self) -> Result<Duration> {
        let lost = || {
            Error::refused(format!("the lease `{}` was lost while working; nothing was published", self.inner.key), "run the command again")
        };
        if self.inner.lost.load(Ordering::SeqCst) || !self.inner.still_ours()? {
            return Err(lost());
        }
        let left = self.inner.time_left();
        if left.is_zero() {
            return Err(lost());
        }
        Ok(left)
    }

    /// Fails unless the lease is still ours (a renewal saw it lost, or it is gone from the bucket).
    pub fn check(&self) -> Result<()> {
        self.guaranteed().map(|_| ())
    }

    /// What the lease says.
    pub fn info(&self) -> LeaseInfo {
        self.inner.info.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Leaves the lease in the bucket (a manual lock).
    fn keep(mut self) {
        self.on_interrupt.take();
        self.inner.stop_renewing();
        if let Some(handle) = self.renewer.take() {
            let _ = handle.join();
        }
        std::mem::forget(self);
    }

    /// Stops renewing and leaves the lease to expire instead of releasing it: after a write whose
    /// outcome is unknown, nobody else may take the lease before that write's deadline has passed.
    pub fn abandon(self) {
        self.keep();
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.inner.release();
        if let Some(handle) = self.renewer.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_process_that_is_certainly_gone_counts_as_dead() {
        assert!(process_exists(std::process::id()));
        // pid 1 runs, whether or not /proc lets us read it (hidepid): alive.
        assert!(process_exists(1));
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("wait");
        assert!(!process_exists(pid), "a reaped child is gone");
        let mut info = new_info("upload", Duration::from_secs(60));
        info.pid = Some(pid);
        assert!(info.holder_is_dead_here());
        info.pid = Some(1);
        info.pid_start = None;
        assert!(!info.holder_is_dead_here(), "a live process whose start time is unknown is alive");
    }
}
