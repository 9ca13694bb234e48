//! Diagnostics through `tracing` (`-v`, `RUST_LOG`), written to stderr with every credential
//! replaced by `***`, whatever library logged it and at whatever level.

use std::io::{self, Write};
use std::sync::OnceLock;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The credentials to hide, handed over by [`init`] (the settings read them from the environment).
static SECRETS: OnceLock<Vec<String>> = OnceLock::new();

fn secrets() -> &'static [String] {
    SECRETS.get().map(Vec::as_slice).unwrap_or_default()
}

/// An error as people read it, credentials redacted: its message on one line, and its hint.
pub fn error_words(e: &crate::error::Error) -> (String, Option<String>) {
    (redact(&e.to_string().replace('\n', " ")), e.hint().map(|h| redact(&h)))
}

/// `text` with every known credential replaced by `***`.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for secret in secrets() {
        out = out.replace(secret.as_str(), "***");
    }
    out
}

/// Sets up the subscriber: `RUST_LOG` when set, else by `-v` count; `secrets` (from
/// [`crate::settings::secrets`]) are hidden from every line it writes, and from [`redact`].
pub fn init(verbose: u8, secrets: Vec<String>) {
    let _ = SECRETS.set(secrets);
    // `RUST_LOG` is read here, not in the settings: it is the tracing ecosystem's own variable,
    // it says nothing about the project, and diagnostics start before any settings are loaded
    // (so that loading them can be traced).
    let filter = std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| {
        match verbose {
            0 => "b2m=warn",
            1 => "b2m=info",
            2 => "b2m=debug",
            _ => "b2m=trace,aws_config=debug,aws_sdk_s3=debug,aws_smithy_runtime=debug",
        }
        .to_string()
    });
    // `target=level` directives (as RUST_LOG writes them); a malformed one falls back to warnings.
    let targets: Targets = filter.parse().unwrap_or_else(|_| Targets::new().with_target("b2m", tracing::Level::WARN));
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(RedactingStderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .with_target(verbose >= 2)
        .finish()
        .with(targets)
        .try_init();
}

/// Hands out one buffering writer per event.
struct RedactingStderr;

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = EventWriter;
    fn make_writer(&'a self) -> Self::Writer {
        EventWriter { buf: Vec::new() }
    }
}

/// Buffers one event and writes it, redacted, when dropped.
struct EventWriter {
    buf: Vec<u8>,
}

impl Write for EventWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let text = redact(&String::from_utf8_lossy(&self.buf));
        let _ = io::stderr().write_all(text.as_bytes());
    }
}
