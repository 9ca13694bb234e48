//! Leases: one holder at a time per database (and one for the manifest), across machines.
//!
//! Two protocols, chosen by `remote.locking` (see `docs/coordination.md` for the argument):
//!
//! - **conditional**: the lease is one object `locks/<name>.json`, created with
//!   `If-None-Match: *`, renewed and taken over with `If-Match` on its ETag. Needs a store whose
//!   conditional writes are atomic.
//! - **lease** (plain PUT/GET/LIST/DELETE, for Backblaze B2 and stores whose conditions are not
//!   atomic): each contender writes its own `locks/<name>/<id>.json`, then lists `locks/<name>/`.
//!   It holds the lease when it sees no other live lease object; otherwise it removes its own and
//!   tries again later. Under strong read-after-write and list consistency two contenders can never
//!   both see themselves alone: whichever listed second wrote before it listed, and so was seen.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::output::Output;
use crate::store::{Condition, PutOutcome, Store};

/// The folder of lease objects in the bucket.
pub const LOCKS_PREFIX: &str = "locks/";
/// The lease name that guards the bucket's db.toml.
pub const MANIFEST_LEASE: &str = "_manifest";

/// How long a lease lives without renewal (`B2M_LEASE_TTL_SECS` overrides, for tests).
fn ttl() -> Duration {
    std::env::var("B2M_LEASE_TTL_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&s| s > 0)
        .map_or(Duration::from_secs(60), Duration::from_secs)
}

/// The holder renews four times per TTL, so one or two failed renewals do not lose the lease.
fn renew_every() -> Duration {
    ttl() / 4
}
/// Clocks of two machines may disagree by this much before a lease counts as expired.
const CLOCK_ALLOWANCE: Duration = Duration::from_secs(10);
/// A manual `b2m lock` lasts this long unless released.
const MANUAL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The protocol in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Atomic conditional writes.
    Conditional,
    /// Plain writes and listings.
    Lease,
}

/// What a lease object says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaseInfo {
    /// Unique id of this lease.
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
    /// `trying` while contending (lease protocol), `held` once won.
    pub state: String,
    /// RFC 3339.
    pub acquired_at: String,
    /// RFC 3339.
    pub expires_at: String,
}

