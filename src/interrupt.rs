//! Ctrl-C (SIGINT) and SIGTERM: the command stops cleanly. The leases this process holds are
//! released (another machine does not wait for them to expire), its temporary files are removed
//! (a half-made snapshot or download of gigabytes is not left until the next command), a
//! changeset's script and everything it started get SIGTERM, and the process exits with 130.
//!
//! What needs undoing registers itself while it exists ([`on_interrupt`]); a step that must not
//! be cut in two (the commit's write of db.toml, whose lease may not be released while the write
//! is in flight) holds a [`Critical`] guard, and the clean-up waits for it to end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

type Action = Box<dyn Fn() + Send + Sync>;

struct Registry {
    actions: BTreeMap<u64, Action>,
    /// A changeset's script, leading a process group of its own.
    child_group: Option<u32>,
    /// Steps in flight that must finish before the clean-up.
    critical: usize,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { actions: BTreeMap::new(), child_group: None, critical: 0 });
static CRITICAL_DONE: Condvar = Condvar::new();
static NEXT: AtomicU64 = AtomicU64::new(1);

/// The longest the clean-up waits for a critical step (a guarded write is bounded by 30 s).
const CRITICAL_WAIT: Duration = Duration::from_secs(40);

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts listening for SIGINT and SIGTERM (once, at the start of a command).
pub fn install() {
    let Ok(mut signals) = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM]) else {
        tracing::warn!("cannot listen for Ctrl-C; an interrupted command leaves its leases to expire");
        return;
    };
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            clean_up_and_exit();
        }
    });
}

fn clean_up_and_exit() -> ! {
    eprintln!("b2m: interrupted; releasing leases and removing temporary files");
    let mut held = registry();
    let deadline = std::time::Instant::now() + CRITICAL_WAIT;
    while held.critical > 0 && std::time::Instant::now() < deadline {
        held = CRITICAL_DONE.wait_timeout(held, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner()).0;
    }
    if let Some(group) = held.child_group.take()
        && let Some(pid) = i32::try_from(group).ok().and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
    }
    // Newest first: a lease taken last (the manifest's) goes before the database's.
    let actions = std::mem::take(&mut held.actions);
    drop(held);
    for action in actions.values().rev() {
        action();
    }
    std::process::exit(130);
}

/// Something to undo should the command be interrupted, for as long as the returned value lives.
#[must_use = "the action is unregistered when this is dropped"]
pub struct Registration(u64);

/// Registers `action` to run on an interrupt, until the returned [`Registration`] is dropped.
pub fn on_interrupt(action: impl Fn() + Send + Sync + 'static) -> Registration {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    registry().actions.insert(id, Box::new(action));
    Registration(id)
}

impl Drop for Registration {
    fn drop(&mut self) {
        registry().actions.remove(&self.0);
    }
}

/// Names the process group of a changeset's script (or `None` once it ended), for an interrupt
/// to end it too.
pub fn kill_group_on_interrupt(leader: Option<u32>) {
    registry().child_group = leader;
}

/// A step an interrupt must not cut in two; the clean-up waits until it is dropped.
#[must_use = "the step is critical only while this lives"]
pub struct Critical(());

/// Marks a critical step until the returned guard is dropped.
pub fn critical() -> Critical {
    registry().critical += 1;
    Critical(())
}

impl Drop for Critical {
    fn drop(&mut self) {
        let mut held = registry();
        held.critical = held.critical.saturating_sub(1);
        CRITICAL_DONE.notify_all();
    }
}
