//! Connections to the configured etcd endpoints, with failover.
//!
//! One etcd-client `Client` per endpoint, created on first use (tonic channels reconnect by
//! themselves, so a client stays valid across etcd restarts). Calls go to the endpoint that
//! answered last; when it fails with gRPC `Unavailable` — the connection could not be made, so
//! the request was never sent and trying elsewhere cannot apply it twice — the next endpoint is
//! tried, each at most once per call. Every attempt is bounded by the request timeout.

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

/// The connection failed before the request went out.
fn not_sent(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.code() == tonic::Code::Unavailable,
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}
