//! "Claim this key once": the first writer of a key wins and every later one is told who did.
//! The changeset ledger stands on it. A lease on the key guards a read-then-write; where the
//! bucket's protocol is `conditional`, the write is also a create-if-absent.

use super::lease::Leases;
use super::protocol::Protocol;
use crate::error::Result;
use crate::store::{PutOutcome, Store};

/// The outcome of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// We wrote the key.
    Claimed,
    /// Someone else had; their body.
    Taken(Vec<u8>),
}

/// Writes `body` at `key` unless the key exists.
pub fn claim_once(store: &dyn Store, leases: &Leases, protocol: Protocol, key: &str, body: &[u8]) -> Result<Claim> {
    let name = crate::layout::claim_lease(key);
    let lease = leases.acquire(&name, "claim")?;
    if let Some(existing) = store.get(key)? {
        return Ok(Claim::Taken(existing.body));
    }
    let within = leases.budget(&[&lease])?;
    Ok(match store.put_within(key, body, protocol.if_absent(), within)? {
        PutOutcome::Written { .. } => Claim::Claimed,
        PutOutcome::ConditionFailed => Claim::Taken(store.get(key)?.map(|o| o.body).unwrap_or_default()),
    })
}
