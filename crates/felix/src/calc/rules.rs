//! The rules: every output key as a pure function of the graph's facts and indexes. The
//! incremental path and a full recompute both call these, which is what makes them agree.

use std::collections::BTreeSet;
use std::net::IpAddr;

use calico_api::resources::EncapMode;
use ipnet::IpNet;

use super::{CalcGraph, Target, is_host_route};
use crate::input::{FelixConfigFact, NodeFact, PoolFact};
use crate::model::*;

impl CalcGraph {
    pub(super) fn local_node(&self) -> Option<&NodeFact> {
        self.nodes.get(&self.local.node_name)
    }

    pub(super) fn config(&self) -> FelixConfigFact {
        let mut c = self
            .felix_configs
            .get("default")
            .cloned()
            .unwrap_or_default();
        if let Some(n) = self
            .felix_configs
            .get(&format!("node.{}", self.local.node_name))
        {
            c.vxlan_vni = n.vxlan_vni.or(c.vxlan_vni);
            c.vxlan_port = n.vxlan_port.or(c.vxlan_port);
            c.vxlan_mtu = n.vxlan_mtu.or(c.vxlan_mtu);
            c.ipip_mtu = n.ipip_mtu.or(c.ipip_mtu);
        }
        c
    }

    pub(super) fn vxlan_enabled(&self) -> bool {
        self.pools
            .values()
            .any(|p| p.cidr.addr().is_ipv4() && p.vxlan.enabled())
    }

    pub(super) fn vxlan_v6_enabled(&self) -> bool {
        self.pools
            .values()
            .any(|p| p.cidr.addr().is_ipv6() && p.vxlan.enabled())
    }

    pub(super) fn ipip_enabled(&self) -> bool {
        self.pools
            .values()
            .any(|p| p.cidr.addr().is_ipv4() && p.ipip.enabled())
    }

    pub(super) fn mtu(&self) -> Mtu {
        let host = self.local.host_mtu;
        let c = self.config();
        let mut pod = host;
        if self.vxlan_enabled() {
            pod = pod.min(c.vxlan_mtu.unwrap_or(host.saturating_sub(VXLAN_OVERHEAD)));
        }
        if self.vxlan_v6_enabled() {
            pod = pod.min(
                c.vxlan_mtu_v6
                    .unwrap_or(host.saturating_sub(VXLAN_V6_OVERHEAD)),
            );
        }
        if self.ipip_enabled() {
            pod = pod.min(c.ipip_mtu.unwrap_or(host.saturating_sub(IPIP_OVERHEAD)));
        }
        Mtu { host, pod }
    }

    pub(super) fn vxlan_device(&self) -> Option<VxlanDevice> {
        self.vxlan_device_of(false)
    }

    pub(super) fn vxlan_v6_device(&self) -> Option<VxlanDevice> {
        self.vxlan_device_of(true)
    }

    /// `vxlan.calico` or, for `v6`, `vxlan-v6.calico`: both share the VNI and port; each takes
    /// the node's address and tunnel address of its family and `vxlanMTU`/`vxlanMTUV6` or the
    /// host MTU less 50/70.
    fn vxlan_device_of(&self, v6: bool) -> Option<VxlanDevice> {
        let enabled = if v6 {
            self.vxlan_v6_enabled()
        } else {
            self.vxlan_enabled()
        };
        if !enabled {
            return None;
        }
        let me = self.local_node()?;
        let c = self.config();
        let (name, local_ip, tunnel_addr, mac, mtu, overhead) = if v6 {
            (
                VXLAN_V6_DEVICE,
                IpAddr::V6(me.ip6?),
                IpAddr::V6(me.vxlan_tunnel_addr6?),
                &me.vxlan_mac6,
                c.vxlan_mtu_v6,
                VXLAN_V6_OVERHEAD,
            )
        } else {
            (
                VXLAN_DEVICE,
                IpAddr::V4(me.ip?),
                IpAddr::V4(me.vxlan_tunnel_addr?),
                &me.vxlan_mac,
                c.vxlan_mtu,
                VXLAN_OVERHEAD,
            )
        };
        Some(VxlanDevice {
            name: name.to_string(),
            vni: c.vxlan_vni.unwrap_or(DEFAULT_VXLAN_VNI),
            port: c.vxlan_port.unwrap_or(DEFAULT_VXLAN_PORT),
            local_ip,
            tunnel_addr,
            mac: mac.clone(),
            mtu: mtu.unwrap_or(self.local.host_mtu.saturating_sub(overhead)),
            parent: self.local.uplink.clone(),
        })
    }

