//! Group commit for concurrent auto-assignments of one host in one process. Requests queue per
//! host; whoever gets the host's lock takes the whole queue and, when the host's last-used block
//! (see `cache`) has room for all of them, serves them with ONE transaction: the block once,
//! every new handle checked absent, plus the usual pool, Node and configuration checks. Anything
//! else — a single request, a request of another shape, a missing or full block, any failed
//! check — goes through the ordinary path one request at a time, so batching changes the number
//! of transactions, never the outcome. A request whose caller went away meanwhile has its
//! addresses given back; a request taken by a holder whose own caller went away (its future
//! dropped before answering) is served by its caller when its turn comes.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use calico_datastore::{Check, Op, keys};
use ipnet::IpNet;
use tokio::sync::oneshot;
use tokio::sync::oneshot::error::TryRecvError;

use super::assign::host_affinity;
use super::store::Versioned;
use super::{Assignments, AutoAssignArgs, Ipam, Result};
use crate::model::HandleValue;
use crate::pools::{PoolRequest, select_pools};

/// One queued request and where its answer goes.
pub(crate) struct Waiter {
    args: AutoAssignArgs,
    tx: oneshot::Sender<Result<Assignments>>,
}

/// The queues of waiting requests, per host.
#[derive(Default)]
pub(crate) struct Queues(Mutex<HashMap<String, Vec<Waiter>>>);

impl Queues {
    fn push(&self, host: &str, w: Waiter) {
        let mut q = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        q.entry(host.to_string()).or_default().push(w);
    }

    fn take(&self, host: &str) -> Vec<Waiter> {
        let mut q = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        q.remove(host).unwrap_or_default()
    }
}

/// Requests that can share a transaction: IPv4 only, with a handle.
fn same_shape(a: &AutoAssignArgs, b: &AutoAssignArgs) -> bool {
    a.ipv4_pools == b.ipv4_pools
        && a.namespace_labels == b.namespace_labels
        && a.usage == b.usage
        && a.max_blocks_per_host == b.max_blocks_per_host
}

impl Ipam {
    /// Whether a request may be served in a batch.
    pub(super) fn batchable(args: &AutoAssignArgs) -> bool {
        args.num_v4 > 0 && args.num_v6 == 0 && args.handle.is_some()
    }

    /// Queues the request, then either finds it answered by the previous lock holder or serves
    /// the queue itself.
    pub(super) async fn auto_assign_queued(&self, args: &AutoAssignArgs) -> Result<Assignments> {
        let host = args.hostname.as_str();
        let lock = self.host_lock(host);
        // Nobody holds or waits for the host (tokio's lock goes to its waiters in order, so
        // try_lock fails while any wait): nothing to batch with, so no queue and no copy of the
        // request. Requests arriving meanwhile queue, and the next holder serves them.
        if let Ok(_turn) = lock.try_lock() {
            return self.auto_assign_locked(args).await;
        }
        let (tx, mut rx) = oneshot::channel();
        self.queues.push(
            host,
            Waiter {
                args: args.clone(),
                tx,
            },
        );
        let _turn = lock.lock().await;
        match rx.try_recv() {
            // Served by the previous holder (who answers everything it took before letting go).
            Ok(r) => return r,
            // Taken by a holder whose future was dropped before answering (its caller's
            // timeout): no longer queued, so served here. (Receiving again after this would
            // panic: the receiver is spent.)
            Err(TryRecvError::Closed) => return self.auto_assign_locked(args).await,
            Err(TryRecvError::Empty) => {}
        }
        // Batch what fits the last-used block; serve the first of the rest alone (it may claim
        // a new block), then batch the others again, in arrival order.
        let mut pending = self.queues.take(host);
        while !pending.is_empty() {
            if pending.len() > 1 {
                pending = self.serve_together(pending).await;
            }
            if pending.is_empty() {
                break;
            }
            let w = pending.remove(0);
            let r = self.auto_assign_locked(&w.args).await;
            self.answer(w, r).await;
        }
        match rx.await {
            Ok(r) => r,
            // Not in the queue we took: a dropped holder had it (its waiters go as its future
            // is dropped, which may end just after its turn did). We hold the turn: serve it.
            Err(_) => self.auto_assign_locked(args).await,
        }
    }

