//! `b2m demo [DIR]`: the main job end to end on the embedded default — a local-folder bucket, a
//! developer's project and a server's, two databases — with the status at each step.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde::Serialize;

use crate::engine::status::{DbStatus, status_all};
use crate::engine::{Context, fetch, publish};
use crate::error::{Error, ExitStatus, Result};
use crate::output::Output;
use crate::settings::Settings;

#[derive(Serialize)]
struct Step {
    step: String,
    dbs: Vec<DbStatus>,
}

#[derive(Serialize)]
struct DemoReport {
    dir: String,
    steps: Vec<Step>,
}

struct Demo {
    out: Output,
    bucket_url: String,
    steps: Vec<Step>,
    /// The demo's folder.
    dir: PathBuf,
    /// The developer's project.
    dev: PathBuf,
    /// The server's project.
    server: PathBuf,
}

impl Demo {
    fn open(&self, project: &Path) -> Result<Context> {
        let mut settings = Settings::load(project)?;
        // The demo always uses its own folder bucket, whatever B2M_REMOTE says.
        settings.remote.url = self.bucket_url.clone();
        let quiet = Output::new(self.out.json, true, self.out.verbose);
        Context::open(settings, quiet)
    }

    fn show(&mut self, title: &str, project: &Path) -> Result<()> {
        let ctx = self.open(project)?;
        let rows = status_all(&ctx, &[])?;
        if !self.out.json {
            println!("\n== {title}\n{}", super::status::render(&rows).trim_end());
        }
        self.steps.push(Step { step: title.to_string(), dbs: rows });
        Ok(())
    }

    /// Runs preflight in `project`; returns what it fetched and ran, for people.
    fn preflight(&self, project: &Path) -> Result<String> {
        let ctx = self.open(project)?;
        let lock = ctx.lock()?;
        let done = crate::engine::preflight::preflight(&ctx, &lock, false)?;
        let mut parts: Vec<String> = done.fetched.iter().map(|f| format!("{} v{}", f.name, f.to)).collect();
        if parts.is_empty() {
            parts.push("nothing".into());
        }
        let ran: Vec<String> = done.changesets.iter().map(|c| format!("ran changeset {}", c.name)).collect();
        if !ran.is_empty() {
            parts.push(ran.join(", "));
        }
        Ok(parts.join(", "))
    }

    fn say(&self, text: &str) {
        if !self.out.json {
            println!("-> {text}");
        }
    }
}

fn sql(path: &Path, statements: &str) -> Result<()> {
    let conn = Connection::open(path).map_err(|e| Error::sqlite(path, e))?;
    conn.execute_batch(statements).map_err(|e| Error::sqlite(path, e))
}

fn count(path: &Path, table: &str) -> Result<i64> {
    let conn = Connection::open(path).map_err(|e| Error::sqlite(path, e))?;
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).map_err(|e| Error::sqlite(path, e))
}

/// Runs the demo in `dir` (which must be new or empty): a developer makes two databases and
/// publishes them, a server fetches them; new data goes both ways; a changeset runs once for the
/// fleet, and a new server joins.
pub fn demo(dir: &Path, out: &Output) -> Result<()> {
    let mut demo = Demo::set_up(dir, out)?;
    demo.new_databases()?;
    demo.publish_and_fetch()?;
    demo.new_data_both_ways()?;
    let server2 = demo.changeset_and_new_server()?;
    let (server, server2) = (demo.server.display().to_string(), server2.display().to_string());
    out.result(&DemoReport { dir: dir.display().to_string(), steps: std::mem::take(&mut demo.steps) }, || {
        format!(
            "\nDone. Look around in `{}`; try `b2m -C {server} status`, `b2m -C {server} changesets`, `b2m -C {server2} preflight`.",
            dir.display(),
        )
    });
    Ok(())
}