    pub(super) fn ipip_device(&self) -> Option<IpipDevice> {
        if !self.ipip_enabled() {
            return None;
        }
        Some(IpipDevice {
            name: IPIP_DEVICE.to_string(),
            tunnel_addr: self.local_node()?.ipip_tunnel_addr?,
            mtu: self
                .config()
                .ipip_mtu
                .unwrap_or(self.local.host_mtu.saturating_sub(IPIP_OVERHEAD)),
        })
    }

    pub(super) fn nat(&self) -> NatOutgoing {
        let mut nat_pools: Vec<IpNet> = self
            .pools
            .values()
            .filter(|p| p.nat_outgoing)
            .map(|p| p.cidr)
            .collect();
        let mut all_pools: Vec<IpNet> = self.pools.values().map(|p| p.cidr).collect();
        for v in [&mut nat_pools, &mut all_pools] {
            v.sort();
            v.dedup();
        }
        NatOutgoing {
            nat_pools,
            all_pools,
        }
    }

    /// The pool with the longest prefix containing `d`.
    pub(super) fn pool_for(&self, d: &IpNet) -> Option<&PoolFact> {
        self.pools
            .values()
            .filter(|p| p.cidr.contains(d))
            .max_by_key(|p| (p.cidr.prefix_len(), p.cidr))
    }

    /// The remote node's address of `d`'s family is inside the local node's subnet.
    pub(super) fn same_subnet(&self, remote: &NodeFact, d: &IpNet) -> bool {
        let Some(me) = self.local_node() else {
            return false;
        };
        match d {
            IpNet::V4(_) => {
                matches!((me.subnet, remote.ip), (Some(n), Some(ip)) if n.contains(&ip))
            }
            IpNet::V6(_) => {
                matches!((me.subnet6, remote.ip6), (Some(n), Some(ip)) if n.contains(&ip))
            }
        }
    }

    pub(super) fn route_for(&self, d: &IpNet) -> Target {
        let local = self.local.node_name.as_str();
        if let Some(key) = self.local_ips.get(d).and_then(|k| k.first())
            && let Some(w) = self.workloads.get(key)
        {
            return Target::Route(Route {
                dst: *d,
                kind: RouteKind::Device {
                    iface: w.iface.clone(),
                },
                proto: BOOT_ROUTE_PROTO,
                scope_link: true,
                onlink: false,
                source: RouteSource::LocalWorkload,
                node: None,
            });
        }
        if let Some(b) = self.blocks.get(d) {
            match b.host.as_deref() {
                Some(h) if h != local => {
                    return self.remote_target(h, d, RouteSource::RemoteBlock);
                }
                // A local /32 block gets no blackhole: it would hide the workload's own route.
                Some(_) if !is_host_route(d) => return self.local_block(d),
                _ => {}
            }
        }
        if let Some((_, node)) = self.borrowed.get(d).and_then(|m| m.iter().next())
            && node != local
        {
            return self.remote_target(node, d, RouteSource::Borrowed);
        }
        Target::None
    }

    pub(super) fn local_block(&self, d: &IpNet) -> Target {
        match self.pool_for(d) {
            Some(p) if p.vxlan.enabled() || p.ipip.enabled() => Target::Route(Route {
                dst: *d,
                kind: RouteKind::Blackhole,
                proto: FELIX_ROUTE_PROTO,
                scope_link: false,
                onlink: false,
                source: RouteSource::LocalBlock,
                node: None,
            }),
            pool => Target::Bgp(BgpRoute {
                dst: *d,
                node: self.local.node_name.clone(),
                next_hop: self.local_node().and_then(|n| n.addr_for(d)),
                local: true,
                disable_export: pool.is_some_and(|p| p.disable_bgp_export),
            }),
        }
    }

