//! The calculation graph: typed facts in, desired dataplane state and its changes out.
//!
//! ```text
//!  SyncUpdate ─▶ input::decode ─▶ set_fact ─▶ indexes ─┬─ hot path (WEPs, blocks, remote nodes):
//!                                                      │   recompute only the dirty keys
//!                                                      └─ pools, FelixConfiguration, local node:
//!                                                          recompute everything (rare, ~ms)
//!                       desired state ◀── diff ── recomputed keys ──▶ Vec<Change>
//! ```
//!
//! Every output key is a pure function of the inputs (`route_for`, `neighbour_for`, ...), so the
//! incremental path and a recompute from scratch give the same state by construction; the
//! property test in `tests/` checks it on random update sequences.
//!
//! Rules (calico-behaviour.md "Felix"): a local workload's address ⇒ `dev caliX scope link`; a
//! local affine block of an encapsulated pool ⇒ `blackhole proto 80` (never for a /32 block); a
//! remote block or borrowed address ⇒ by pool mode: VXLAN `via <vtep> dev vxlan.calico onlink`,
//! CrossSubnet inside the local node's subnet `via <node ip> dev <uplink> proto 80 onlink`, IPIP
//! `via <node ip> dev tunl0 proto 80 onlink`; no encapsulation ⇒ a [`BgpRoute`] for the BGP
//! speaker (Felix programs nothing).
//!
//! IPv6 follows the same rules on `vxlan-v6.calico` (VNI and port shared with `vxlan.calico`,
//! source the node's `ipv6Address`, MTU `vxlanMTUV6` or host − 70, MAC `vxlanTunnelMACAddrV6`):
//! `<block>/122 via <vtep6> dev vxlan-v6.calico onlink`, blackholes for local IPv6 blocks,
//! CrossSubnet by the nodes' IPv6 subnets; no IPIP for IPv6. A remote VTEP inside a block gets
//! no host route of its own (upstream v3.32; docs/architecture.md says why seed 000 shows one).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use calico_datastore::syncer::SyncUpdate;
use ipnet::IpNet;

use crate::input::{
    BlockFact, Fact, FactKey, FelixConfigFact, InputError, NodeFact, PoolFact, WorkloadFact,
    decode_key, decode_value,
};
use crate::model::*;

mod rules;

/// What the node knows about itself that is not in the datastore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFacts {
    /// This node's name (`NODENAME`).
    pub node_name: String,
    /// Interface holding the node IP (parent of `vxlan.calico`, device of same-subnet routes).
    /// `None` until detected: same-subnet routes then fall back to the tunnel.
    pub uplink: Option<String>,
    /// The uplink's MTU (smallest of the matching uplinks).
    pub host_mtu: u32,
}

/// What one update did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub changes: Vec<Change>,
    /// A value that could not be read; its key now counts as absent.
    pub error: Option<InputError>,
}

/// What a destination resolves to.
enum Target {
    None,
    Route(Route),
    Bgp(BgpRoute),
}

#[derive(Default)]
struct Dirty {
    dsts: BTreeSet<IpNet>,
    vteps: BTreeSet<IpAddr>,
    /// (device, MAC).
    macs: BTreeSet<(String, String)>,
    global: bool,
}

/// The graph. Feed it every update of [`crate::watched_prefixes`] in order.
pub struct CalcGraph {
    local: LocalFacts,
    pools: BTreeMap<String, PoolFact>,
    nodes: BTreeMap<String, NodeFact>,
    /// Workloads of the local node only (remote ones need no route of their own).
    workloads: BTreeMap<String, WorkloadFact>,
    blocks: BTreeMap<IpNet, BlockFact>,
    affinities: BTreeMap<(String, IpNet), bool>,
    felix_configs: BTreeMap<String, FelixConfigFact>,
    // Indexes.
    local_ips: BTreeMap<IpNet, BTreeSet<String>>,
    blocks_by_host: BTreeMap<String, BTreeSet<IpNet>>,
    /// Borrowed address → (block, node using it).
    borrowed: BTreeMap<IpNet, BTreeMap<IpNet, String>>,
    borrowed_by_node: BTreeMap<String, BTreeSet<IpNet>>,
    /// VTEP address (either family) → nodes claiming it.
    vtep_nodes: BTreeMap<IpAddr, BTreeSet<String>>,
    /// (device, MAC) → nodes claiming it.
    mac_nodes: BTreeMap<(String, String), BTreeSet<String>>,
    state: DesiredState,
    in_sync: bool,
    /// While loading a snapshot: update the facts only, recompute once at the end.
    deferred: bool,
}

