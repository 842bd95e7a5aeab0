//! Connections to the configured etcd endpoints, with failover.
//!
//! One etcd-client `Client` per endpoint, created on first use (tonic channels reconnect by
//! themselves, so a client stays valid across etcd restarts). Calls go to the endpoint that
//! answered last; when it fails because the connection could not be made (or the member has no
//! leader, which etcd checks before proposing), the request was never applied and trying
//! elsewhere cannot apply it twice, so the next endpoint is tried, each at most once per call.
//! Other `Unavailable` errors — etcd's "request timed out" or "leader changed", a reset or a
//! keep-alive timeout of a live connection — may come after the request was applied: they are
//! returned as they are (outcome unknown), never re-sent. Every attempt is bounded by the
//! request timeout.

use etcd_client::{Client, ConnectOptions, KvClient, LeaseClient, WatchClient};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

/// The per-endpoint clients of one etcd-client `Client`.
#[derive(Clone)]
pub(super) struct Clients {
    pub kv: KvClient,
    pub watch: WatchClient,
    pub lease: LeaseClient,
}

/// Why a call failed, before mapping to our `Error`.
pub(super) enum RawError {
    Etcd(etcd_client::Error),
    TimedOut,
}

pub(super) struct Pool {
    endpoints: Vec<String>,
    slots: Vec<Mutex<Option<Clients>>>,
    active: AtomicUsize,
    opts: ConnectOptions,
    request: Duration,
    max_decode: usize,
}

impl Pool {
    pub fn new(
        endpoints: &[String],
        opts: ConnectOptions,
        request: Duration,
        max_decode: usize,
    ) -> Pool {
        Pool {
            endpoints: endpoints.to_vec(),
            slots: endpoints.iter().map(|_| Mutex::new(None)).collect(),
            active: AtomicUsize::new(0),
            opts,
            request,
            max_decode,
        }
    }

    async fn clients(&self, i: usize) -> Result<Clients, etcd_client::Error> {
        let mut slot = self.slots[i].lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        // With a user, connect authenticates at once: one round trip, possibly failing.
        let client = Client::connect([&self.endpoints[i]], Some(self.opts.clone())).await?;
        let c = Clients {
            kv: client
                .kv_client()
                .max_decoding_message_size(self.max_decode),
            watch: client
                .watch_client()
                .max_decoding_message_size(self.max_decode),
            lease: client.lease_client(),
        };
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs `f` on the active endpoint, failing over as the module explains.
    pub async fn call<T, F, Fut>(&self, mut f: F) -> Result<T, RawError>
    where
        F: FnMut(Clients) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let n = self.endpoints.len();
        let start = self.active.load(Ordering::Relaxed);
        let mut last = RawError::TimedOut;
        for k in 0..n {
            let i = (start + k) % n;
            let attempt = async {
                let c = self.clients(i).await?;
                f(c).await
            };
            match tokio::time::timeout(self.request, attempt).await {
                Ok(Ok(v)) => {
                    if i != start {
                        self.active.store(i, Ordering::Relaxed);
                    }
                    return Ok(v);
                }
                Ok(Err(e)) if not_sent(&e) => last = RawError::Etcd(e),
                Ok(Err(e)) => return Err(RawError::Etcd(e)),
                // The request may have reached etcd: do not send it again elsewhere.
                Err(_) => return Err(RawError::TimedOut),
            }
        }
        Err(last)
    }
}

/// The request cannot have been applied: the connection failed before it went out, or etcd
/// refused it before proposing it.
fn not_sent(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::Unavailable => {
            let m = s.message().to_ascii_lowercase();
            [
                "tcp connect",
                "error trying to connect",
                "connection refused",
                "dns error",
                "etcdserver: no leader",
            ]
            .iter()
            .any(|w| m.contains(w))
        }
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::not_sent;

    fn unavailable(msg: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::unavailable(msg))
    }

    #[test]
    fn only_failures_before_sending_are_retried_elsewhere() {
        for m in [
            "error trying to connect: tcp connect error: Connection refused (os error 111)",
            "tcp connect error",
            "dns error: failed to lookup address information",
            "etcdserver: no leader",
        ] {
            assert!(not_sent(&unavailable(m)), "{m} should fail over");
        }
        for m in [
            "etcdserver: request timed out",
            "etcdserver: leader changed",
            "error reading a body from connection: connection reset",
            "keepalive watchdog timeout",
            "",
        ] {
            assert!(!not_sent(&unavailable(m)), "{m} may have been applied");
        }
        let other = etcd_client::Error::GRpcStatus(tonic::Status::failed_precondition("x"));
        assert!(!not_sent(&other));
    }
}
