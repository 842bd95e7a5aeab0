//! Watch delivery for the embedded store: one poller thread per open store.
//!
//! The thread owns its own connection. Every `POLL` it asks SQLite for `PRAGMA data_version`,
//! which moves whenever any other connection (in this or another process) commits; then it reads
//! the log rows above the last revision it saw in one read transaction and hands them to every
//! watcher whose prefix matches. Because writers commit log ids in order, "rows above last" has no
//! gaps. A watcher whose channel is full, or that asked for older history, falls behind
//! ("unsynced") and is fed straight from the log, a channel's worth at a time, until it catches
//! up — so one slow consumer never stalls the others. A watcher behind the compact revision gets
//! `Error::Compacted` and ends. The thread also sweeps expired leases, so their keys vanish even
//! when nobody writes, and compacts history older than the newest `AUTO_COMPACT_KEEP` revisions
//! every `AUTO_COMPACT`.

use super::store::Store;
use crate::error::{Error, Result};
use crate::{Revision, WatchEvent};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{Sender, error::TrySendError};

/// How often the file is checked for other connections' commits.
const POLL: Duration = Duration::from_millis(10);
/// How often expired leases are looked for.
const SWEEP: Duration = Duration::from_millis(200);
/// How often history is compacted automatically (like kine: keep the newest revisions, so the
/// log does not grow forever; a watcher further behind relists).
const AUTO_COMPACT: Duration = Duration::from_secs(300);
/// Revisions kept watchable by automatic compaction.
const AUTO_COMPACT_KEEP: i64 = 1000;
/// Most events read for all synced watchers in one poll.
const BATCH: usize = 1024;
/// Capacity of each watch channel.
pub(super) const CHANNEL: usize = 1024;

/// A new watch handed to the poller.
pub(super) struct Registration {
    pub prefix: String,
    /// First revision to deliver (already resolved: never 0).
    pub from: Revision,
    pub tx: Sender<Result<WatchEvent>>,
}

struct Watcher {
    prefix: String,
    next: Revision,
    tx: Sender<Result<WatchEvent>>,
    /// A final error still to deliver (the channel was full).
    ending: Option<Error>,
    done: bool,
}

impl Watcher {
    /// Sends one event; false when the channel is full (the event stays undelivered).
    fn offer(&mut self, ev: &WatchEvent) -> bool {
        match self.tx.try_send(Ok(ev.clone())) {
            Ok(()) => {
                self.next = ev.kv.mod_revision + 1;
                true
            }
            Err(TrySendError::Full(_)) => false,
            Err(TrySendError::Closed(_)) => {
                self.done = true;
                false
            }
        }
    }

    fn end(&mut self, err: Error) {
        self.ending = Some(err);
        self.flush_ending();
    }

    fn flush_ending(&mut self) {
        if let Some(err) = self.ending.take() {
            match self.tx.try_send(Err(err)) {
                Ok(()) | Err(TrySendError::Closed(_)) => self.done = true,
                Err(TrySendError::Full(Err(err))) => self.ending = Some(err),
                Err(TrySendError::Full(Ok(_))) => self.done = true,
            }
        }
    }
}

