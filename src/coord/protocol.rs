//! The coordination protocol is a property of the bucket, never of one machine: `bucket.json`
//! records it (written by `b2m doctor`), and every machine follows the record. Absent, the bucket
//! uses the lease protocol.
//!
//! Every machine takes leases the same way in either mode (see `coord::lease`), so two machines
//! can never miss each other's leases. `conditional` only adds a guard where the record says the
//! bucket checks conditions atomically: db.toml commits are a compare-and-swap (`If-Match`) and
//! claims a create-if-absent (`If-None-Match: *`), which fence off a writer that lost its lease
//! without knowing. A probe is a sample, not a proof; a wrong "atomic" finding costs nothing,
//! because the leases still hold.

use serde::{Deserialize, Serialize};

use super::doctor::Conditional;
use crate::error::{Error, Result};
use crate::settings::Locking;
use crate::store::{Condition, Store};

/// The key of the bucket's own settings.
use crate::layout::BUCKET_RECORD as BUCKET_FILE;

/// The protocol a bucket follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Leases only (plain PUT/GET/LIST/DELETE): Backblaze B2, and any bucket not probed atomic.
    Lease,
    /// Leases, plus compare-and-swap on commits and create-if-absent on claims.
    Conditional,
}

impl Protocol {
    /// `lease` or `conditional`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Lease => "lease",
            Protocol::Conditional => "conditional",
        }
    }

    /// The condition for replacing an object last read with `etag` (none in lease mode).
    pub fn if_match(self, etag: Option<String>) -> Condition {
        match (self, etag) {
            (Protocol::Conditional, Some(etag)) => Condition::IfMatch(etag),
            _ => Condition::None,
        }
    }

    /// The condition for creating an object that must not exist yet (none in lease mode).
    pub fn if_absent(self) -> Condition {
        match self {
            Protocol::Conditional => Condition::IfAbsent,
            Protocol::Lease => Condition::None,
        }
    }
}

/// `bucket.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BucketRecord {
    /// The protocol every machine follows on this bucket.
    pub protocol: Protocol,
    /// What the last probe found about conditional writes.
    pub conditional_writes: Conditional,
    /// Winners per racing round in that probe.
    #[serde(default)]
    pub race_winners: Vec<usize>,
    /// Whether the bucket keeps old versions (`Enabled` on Backblaze B2).
    #[serde(default)]
    pub versioning: Option<String>,
    /// RFC 3339 time of the probe.
    pub recorded_at: String,
    /// `user@host` of the machine that probed.
    pub recorded_by: String,
    /// The b2m version that wrote it.
    pub b2m_version: String,
}

/// Reads `bucket.json`; `None` when the bucket has none.
pub fn read(store: &dyn Store) -> Result<Option<BucketRecord>> {
    let Some(object) = store.get(BUCKET_FILE)? else { return Ok(None) };
    serde_json::from_slice(&object.body).map(Some).map_err(|e| {
        Error::refused(
            format!("the bucket's `{BUCKET_FILE}` at `{}` is unreadable: {e}", store.location()),
            "run `b2m doctor` to write it again",
        )
    })
}

/// Writes `bucket.json`.
pub fn write(store: &dyn Store, record: &BucketRecord) -> Result<()> {
    let body = serde_json::to_vec_pretty(record).map_err(|e| Error::config(format!("cannot encode {BUCKET_FILE}: {e}")))?;
    store.put(BUCKET_FILE, &body, Condition::None)?;
    Ok(())
}

/// The protocol to follow: the bucket's record (absent: lease). A local `remote.locking` other
/// than `auto` must agree with it: two machines on one bucket never follow different protocols.
pub fn resolve(locking: Locking, record: Option<&BucketRecord>, location: &str) -> Result<Protocol> {
    let recorded = record.map_or(Protocol::Lease, |r| r.protocol);
    let wanted = match locking {
        Locking::Auto => return Ok(recorded),
        Locking::Lease => Protocol::Lease,
        Locking::Conditional => Protocol::Conditional,
    };
    if wanted == recorded {
        return Ok(recorded);
    }
    let source = if record.is_some() {
        format!("its `{BUCKET_FILE}` records `{}`", recorded.as_str())
    } else {
        format!("it has no `{BUCKET_FILE}`, so it uses `lease`")
    };
    Err(Error::config_hint(
        format!("`remote.locking = \"{}\"` in `b2m.toml` contradicts the bucket `{location}`: {source}", wanted.as_str()),
        "set `remote.locking = \"auto\"` (every machine must follow the bucket's protocol), or run `b2m doctor` to probe the bucket and record what it supports",
    ))
}
