//! The screen's reads of the bucket, one at a time on a thread of their own, through the same
//! engine as the commands. A refresh is `b2m status`'s two requests; who published a version is
//! read once per version (versions never change).

use std::collections::HashSet;
use std::sync::mpsc::{Receiver, Sender};

use super::Event;
use super::app::{Loaded, Publish};
use crate::engine::Context;
use crate::engine::status::{DbStatus, status_all};
use crate::error::Error;
use crate::output::Output;
use crate::settings::Settings;

/// What the screen asks to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The status of every database (and who published the versions not seen yet).
    Refresh,
    /// A database's history.
    History(String),
    /// The fleet.
    Fleet,
    /// The changesets.
    Changesets,
}

/// Starts the reader; requests go to the returned sender, answers arrive as events.
pub fn start(settings: Settings, events: Sender<Event>) -> Sender<Request> {
    let (requests, inbox) = std::sync::mpsc::channel();
    std::thread::spawn(move || serve(settings, &inbox, &events));
    requests
}

/// One line, as the command prints an error.
pub fn error_line(e: &Error) -> String {
    match crate::telemetry::error_words(e) {
        (message, Some(hint)) => format!("{message}; {hint}"),
        (message, None) => message,
    }
}

fn serve(settings: Settings, inbox: &Receiver<Request>, events: &Sender<Event>) {
    let send = |loaded: Loaded| events.send(Event::Loaded(loaded)).is_ok();
    // Quiet: nothing may print over the screen.
    let ctx = match Context::open(settings, Output::new(false, true, 0)) {
        Ok(ctx) => ctx,
        Err(e) => {
            send(Loaded::Failed(error_line(&e)));
            return;
        }
    };
    let _ = events.send(Event::Location(ctx.store.location().to_string()));
    let mut seen = HashSet::new();
    for request in inbox {
        let loaded = match request {
            Request::Refresh => refresh(&ctx, &mut seen, &send),
            Request::History(stem) => crate::engine::history::history(&ctx, &stem).map(Loaded::History),
            Request::Fleet => crate::engine::fleet::fleet(&ctx).map(Loaded::Fleet),
            Request::Changesets => crate::engine::changesets::list(&ctx).map(Loaded::Changesets),
        };
        if !send(loaded.unwrap_or_else(|e| Loaded::Failed(error_line(&e)))) {
            return;
        }
    }
}

/// The status, then who published the versions it shows that were not seen before.
fn refresh(ctx: &Context, seen: &mut HashSet<(String, u64)>, send: &dyn Fn(Loaded) -> bool) -> crate::error::Result<Loaded> {
    let before = ctx.requests();
    let rows = status_all(ctx, &[])?;
    let at = chrono::Local::now().format("%H:%M:%S").to_string();
    send(Loaded::Status { rows: rows.clone(), requests: ctx.requests() - before, at });
    let before = ctx.requests();
    let found = last_publishes(ctx, &rows, seen);
    Ok(Loaded::LastPublish { found, requests: ctx.requests() - before })
}

fn last_publishes(ctx: &Context, rows: &[DbStatus], seen: &mut HashSet<(String, u64)>) -> Vec<(String, u64, Publish)> {
    let mut found = Vec::new();
    for id in rows.iter().filter_map(|r| r.remote_id.as_ref()) {
        if !seen.insert((id.stem.clone(), id.version)) {
            continue;
        }
        if let Ok(Some(meta)) = crate::engine::remote::read_meta(ctx.store.as_ref(), id) {
            let publish = Publish { by: meta.created_by, at: meta.created_at, made_by: meta.made_by, size: meta.size };
            found.push((id.stem.clone(), id.version, publish));
        }
    }
    found
}
