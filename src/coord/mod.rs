//! Coordination across machines: leases, the bucket's protocol record, claim-once, and doctor's
//! probe of the bucket.

pub mod claim;
pub mod doctor;
pub mod lease;
pub mod protocol;

pub use claim::{Claim, claim_once};
pub use lease::{HeldLease, LeaseConfig, Leases};
pub use protocol::Protocol;