fn is_host_route(d: &IpNet) -> bool {
    d.prefix_len() == d.max_prefix_len()
}

impl CalcGraph {
    pub fn new(local: LocalFacts) -> Self {
        let state = DesiredState::empty(local.host_mtu);
        CalcGraph {
            local,
            pools: BTreeMap::new(),
            nodes: BTreeMap::new(),
            workloads: BTreeMap::new(),
            blocks: BTreeMap::new(),
            affinities: BTreeMap::new(),
            felix_configs: BTreeMap::new(),
            local_ips: BTreeMap::new(),
            blocks_by_host: BTreeMap::new(),
            borrowed: BTreeMap::new(),
            borrowed_by_node: BTreeMap::new(),
            vtep_nodes: BTreeMap::new(),
            mac_nodes: BTreeMap::new(),
            state,
            in_sync: false,
            deferred: false,
        }
    }

    /// A graph fed a whole snapshot (key → value), as after a restart.
    pub fn from_snapshot<'a>(
        local: LocalFacts,
        kvs: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Self {
        let mut g = CalcGraph::new(local);
        g.deferred = true;
        for (k, v) in kvs {
            g.put(k, v);
        }
        g.deferred = false;
        g.recompute_all();
        g.in_sync = true;
        g
    }

    /// The current desired state.
    pub fn state(&self) -> &DesiredState {
        &self.state
    }

    /// True once the syncer said `InSync`: only then may a reconciler delete what it does not
    /// find in the desired state.
    pub fn in_sync(&self) -> bool {
        self.in_sync
    }

    pub fn local(&self) -> &LocalFacts {
        &self.local
    }

    /// Confirmed block affinities of a node (tracked for diagnostics; routes follow the blocks'
    /// own `affinity`, as upstream's route resolver does).
    pub fn confirmed_affinities(&self, host: &str) -> Vec<IpNet> {
        self.affinities
            .iter()
            .filter(|((h, _), c)| h == host && **c)
            .map(|((_, cidr), _)| *cidr)
            .collect()
    }

    /// Applies one syncer update.
    pub fn apply(&mut self, update: &SyncUpdate) -> Outcome {
        match update {
            SyncUpdate::Put(kv) => self.put(&kv.key, &kv.value),
            SyncUpdate::Delete { key, .. } => match decode_key(key) {
                Some(fk) => Outcome {
                    changes: self.set_fact(fk, None),
                    error: None,
                },
                None => Outcome::default(),
            },
            SyncUpdate::InSync => {
                self.in_sync = true;
                Outcome::default()
            }
        }
    }

    fn put(&mut self, key: &str, value: &[u8]) -> Outcome {
        let Some(fk) = decode_key(key) else {
            return Outcome::default();
        };
        match decode_value(key, &fk, value) {
            Ok(fact) => Outcome {
                changes: self.set_fact(fk, Some(fact)),
                error: None,
            },
            Err(e) => Outcome {
                changes: self.set_fact(fk, None),
                error: Some(e),
            },
        }
    }

    /// The uplink or its MTU changed (detected at startup, or the link changed): everything is
    /// recomputed. The node name never changes; a renamed node needs a new graph.
    pub fn set_uplink(&mut self, uplink: Option<String>, host_mtu: u32) -> Vec<Change> {
        if uplink == self.local.uplink && host_mtu == self.local.host_mtu {
            return Vec::new();
        }
        self.local.uplink = uplink;
        self.local.host_mtu = host_mtu;
        self.recompute_all()
    }