    /// Sends a result; addresses for a caller that went away are given back.
    async fn answer(&self, w: Waiter, r: Result<Assignments>) {
        if let Err(Ok(unwanted)) = w.tx.send(r) {
            let ips: Vec<IpAddr> = unwanted.v4.iter().map(IpNet::addr).collect();
            self.undo(&ips, w.args.handle.as_deref()).await;
        }
    }

    /// Serves what it can of `batch` with one transaction; returns the requests it did not.
    async fn serve_together(&self, batch: Vec<Waiter>) -> Vec<Waiter> {
        let first = batch[0].args.clone();
        let mut handles = BTreeSet::new();
        let (together, mut rest): (Vec<Waiter>, Vec<Waiter>) = batch.into_iter().partition(|w| {
            same_shape(&first, &w.args)
                && w.args
                    .handle
                    .as_ref()
                    .is_some_and(|h| handles.insert(h.clone()))
        });
        if together.len() < 2 {
            rest.extend(together);
            return rest;
        }
        let host = first.hostname.as_str();
        let loaded = tokio::try_join!(self.shared(false), self.node_info(host, false));
        let Ok(((shared, _), (node, _))) = loaded else {
            rest.extend(together);
            return rest;
        };
        // Taken out of the cache (we hold the host's lock); put back when not written.
        let Some(b) = self.take_last_block(host, false) else {
            rest.extend(together);
            return rest;
        };
        let pools = select_pools(
            &shared.pools,
            &PoolRequest {
                v6: false,
                usage: first.usage,
                requested: &first.ipv4_pools,
                node_labels: &node.labels,
                node: host,
                namespace_labels: first.namespace_labels.as_ref(),
            },
        );
        let cidr = b.value.cidr;
        let usable = pools.is_ok_and(|p| p.iter().any(|p| p.cidr.contains(&cidr)))
            && b.value.affinity.as_deref() == Some(host_affinity(host).as_str())
            && !shared.reservations.covers(&cidr);
        if !usable {
            self.set_last_block(host, false, b);
            rest.extend(together);
            return rest;
        }
        // Assign in memory, request by request, while the block has room (a request that does
        // not fit whole is left to the ordinary path, the block untouched by it).
        let reserved = |ip: IpAddr| shared.reservations.contains(ip);
        let Versioned { mut value, rev } = b;
        let mut served: Vec<(Waiter, Vec<IpAddr>)> = Vec::new();
        for w in together {
            if value.assignable_count(reserved) < w.args.num_v4 {
                rest.push(w);
                continue;
            }
            let handle = w.args.handle.as_deref();
            let ips = value.auto_assign(w.args.num_v4, handle, &w.args.attrs.to_map(), reserved);
            served.push((w, ips));
        }
        if served.is_empty() {
            self.set_last_block(host, false, Versioned { value, rev });
            return rest;
        }
        let block_key = keys::block_key(&cidr.to_string());
        let mut checks = shared.checks_for(&cidr);
        checks.extend(node.check.clone());
        checks.push(Check::revision(&block_key, rev));
        let mut ops = vec![Op::put(&block_key, value.to_json())];
        for (w, ips) in &served {
            let key = keys::handle_key(w.args.handle.as_deref().unwrap_or_default());
            let mut h = HandleValue::default();
            h.increment(&cidr, ips.len());
            checks.push(Check::absent(&key));
            ops.push(Op::put(key, h.to_json()));
        }
        match self.ds.txn(checks, ops).await {
            Ok(r) => {
                let rev = r.revisions.first().copied().unwrap_or(r.revision);
                self.set_last_block(host, false, Versioned { value, rev });
                for (w, ips) in served {
                    let v4 = ips
                        .into_iter()
                        .filter_map(|ip| IpNet::new(ip, cidr.prefix_len()).ok())
                        .collect();
                    self.answer(w, Ok(Assignments { v4, v6: Vec::new() })).await;
                }
            }
            Err(_) => {
                // The block in memory holds the batch's addresses, which were not written: no
                // hint (the ordinary path reads the host's blocks again).
                rest.extend(served.into_iter().map(|(w, _)| w));
            }
        }
        rest
    }
}
