//! `calicoctl delete node` removes exactly what upstream's node deletion removes (libcalico-go
//! `nodes.Delete`): the node's WorkloadEndpoints and their addresses, its tunnel addresses and
//! block affinities, BGPPeers whose `spec.node` is the node, the `node.<name>`
//! FelixConfiguration and BGPConfiguration, HostEndpoints whose `spec.node` is the node, and the
//! Node last. Global peers, peers that select the node by `nodeSelector` and another node's
//! resources stay. A deletion that stopped part-way (a corrupt stored resource; a datastore
//! failing at any write) is finished by running `calicoctl delete node` again. Both backends.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use calico_api::resources::endpoint::WorkloadEndpoint;
use calico_api::{Kind, Resource};
use calico_datastore::resources::ResourceStore;
use calico_datastore::testutil::EtcdServer;
use calico_datastore::{
    Check, Datastore, KeyValue, LeaseId, ListResult, Op, Revision, TxnResult, WatchStream, keys,
};
use calico_ipam::{AutoAssignArgs, Ipam, node_config_name};
use common::{Ctl, pool};

/// One node with everything upstream's deletion looks at. Returns the resource keys that
/// deleting `node` must remove (the rest of what is created here must stay).
async fn populate(ctl: &Ctl, ds: &Arc<dyn Datastore>, node: &str) -> BTreeSet<String> {
    let conf = node_config_name(node);
    let yaml = format!(
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {node}\n---
apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: {node}-own
spec:\n  node: {node}\n  peerIP: 192.0.2.1\n  asNumber: 64513\n---
apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: {node}-global
spec:\n  peerIP: 192.0.2.2\n  asNumber: 64513\n---
apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: {node}-by-selector
spec:\n  nodeSelector: kubernetes.io/hostname == '{node}'\n  peerIP: 192.0.2.3\n  asNumber: 64513\n---
apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: {conf}
spec:\n  logSeverityScreen: Debug\n---
apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: {conf}
spec:\n  logSeverityScreen: Debug\n---
apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: {node}-eth0
spec:\n  node: {node}\n  interfaceName: eth0\n  expectedIPs:\n  - 198.51.100.1\n"
    );
    ctl.apply(&ctl.file(&format!("{node}.yaml"), &yaml)).ok();

    let ipam = Ipam::new(ds.clone());
    let rs = ResourceStore::new(ds.clone());
    let mut gone = BTreeSet::new();
    for (ns, pod) in [("default", "web"), ("other-ns", "db")] {
        let ip = assign(&ipam, node, &format!("{node}.{pod}"), None).await;
        let mut w = WorkloadEndpoint::new("");
        w.metadata.namespace = Some(ns.into());
        w.spec.orchestrator = "k8s".into();
        w.spec.node = node.into();
        w.spec.pod = pod.into();
        w.spec.endpoint = "eth0".into();
        w.spec.ip_networks = vec![format!("{ip}/32")];
        match rs.create(Resource::WorkloadEndpoint(w)).await {
            Ok(r) => gone.insert(keys::resource_key(
                Kind::WorkloadEndpoint,
                Some(ns),
                &r.metadata().name,
            )),
            Err(e) => panic!("WorkloadEndpoint of {node}/{pod}: {e}"),
        };
    }
    let tunnel = assign(
        &ipam,
        node,
        &format!("vxlan-tunnel-addr-{node}"),
        Some("vxlanTunnelAddress"),
    )
    .await;
    let edited = match rs.get(Kind::Node, None, node).await {
        Ok(Resource::Node(mut n)) => {
            n.spec.ipv4_vxlan_tunnel_addr = tunnel.to_string();
            rs.update(Resource::Node(n)).await
        }
        other => panic!("Node {node}: {other:?}"),
    };
    if let Err(e) = edited {
        panic!("recording the tunnel address of {node}: {e}");
    }
    gone.extend([
        keys::resource_key(Kind::Node, None, node),
        keys::resource_key(Kind::BGPPeer, None, &format!("{node}-own")),
        keys::resource_key(Kind::BGPConfiguration, None, &conf),
        keys::resource_key(Kind::FelixConfiguration, None, &conf),
        keys::resource_key(Kind::HostEndpoint, None, &format!("{node}-eth0")),
    ]);
    gone
}

async fn assign(ipam: &Ipam, node: &str, handle: &str, kind: Option<&str>) -> IpAddr {
    let mut a = AutoAssignArgs::new(node, handle);
    a.attrs.node = Some(node.into());
    a.attrs.kind = kind.map(Into::into);
    match ipam.auto_assign(&a).await {
        Ok(got) if got.v4.len() == 1 => got.v4[0].addr(),
        other => panic!("assigning {handle}: {other:?}"),
    }
}

