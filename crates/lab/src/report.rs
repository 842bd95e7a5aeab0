//! What `up`, `report` and `check` print, as the seeds show it: the block affinities (like
//! `kubectl get blockaffinities` / `calicoctl ipam show --show-blocks`), each node's routes to
//! pod blocks (`ip route | grep /26`), the pods, and the all-pairs pod reachability matrix.
//!
//! It also knows the route shapes the seeds show, so `up` and `apply --wait` can wait until
//! Felix has programmed them (`expected_routes`, `wait_converged`):
//! - own block: `blackhole <block> proto 80`;
//! - remote block, pool `vxlanMode: Always`, or `CrossSubnet` with the owner in another subnet:
//!   `<block> via <owner's VTEP> dev vxlan.calico onlink`;
//! - remote block, `CrossSubnet` with the owner in the node's subnet:
//!   `<block> via <owner's address> dev <uplink> proto 80 onlink`;
//! - no Felix route at all for a pool without encapsulation, own block included: those are
//!   BGP's (`proto bird` in seed 002; the BGP issue).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use calico_api::resources::ippool::EncapMode;
use calico_api::{Kind, Resource};
use calico_datastore::resources::ResourceStore;
use ipnet::{IpNet, Ipv4Net};

use crate::check::{self, Endpoint, Matrix};
use crate::lab::table;
use crate::state::State;
use crate::sys;

/// One block affinity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affinity {
    pub host: String,
    pub cidr: IpNet,
}

impl Affinity {
    /// The BlockAffinity resource name upstream shows: `<host>-<cidr with '.' and '/' as '-'>`.
    pub fn name(&self) -> String {
        format!(
            "{}-{}",
            self.host,
            self.cidr.to_string().replace(['.', '/', ':'], "-")
        )
    }
}

/// What the datastore says about routing: pools, nodes, block affinities.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// (cidr, block size, vxlanMode)
    pub pools: Vec<(Ipv4Net, u8, EncapMode)>,
    /// node → (address with prefix, VXLAN tunnel address)
    pub nodes: BTreeMap<String, (Option<Ipv4Net>, Option<Ipv4Addr>)>,
    pub affinities: Vec<Affinity>,
}

/// Read pools, nodes and affinities from the lab's datastore.
pub fn snapshot(st: &State) -> Result<Snapshot> {
    crate::datastore::with_store(st, |ds| async move {
        let store = ResourceStore::new(ds.clone());
        let mut snap = Snapshot::default();
        for r in store.list(Kind::IPPool, None).await? {
            if let Resource::IPPool(p) = r
                && let Ok(cidr) = p.spec.cidr.parse::<Ipv4Net>()
            {
                snap.pools
                    .push((cidr, p.spec.effective_block_size(), p.spec.vxlan()));
            }
        }
        for r in store.list(Kind::Node, None).await? {
            if let Resource::Node(n) = r {
                let addr = n
                    .spec
                    .bgp
                    .as_ref()
                    .and_then(|b| b.ipv4_address.parse::<Ipv4Net>().ok());
                let vtep = n.spec.ipv4_vxlan_tunnel_addr.parse::<Ipv4Addr>().ok();
                snap.nodes.insert(n.metadata.name.clone(), (addr, vtep));
            }
        }
        let listed = ds
            .list(&calico_datastore::keys::all_affinities_prefix())
            .await?;
        for kv in listed.kvs {
            if let Some((host, cidr)) = parse_affinity_key(&kv.key) {
                snap.affinities.push(Affinity { host, cidr });
            }
        }
        snap.affinities.sort_by_key(Affinity::name);
        Ok(snap)
    })
}

/// `/calico/ipam/v2/host/<host>/ipv4/block/<a.b.c.d-len>` → (host, block).
fn parse_affinity_key(key: &str) -> Option<(String, IpNet)> {
    let rest = key
        .strip_prefix(calico_datastore::keys::IPAM_ROOT)?
        .strip_prefix("host/")?;
    let (host, rest) = rest.split_once('/')?;
    let rest = rest
        .strip_prefix("ipv4/block/")
        .or_else(|| rest.strip_prefix("ipv6/block/"))?;
    let (ip, len) = rest.rsplit_once('-')?;
    Some((host.to_string(), format!("{ip}/{len}").parse().ok()?))
}

impl Snapshot {
    fn pool_of(&self, block: &IpNet) -> Option<&(Ipv4Net, u8, EncapMode)> {
        let IpNet::V4(b) = block else { return None };
        self.pools
            .iter()
            .find(|(cidr, size, _)| cidr.contains(b) && b.prefix_len() == *size)
    }

    /// Is `dst` (a route's destination) a pod block of some pool?
    pub fn is_block(&self, dst: &str) -> bool {
        dst.parse::<IpNet>()
            .ok()
            .is_some_and(|n| self.pool_of(&n).is_some())
    }

    /// The routes to pod blocks `node` should have (seed shapes), and the blocks whose route
    /// cannot be known yet (owner without address or VTEP).
    pub fn expected_routes(&self, node: &str, uplink: &str) -> (BTreeSet<String>, Vec<String>) {
        let mut routes = BTreeSet::new();
        let mut pending = Vec::new();
        let me = self.nodes.get(node).and_then(|(a, _)| *a);
        for a in &self.affinities {
            let Some((_, _, mode)) = self.pool_of(&a.cidr) else {
                continue;
            };
            if *mode == EncapMode::Never {
                // BGP's, own blackhole included (`proto bird` in seed 002).
                continue;
            }
            if a.host == node {
                routes.insert(format!("blackhole {} proto 80", a.cidr));
                continue;
            }
            let (addr, vtep) = self.nodes.get(&a.host).copied().unwrap_or((None, None));
            let same_subnet = match (me, addr) {
                (Some(me), Some(other)) => me.network() == other.network(),
                _ => false,
            };
            let route = match mode {
                EncapMode::CrossSubnet if same_subnet => addr
                    .map(|o| format!("{} via {} dev {uplink} proto 80 onlink", a.cidr, o.addr())),
                EncapMode::Never | EncapMode::Always | EncapMode::CrossSubnet => {
                    vtep.map(|v| format!("{} via {v} dev vxlan.calico onlink", a.cidr))
                }
            };
            match route {
                Some(r) => {
                    routes.insert(r);
                }
                None => pending.push(format!("{} of {}", a.cidr, a.host)),
            }
        }
        (routes, pending)
    }
}