impl LeaseInfo {
    /// Whether the lease ran out (allowing for clock differences).
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        DateTime::parse_from_rfc3339(&self.expires_at)
            .map_or(true, |t| t.with_timezone(&Utc) + chrono::Duration::from_std(CLOCK_ALLOWANCE).unwrap_or_default() < now)
    }

    /// Whether the holder is a process on this host that no longer runs.
    pub fn holder_is_dead_here(&self) -> bool {
        let Some(pid) = self.pid else { return false };
        if self.machine.is_empty() || self.machine != machine_identity() {
            return false;
        }
        match process_start(pid) {
            None => true,
            Some(start) => self.pid_start.is_some_and(|recorded| recorded != start),
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

/// Start time of a process in clock ticks since boot, from `/proc`; `None` if it does not run.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn new_info(operation: &str, manual: bool) -> LeaseInfo {
    let now = Utc::now();
    let ttl = if manual { MANUAL_TTL } else { ttl() };
    let pid = std::process::id();
    LeaseInfo {
        id: format!("{}-{}", now.format("%Y%m%dT%H%M%S%.6fZ"), uuid::Uuid::new_v4().simple()),
        owner: crate::user_at_host(),
        host: crate::host_name(),
        machine: machine_identity(),
        pid: (!manual).then_some(pid),
        pid_start: if manual { None } else { process_start(pid) },
        operation: operation.to_string(),
        state: "trying".into(),
        acquired_at: crate::now_rfc3339(),
        expires_at: (now + chrono::Duration::from_std(ttl).unwrap_or_default()).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }
}

fn encode(info: &LeaseInfo) -> Vec<u8> {
    serde_json::to_vec_pretty(info).unwrap_or_default()
}

/// The key of a conditional-mode lease, or the folder of lease-mode ones.
fn single_key(name: &str) -> String {
    format!("{LOCKS_PREFIX}{name}.json")
}

fn folder(name: &str) -> String {
    format!("{LOCKS_PREFIX}{name}/")
}

/// A lease found in the bucket.
#[derive(Debug, Clone)]
pub struct FoundLease {
    /// Its object key.
    pub key: String,
    /// The lease name (a db stem or `_manifest`).
    pub name: String,
    /// What it says.
    pub info: LeaseInfo,
    /// For a conditional takeover.
    pub etag: Option<String>,
}

/// Every lease object in the bucket (both layouts), unreadable ones skipped.
pub fn list_leases(store: &dyn Store) -> Result<Vec<FoundLease>> {
    let mut out = Vec::new();
    for object in store.list(LOCKS_PREFIX)? {
        let rest = &object.key[LOCKS_PREFIX.len()..];
        let name = match rest.split_once('/') {
            Some((name, _)) => name,
            None => rest.trim_end_matches(".json"),
        };
        let Some(found) = store.get(&object.key)? else { continue };
        let Ok(info) = serde_json::from_slice::<LeaseInfo>(&found.body) else { continue };
        out.push(FoundLease { key: object.key.clone(), name: name.to_string(), info, etag: found.etag });
    }
    Ok(out)
}

/// Takes and releases leases on one store.
#[derive(Clone)]
pub struct Leases {
    store: Arc<dyn Store>,
    protocol: Protocol,
    out: Output,
    /// How long to wait for a lease another holder keeps.
    pub wait: Duration,
}

/// A lease we hold; renewed in the background, released when dropped.
pub struct HeldLease {
    inner: Arc<HeldInner>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

struct HeldInner {
    store: Arc<dyn Store>,
    protocol: Protocol,
    key: String,
    info: Mutex<LeaseInfo>,
    etag: Mutex<Option<String>>,
    lost: AtomicBool,
    stop: (Mutex<bool>, std::sync::Condvar),
    /// A manual lock of ours that this operation borrows: nothing to renew or release.
    borrowed: bool,
}

impl Leases {
    /// Leases on `store` with `protocol`.
    pub fn new(store: Arc<dyn Store>, protocol: Protocol, out: Output) -> Self {
        let wait =
            std::env::var("B2M_LEASE_WAIT_SECS").ok().and_then(|s| s.parse().ok()).map_or(Duration::from_secs(600), Duration::from_secs);
        Leases { store, protocol, out, wait }
    }

    /// The protocol in use.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Takes the lease `name` for `operation`, waiting (and saying for whom) while someone else
    /// holds it; takes over an expired lease, or one whose holder died on this host, at once.
    pub fn acquire(&self, name: &str, operation: &str) -> Result<HeldLease> {
        self.acquire_inner(name, operation, false)
    }

    /// `b2m lock`: a lease that outlives this process until `b2m unlock`.
    pub fn acquire_manual(&self, name: &str) -> Result<LeaseInfo> {
        let held = self.acquire_inner(name, "lock", true)?;
        let info = held.info();
        held.forget();
        Ok(info)
    }

    fn acquire_inner(&self, name: &str, operation: &str, manual: bool) -> Result<HeldLease> {
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut announced: Option<String> = None;
        loop {
            attempt += 1;
            let outcome = match self.protocol {
                Protocol::Conditional => self.try_conditional(name, operation, manual)?,
                Protocol::Lease => self.try_listing(name, operation, manual)?,
            };
            let holder = match outcome {
                Attempt::Won(held) => {
                    tracing::info!(lease = name, protocol = ?self.protocol, attempts = attempt, ms = started.elapsed().as_secs_f64() * 1e3, "lease acquired");
                    return Ok(held);
                }
                Attempt::Busy(holder) => holder,
            };
            if started.elapsed() > self.wait {
                let who = holder.map_or_else(|| "other contenders".to_string(), |h| h.describe());
                return Err(Error::refused(
                    format!("the lease on `{name}` is held by {who}; gave up after {} s", self.wait.as_secs()),
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

    fn try_conditional(&self, name: &str, operation: &str, manual: bool) -> Result<Attempt> {
        let key = single_key(name);
        let mut info = new_info(operation, manual);
        info.state = "held".into();
        if let PutOutcome::Written(etag) = self.store.put(&key, &encode(&info), Condition::IfAbsent)? {
            return Ok(Attempt::Won(self.held(key, info, etag, false)));
        }
        let Some(existing) = self.store.get(&key)? else { return Ok(Attempt::Busy(None)) };
        let Ok(current) = serde_json::from_slice::<LeaseInfo>(&existing.body) else {
            // Unreadable: treat as stale and take it over by compare-and-swap.
            return self.take_over(key, info, existing.etag);
        };
        if current.pid.is_none() && current.owner == crate::user_at_host() {
            return Ok(Attempt::Won(self.held(key, current, existing.etag, true)));
        }
        if current.is_stale(Utc::now()) {
            tracing::info!(lease = key, holder = current.describe(), "taking over a stale lease");
            return self.take_over(key, info, existing.etag);
        }
        Ok(Attempt::Busy(Some(current)))
    }

    fn take_over(&self, key: String, info: LeaseInfo, etag: Option<String>) -> Result<Attempt> {
        let Some(etag) = etag else { return Ok(Attempt::Busy(None)) };
        match self.store.put(&key, &encode(&info), Condition::IfMatch(etag))? {
            PutOutcome::Written(etag) => Ok(Attempt::Won(self.held(key, info, etag, false))),
            PutOutcome::ConditionFailed => Ok(Attempt::Busy(None)),
        }
    }

    fn try_listing(&self, name: &str, operation: &str, manual: bool) -> Result<Attempt> {
        let mut info = new_info(operation, manual);
        let key = format!("{}{}.json", folder(name), info.id);
        self.store.put(&key, &encode(&info), Condition::None)?;
        let now = Utc::now();
        let mut busy: Option<Option<LeaseInfo>> = None;
        let mut borrowed = None;
        for object in self.store.list(&folder(name))? {
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
                self.store.delete(&object.key)?;
                continue;
            }
            if other.pid.is_none() && other.owner == crate::user_at_host() {
                borrowed = Some((object.key.clone(), other));
                continue;
            }
            let held = other.state == "held";
            if held || busy.is_none() {
                busy = Some(held.then_some(other));
            }
        }
        if let Some(holder) = busy {
            self.store.delete(&key)?;
            return Ok(Attempt::Busy(holder));
        }
        if let Some((manual_key, manual_info)) = borrowed {
            self.store.delete(&key)?;
            return Ok(Attempt::Won(self.held(manual_key, manual_info, None, true)));
        }
        info.state = "held".into();
        self.store.put(&key, &encode(&info), Condition::None)?;
        Ok(Attempt::Won(self.held(key, info, None, false)))
    }

    fn held(&self, key: String, info: LeaseInfo, etag: Option<String>, borrowed: bool) -> HeldLease {
        let manual = info.pid.is_none();
        let inner = Arc::new(HeldInner {
            store: self.store.clone(),
            protocol: self.protocol,
            key,
            info: Mutex::new(info),
            etag: Mutex::new(etag),
            lost: AtomicBool::new(false),
            stop: (Mutex::new(false), std::sync::Condvar::new()),
            borrowed,
        });
        let renewer = (!borrowed && !manual).then(|| {
            let inner = inner.clone();
            std::thread::spawn(move || inner.renew_until_stopped())
        });
        HeldLease { inner, renewer }
    }

    /// Removes the leases on `name`: only this user's own unless `force`. Returns what was removed.
    pub fn unlock(&self, name: &str, force: bool) -> Result<Vec<LeaseInfo>> {
        let me = crate::user_at_host();
        let mut removed = Vec::new();
        let mut others = Vec::new();
        for lease in list_leases(self.store.as_ref())?.into_iter().filter(|l| l.name == name) {
            if force || lease.info.owner == me || lease.info.is_stale(Utc::now()) {
                self.store.delete(&lease.key)?;
                removed.push(lease.info);
            } else {
                others.push(lease.info);
            }
        }
        if let Some(other) = others.first() {
            return Err(Error::refused(
                format!("the lease on `{name}` is held by {}, not by you", other.describe()),
                format!("run `b2m unlock {name} --force` if you are sure"),
            ));
        }
        Ok(removed)
    }
}

enum Attempt {
    Won(HeldLease),
    Busy(Option<LeaseInfo>),
}

fn jitter(max_ms: u64) -> u64 {
    u64::from(uuid::Uuid::new_v4().as_u128() as u32) % max_ms.max(1)
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
            let (guard, timeout) = cvar.wait_timeout(stopped, renew_every()).unwrap_or_else(|e| e.into_inner());
            stopped = guard;
            if *stopped {
                return;
            }
            if timeout.timed_out()
                && let Err(e) = self.renew()
            {
                tracing::warn!(lease = self.key, "could not renew the lease: {e}");
                self.lost.store(true, Ordering::SeqCst);
                return;
            }
        }
    }

    /// Whether the bucket still holds our lease object, unexpired. A holder paused past its TTL
    /// may have been taken over; it must find out rather than write its lease back.
    fn still_ours(&self) -> Result<bool> {
        let info = self.info.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let expired = DateTime::parse_from_rfc3339(&info.expires_at).map_or(true, |t| t.with_timezone(&Utc) < Utc::now());
        if expired {
            return Ok(false);
        }
        let Some(object) = self.store.get(&self.key)? else { return Ok(false) };
        Ok(serde_json::from_slice::<LeaseInfo>(&object.body).is_ok_and(|current| current.id == info.id))
    }

    fn renew(&self) -> Result<()> {
        if !self.still_ours()? {
            return Err(Error::refused(format!("the lease `{}` expired or was taken over", self.key), "run the command again"));
        }
        let mut info = self.info.lock().unwrap_or_else(|e| e.into_inner()).clone();
        info.expires_at =
            (Utc::now() + chrono::Duration::from_std(ttl()).unwrap_or_default()).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let condition = match (self.protocol, self.etag.lock().unwrap_or_else(|e| e.into_inner()).clone()) {
            (Protocol::Conditional, Some(etag)) => Condition::IfMatch(etag),
            _ => Condition::None,
        };
        match self.store.put(&self.key, &encode(&info), condition)? {
            PutOutcome::Written(etag) => {
                *self.etag.lock().unwrap_or_else(|e| e.into_inner()) = etag;
                *self.info.lock().unwrap_or_else(|e| e.into_inner()) = info;
                Ok(())
            }
            PutOutcome::ConditionFailed => Err(Error::refused(format!("the lease `{}` was taken over", self.key), "run the command again")),
        }
    }

    fn release(&self) {
        let (lock, cvar) = &self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cvar.notify_all();
        if self.borrowed {
            return;
        }
        // Remove only our own lease: in conditional mode the key is shared, so check the id.
        let id = self.info.lock().unwrap_or_else(|e| e.into_inner()).id.clone();
        let ours = match self.protocol {
            Protocol::Lease => true,
            Protocol::Conditional => self
                .store
                .get(&self.key)
                .ok()
                .flatten()
                .and_then(|o| serde_json::from_slice::<LeaseInfo>(&o.body).ok())
                .is_some_and(|i| i.id == id),
        };
        if ours && let Err(e) = self.store.delete(&self.key) {
            tracing::warn!(lease = self.key, "could not release the lease (it will expire): {e}");
        }
    }
}

impl HeldLease {
    /// Fails if the lease was lost (a renewal failed or someone took it over): the caller must not
    /// commit.
    pub fn check(&self) -> Result<()> {
        let ours = self.inner.borrowed || self.inner.still_ours()?;
        if self.inner.lost.load(Ordering::SeqCst) || !ours {
            return Err(Error::refused(
                format!("the lease `{}` was lost while working; nothing was published", self.inner.key),
                "run the command again",
            ));
        }
        Ok(())
    }

    /// What the lease says.
    pub fn info(&self) -> LeaseInfo {
        self.inner.info.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Leaves the lease in the bucket (a manual lock).
    fn forget(mut self) {
        let (lock, cvar) = &self.inner.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cvar.notify_all();
        if let Some(handle) = self.renewer.take() {
            let _ = handle.join();
        }
        std::mem::forget(self);
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