/// Every v3 resource key in the store.
async fn resource_keys(ds: &Arc<dyn Datastore>) -> BTreeSet<String> {
    match ds.list("/calico/resources/").await {
        Ok(l) => l.kvs.into_iter().map(|kv| kv.key).collect(),
        Err(e) => panic!("listing resources: {e}"),
    }
}

/// After `node` was deleted: exactly `gone` left the resources, its IPAM data is gone (its
/// handles hold nothing, no affinity), and IPAM is consistent.
async fn assert_deleted(
    ctl: &Ctl,
    ds: &Arc<dyn Datastore>,
    node: &str,
    before: &BTreeSet<String>,
    gone: &BTreeSet<String>,
) {
    let after = resource_keys(ds).await;
    let expected: BTreeSet<String> = before.difference(gone).cloned().collect();
    assert_eq!(after, expected, "resources after deleting {node}");
    let ipam = Ipam::new(ds.clone());
    for handle in [
        format!("{node}.web"),
        format!("{node}.db"),
        format!("vxlan-tunnel-addr-{node}"),
    ] {
        match ipam.ips_by_handle(&handle).await {
            Ok(ips) => assert!(ips.is_empty(), "{handle} still holds {ips:?}"),
            Err(e) => panic!("{handle}: {e}"),
        }
    }
    match ds.list(&keys::host_affinity_prefix(node)).await {
        Ok(l) => assert!(l.kvs.is_empty(), "affinities of {node} left: {:?}", l.kvs),
        Err(e) => panic!("{e}"),
    }
    ctl.ipam_check_clean();
}

/// A pool and a node whose resources must survive every deletion of another node.
async fn setup(ctl: &Ctl) -> Arc<dyn Datastore> {
    ctl.apply(&ctl.file("pool.yaml", &pool("p", "10.60.0.0/20", "  blockSize: 29\n")))
        .ok();
    let ds = ctl.datastore().await;
    populate(ctl, &ds, "stays").await;
    ds
}

/// A corrupt HostEndpoint stops the deletion after IPAM, the WorkloadEndpoints, the peer and
/// the configurations, before the HostEndpoints and the Node; once it is repaired, running the
/// same command again finishes the deletion. Then the Node is gone and a third run says so,
/// unless `--skip-not-exists`.
async fn delete_node_removes_upstreams_set_and_finishes_when_rerun(ctl: &Ctl) {
    let ds = setup(ctl).await;
    let gone = populate(ctl, &ds, "worker-1").await;
    let before = resource_keys(&ds).await;
    let broken = keys::resource_key(Kind::HostEndpoint, None, "broken");
    if let Err(e) = ds.create(&broken, b"{not json".to_vec(), None).await {
        panic!("{e}");
    }

    let out = ctl.run(&["delete", "node", "worker-1"]);
    out.failed();
    assert!(
        out.stderr
            .contains("deleting node worker-1 stopped while listing HostEndpoints")
            && out.stderr.contains(&broken)
            && out
                .stderr
                .contains("running the node deletion again finishes it"),
        "{}",
        out.stderr
    );
    let hep = keys::resource_key(Kind::HostEndpoint, None, "worker-1-eth0");
    let node = keys::resource_key(Kind::Node, None, "worker-1");
    let partial: BTreeSet<String> = resource_keys(&ds)
        .await
        .into_iter()
        .filter(|k| *k != broken)
        .collect();
    let kept: BTreeSet<String> = [hep, node].into();
    let expected: BTreeSet<String> = before
        .iter()
        .filter(|k| !gone.contains(*k) || kept.contains(*k))
        .cloned()
        .collect();
    assert_eq!(partial, expected, "after the interrupted deletion");

    if let Err(e) = ds.delete(&broken, None).await {
        panic!("{e}");
    }
    assert_eq!(
        ctl.run(&["delete", "node", "worker-1"]).ok().stdout,
        "Successfully deleted 1 'Node' resource(s)\n"
    );
    assert_deleted(ctl, &ds, "worker-1", &before, &gone).await;

    let again = ctl.run(&["delete", "node", "worker-1"]);
    assert!(
        again
            .failed()
            .stderr
            .contains("resource does not exist: Node(worker-1) with error: <nil>"),
        "{}",
        again.stderr
    );
    ctl.run(&["delete", "node", "worker-1", "--skip-not-exists"])
        .ok();
    assert_deleted(ctl, &ds, "worker-1", &before, &gone).await;
}

/// A `Datastore` whose writes fail once `budget` of them went through: a deletion cut off at
/// any point, as a crash or a lost datastore would leave it.
struct FailAfter {
    inner: Arc<dyn Datastore>,
    budget: AtomicUsize,
}

