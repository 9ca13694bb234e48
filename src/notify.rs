//! Notifications: on every published version (upload, merge, changeset, rollback), a conflict, a
//! failed changeset or merge, and a preflight that stopped a start — the kinds `notify.events`
//! lists, all by default — and for `b2m notify MESSAGE`, b2m POSTs `{"content": "…"}` to
//! `notify.webhook` (Discord- and Slack-compatible) and/or runs `notify.command` with the event as
//! JSON on stdin. A failing notification is a warning: it never fails the operation it reports
//! on, and never blocks longer than a few seconds.

use std::time::Duration;

use serde::Serialize;

use crate::output::Output;
use crate::settings::Settings;

/// How long a notification may take.
const TIMEOUT: Duration = Duration::from_secs(5);

pub use crate::settings::NOTIFY_EVENTS as EVENTS;

/// The kind of a line of one's own (`b2m notify MESSAGE`): always sent.
pub const MESSAGE: &str = "message";

/// A version published: which db, from which version to which, what made it, its size.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Published {
    /// The stem.
    pub stem: String,
    /// The version it replaced (`None` for a first upload).
    pub from: Option<u64>,
    /// The version published.
    pub to: u64,
    /// `upload`, `merge`, `changeset`, `rollback`.
    pub made_by: String,
    /// Its size in bytes, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

impl Published {
    /// One line for people: "`ipm-db` v1 → v2 published by ops@server (upload, 1.2 MiB)".
    pub fn describe(&self) -> String {
        let from = self.from.map_or_else(|| "new".to_string(), |v| format!("v{v}"));
        let size = self.size.map(|s| format!(", {}", crate::output::human_bytes(s))).unwrap_or_default();
        format!("`{}` {from} → v{} published by {} ({}{size})", self.stem, self.to, crate::util::user_at_host(), self.made_by)
    }
}

/// What happened.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// `published`, `conflict`, `changeset_failed`, `merge_failed`, `preflight_stopped`, `message`.
    pub event: String,
    /// One line for people.
    pub content: String,
    /// The project folder.
    pub project: String,
    /// `user@host`.
    pub by: String,
    /// RFC 3339.
    pub at: String,
    /// For `published`: the version.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub published: Option<Published>,
}

impl Event {
    /// An event of `kind` in the project of `settings`, described by `message`.
    pub fn new(settings: &Settings, kind: &str, message: &str) -> Self {
        let host = crate::util::host_name();
        Event {
            event: kind.to_string(),
            content: format!("b2m on {host} ({}): {message}", settings.root.display()),
            project: settings.root.display().to_string(),
            by: crate::util::user_at_host(),
            at: crate::util::now_rfc3339(),
            published: None,
        }
    }

    /// The announcement of a published version.
    pub fn published(settings: &Settings, published: Published) -> Self {
        Event { published: Some(published.clone()), ..Event::new(settings, "published", &published.describe()) }
    }
}

/// Whether `settings` want events of `kind` sent (`notify.events`; a message always is).
pub fn wanted(settings: &Settings, kind: &str) -> bool {
    kind == MESSAGE || settings.notify_events.as_ref().is_none_or(|events| events.iter().any(|e| e == kind))
}

/// Sends `event` where `settings` say; failures are warnings on `out`.
pub fn send(settings: &Settings, out: &Output, event: &Event) {
    if !wanted(settings, &event.event) {
        return;
    }
    if let Some(url) = &settings.notify_webhook
        && let Err(e) = post(url, event)
    {
        out.info(&format!("warning: the notification webhook failed ({e}); the operation itself is unaffected"));
    }
    if let Some(command) = &settings.notify_command
        && let Err(e) = run(settings, command, event)
    {
        out.info(&format!("warning: `notify.command` failed ({e}); the operation itself is unaffected"));
    }
}

fn post(url: &str, event: &Event) -> Result<(), String> {
    let body = serde_json::json!({"content": event.content, "event": event}).to_string();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| e.to_string())?
            .https_or_http()
            .enable_http1()
            .build();
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build::<_, http_body_util::Full<hyper::body::Bytes>>(https);
        let request = hyper::Request::post(url)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(TIMEOUT, client.request(request))
            .await
            .map_err(|_| format!("no answer within {} s", TIMEOUT.as_secs()))?
            .map_err(|e| crate::telemetry::redact(&e.to_string()))?;
        if response.status().is_success() { Ok(()) } else { Err(format!("HTTP {}", response.status())) }
    })
}

fn run(settings: &Settings, command: &str, event: &Event) -> Result<(), String> {
    use crate::process::{Ended, run_bounded};
    let json = serde_json::to_vec(event).map_err(|e| e.to_string())?;
    match run_bounded(&settings.root, command, Some(json), TIMEOUT, &settings.state_dir.join("notify.out")).map_err(|e| e.to_string())? {
        Ended::Succeeded => Ok(()),
        Ended::Failed(status) => Err(format!("it exited with {status}")),
        Ended::TimedOut => Err(format!("it did not finish within {} s", TIMEOUT.as_secs())),
    }
}
