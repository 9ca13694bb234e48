//! `b2m doctor`'s probe: can this bucket be reached with these credentials, how far is its clock
//! from ours, and does it check conditional writes — not at all (error or 501), by ignoring them
//! (a second create succeeds), non-atomically (racing creates both succeed), or atomically; and
//! can large objects go up in parts (a multipart upload started and aborted).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::error::Result;
use crate::store::{Condition, PutOutcome, Retention, Store, StoreError};

/// Contenders in each racing round.
const RACERS: usize = 12;
/// Racing rounds.
const ROUNDS: usize = 6;

/// What the probe found about conditional writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conditional {
    /// Refused (B2 answers 501 NotImplemented).
    Unsupported,
    /// Accepted and ignored: a second `If-None-Match: *` create succeeded.
    Ignored,
    /// Checked, but racing creates or swaps succeeded more than once.
    NonAtomic,
    /// Exactly one winner in every race.
    Atomic,
}

impl Conditional {
    /// The snake_case name stored in `.b2m/`.
    pub fn as_str(self) -> &'static str {
        match self {
            Conditional::Unsupported => "unsupported",
            Conditional::Ignored => "ignored",
            Conditional::NonAtomic => "non_atomic",
            Conditional::Atomic => "atomic",
        }
    }
}

/// The probe's findings.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// The bucket.
    pub location: String,
    /// Objects under the prefix (a listing worked).
    pub objects: usize,
    /// Bucket clock minus ours, in seconds (from a probe object's Last-Modified), when known.
    pub clock_skew_secs: Option<f64>,
    /// Conditional writes.
    pub conditional: Conditional,
    /// Winners seen per racing round (creates, then swaps).
    pub race_winners: Vec<usize>,
    /// How objects over the part size go up: `parts`, or `single_put` (one PUT each, up to
    /// 5 GiB) where the server's CreateMultipartUpload answer cannot be read.
    pub large_uploads: &'static str,
    /// The root element of that unreadable answer (`rclone serve s3`: `InitiateMultipartUpload`).
    pub multipart_answer: Option<String>,
    /// What the bucket keeps of old versions.
    pub retention: Retention,
    /// Milliseconds the probe took.
    pub millis: u128,
}

/// Probes the store. Leaves nothing behind.
pub fn probe(store: &Arc<dyn Store>) -> Result<Probe> {
    let started = Instant::now();
    let objects = store.list("")?.len();
    let base = crate::layout::doctor_probe(&uuid::Uuid::new_v4().simple().to_string());
    let key = format!("{base}/first");
    let before = SystemTime::now();
    let first = store.put(&key, b"probe", Condition::IfAbsent);
    let after = SystemTime::now();
    let clock_skew_secs = clock_skew(store.as_ref(), &key, before, after);
    let conditional = match first {
        Err(StoreError::ConditionalUnsupported { .. }) => Conditional::Unsupported,
        Err(e) => return Err(e.into()),
        Ok(_) => match store.put(&key, b"probe again", Condition::IfAbsent) {
            Err(StoreError::ConditionalUnsupported { .. }) => Conditional::Unsupported,
            Err(e) => return Err(e.into()),
            Ok(PutOutcome::Written { .. }) => Conditional::Ignored,
            Ok(PutOutcome::ConditionFailed) => Conditional::Atomic,
        },
    };
    let (conditional, race_winners) = if conditional == Conditional::Atomic { races(store, &base)? } else { (conditional, Vec::new()) };
    let multipart_answer = store.probe_multipart(&format!("{base}/multipart"))?;
    let large_uploads = if multipart_answer.is_some() { "single_put" } else { "parts" };
    for object in store.list(&format!("{base}/"))? {
        store.purge(&object.key)?;
    }
    let retention = store.retention()?;
    Ok(Probe {
        location: store.location().to_string(),
        objects,
        clock_skew_secs,
        conditional,
        race_winners,
        large_uploads,
        multipart_answer,
        retention,
        millis: started.elapsed().as_millis(),
    })
}

/// How far the server's clock is ahead of ours (negative: behind), from the time it stamped `key`,
/// written between `before` and `after`.
fn clock_skew(store: &dyn Store, key: &str, before: SystemTime, after: SystemTime) -> Option<f64> {
    store.head(key).ok().flatten().and_then(|info| info.last_modified).map(|server| {
        // The server stamped the object between `before` and `after`; its clock may count whole
        // seconds only, so a skew under a second or so is noise.
        let ours = before + after.duration_since(before).unwrap_or_default() / 2;
        match server.duration_since(ours) {
            Ok(ahead) => ahead.as_secs_f64(),
            Err(behind) => -behind.duration().as_secs_f64(),
        }
    })
}

/// Conditional writes that answer as atomic ones, raced: in each of `ROUNDS` rounds, `RACERS`
/// creations of one key and then as many swaps of it; exactly one of each must win. Atomic, or
/// non-atomic when a round had more (or fewer) winners; the winners of each race.
fn races(store: &Arc<dyn Store>, base: &str) -> Result<(Conditional, Vec<usize>)> {
    let mut race_winners = Vec::new();
    let mut conditional = Conditional::Atomic;
    for round in 0..ROUNDS {
        let race_key = format!("{base}/race-{round}");
        let created = race(store, &race_key, |_| Condition::IfAbsent)?;
        race_winners.push(created);
        let etag = store.get(&race_key)?.and_then(|o| o.etag);
        let swapped = match etag {
            Some(etag) => race(store, &race_key, |_| Condition::IfMatch(etag.clone()))?,
            None => RACERS,
        };
        race_winners.push(swapped);
        if created != 1 || swapped != 1 {
            conditional = Conditional::NonAtomic;
        }
    }
    Ok((conditional, race_winners))
}

/// Races `RACERS` conditional writes of one key; returns how many succeeded.
fn race(store: &Arc<dyn Store>, key: &str, condition: impl Fn(usize) -> Condition + Sync) -> Result<usize> {
    let barrier = std::sync::Barrier::new(RACERS);
    let results: Vec<Result<PutOutcome, StoreError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..RACERS)
            .map(|i| {
                let (barrier, condition) = (&barrier, &condition);
                scope.spawn(move || {
                    // Every write unique: an ETag is a content hash, so a racer rewriting the body
                    // that is already there would look like no change and win a swap as well.
                    let body = format!("racer {i} {}", uuid::Uuid::new_v4().simple());
                    barrier.wait();
                    store.put(key, body.as_bytes(), condition(i))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(Ok(PutOutcome::ConditionFailed))).collect()
    });
    let mut winners = 0;
    for result in results {
        if let PutOutcome::Written { .. } = result? {
            winners += 1;
        }
    }
    // Let the store settle between rounds.
    std::thread::sleep(Duration::from_millis(20));
    Ok(winners)
}
