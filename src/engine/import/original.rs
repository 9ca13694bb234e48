//! The original b2m's bucket, seen through reads only: `b2m import` never writes, renames or
//! deletes an original object, so the team can go back to the original b2m. The store behind it
//! is private to this file, and this file offers no write.

use std::path::Path;

use indicatif::ProgressBar;

use super::config::OriginalRoot;
use crate::error::{Error, Result};
use crate::settings::Remote;
use crate::store::{ObjectInfo, Store};

/// The original's bucket, readable only.
pub struct Original {
    store: Box<dyn Store>,
    /// Its root, as b2m names a bucket (`s3://bucket/path`).
    pub url: String,
}

impl Original {
    /// Opens the original's root with b2m's remote settings (endpoint, region, credentials) for
    /// its place. b2m's own bucket must not be that root: its `db.toml` would replace the
    /// original's, among the original's objects.
    pub fn open(remote: &Remote, root: &OriginalRoot) -> Result<Self> {
        if remote.url.trim_end_matches('/') == root.url.trim_end_matches('/') {
            return Err(Error::config_hint(
                format!(
                    "b2m's bucket `{}` is the original b2m's root (`rootbucket = \"{}\"`): b2m's objects would sit among the original's",
                    remote.url, root.rootbucket
                ),
                format!("let b2m use `{}` (drop `--remote` and `B2M_REMOTE`), or give it another prefix", root.b2m_url()),
            ));
        }
        let store = crate::store::open(&Remote { url: root.url.clone(), ..remote.clone() })?;
        Ok(Original { store, url: root.url.clone() })
    }

    /// Every object under `prefix` (`""`: the whole root).
    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        Ok(self.store.list(prefix)?)
    }

    /// A small object (metadata, the manifest), or `None`.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.store.get(key)?.map(|o| o.body))
    }

    /// Downloads `key` into the empty file at `path`.
    pub fn download(&self, key: &str, path: &Path, progress: &ProgressBar) -> Result<u64> {
        let file = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| Error::io("cannot open", path, e))?;
        Ok(self.store.download_to(key, &file, &|_, _| {}, progress)?)
    }

    /// Where `key` is, for messages: `s3://bucket/path/ipm-db-v2.db`.
    pub fn location_of(&self, key: &str) -> String {
        format!("{}/{key}", self.url.trim_end_matches('/'))
    }
}