    pub(super) fn remote_target(&self, node_name: &str, d: &IpNet, source: RouteSource) -> Target {
        let Some(node) = self.nodes.get(node_name) else {
            return Target::None;
        };
        let pool = self.pool_for(d);
        let vxlan = pool.map(|p| p.vxlan).unwrap_or_default();
        let ipip = pool.map(|p| p.ipip).unwrap_or_default();
        if d.addr().is_ipv6() && ipip.enabled() {
            // No IPIP for IPv6 (upstream has none either).
            return Target::None;
        }
        let route = |kind, proto, scope_link, onlink, source| {
            Target::Route(Route {
                dst: *d,
                kind,
                proto,
                scope_link,
                onlink,
                source,
                node: Some(node_name.to_string()),
            })
        };
        let same_subnet =
            |mode: EncapMode| mode == EncapMode::CrossSubnet && self.same_subnet(node, d);
        let direct = |ip: IpAddr| {
            self.local.uplink.as_ref().map(|dev| RouteKind::ViaNode {
                gw: ip,
                dev: dev.clone(),
            })
        };
        if vxlan.enabled() {
            if same_subnet(vxlan)
                && let Some(kind) = node.addr_for(d).and_then(direct)
            {
                return route(kind, FELIX_ROUTE_PROTO, false, true, source);
            }
            let (vtep, device) = match d {
                IpNet::V4(_) => (node.vxlan_tunnel_addr.map(IpAddr::V4), self.vxlan_device()),
                IpNet::V6(_) => (
                    node.vxlan_tunnel_addr6.map(IpAddr::V6),
                    self.vxlan_v6_device(),
                ),
            };
            let (Some(vtep), Some(device)) = (vtep, device) else {
                return Target::None;
            };
            if is_host_route(d) && d.addr() == vtep {
                // The VTEP address itself, not under a block route (borrowed, or a /32 block).
                let kind = RouteKind::Device { iface: device.name };
                return route(kind, BOOT_ROUTE_PROTO, true, false, RouteSource::RemoteVtep);
            }
            return route(
                RouteKind::ViaVxlan { gw: vtep },
                BOOT_ROUTE_PROTO,
                false,
                true,
                source,
            );
        }
        if ipip.enabled() {
            let Some(ip) = node.ip else {
                return Target::None;
            };
            if same_subnet(ipip)
                && let Some(kind) = direct(IpAddr::V4(ip))
            {
                return route(kind, FELIX_ROUTE_PROTO, false, true, source);
            }
            return route(
                RouteKind::ViaIpip { gw: ip },
                FELIX_ROUTE_PROTO,
                false,
                true,
                source,
            );
        }
        Target::Bgp(BgpRoute {
            dst: *d,
            node: node_name.to_string(),
            next_hop: node.addr_for(d),
            local: false,
            disable_export: pool.is_some_and(|p| p.disable_bgp_export),
        })
    }

    /// The remote node (smallest name) claiming a VTEP address or MAC of `v6`'s family, when
    /// that family's device exists and the node has an address and tunnel address of it.
    pub(super) fn vtep_owner<'a>(
        &'a self,
        key: Option<&'a BTreeSet<String>>,
        v6: bool,
    ) -> Option<(&'a str, &'a NodeFact)> {
        self.vxlan_device_of(v6)?;
        key?.iter()
            .filter(|n| **n != self.local.node_name)
            .filter_map(|n| self.nodes.get(n).map(|f| (n.as_str(), f)))
            .find(|(_, f)| {
                if v6 {
                    f.ip6.is_some() && f.vxlan_tunnel_addr6.is_some()
                } else {
                    f.ip.is_some() && f.vxlan_tunnel_addr.is_some()
                }
            })
    }

    pub(super) fn neighbour_for(&self, vtep: &IpAddr) -> Option<Neighbour> {
        let v6 = vtep.is_ipv6();
        let (_, f) = self.vtep_owner(self.vtep_nodes.get(vtep), v6)?;
        Some(Neighbour {
            ip: *vtep,
            mac: if v6 {
                f.vxlan_mac6.clone()
            } else {
                f.vxlan_mac.clone()
            },
            dev: vxlan_device_for(vtep).to_string(),
        })
    }

    pub(super) fn fdb_for(&self, key: &(String, String)) -> Option<Fdb> {
        let v6 = key.0 == VXLAN_V6_DEVICE;
        let (_, f) = self.vtep_owner(self.mac_nodes.get(key), v6)?;
        let dst = if v6 {
            IpAddr::V6(f.ip6?)
        } else {
            IpAddr::V4(f.ip?)
        };
        Some(Fdb {
            mac: key.1.clone(),
            dst,
            dev: key.0.clone(),
        })
    }
}
