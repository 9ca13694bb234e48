//! The command line (clap types only).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Keep SQLite databases in a Backblaze B2 (or any S3-compatible) bucket safe to ship.
#[derive(Debug, Parser)]
#[command(name = "b2m", version, about, propagate_version = true)]
pub struct Cli {
    /// Flags every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes, before or after the subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Print the result alone on stdout, as JSON; everything else goes to stderr.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print no messages, only the result and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print diagnostics (repeat for more: -v, -vv, -vvv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Run as if started in DIR.
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub directory: Option<PathBuf>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set up b2m.toml, the db folder, db.toml, changeset/ and .gitignore lines.
    Init {
        /// The bucket: `s3://bucket/prefix` or `file:///path` (default: a folder `.b2m-bucket`).
        #[arg(long)]
        remote: Option<String>,
        /// S3 endpoint, e.g. `https://s3.us-west-004.backblazeb2.com`.
        #[arg(long)]
        endpoint: Option<String>,
        /// S3 region, e.g. `us-west-004`.
        #[arg(long)]
        region: Option<String>,
    },
    /// Compare each database with its base and the bucket.
    Status {
        /// Databases to show (stem, db.toml key or file name); all when none.
        dbs: Vec<String>,
        /// Exit 1 when any database is not up to date.
        #[arg(long)]
        exit_code: bool,
    },
    /// Publish the local database as the bucket's next version.
    Upload {
        /// The database (stem, db.toml key or file name).
        db: String,
    },
    /// Fetch the bucket's current version of a database.
    Download {
        /// The database (stem, db.toml key or file name).
        db: String,
        /// Drop local changes (a backup copy is kept first).
        #[arg(long)]
        force: bool,
    },
    /// Write the bucket's db.toml to the local manifest path.
    FetchDbToml,
    /// Take a database's lease and keep it (others wait) until `b2m unlock`.
    Lock {
        /// The database (stem, db.toml key or file name).
        db: String,
    },
    /// Release a database's lease (your own; `--force` for anyone's, saying whose).
    Unlock {
        /// The database (stem, db.toml key or file name).
        db: String,
        /// Remove the lease whoever holds it.
        #[arg(long)]
        force: bool,
    },
    /// For CI: the local db.toml, the bucket's db.toml and the versions they pin agree (exit 1 if not).
    Check {
        /// Check the local db.toml alone; read nothing from the bucket.
        #[arg(long)]
        offline: bool,
    },
    /// Check credentials, bucket, prefix and clock, and probe conditional writes for `locking = "auto"`.
    Doctor,
    /// List (with `--dry-run`) or remove what no published db.toml references: orphans of
    /// interrupted uploads and stale leases.
    Gc {
        /// Only list; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The main job end to end on a local-folder bucket, no credentials needed.
    Demo {
        /// Where to build the demo (default: a new temp folder, kept).
        dir: Option<PathBuf>,
    },
}
