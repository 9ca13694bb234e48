//! `b2m demo [DIR]`: the main job end to end on the embedded default — a local-folder bucket, a
//! developer's project and a server's, two databases — with the status at each step.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde::Serialize;

use crate::engine::status::{DbStatus, status_all};
use crate::engine::{Context, fetch, publish};
use crate::error::{Error, Result};
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

/// Runs the demo in `dir` (which must be new or empty).
pub fn demo(dir: &Path, out: &Output) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
    if std::fs::read_dir(dir).map_err(|e| Error::io("cannot read", dir, e))?.next().is_some() {
        return Err(Error::config_hint(
            format!("demo folder `{}` is not empty", dir.display()),
            "pass a new folder, or none for a fresh temp folder",
        ));
    }
    let bucket = dir.join("bucket");
    let (dev, server) = (dir.join("dev"), dir.join("server"));
    let mut demo = Demo { out: out.clone(), bucket_url: format!("file://{}", bucket.display()), steps: Vec::new() };
    for project in [&dev, &server] {
        std::fs::create_dir_all(project).map_err(|e| Error::io("cannot create", project, e))?;
        super::init(project, Some(demo.bucket_url.clone()), None, None)?;
    }
    if !out.json {
        println!("b2m demo in `{}`: bucket `bucket/`, a developer `dev/`, a server `server/`", dir.display());
    }

    let dbs = dev.join("db/all_dbs");
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
    demo.show("dev: two new databases", &dev)?;

    let ctx = demo.open(&dev)?;
    for db in ["ipm-db", "emoji-db"] {
        let p = publish::upload(&ctx, db)?;
        demo.say(&format!("dev: b2m upload {db} → v{} ({} bytes, sha256 {}…)", p.version, p.size, &p.sha256[..12]));
    }
    demo.show("dev: published", &dev)?;
    demo.show("server: a fresh checkout", &server)?;

    let ctx = demo.open(&server)?;
    ctx.out.info("");
    fetch::fetch_manifest(&ctx)?;
    for db in ["ipm-db", "emoji-db"] {
        let f = fetch::download(&ctx, db, false)?;
        demo.say(&format!("server: b2m download {db} → `{}`", f.file));
    }
    demo.show("server: in sync", &server)?;

    sql(&dbs.join("ipm-db-v1.db"), "INSERT INTO packages VALUES ('serde','1.0.200');")?;
    demo.say("dev: adds a package to ipm-db");
    demo.show("dev: new data", &dev)?;
    let ctx = demo.open(&dev)?;
    let p = publish::upload(&ctx, "ipm-db")?;
    demo.say(&format!("dev: b2m upload ipm-db → v{} (the file is now `{}`, db.toml edited, comments kept)", p.version, p.file));
    demo.show("server: behind the bucket", &server)?;

    let ctx = demo.open(&server)?;
    let f = fetch::download(&ctx, "ipm-db", false)?;
    let rows = count(&server.join("db/all_dbs").join(&f.file), "packages")?;
    demo.say(&format!("server: b2m download ipm-db → `{}` with {rows} packages", f.file));
    demo.show("server: in sync again", &server)?;

    sql(&server.join("db/all_dbs").join(&f.file), "INSERT INTO packages VALUES ('tokio','1.40.0');")?;
    demo.say("server: writes a row of its own");
    demo.show("server: its new data is ready to upload, never silently dropped", &server)?;

    out.result(&DemoReport { dir: dir.display().to_string(), steps: std::mem::take(&mut demo.steps) }, || {
        format!("\nDone. Look around in `{}`; run `b2m -C {} status` there.", dir.display(), server.display())
    });
    Ok(())
}

/// `b2m demo [DIR]`.
pub fn run(dir: Option<PathBuf>, out: &Output) -> Result<u8> {
    let dir = match dir {
        Some(d) => d,
        None => {
            tempfile::Builder::new().prefix("b2m-demo-").tempdir().map_err(|e| Error::io("cannot create", std::env::temp_dir(), e))?.keep()
        }
    };
    let dir = std::path::absolute(&dir).map_err(|e| Error::io("cannot use", &dir, e))?;
    demo(&dir, out)?;
    Ok(0)
}