impl Demo {
    /// Checks that `dir` is new or empty, and makes the developer's and the server's projects in
    /// it, on a folder bucket beside them.
    fn set_up(dir: &Path, out: &Output) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
        if std::fs::read_dir(dir).map_err(|e| Error::io("cannot read", dir, e))?.next().is_some() {
            return Err(Error::config_hint(
                format!("demo folder `{}` is not empty", dir.display()),
                "pass a new folder, or none for a fresh temp folder",
            ));
        }
        let bucket = dir.join("bucket");
        let demo = Demo {
            out: out.clone(),
            bucket_url: format!("file://{}", bucket.display()),
            steps: Vec::new(),
            dir: dir.to_path_buf(),
            dev: dir.join("dev"),
            server: dir.join("server"),
        };
        for project in [&demo.dev, &demo.server] {
            std::fs::create_dir_all(project).map_err(|e| Error::io("cannot create", project, e))?;
            super::init(project, Some(demo.bucket_url.clone()), None, None)?;
        }
        if !out.json {
            println!("b2m demo in `{}`: bucket `bucket/`, a developer `dev/`, a server `server/`", dir.display());
        }
        Ok(demo)
    }

    /// The developer's two databases.
    fn dbs(&self) -> PathBuf {
        self.dev.join("db/all_dbs")
    }

    /// The developer makes two databases and lists them in db.toml.
    fn new_databases(&mut self) -> Result<()> {
        let dbs = self.dbs();
        sql(
            &dbs.join("ipm-db-v1.db"),
            "PRAGMA journal_mode=WAL; CREATE TABLE packages(name TEXT PRIMARY KEY, version TEXT); INSERT INTO packages VALUES ('left-pad','1.3.0'),('lodash','4.17.21');",
        )?;
        sql(
            &dbs.join("emoji-db-v1.db"),
            "CREATE TABLE emoji(code TEXT PRIMARY KEY, name TEXT); INSERT INTO emoji VALUES ('1F600','grinning face'),('1F680','rocket');",
        )?;
        let manifest = dbs.join("db.toml");
        let text = format!(
            "# The databases this server reads; b2m keeps the versions current.\n[db]\nipmdb = \"ipm-db-v1.db\"    # packages\nemojidb = \"emoji-db-v1.db\"\npath = \"{}/\"\n",
            dbs.display()
        );
        crate::fsutil::write_atomic(&manifest, text.as_bytes())?;
        let dev = self.dev.clone();
        self.show("dev: two new databases", &dev)
    }

    /// The developer publishes both; the server, a fresh checkout, downloads them.
    fn publish_and_fetch(&mut self) -> Result<()> {
        let (dev, server) = (self.dev.clone(), self.server.clone());
        let ctx = self.open(&dev)?;
        for db in ["ipm-db", "emoji-db"] {
            let p = publish::upload(&ctx, db)?;
            self.say(&format!("dev: b2m upload {db} → v{} ({} bytes, sha256 {}…)", p.version, p.size, &p.sha256[..12]));
        }
        self.show("dev: published", &dev)?;
        self.show("server: a fresh checkout", &server)?;

        let ctx = self.open(&server)?;
        ctx.out.info("");
        fetch::fetch_manifest(&ctx)?;
        for db in ["ipm-db", "emoji-db"] {
            let f = fetch::download(&ctx, db, false)?;
            self.say(&format!("server: b2m download {db} → `{}`", f.file));
        }
        self.show("server: in sync", &server)
    }

    /// The developer adds a row and publishes it, the server's preflight fetches it; then the
    /// server writes a row of its own and publishes that.
    fn new_data_both_ways(&mut self) -> Result<()> {
        let (dev, server) = (self.dev.clone(), self.server.clone());
        sql(&self.dbs().join("ipm-db-v1.db"), "INSERT INTO packages VALUES ('serde','1.0.200');")?;
        self.say("dev: adds a package to ipm-db");
        self.show("dev: new data", &dev)?;
        let ctx = self.open(&dev)?;
        let p = publish::upload(&ctx, "ipm-db")?;
        self.say(&format!("dev: b2m upload ipm-db → v{} (the file is now `{}`, db.toml edited, comments kept)", p.version, p.file));
        self.show("server: behind the bucket", &server)?;

        let done = self.preflight(&server)?;
        let rows = count(&server.join("db/all_dbs/ipm-db-v2.db"), "packages")?;
        self.say(&format!("server: b2m preflight (what `just start-prod` runs) fetched {} → {rows} packages", done));
        self.show("server: in sync again", &server)?;

        sql(&server.join("db/all_dbs/ipm-db-v2.db"), "INSERT INTO packages VALUES ('tokio','1.40.0');")?;
        self.say("server: writes a row of its own");
        self.show("server: its new data is ready to upload, never silently dropped", &server)?;
        let ctx = self.open(&server)?;
        let p = publish::upload(&ctx, "ipm-db")?;
        self.say(&format!("server: b2m upload ipm-db → v{}", p.version));
        Ok(())
    }

    /// A changeset, written once by the developer and run once for the whole fleet: a new server
    /// (returned) joins and its preflight runs it; the first server's preflight only fetches.
    fn changeset_and_new_server(&mut self) -> Result<PathBuf> {
        let server = self.server.clone();
        let ctx = self.open(&self.dev)?;
        let created = crate::changeset::create::create(&ctx.settings.changesets, "pin-left-pad", crate::changeset::Kind::Sql)?;
        crate::fsutil::write_atomic(
            std::path::Path::new(&created.path),
            b"-- b2m: db = ipm-db\nUPDATE packages SET version = '1.3.1' WHERE name = 'left-pad';\nINSERT INTO packages VALUES ('rand', '0.8.5');\n",
        )?;
        self.say(&format!("dev: b2m create-changeset pin-left-pad --kind sql → `{}` (committed to git)", created.name));
        let server2 = self.dir.join("server2");
        std::fs::create_dir_all(&server2).map_err(|e| Error::io("cannot create", &server2, e))?;
        super::init(&server2, Some(self.bucket_url.clone()), None, None)?;
        std::fs::remove_file(server2.join("db/all_dbs/db.toml"))
            .map_err(|e| Error::io("cannot remove", server2.join("db/all_dbs/db.toml"), e))?;
        for project in [&server, &server2] {
            let scripts = project.join("changeset/scripts");
            std::fs::create_dir_all(&scripts).map_err(|e| Error::io("cannot create", &scripts, e))?;
            let to = scripts.join(std::path::Path::new(&created.path).file_name().unwrap_or_default());
            std::fs::copy(&created.path, &to).map_err(|e| Error::io("cannot copy to", &to, e))?;
        }
        self.say("server2: a new server joins (git pull brings the changeset; no db.toml, no databases yet)");
        let done = self.preflight(&server2)?;
        self.say(&format!("server2: b2m preflight fetched {done}"));
        self.show("server2: up, with the changeset's version", &server2)?;
        let done = self.preflight(&server)?;
        self.say(&format!("server: b2m preflight fetched {done}; the changeset already ran, so it does not run again"));
        self.show("server: on the same version", &server)?;
        Ok(server2)
    }
}

/// `b2m demo [DIR]`.
pub fn run(dir: Option<PathBuf>, out: &Output) -> Result<ExitStatus> {
    let dir = match dir {
        Some(d) => d,
        None => {
            tempfile::Builder::new().prefix("b2m-demo-").tempdir().map_err(|e| Error::io("cannot create", std::env::temp_dir(), e))?.keep()
        }
    };
    let dir = std::path::absolute(&dir).map_err(|e| Error::io("cannot use", &dir, e))?;
    demo(&dir, out)?;
    Ok(ExitStatus::Success)
}
