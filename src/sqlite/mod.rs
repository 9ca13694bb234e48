//! SQLite and file content: streaming hashes with a cache, consistent snapshots and integrity
//! checks, and the local state in `.b2m/`.

pub mod db;
pub mod hash;
pub mod replay;
pub mod state;
