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
    /// The command; none opens the screen in a terminal, and prints `status` otherwise.
    #[command(subcommand)]
    pub command: Option<Command>,
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
    /// Report progress as lines on stderr instead of drawing bars (the screen runs commands so).
    #[arg(long, global = true, hide = true)]
    pub progress_lines: bool,
}

/// A bucket named on the command line.
#[derive(Debug, Args)]
pub struct BucketArgs {
    /// The bucket: `s3://bucket/prefix` or `file:///path`.
    #[arg(long)]
    pub remote: Option<String>,
    /// S3 endpoint, e.g. `https://s3.us-west-004.backblazeb2.com`.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// S3 region, e.g. `us-west-004`.
    #[arg(long)]
    pub region: Option<String>,
}

/// A changeset's language.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ChangesetKind {
    /// Python (`changeset.py` helpers).
    Py,
    /// POSIX shell.
    Sh,
    /// SQL, run by b2m in one transaction.
    Sql,
}

/// What to do with the git hooks.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum HooksAction {
    /// Install (next to existing hooks, which keep running).
    Install,
    /// Remove, restoring exactly what was there.
    Uninstall,
}

/// What to do with the server.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ServerAction {
    /// `[server] stop`.
    Stop,
    /// `[server] start`.
    Start,
    /// `[server] running`: exit 0 when the server runs, 1 when it does not.
    Running,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set up b2m.toml, the db folder, db.toml, changeset/ and .gitignore lines (the bucket
    /// defaults to a folder `.b2m-bucket`).
    Init {
        /// The bucket.
        #[command(flatten)]
        bucket: BucketArgs,
    },
    /// Rebuild a published version into FILE (no project needed: `--remote`, or `B2M_REMOTE`).
    #[command(disable_version_flag = true)]
    Export {
        /// The database (stem, db.toml key or file name).
        db: String,
        /// Where to write it (must not exist).
        file: PathBuf,
        /// Which version (default: the one the bucket's db.toml pins).
        #[arg(long)]
        version: Option<u64>,
        /// The bucket, outside a project.
        #[command(flatten)]
        bucket: BucketArgs,
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
        #[arg(required_unless_present = "all")]
        db: Option<String>,
        /// Drop local changes (a backup copy is kept first).
        #[arg(long, conflicts_with = "all")]
        force: bool,
        /// Every database behind the bucket, without running changesets (what a developer's
        /// machine wants; `b2m preflight` is for servers).
        #[arg(long, conflicts_with = "db")]
        all: bool,
    },
    /// Carry the server's journaled rows onto the bucket's newer version and publish the result.
    Merge {
        /// The database (stem, db.toml key or file name).
        db: String,
    },
    /// Republish an earlier version's content as the next version (default: the current one's parent).
    Rollback {
        /// The database (stem, db.toml key or file name).
        db: String,
        /// The version whose content to republish.
        #[arg(long)]
        to: Option<u64>,
    },
    /// Put a kept file back on this server as the version its name says (default: the newest file
    /// a swap kept in `changeset/dbs/<ns>_replaced-<stem>/`); the bucket is not changed.
    Restore {
        /// The database (stem, db.toml key or file name).
        db: String,
        /// The kept file (`<stem>-v<N>.db`).
        file: Option<std::path::PathBuf>,
    },
    /// Every server (as its last preflight recorded it), what it runs, and how far behind it is.
    Fleet,
    /// Send a line to the team (`notify.webhook` / `notify.command` in b2m.toml).
    Notify {
        /// The line.
        message: String,
    },
    /// Every published version of a database, newest first.
    History {
        /// The database (stem, db.toml key or file name).
        db: String,
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
    /// What every server start runs: bring each database to the bucket's version and run the
    /// pending changesets; a non-zero exit stops the start.
    Preflight {
        /// Also stop the start when a database has local data the bucket lacks (ready_to_upload).
        #[arg(long)]
        strict: bool,
    },
    /// Write a new changeset script from the template: `changeset/scripts/<ns timestamp>_<phrase>.<kind>`.
    CreateChangeset {
        /// What it does, as `[a-z0-9][a-z0-9-_]*` (e.g. `add-index`).
        phrase: String,
        /// The script's language.
        #[arg(long, value_enum, default_value = "py")]
        kind: ChangesetKind,
    },
    /// Run a changeset once for the whole fleet (a done one is not run again).
    ExecuteChangeset {
        /// Its name, file name or path.
        name: String,
        /// Run it again after it failed.
        #[arg(long)]
        retry: bool,
    },
    /// List the changesets and where each stands in the bucket's ledger.
    Changesets {
        /// Only those that have not run yet (or failed).
        #[arg(long)]
        pending: bool,
    },
    /// Run `[server] stop` or `[server] start` from b2m.toml.
    Server {
        /// `stop` or `start`.
        #[arg(value_enum)]
        action: ServerAction,
    },
    /// Install or remove the git hooks (post-merge, post-checkout: status; pre-push: check --offline).
    Hooks {
        /// `install` or `uninstall`.
        #[arg(value_enum)]
        action: HooksAction,
    },
    /// Print shell completions.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// For CI: the local db.toml, the bucket's db.toml and the versions they pin agree (exit 1 if not).
    Check {
        /// Check the local db.toml and changeset scripts alone; read nothing from the bucket.
        #[arg(long)]
        offline: bool,
        /// Also download every pinned object and verify its sha256 and `PRAGMA quick_check`.
        #[arg(long, conflicts_with = "offline")]
        deep: bool,
    },
    /// Check credentials, bucket, prefix and clock, and probe conditional writes for `locking = "auto"`.
    Doctor,
    /// List (with `--dry-run`) or remove what no published db.toml references: orphans of
    /// interrupted uploads and stale leases.
    Gc {
        /// Only list; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also remove committed versions beyond the newest N of each database (the pinned one
        /// always stays), and changeset working folders beyond the newest N.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        keep: Option<u64>,
    },
    /// Move a project and bucket of the original b2m (`rootbucket`, `version/`, `lock/`) into
    /// b2m's layout, leaving every original object as it was; safe to run again.
    Import {
        /// b2m's bucket (default: the folder `b2m` beside the original's objects, under its
        /// `rootbucket`; the original's rclone settings are not read).
        #[command(flatten)]
        bucket: BucketArgs,
    },
    /// The main job end to end on a local-folder bucket, no credentials needed.
    Demo {
        /// Where to build the demo (default: a new temp folder, kept).
        dir: Option<PathBuf>,
    },
}