    fn set_fact(&mut self, fk: FactKey, fact: Option<Fact>) -> Vec<Change> {
        let mut d = Dirty::default();
        match (fk, fact) {
            (FactKey::Pool(name), Some(Fact::Pool(p))) => {
                d.global = self.pools.insert(name, p.clone()) != Some(p);
            }
            (FactKey::Pool(name), _) => d.global = self.pools.remove(&name).is_some(),
            (FactKey::FelixConfig(name), Some(Fact::FelixConfig(c))) => {
                d.global = self.felix_configs.insert(name, c.clone()) != Some(c);
            }
            (FactKey::FelixConfig(name), _) => {
                d.global = self.felix_configs.remove(&name).is_some()
            }
            (FactKey::Affinity { host, cidr }, Some(Fact::Affinity(c))) => {
                self.affinities.insert((host, cidr), c);
            }
            (FactKey::Affinity { host, cidr }, _) => {
                self.affinities.remove(&(host, cidr));
            }
            (FactKey::Node(name), fact) => {
                let new = match fact {
                    Some(Fact::Node(n)) => Some(n),
                    _ => None,
                };
                self.set_node(name, new, &mut d);
            }
            (FactKey::Workload(key), fact) => {
                let new = match fact {
                    Some(Fact::Workload(w)) if w.node == self.local.node_name => Some(w),
                    _ => None,
                };
                self.set_workload(key, new, &mut d);
            }
            (FactKey::Block(cidr), fact) => {
                let new = match fact {
                    Some(Fact::Block(b)) => Some(b),
                    _ => None,
                };
                self.set_block(cidr, new, &mut d);
            }
        }
        if self.deferred {
            Vec::new()
        } else if d.global {
            self.recompute_all()
        } else {
            self.recompute(d)
        }
    }

    fn set_node(&mut self, name: String, new: Option<NodeFact>, d: &mut Dirty) {
        let old = match &new {
            Some(n) => self.nodes.insert(name.clone(), n.clone()),
            None => self.nodes.remove(&name),
        };
        if old == new {
            return;
        }
        if name == self.local.node_name {
            d.global = true;
        }
        for n in [&old, &new].into_iter().flatten() {
            d.vteps.extend(n.vteps());
            d.macs.extend(n.mac_keys());
        }
        if let Some(o) = &old {
            for v in o.vteps() {
                remove_from(&mut self.vtep_nodes, &v, &name);
            }
            for m in o.mac_keys() {
                remove_from(&mut self.mac_nodes, &m, &name);
            }
        }
        if let Some(n) = &new {
            for v in n.vteps() {
                self.vtep_nodes.entry(v).or_default().insert(name.clone());
            }
            for m in n.mac_keys() {
                self.mac_nodes.entry(m).or_default().insert(name.clone());
            }
        }
        d.dsts.extend(
            self.blocks_by_host
                .get(&name)
                .into_iter()
                .flatten()
                .copied(),
        );
        d.dsts.extend(
            self.borrowed_by_node
                .get(&name)
                .into_iter()
                .flatten()
                .copied(),
        );
    }

    fn set_workload(&mut self, key: String, new: Option<WorkloadFact>, d: &mut Dirty) {
        if let Some(old) = self.workloads.remove(&key) {
            for ip in &old.ips {
                remove_from(&mut self.local_ips, ip, &key);
                d.dsts.insert(*ip);
            }
        }
        if let Some(w) = new {
            for ip in &w.ips {
                self.local_ips.entry(*ip).or_default().insert(key.clone());
                d.dsts.insert(*ip);
            }
            self.workloads.insert(key, w);
        }
    }

    fn set_block(&mut self, cidr: IpNet, new: Option<BlockFact>, d: &mut Dirty) {
        d.dsts.insert(cidr);
        if let Some(old) = self.blocks.remove(&cidr) {
            if let Some(h) = &old.host {
                remove_from(&mut self.blocks_by_host, h, &cidr);
            }
            for (ip, node) in &old.borrowed {
                let dst = IpNet::from(*ip);
                if let Some(m) = self.borrowed.get_mut(&dst) {
                    m.remove(&cidr);
                    if m.is_empty() {
                        self.borrowed.remove(&dst);
                    }
                }
                remove_from(&mut self.borrowed_by_node, node, &dst);
                d.dsts.insert(dst);
            }
        }
        if let Some(b) = new {
            if let Some(h) = &b.host {
                self.blocks_by_host
                    .entry(h.clone())
                    .or_default()
                    .insert(cidr);
            }
            for (ip, node) in &b.borrowed {
                let dst = IpNet::from(*ip);
                self.borrowed
                    .entry(dst)
                    .or_default()
                    .insert(cidr, node.clone());
                self.borrowed_by_node
                    .entry(node.clone())
                    .or_default()
                    .insert(dst);
                d.dsts.insert(dst);
            }
            self.blocks.insert(cidr, b);
        }
    }