/// A node's routes to pod blocks, as `ip route` prints them (trailing spaces trimmed).
pub fn block_routes(netns: &str, snap: &Snapshot) -> Result<Vec<String>> {
    let out = sys::ip_in(netns, &sys::strs(&["route", "show"]))?;
    Ok(out
        .lines()
        .map(str::trim_end)
        .filter(|l| {
            let mut words = l.split_whitespace();
            let first = words.next().unwrap_or("");
            let dst = if matches!(first, "blackhole" | "unreachable" | "prohibit") {
                words.next().unwrap_or("")
            } else {
                first
            };
            snap.is_block(dst)
        })
        .map(str::to_string)
        .collect())
}

/// Differences between expected and programmed block routes, per node (empty: converged).
pub fn route_differences(st: &State, snap: &Snapshot) -> Result<Vec<String>> {
    let mut diffs = Vec::new();
    for m in st.nodes() {
        let uplink = m
            .interfaces
            .first()
            .map(|(i, _, _)| i.as_str())
            .unwrap_or("eth1");
        let (want, pending) = snap.expected_routes(&m.name, uplink);
        let have: BTreeSet<String> = block_routes(&m.netns, snap)?.into_iter().collect();
        for r in want.difference(&have) {
            diffs.push(format!("{}: missing `{r}`", m.name));
        }
        for r in have.difference(&want) {
            diffs.push(format!("{}: unexpected `{r}`", m.name));
        }
        for p in pending {
            diffs.push(format!("{}: block {p} has no known next hop yet", m.name));
        }
    }
    Ok(diffs)
}

/// Poll until every node's block routes have the seed shapes (or `timeout`); returns what is
/// still different (empty when converged).
pub fn wait_converged(st: &State, timeout: Duration) -> Result<Vec<String>> {
    let deadline = Instant::now() + timeout;
    loop {
        let snap = snapshot(st)?;
        let diffs = route_differences(st, &snap)?;
        if diffs.is_empty() || Instant::now() >= deadline {
            return Ok(diffs);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The affinities table, the block routes of every node, and the pods.
pub fn render_state(st: &State, snap: &Snapshot) -> Result<String> {
    let mut out = String::new();
    let _ = writeln!(out, "block affinities (kubectl get blockaffinities):");
    let mut rows = vec![vec!["NAME".into(), "NODE".into(), "CIDR".into()]];
    for a in &snap.affinities {
        rows.push(vec![a.name(), a.host.clone(), a.cidr.to_string()]);
    }
    out.push_str(&table(&rows));
    let sizes: BTreeSet<String> = snap.pools.iter().map(|p| format!("/{}", p.1)).collect();
    let sizes: Vec<String> = sizes.into_iter().collect();
    for m in st.nodes() {
        let _ = writeln!(
            out,
            "\n{}: ip route | grep {}",
            m.name,
            if sizes.is_empty() {
                "<no pool>".to_string()
            } else {
                sizes.join("|")
            }
        );
        for r in block_routes(&m.netns, snap)? {
            let _ = writeln!(out, "  {r}");
        }
    }
    if !st.pods.is_empty() {
        let _ = writeln!(out, "\npods:");
        let mut rows = vec![vec![
            "NAMESPACE".into(),
            "NAME".into(),
            "NODE".into(),
            "IP".into(),
            "NETNS".into(),
        ]];
        for p in &st.pods {
            rows.push(vec![
                p.namespace.clone(),
                p.name.clone(),
                p.node.clone(),
                p.address.clone().unwrap_or_else(|| "-".into()),
                p.netns.clone(),
            ]);
        }
        out.push_str(&table(&rows));
    }
    Ok(out)
}

/// Probe every ordered pair of pods (ICMP and TCP echo); `None` when the lab has no pod.
pub fn pod_matrix(st: &State) -> Result<Option<Matrix>> {
    let mut endpoints = Vec::new();
    for p in &st.pods {
        let address = p
            .address
            .clone()
            .ok_or_else(|| anyhow!("pod {} has no address in the state file", p.key()))?;
        endpoints.push(Endpoint {
            name: p.name.clone(),
            netns: p.netns.clone(),
            address,
            tcp_port: None,
        });
    }
    if endpoints.is_empty() {
        return Ok(None);
    }
    let listeners = check::EchoListeners::open(&mut endpoints).map_err(|e| anyhow!(e))?;
    let m = Matrix::probe("pod", &endpoints, check::probe_pod);
    drop(listeners);
    Ok(Some(m))
}

/// Probe every ordered pair of nodes (ICMP).
pub fn node_matrix(st: &State) -> Result<Matrix> {
    let mut endpoints = Vec::new();
    for m in st.nodes() {
        let a = m
            .address()
            .ok_or_else(|| anyhow!("node {} has no address in the state file", m.name))?;
        endpoints.push(Endpoint {
            name: m.name.clone(),
            netns: m.netns.clone(),
            address: a.to_string(),
            tcp_port: None,
        });
    }
    Ok(Matrix::probe("node", &endpoints, check::probe_node))
}
