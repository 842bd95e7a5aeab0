//! etcd watches as `WatchStream`s: one task per watch forwards events in revision order and,
//! when the gRPC stream breaks (etcd restarted, connection lost), opens it again from the last
//! delivered revision + 1, so the receiver sees neither a gap nor a duplicate. It gives up after
//! `Timeouts::watch_resume` without success and ends the stream with the error; a compacted
//! start revision ends it with `Error::Compacted` (the caller relists).

use super::conn::{Pool, RawError};
use super::{EtcdDatastore, Target, map_err, prefix_end, range_start, to_kv};
use crate::error::{Error, Result};
use crate::{EventKind, Revision, WatchEvent, WatchStream};
use etcd_client::{EventType, WatchOptions};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Events buffered between the etcd stream and a slow receiver.
const BUFFER: usize = 1024;

struct Watcher {
    pool: Arc<Pool>,
    target: Target,
    prefix: String,
    resume_for: Duration,
    request_timeout: Duration,
    tx: mpsc::Sender<Result<WatchEvent>>,
}

/// Opens the first stream before returning, so an unreachable etcd is reported by `watch()`
/// itself; a compacted `from` arrives as the stream's first (and last) item.
pub(super) async fn start(ds: &EtcdDatastore, prefix: &str, from: Revision) -> Result<WatchStream> {
    let (tx, rx) = mpsc::channel(BUFFER);
    let w = Watcher {
        pool: ds.pool.clone(),
        target: ds.target.clone(),
        prefix: prefix.to_string(),
        resume_for: ds.timeouts.watch_resume,
        request_timeout: ds.timeouts.request,
        tx,
    };
    let first = w.open(from).await?;
    tokio::spawn(w.run(first, from));
    Ok(rx)
}

enum Step {
    /// The receiver is gone or the stream ended for good.
    Done,
    /// The stream broke; reopen from this revision.
    Reopen,
}

impl Watcher {
    async fn open(&self, from: Revision) -> Result<etcd_client::WatchStream> {
        let opts = WatchOptions::new()
            .with_range(prefix_end(&self.prefix))
            .with_start_revision(from.max(0))
            .with_prev_key();
        let key = range_start(&self.prefix);
        let opened = self
            .pool
            .call(|mut c| {
                let (key, opts) = (key.clone(), opts.clone());
                async move { c.watch.watch(key, Some(opts)).await }
            })
            .await;
        opened.map_err(|e| match e {
            RawError::TimedOut => self.target.timed_out(self.request_timeout),
            RawError::Etcd(e) => map_err(&self.target, &format!("watch {}", self.prefix), e),
        })
    }

    async fn run(self, first: etcd_client::WatchStream, from: Revision) {
        // `next` is the first revision not yet delivered; 0 until known when watching "from now".
        let mut next = from.max(0);
        let mut stream = Some(first);
        let mut broken_since: Option<Instant> = None;
        let mut backoff = Duration::from_millis(50);
        loop {
            if let Some(s) = stream.take() {
                match self.pump(s, &mut next, &mut broken_since).await {
                    Step::Done => return,
                    Step::Reopen => {}
                }
            }
            let since = *broken_since.get_or_insert_with(Instant::now);
            tokio::select! {
                _ = self.tx.closed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
            match self.open(next).await {
                Ok(s) => {
                    stream = Some(s);
                    backoff = Duration::from_millis(50);
                }
                Err(e) if since.elapsed() >= self.resume_for => {
                    tracing::warn!(prefix = %self.prefix, error = %e, "etcd watch given up");
                    let _ = self.tx.send(Err(e)).await;
                    return;
                }
                Err(e) => {
                    tracing::debug!(prefix = %self.prefix, error = %e, "etcd watch reopen failed");
                }
            }
        }
    }

    /// Forwards one gRPC stream's events until it ends.
    async fn pump(
        &self,
        mut s: etcd_client::WatchStream,
        next: &mut Revision,
        broken_since: &mut Option<Instant>,
    ) -> Step {
        loop {
            let msg = tokio::select! {
                _ = self.tx.closed() => return Step::Done,
                m = s.message() => m,
            };
            let resp = match msg {
                Ok(Some(r)) => r,
                Ok(None) => return Step::Reopen,
                Err(e) => {
                    tracing::debug!(prefix = %self.prefix, error = %e, "etcd watch stream broke");
                    return Step::Reopen;
                }
            };
            if resp.compact_revision() > 0 {
                let err = Error::Compacted {
                    requested: *next,
                    compacted: resp.compact_revision(),
                };
                let _ = self.tx.send(Err(err)).await;
                return Step::Done;
            }
            if resp.canceled() {
                let reason = resp.cancel_reason().to_string();
                // etcd cancels watches on a member going away too; those resume.
                if reason.is_empty() || reason.contains("leader") || reason.contains("closing") {
                    return Step::Reopen;
                }
                let err = Error::Backend(format!("etcd cancelled watch {}: {reason}", self.prefix));
                let _ = self.tx.send(Err(err)).await;
                return Step::Done;
            }
            if resp.created() {
                *broken_since = None;
                if *next == 0 {
                    *next = resp.header().map(|h| h.revision() + 1).unwrap_or(0);
                }
            }
            // All events of one revision arrive in one response, so `next` moves per response.
            let floor = *next;
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let event = match to_kv(kv) {
                    Ok(kv) => WatchEvent {
                        kind: match ev.event_type() {
                            EventType::Put => EventKind::Put,
                            EventType::Delete => EventKind::Delete,
                        },
                        prev: ev.prev_kv().and_then(|p| to_kv(p).ok()),
                        kv,
                    },
                    Err(e) => {
                        let _ = self.tx.send(Err(e)).await;
                        return Step::Done;
                    }
                };
                let rev = event.kv.mod_revision;
                if rev < floor {
                    continue; // already delivered before a reopen
                }
                if self.tx.send(Ok(event)).await.is_err() {
                    return Step::Done;
                }
                *next = (*next).max(rev + 1);
            }
        }
    }
}