    // ---- diffing ----

    fn recompute_all(&mut self) -> Vec<Change> {
        let d = Dirty {
            dsts: self
                .local_ips
                .keys()
                .chain(self.blocks.keys())
                .chain(self.borrowed.keys())
                .chain(self.state.routes.keys())
                .chain(self.state.bgp_routes.keys())
                .copied()
                .collect(),
            vteps: self
                .vtep_nodes
                .keys()
                .chain(self.state.neighbours.keys())
                .copied()
                .collect(),
            macs: self
                .mac_nodes
                .keys()
                .chain(self.state.fdb.keys())
                .cloned()
                .collect(),
            global: true,
        };
        self.recompute(d)
    }

    fn recompute(&mut self, d: Dirty) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut device_removed = false;
        let mut device6_removed = false;
        if d.global {
            let (vxlan, ipip) = (self.vxlan_enabled(), self.ipip_enabled());
            if (vxlan, ipip) != (self.state.vxlan_enabled, self.state.ipip_enabled) {
                changes.push(Change::Encap { vxlan, ipip });
            }
            let mtu = self.mtu();
            if mtu != self.state.mtu {
                changes.push(Change::Mtu(mtu));
            }
            let nat = self.nat();
            if nat != self.state.nat {
                changes.push(Change::Nat(nat));
            }
            let ipip = self.ipip_device();
            if ipip != self.state.ipip {
                changes.push(Change::IpipDevice(ipip));
            }
            let dev = self.vxlan_device();
            if dev != self.state.vxlan {
                if dev.is_none() {
                    device_removed = true;
                } else {
                    changes.push(Change::VxlanDevice(dev));
                }
            }
            let dev6 = self.vxlan_v6_device();
            if dev6 != self.state.vxlan_v6 {
                if dev6.is_none() {
                    device6_removed = true;
                } else {
                    changes.push(Change::VxlanV6Device(dev6));
                }
            }
        }
        for dst in &d.dsts {
            let (route, bgp) = match self.route_for(dst) {
                Target::None => (None, None),
                Target::Route(r) => (Some(r), None),
                Target::Bgp(b) => (None, Some(b)),
            };
            if route.as_ref() != self.state.routes.get(dst) {
                changes.push(match route {
                    Some(r) => Change::RouteSet(r),
                    None => Change::RouteRemoved(*dst),
                });
            }
            if bgp.as_ref() != self.state.bgp_routes.get(dst) {
                changes.push(match bgp {
                    Some(b) => Change::BgpRouteSet(b),
                    None => Change::BgpRouteRemoved(*dst),
                });
            }
        }
        for vtep in &d.vteps {
            let n = self.neighbour_for(vtep);
            if n.as_ref() != self.state.neighbours.get(vtep) {
                changes.push(match n {
                    Some(n) => Change::NeighbourSet(n),
                    None => Change::NeighbourRemoved(*vtep),
                });
            }
        }
        for mac in &d.macs {
            let f = self.fdb_for(mac);
            if f.as_ref() != self.state.fdb.get(mac) {
                changes.push(match f {
                    Some(f) => Change::FdbSet(f),
                    None => Change::FdbRemoved(mac.clone()),
                });
            }
        }
        if device_removed {
            changes.push(Change::VxlanDevice(None));
        }
        if device6_removed {
            changes.push(Change::VxlanV6Device(None));
        }
        for c in &changes {
            c.apply_to(&mut self.state);
        }
        changes
    }
}

fn remove_from<K: Ord, V: Ord>(m: &mut BTreeMap<K, BTreeSet<V>>, k: &K, v: &V) {
    if let Some(s) = m.get_mut(k) {
        s.remove(v);
        if s.is_empty() {
            m.remove(k);
        }
    }
}
