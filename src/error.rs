//! Error types and the exit codes they map to (README "Commands": 0 ok, 1 refused or failed, 2 usage or
//! configuration).

use std::path::PathBuf;

/// Everything that can stop a b2m command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command-line usage or configuration (exit 2).
    #[error("{message}")]
    Config {
        /// What is wrong, naming the thing.
        message: String,
        /// What to do about it.
        hint: Option<String>,
    },
    /// The operation was refused: outdated, conflict, local changes, lease held (exit 1).
    #[error("{message}")]
    Refused {
        /// What kind of refusal, set where it is made: `--json`, notifications and the screen
        /// match on it.
        kind: Refusal,
        /// Why it was refused.
        message: String,
        /// What to do about it.
        hint: Option<String>,
    },
    /// A database file is not SQLite, or fails its integrity check (exit 1).
    #[error("`{}` is not a usable SQLite database: {reason}", path.display())]
    BadDatabase {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        reason: String,
    },
    /// The bucket could not be used (exit 1, or 2 for a missing bucket / bad credentials).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A local file operation failed (exit 1).
    #[error("{action} `{}`: {source}", path.display())]
    Io {
        /// What we were doing ("cannot write").
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// SQLite failed on a file (exit 1).
    #[error("SQLite failed on `{}`: {source}", path.display())]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A changeset's script failed; its exit code is passed through.
    #[error("{message}")]
    Child {
        /// What failed.
        message: String,
        /// What to do about it.
        hint: Option<String>,
        /// The script's exit code.
        code: u8,
    },
    /// The user pressed Ctrl-C (exit 130).
    #[error("interrupted")]
    Interrupted,
}

/// The kinds of refusal people and programs act on differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The bucket has a newer version than the one this copy is based on.
    OutdatedDb,
    /// Local content and the bucket disagree with no known base, or an object does not match its
    /// sha256: a person decides.
    Conflict,
    /// Local rows that the operation would drop.
    LocalChanges,
    /// Another holder has the lease.
    LeaseHeld,
    /// Any other refusal.
    Other,
}

impl Refusal {
    /// As data (`--json`'s `kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::OutdatedDb => "outdated_db",
            Refusal::Conflict => "conflict",
            Refusal::LocalChanges => "local_changes",
            Refusal::LeaseHeld => "lease_held",
            Refusal::Other => "refused",
        }
    }
}

/// How a command ended, as the design's exit codes (uv's `ExitStatus`): every command says by type
/// which one it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: done.
    Success,
    /// 1: ran, and the answer is "not OK" (`status --exit-code` with a database not up to date, a
    /// check that found problems).
    Failure,
    /// 2: usage or configuration.
    Error,
    /// A child's own exit code, passed through.
    External(u8),
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(match status {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Error => 2,
            ExitStatus::External(code) => code,
        })
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A configuration or usage error (exit 2).
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config { message: message.into(), hint: None }
    }

    /// A configuration error with a hint of what to do.
    pub fn config_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Config { message: message.into(), hint: Some(hint.into()) }
    }

    /// A refusal (exit 1) of no particular kind.
    pub fn refused(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::refused_as(Refusal::Other, message, hint)
    }

    /// A refusal (exit 1) of `kind`.
    pub fn refused_as(kind: Refusal, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Refused { kind, message: message.into(), hint: Some(hint.into()) }
    }

    /// The refusal kind this error is, or carries (a wrapped one keeps the kind it was made with).
    pub fn refusal(&self) -> Refusal {
        match self {
            Error::Refused { kind, .. } => *kind,
            _ => Refusal::Other,
        }
    }

    /// A failure after a version was committed: the message says first what was published
    /// (`done`), then what failed; the hint stays what to do about the failure (exit 1).
    pub fn after_publish(done: &str, e: Error) -> Self {
        let hint = e.hint();
        Error::Refused { kind: e.refusal(), message: format!("{done}; but then: {e}"), hint }
    }

    /// An error before a publish's commit, saying that nothing was published.
    pub fn nothing_published(e: Error) -> Self {
        let hint = e.hint();
        Error::Refused { kind: e.refusal(), message: format!("{e}; nothing was published"), hint }
    }

    /// An I/O error on a path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { action, path: path.into(), source }
    }

    /// An SQLite error on a path.
    pub fn sqlite(path: impl Into<PathBuf>, source: rusqlite::Error) -> Self {
        Error::Sqlite { path: path.into(), source }
    }

    /// How the command ends with this error.
    pub fn status(&self) -> ExitStatus {
        match self {
            Error::Config { .. } => ExitStatus::Error,
            Error::Store(e) if e.is_configuration() => ExitStatus::Error,
            Error::Interrupted => ExitStatus::External(130),
            Error::Child { code, .. } => ExitStatus::External((*code).max(1)),
            _ => ExitStatus::Failure,
        }
    }

    /// The kind of error, as data (`--json` prints it): `outdated_db`, `conflict`, `lease_held`,
    /// `configuration`, `unreachable`, `bad_database`…
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config { .. } => "configuration",
            Error::Refused { kind, .. } => kind.as_str(),
            Error::BadDatabase { .. } => "bad_database",
            Error::Store(StoreError::Unreachable { .. }) => "unreachable",
            Error::Store(e) if e.is_configuration() => "configuration",
            Error::Store(_) => "store",
            Error::Io { .. } => "io",
            Error::Sqlite { .. } => "sqlite",
            Error::Child { .. } => "changeset_failed",
            Error::Interrupted => "interrupted",
        }
    }

    /// What the user can do about it, if we know.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Config { hint, .. } | Error::Refused { hint, .. } | Error::Child { hint, .. } => hint.clone(),
            Error::Store(e) => e.hint(),
            Error::Io { source, .. } if source.raw_os_error() == Some(28) => {
                Some("free some disk space and run the command again; nothing was changed".into())
            }
            _ => None,
        }
    }
}

