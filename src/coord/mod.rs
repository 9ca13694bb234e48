//! Coordination across machines: leases, claim-once, and doctor's probe of the bucket.

pub mod claim;
pub mod doctor;
pub mod lease;

pub use claim::{Claim, claim_once};
pub use lease::{HeldLease, Leases, Protocol};
