//! Coordination across machines: leases, the bucket's protocol record, claim-once, and doctor's
//! probe of the bucket.

pub mod claim;
pub mod doctor;
pub mod lease;
pub mod protocol;

pub use crate::settings::LeaseConfig;
pub use claim::{Claim, claim_once};
pub use lease::{HeldLease, Leases};
pub use protocol::Protocol;