impl FailAfter {
    fn write(&self) -> calico_datastore::Result<()> {
        self.budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
            .map(|_| ())
            .map_err(|_| calico_datastore::Error::Unavailable {
                endpoint: self.inner.describe(),
                reason: "write refused by the test".into(),
            })
    }
}

#[async_trait]
impl Datastore for FailAfter {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn get(&self, key: &str) -> calico_datastore::Result<Option<KeyValue>> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> calico_datastore::Result<ListResult> {
        self.inner.list(prefix).await
    }
    async fn create(
        &self,
        k: &str,
        v: Vec<u8>,
        l: Option<LeaseId>,
    ) -> calico_datastore::Result<Revision> {
        self.write()?;
        self.inner.create(k, v, l).await
    }
    async fn update(&self, k: &str, v: Vec<u8>, e: Revision) -> calico_datastore::Result<Revision> {
        self.write()?;
        self.inner.update(k, v, e).await
    }
    async fn delete(&self, k: &str, e: Option<Revision>) -> calico_datastore::Result<KeyValue> {
        self.write()?;
        self.inner.delete(k, e).await
    }
    async fn txn(&self, c: Vec<Check>, o: Vec<Op>) -> calico_datastore::Result<TxnResult> {
        self.write()?;
        self.inner.txn(c, o).await
    }
    async fn watch(&self, prefix: &str, from: Revision) -> calico_datastore::Result<WatchStream> {
        self.inner.watch(prefix, from).await
    }
    async fn revision(&self) -> calico_datastore::Result<Revision> {
        self.inner.revision().await
    }
    async fn compact(&self, r: Revision) -> calico_datastore::Result<()> {
        self.inner.compact(r).await
    }
    async fn grant_lease(&self, ttl: Duration) -> calico_datastore::Result<LeaseId> {
        self.inner.grant_lease(ttl).await
    }
    async fn keep_alive(&self, l: LeaseId) -> calico_datastore::Result<()> {
        self.inner.keep_alive(l).await
    }
    async fn revoke_lease(&self, l: LeaseId) -> calico_datastore::Result<()> {
        self.inner.revoke_lease(l).await
    }
}

/// At most this many writes are expected in one node's deletion here.
const MAX_WRITES: usize = 60;

/// The deletion is cut off after 0, 1, 2 … writes until one run gets through; after each cut
/// the Node is still there and `calicoctl delete node` finishes the job exactly.
async fn deletion_cut_at_every_write_is_finished_by_calicoctl(ctl: &Ctl) {
    let ds = setup(ctl).await;
    for budget in 0..=MAX_WRITES {
        let node = format!("cut-{budget}");
        let gone = populate(ctl, &ds, &node).await;
        let before = resource_keys(&ds).await;
        let faulty: Arc<dyn Datastore> = Arc::new(FailAfter {
            inner: ds.clone(),
            budget: AtomicUsize::new(budget),
        });
        match Ipam::new(faulty).delete_node(&node, None).await {
            Ok(done) => {
                assert!(done.node.is_some(), "{done:?}");
                // At least: the addresses' release, 2 WorkloadEndpoints, the affinity, the
                // peer, 2 configurations, the HostEndpoint and the Node (11 today).
                assert!(budget >= 9, "a whole deletion in {budget} writes: {done:?}");
                assert_deleted(ctl, &ds, &node, &before, &gone).await;
                return;
            }
            Err(e) => {
                assert!(
                    e.to_string().contains("write refused by the test"),
                    "cut after {budget} writes: {e}"
                );
                let left = resource_keys(&ds).await;
                assert!(
                    left.contains(&keys::resource_key(Kind::Node, None, &node)),
                    "the Node went before the deletion finished (cut after {budget} writes: {e})"
                );
            }
        }
        assert_eq!(
            ctl.run(&["delete", "node", &node]).ok().stdout,
            "Successfully deleted 1 'Node' resource(s)\n"
        );
        assert_deleted(ctl, &ds, &node, &before, &gone).await;
    }
    panic!("no deletion got through with {MAX_WRITES} writes");
}

fn etcd() -> EtcdServer {
    match EtcdServer::start() {
        Ok(e) => e,
        Err(e) => panic!("etcd is needed for this test (apt package etcd-server): {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_node_embedded() {
    delete_node_removes_upstreams_set_and_finishes_when_rerun(&Ctl::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_node_etcd() {
    let etcd = etcd();
    delete_node_removes_upstreams_set_and_finishes_when_rerun(&Ctl::etcd(&etcd.endpoint())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_deletion_embedded() {
    deletion_cut_at_every_write_is_finished_by_calicoctl(&Ctl::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_deletion_etcd() {
    let etcd = etcd();
    deletion_cut_at_every_write_is_finished_by_calicoctl(&Ctl::etcd(&etcd.endpoint())).await;
}
