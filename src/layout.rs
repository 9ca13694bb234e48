//! The bucket's layout: every key b2m reads or writes, and how each is parsed, in one place.
//!
//! ```text
//! db.toml                               the published manifest: each db's current version, pinned by sha256
//! dbs/<stem>/<stem>-v<N>.<sha256>.db    a version, content-addressed: the key is fixed by the bytes
//! dbs/<stem>/<stem>-v<N>.<sha256>.json  its metadata (never rewritten)
//! dbs/<stem>/trimmed.json               when `b2m gc --keep N` last removed committed versions
//! bucket.json                           the coordination protocol every machine follows
//! locks/<name>/<id>.json                leases; <name> is a stem, `_manifest` (db.toml's),
//!                                       `changeset-<name>` (a changeset's run) or `claim-<16 hex>`
//! locks/_doctor/<probe>/…               doctor's race probe
//! changesets/<name>.json, <name>.log    the changeset ledger and logs
//! fleet/<server-id>.json                what each server runs
//! ```
//!
//! The original b2m's bucket (HexmosTech/FreeDevTools, `b2-manager/`), which `b2m import` reads
//! and never writes, has its own layout under its `rootbucket`: see [`original`].

use sha2::{Digest, Sha256};

use crate::names::DbFileName;

/// The key of the published manifest.
pub const MANIFEST: &str = "db.toml";
/// The folder of database versions.
pub const VERSIONS: &str = "dbs/";

/// One immutable version: a stem, a version number and the sha256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VersionId {
    /// `ipm-db`
    pub stem: String,
    /// `2`
    pub version: u64,
    /// hex sha256 of the object's bytes.
    pub sha256: String,
}

impl VersionId {
    /// `ipm-db-v2.db`, the name servers open.
    pub fn file(&self) -> String {
        DbFileName::file_name(&self.stem, self.version)
    }

    fn base(&self) -> String {
        format!("{VERSIONS}{}/{}-v{}.{}", self.stem, self.stem, self.version, self.sha256)
    }

    /// `dbs/ipm-db/ipm-db-v2.<sha256>.db`: the key is fixed by the bytes, so no writer can change
    /// what a committed db.toml names.
    pub fn object_key(&self) -> String {
        format!("{}.db", self.base())
    }

    /// `dbs/ipm-db/ipm-db-v2.<sha256>.json`.
    pub fn meta_key(&self) -> String {
        format!("{}.json", self.base())
    }

    /// `dbs/ipm-db/ipm-db-v2.<sha256>.recipe`: how to build the version from pages, when it is
    /// stored as pages (its `.db` object is then a base of zstd frames, or absent).
    pub fn recipe_key(&self) -> String {
        format!("{}.recipe", self.base())
    }

    /// The sha256 shortened for people.
    pub fn short(&self) -> &str {
        &self.sha256[..12.min(self.sha256.len())]
    }

    /// Parses an object or metadata key under `dbs/`; `None` for any other key.
    pub fn from_key(key: &str) -> Option<Self> {
        let rest = key.strip_prefix(VERSIONS)?;
        let (stem, name) = rest.split_once('/')?;
        let name = name.strip_suffix(".db").or_else(|| name.strip_suffix(".json")).or_else(|| name.strip_suffix(".recipe"))?;
        let (file_base, sha256) = name.rsplit_once('.')?;
        let parsed = DbFileName::parse(&format!("{file_base}.db"))?;
        (parsed.stem == stem && crate::names::is_sha256(sha256)).then(|| VersionId {
            stem: parsed.stem,
            version: parsed.version,
            sha256: sha256.to_string(),
        })
    }
}

/// `dbs/<stem>/packs/<sha256>.pack`: the pages new in one version, as zstd frames.
pub fn pack_key(stem: &str, sha256: &str) -> String {
    format!("{VERSIONS}{stem}/packs/{sha256}.pack")
}

/// The stem and sha256 a pack key names.
pub fn pack_of(key: &str) -> Option<(&str, &str)> {
    let (stem, name) = key.strip_prefix(VERSIONS)?.split_once("/packs/")?;
    let sha256 = name.strip_suffix(".pack")?;
    crate::names::is_sha256(sha256).then_some((stem, sha256))
}

/// `FORMAT.md`: how to rebuild a version stored as pages by hand.
pub const FORMAT_DOC: &str = "FORMAT.md";

/// `dbs/<stem>/trimmed.json`: when and by whom `b2m gc --keep N` last removed committed versions
/// of `stem` (history then ends on purpose).
pub fn trimmed_key(stem: &str) -> String {
    format!("{VERSIONS}{stem}/trimmed.json")
}

/// The key of the bucket's own settings (the coordination protocol).
pub const BUCKET_RECORD: &str = "bucket.json";
/// The folder of lease objects.
pub const LOCKS: &str = "locks/";
/// The lease that guards the bucket's db.toml.
pub const MANIFEST_LEASE: &str = "_manifest";
/// The lease folder name of doctor's probes (not a lease).
const DOCTOR: &str = "_doctor";
/// The folder of the changeset ledger.
pub const LEDGER: &str = "changesets/";
/// The folder of the servers' records.
pub const FLEET: &str = "fleet/";

/// `locks/<name>/`: the folder of a lease's objects.
pub fn lease_folder(name: &str) -> String {
    format!("{LOCKS}{name}/")
}

/// `locks/<name>/<id>.json`: one contender's lease object.
pub fn lease_key(name: &str, id: &str) -> String {
    format!("{}{id}.json", lease_folder(name))
}

/// The lease name of a key under `locks/`; `None` for another key and for doctor's probes.
/// (`locks/<name>.json` was the layout of older versions.)
pub fn lease_name_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(LOCKS)?;
    let name = rest.split_once('/').map_or_else(|| rest.trim_end_matches(".json"), |(name, _)| name);
    (name != DOCTOR).then_some(name)
}

