//! "Claim this key once": the first writer of a key wins and every later one is told who did.
//! The changeset ledger stands on it. With atomic conditional writes it is one `If-None-Match: *`
//! create; without, a lease on the key guards a read-then-write.

use sha2::{Digest, Sha256};

use super::lease::{Leases, Protocol};
use crate::error::Result;
use crate::store::{Condition, PutOutcome, Store};

/// The outcome of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// We wrote the key.
    Claimed,
    /// Someone else had; their body.
    Taken(Vec<u8>),
}

/// Writes `body` at `key` unless the key exists.
pub fn claim_once(store: &dyn Store, leases: &Leases, key: &str, body: &[u8]) -> Result<Claim> {
    if leases.protocol() == Protocol::Conditional {
        return Ok(match store.put(key, body, Condition::IfAbsent)? {
            PutOutcome::Written(_) => Claim::Claimed,
            PutOutcome::ConditionFailed => Claim::Taken(store.get(key)?.map(|o| o.body).unwrap_or_default()),
        });
    }
    let name = format!("claim-{}", &hex::encode(Sha256::digest(key.as_bytes()))[..16]);
    let _lease = leases.acquire(&name, "claim")?;
    if let Some(existing) = store.get(key)? {
        return Ok(Claim::Taken(existing.body));
    }
    _lease.check()?;
    store.put(key, body, Condition::None)?;
    Ok(Claim::Claimed)
}