/// Runs until the store handle (the registration sender) is dropped.
pub(super) fn run(mut store: Store, registrations: Receiver<Registration>) {
    let mut watchers: Vec<Watcher> = Vec::new();
    // The baseline data_version must be taken before the revision: a commit landing between the
    // two reads then moves data_version past the baseline and is polled. In the other order it
    // would be counted in the baseline but not in `last`, and sit undelivered until the next write.
    let mut version = store.data_version().unwrap_or(0);
    let mut last = match store.revision() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(store = store.label(), error = %e, "watch poller cannot start");
            fail_all(&registrations, &mut watchers, e);
            return;
        }
    };
    let mut next_sweep = Instant::now();
    let mut next_compact = Instant::now() + AUTO_COMPACT;
    loop {
        match registrations.recv_timeout(POLL) {
            Ok(reg) => {
                watchers.push(new_watcher(reg));
                while let Ok(reg) = registrations.try_recv() {
                    watchers.push(new_watcher(reg));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let mut changed = false;
        if Instant::now() >= next_sweep {
            next_sweep = Instant::now() + SWEEP;
            match store.sweep_if_expired() {
                // Our own commits do not move our data_version: look explicitly.
                Ok(n) => changed |= n > 0,
                Err(e) => tracing::warn!(store = store.label(), error = %e, "lease sweep failed"),
            }
        }
        if Instant::now() >= next_compact {
            next_compact = Instant::now() + AUTO_COMPACT;
            match store.auto_compact(AUTO_COMPACT_KEEP) {
                Ok(moved) => changed |= moved.is_some(),
                Err(e) => tracing::warn!(store = store.label(), error = %e, "compaction failed"),
            }
        }
        match store.data_version() {
            Ok(v) => {
                changed |= v != version;
                version = v;
            }
            Err(e) => {
                fail_all(&registrations, &mut watchers, e);
                continue;
            }
        }
        for w in watchers.iter_mut() {
            w.flush_ending();
        }
        watchers.retain(|w| !w.done && !w.tx.is_closed());
        let behind = watchers
            .iter()
            .any(|w| w.ending.is_none() && w.next <= last);
        if !(changed || behind) {
            continue;
        }
        match poll(&mut store, &mut watchers, last) {
            Ok(seen) => last = seen,
            Err(e) => {
                tracing::warn!(store = store.label(), error = %e, "watch poll failed");
                fail_all(&registrations, &mut watchers, e);
            }
        }
    }
}

fn new_watcher(reg: Registration) -> Watcher {
    Watcher {
        prefix: reg.prefix,
        next: reg.from,
        tx: reg.tx,
        ending: None,
        done: false,
    }
}

/// Ends every watch with `err` (their owners re-watch, which starts afresh).
fn fail_all(registrations: &Receiver<Registration>, watchers: &mut Vec<Watcher>, err: Error) {
    while let Ok(reg) = registrations.try_recv() {
        watchers.push(new_watcher(reg));
    }
    let msg = err.to_string();
    for w in watchers.iter_mut() {
        w.end(Error::Backend(msg.clone()));
    }
    watchers.retain(|w| !w.done);
}

/// Delivers everything committed since `last`; returns the new `last`.
fn poll(store: &mut Store, watchers: &mut [Watcher], last: Revision) -> Result<Revision> {
    let snap = store.snapshot()?;
    let batch = snap.events(last + 1, None, BATCH)?;
    let seen = if batch.len() == BATCH {
        batch.last().map_or(snap.revision, |e| e.kv.mod_revision)
    } else {
        snap.revision
    };
    for w in watchers
        .iter_mut()
        .filter(|w| w.ending.is_none() && !w.done)
    {
        if w.next < snap.compacted {
            w.end(Error::Compacted {
                requested: w.next,
                compacted: snap.compacted,
            });
            continue;
        }
        if w.next > last {
            // Synced: the batch covers every revision this watcher still needs.
            let mut stalled = false;
            let start = w.next;
            for ev in batch.iter().filter(|e| e.kv.mod_revision >= start) {
                if ev.kv.key.starts_with(&w.prefix) && !w.offer(ev) {
                    // Full: the watcher continues from this event via the unsynced path.
                    stalled = true;
                    break;
                }
            }
            if !stalled && !w.done {
                // Everything up to `seen` was delivered or filtered out.
                w.next = w.next.max(seen + 1);
            }
        } else {
            // Unsynced: catch up from the log, as much as the channel takes.
            let room = w.tx.capacity();
            if room == 0 {
                continue;
            }
            let evs = snap.events(w.next, Some(&w.prefix), room)?;
            let complete = evs.len() < room;
            for ev in &evs {
                if !w.offer(ev) {
                    break;
                }
            }
            if complete && !w.done {
                w.next = w.next.max(snap.revision + 1);
            }
        }
    }
    snap.finish()?;
    Ok(seen)
}