/// Errors of the stores, each naming what failed and where.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The bucket does not exist.
    #[error("bucket `{bucket}` does not exist at `{endpoint}`")]
    NoSuchBucket {
        /// Bucket name.
        bucket: String,
        /// Endpoint.
        endpoint: String,
    },
    /// The credentials were refused.
    #[error("access to `{location}` was denied ({code})")]
    AccessDenied {
        /// `s3://bucket/prefix`.
        location: String,
        /// The service's error code.
        code: String,
    },
    /// No credentials were found.
    #[error("no credentials for `{location}`")]
    NoCredentials {
        /// `s3://bucket/prefix`.
        location: String,
    },
    /// The bucket is in another region than the one requests are signed for.
    #[error("bucket `{bucket}` is in {}, not in `{region}` (`remote.region`)", actual.as_ref().map_or_else(|| "another region".to_string(), |r| format!("region `{r}`")))]
    WrongRegion {
        /// Bucket name.
        bucket: String,
        /// The region b2m signs for.
        region: String,
        /// The bucket's region, when the server says (`x-amz-bucket-region`).
        actual: Option<String>,
    },
    /// The endpoint could not be reached.
    #[error("cannot reach `{endpoint}`: {detail}")]
    Unreachable {
        /// Endpoint.
        endpoint: String,
        /// What went wrong.
        detail: String,
    },
    /// The local-folder bucket does not exist.
    #[error("bucket folder `{}` does not exist", path.display())]
    MissingFolder {
        /// The folder.
        path: PathBuf,
    },
    /// The store refuses conditional writes (Backblaze B2 answers 501).
    #[error("`{location}` does not support conditional writes")]
    ConditionalUnsupported {
        /// `s3://bucket/prefix`.
        location: String,
    },
    /// Writing a downloaded object locally failed (a full disk, say).
    #[error("cannot write `{key}` to the local disk: {source}")]
    LocalWrite {
        /// The key being downloaded.
        key: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// An object too large for one PUT, on a server whose multipart uploads b2m cannot use.
    #[error(
        "`{key}` is {size} bytes, over S3's limit of 5 GiB for one PUT, and `{endpoint}` answers multipart uploads in a form b2m cannot read ({answer})"
    )]
    TooLargeForOnePut {
        /// The key.
        key: String,
        /// The object's size.
        size: u64,
        /// The server.
        endpoint: String,
        /// What its CreateMultipartUpload answer was.
        answer: String,
    },
    /// Any other failure of an operation on a key.
    #[error("{operation} `{key}` at `{location}` failed: {detail}")]
    Failed {
        /// `GET`, `PUT`…
        operation: &'static str,
        /// The key.
        key: String,
        /// `s3://bucket/prefix` or `file:///…`.
        location: String,
        /// What the store said.
        detail: String,
    },
}

impl StoreError {
    /// Errors a person fixes in the configuration (exit 2).
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            StoreError::NoSuchBucket { .. }
                | StoreError::WrongRegion { .. }
                | StoreError::AccessDenied { .. }
                | StoreError::NoCredentials { .. }
                | StoreError::MissingFolder { .. }
        )
    }

    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            StoreError::NoSuchBucket { .. } => "create the bucket, or fix `remote.url` in `b2m.toml` (or `B2M_REMOTE`)".into(),
            StoreError::AccessDenied { .. } => {
                "check `B2M_ACCESS_KEY_ID` / `B2M_SECRET_ACCESS_KEY`: the key must be valid and allowed on this bucket".into()
            }
            StoreError::NoCredentials { .. } => {
                "set `B2M_ACCESS_KEY_ID` and `B2M_SECRET_ACCESS_KEY` (a B2 application key), or configure the AWS credential chain".into()
            }
            StoreError::Unreachable { .. } => "check `remote.endpoint` in `b2m.toml` and the network, then run the command again".into(),
            StoreError::MissingFolder { .. } => "create the folder, or fix `remote.url` in `b2m.toml` (or `B2M_REMOTE`)".into(),
            StoreError::ConditionalUnsupported { .. } => "set `remote.locking = \"lease\"` in `b2m.toml`".into(),
            StoreError::WrongRegion { actual: Some(actual), .. } => format!("set `region = \"{actual}\"` under `[remote]` in `b2m.toml`"),
            StoreError::WrongRegion { actual: None, .. } => "set `remote.region` in `b2m.toml` to the bucket's region".into(),
            StoreError::TooLargeForOnePut { .. } => {
                "keep this database under 5 GiB on this server, or use a server whose multipart uploads follow S3's API".into()
            }
            StoreError::LocalWrite { source, .. } if source.raw_os_error() == Some(28) => {
                "free some disk space and run the command again; the local files were left as they were".into()
            }
            StoreError::LocalWrite { .. } | StoreError::Failed { .. } => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_s_kind_is_what_it_was_made_with_not_its_words() {
        let plain = Error::refused("`ipm-db` has no local changes: the lease on it is free; outdated_db", "nothing to do");
        assert_eq!(plain.kind(), "refused");
        let outdated = Error::refused_as(Refusal::OutdatedDb, "the bucket has v3", "run `b2m merge`");
        assert_eq!(outdated.kind(), "outdated_db");
        // Wrapped after a publish, or before one, it keeps its kind.
        assert_eq!(Error::after_publish("published `ipm-db` v2", outdated).kind(), "outdated_db");
        let held = Error::refused_as(Refusal::LeaseHeld, "held by someone", "wait");
        assert_eq!(Error::nothing_published(held).refusal(), Refusal::LeaseHeld);
    }
}