/// The lease that claims changeset `name` for one run across the fleet.
pub fn changeset_lease(name: &str) -> String {
    format!("changeset-{name}")
}

/// The lease that guards a claim-once write of `key`.
pub fn claim_lease(key: &str) -> String {
    format!("claim-{}", &hex::encode(Sha256::digest(key.as_bytes()))[..16])
}

/// `locks/_doctor/<probe>`: where one run of doctor's race probe writes.
pub fn doctor_probe(probe: &str) -> String {
    format!("{LOCKS}{DOCTOR}/{probe}")
}

/// `changesets/<name>.json`: a changeset's ledger entry.
pub fn ledger_key(name: &str) -> String {
    format!("{LEDGER}{name}.json")
}

/// `changesets/<name>.log`: a changeset's log.
pub fn ledger_log_key(name: &str) -> String {
    format!("{LEDGER}{name}.log")
}

/// The changeset a ledger entry's key names; `None` for a log or another key.
pub fn ledger_name_of(key: &str) -> Option<&str> {
    key.strip_prefix(LEDGER)?.strip_suffix(".json")
}

/// `fleet/<server-id>.json`: a server's record.
pub fn fleet_key(server_id: &str) -> String {
    format!("{FLEET}{server_id}.json")
}

/// The original b2m's bucket, as its code writes it under its `rootbucket` (`b2:bucket/path/`):
/// read by `b2m import`, never written, so the team can go back to it.
///
/// ```text
/// <file>.db                           a database, as `rclone copy` put it (core/rclone.go)
/// version/<file without .db>.metadata.json   its metadata and event list (core/metadata.go)
/// lock/<file>.<user>.<host>.lock      held while someone uploads <file> (core/helpers.go)
/// db.toml                             a manifest, when the team keeps one there
/// b2m/                                where `b2m import` puts b2m's own layout (above) by default
/// ```
pub mod original {
    /// The folder of the original's locks.
    pub const LOCKS: &str = "lock/";
    /// The folder of the original's metadata.
    pub const METADATA: &str = "version/";
    /// The original's manifest, when the team keeps one in the bucket.
    pub const MANIFEST: &str = "db.toml";
    /// The folder under the original's root that b2m's layout goes into by default: beside the
    /// original objects, never among them (b2m's `db.toml` would replace the original's).
    pub const B2M_FOLDER: &str = "b2m";

    /// The database file a key at the original's root names (`ipm-db-v2.db`); `None` for a key
    /// in a folder or a file that is not a `.db`.
    pub fn db_file(key: &str) -> Option<&str> {
        (!key.contains('/') && key.ends_with(".db") && key.len() > 3).then_some(key)
    }

    /// `version/<file without .db>.metadata.json`: where the original keeps `file`'s metadata.
    pub fn metadata_key(file: &str) -> String {
        format!("{METADATA}{}.metadata.json", file.strip_suffix(".db").unwrap_or(file))
    }

    /// An original lock: whose it is.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Lock {
        /// The key (`lock/ipm-db-v2.db.alice.laptop.lock`).
        pub key: String,
        /// The database file it locks (`ipm-db-v2.db`).
        pub file: String,
        /// The user who holds it.
        pub user: String,
        /// Their host.
        pub host: String,
    }

    /// The lock a key under `lock/` is, split as the original splits it (the last three dotted
    /// parts are user, host and `lock`); a `.lock` key of another shape is still a lock, whose
    /// file is the rest of its name. `None` for any other key.
    pub fn lock_of(key: &str) -> Option<Lock> {
        let name = key.strip_prefix(LOCKS)?.strip_suffix(".lock")?;
        let mut parts = name.rsplitn(3, '.');
        let (host, user, file) = (parts.next()?, parts.next(), parts.next());
        let (file, user, host) = match (file, user) {
            (Some(file), Some(user)) => (file, user, host),
            _ => (name, "", ""),
        };
        Some(Lock { key: key.to_string(), file: file.to_string(), user: user.to_string(), host: host.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_keys_parse_as_the_original_writes_them() {
        let lock = original::lock_of("lock/ipm-db-v2.db.alice.laptop.lock").expect("a lock");
        assert_eq!((lock.file.as_str(), lock.user.as_str(), lock.host.as_str()), ("ipm-db-v2.db", "alice", "laptop"));
        assert_eq!(original::lock_of("lock/odd.lock").map(|l| l.file), Some("odd".into()));
        assert_eq!(original::lock_of("version/ipm-db-v2.metadata.json"), None);
        assert_eq!(original::metadata_key("ipm-db_v2.db"), "version/ipm-db_v2.metadata.json");
        assert_eq!(original::db_file("ipm-db-v2.db"), Some("ipm-db-v2.db"));
        assert_eq!(original::db_file("b2m/dbs/x.db"), None);
        assert_eq!(original::db_file("db.toml"), None);
    }

    #[test]
    fn keys_are_content_addressed_and_parse_back() {
        let id = VersionId { stem: "ipm-db".into(), version: 2, sha256: "0f".repeat(32) };
        assert_eq!(id.object_key(), format!("dbs/ipm-db/ipm-db-v2.{}.db", "0f".repeat(32)));
        assert_eq!(VersionId::from_key(&id.object_key()), Some(id.clone()));
        assert_eq!(VersionId::from_key(&id.meta_key()), Some(id.clone()));
        assert_eq!(VersionId::from_key("dbs/ipm-db-v2.db"), None);
        assert_eq!(VersionId::from_key(&format!("dbs/other/ipm-db-v2.{}.db", "0f".repeat(32))), None);
    }
}
