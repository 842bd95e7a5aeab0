//! Tunnel addresses: the node's VXLAN (and IPIP) tunnel address from IPAM, recorded on its Node.
//!
//! ```text
//!  pools + Node labels ──needs()──▶ which encapsulations this node needs
//!        │ needed, address missing or stale ─▶ release handle, auto-assign (usage Tunnel,
//!        │                                      only from pools with that encapsulation) ─▶ Node
//!        └ not needed, address or handle left ─▶ release handle ─▶ clear the Node's fields
//! ```
//!
//! Handles, attribute types and Node fields are upstream's: `vxlan-tunnel-addr-<node>` /
//! `vxlanTunnelAddress` → `ipv4VXLANTunnelAddr` + `vxlanTunnelMACAddr`, and
//! `ipip-tunnel-addr-<node>` / `ipipTunnelAddress` → `spec.bgp.ipv4IPIPTunnelAddr`, and for
//! IPv6 VXLAN pools `vxlan-v6-tunnel-addr-<node>` / `vxlanV6TunnelAddress` →
//! `ipv6VXLANTunnelAddr` + `vxlanTunnelMACAddrV6` (from IPv6 pools only). The running
//! node calls `reconcile` again whenever a pool changes.

use std::net::IpAddr;

use calico_api::naming::{vxlan_tunnel_mac, vxlan_v6_tunnel_mac};
use calico_api::resources::{AllowedUse, IPPool, Node, NodeBGPSpec};
use calico_api::selector;
use calico_datastore::resources::ResourceStore;
use calico_ipam::{Attrs, AutoAssignArgs, Ipam};
use ipnet::IpNet;

use crate::startup::{StartupError, get_node, modify_node};

/// Which tunnel a handle serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tunnel {
    Vxlan,
    Ipip,
    /// `vxlan-v6.calico`'s address, from an IPv6 VXLAN pool.
    VxlanV6,
}

impl std::fmt::Display for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tunnel::Vxlan => "VXLAN",
            Tunnel::Ipip => "IPIP",
            Tunnel::VxlanV6 => "IPv6 VXLAN",
        })
    }
}

impl Tunnel {
    pub fn handle(self, node: &str) -> String {
        match self {
            Tunnel::Vxlan => format!("vxlan-tunnel-addr-{node}"),
            Tunnel::Ipip => format!("ipip-tunnel-addr-{node}"),
            Tunnel::VxlanV6 => format!("vxlan-v6-tunnel-addr-{node}"),
        }
    }

    pub fn attribute_type(self) -> &'static str {
        match self {
            Tunnel::Vxlan => "vxlanTunnelAddress",
            Tunnel::Ipip => "ipipTunnelAddress",
            Tunnel::VxlanV6 => "vxlanV6TunnelAddress",
        }
    }

    fn pool_enabled(self, p: &IPPool) -> bool {
        match self {
            Tunnel::Vxlan | Tunnel::VxlanV6 => p.spec.vxlan().enabled(),
            Tunnel::Ipip => p.spec.ipip().enabled(),
        }
    }

    fn v6(self) -> bool {
        self == Tunnel::VxlanV6
    }

    fn current(self, n: &Node) -> Option<IpAddr> {
        let s = match self {
            Tunnel::Vxlan => n.spec.ipv4_vxlan_tunnel_addr.as_str(),
            Tunnel::Ipip => n.spec.bgp.as_ref().map_or("", |b| &b.ipv4_ipip_tunnel_addr),
            Tunnel::VxlanV6 => n.spec.ipv6_vxlan_tunnel_addr.as_str(),
        };
        s.parse().ok()
    }

    /// Writes (or with `None` clears) the Node's fields; true when something changed.
    fn record(self, n: &mut Node, addr: Option<IpAddr>) -> bool {
        let text = addr.map(|a| a.to_string()).unwrap_or_default();
        match self {
            Tunnel::Vxlan => {
                let mac = if addr.is_some() {
                    if n.spec.vxlan_tunnel_mac_addr.is_empty() {
                        vxlan_tunnel_mac(&n.metadata.name)
                    } else {
                        n.spec.vxlan_tunnel_mac_addr.clone()
                    }
                } else {
                    String::new()
                };
                let changed =
                    n.spec.ipv4_vxlan_tunnel_addr != text || n.spec.vxlan_tunnel_mac_addr != mac;
                n.spec.ipv4_vxlan_tunnel_addr = text;
                n.spec.vxlan_tunnel_mac_addr = mac;
                changed
            }
            Tunnel::VxlanV6 => {
                let mac = match addr {
                    None => String::new(),
                    Some(_) if n.spec.vxlan_tunnel_mac_addr_v6.is_empty() => {
                        vxlan_v6_tunnel_mac(&n.metadata.name)
                    }
                    Some(_) => n.spec.vxlan_tunnel_mac_addr_v6.clone(),
                };
                let changed =
                    n.spec.ipv6_vxlan_tunnel_addr != text || n.spec.vxlan_tunnel_mac_addr_v6 != mac;
                n.spec.ipv6_vxlan_tunnel_addr = text;
                n.spec.vxlan_tunnel_mac_addr_v6 = mac;
                changed
            }
            Tunnel::Ipip => {
                let bgp = n.spec.bgp.get_or_insert_with(NodeBGPSpec::default);
                let changed = bgp.ipv4_ipip_tunnel_addr != text;
                bgp.ipv4_ipip_tunnel_addr = text;
                if n.spec.bgp.as_ref() == Some(&NodeBGPSpec::default()) {
                    n.spec.bgp = None;
                }
                changed
            }
        }
    }
}

/// The tunnel addresses the node holds after a reconcile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunnelState {
    pub vxlan: Option<IpAddr>,
    pub ipip: Option<IpAddr>,
    /// IPv6 VXLAN tunnel address.
    pub vxlan_v6: Option<IpAddr>,
}

/// Enabled pools of the tunnel's family (IPv6 for [`Tunnel::VxlanV6`], else IPv4) selecting this
/// node (by its labels) that allow tunnel addresses and use the encapsulation.
pub fn tunnel_pools<'a>(pools: &'a [IPPool], node: &Node, tunnel: Tunnel) -> Vec<&'a IPPool> {
    let empty = Default::default();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    pools
        .iter()
        .filter(|p| !p.spec.is_disabled())
        .filter(|p| match p.spec.network() {
            Some(IpNet::V4(_)) => !tunnel.v6(),
            Some(IpNet::V6(_)) => tunnel.v6(),
            None => false,
        })
        .filter(|p| p.spec.uses().contains(&AllowedUse::Tunnel))
        .filter(|p| tunnel.pool_enabled(p))
        .filter(|p| {
            let sel = p.spec.node_selector.as_deref().unwrap_or("all()");
            let sel = if sel.trim().is_empty() { "all()" } else { sel };
            selector::parse(sel).is_ok_and(|s| s.matches(labels))
        })
        .collect()
}

/// Brings the node's VXLAN and IPIP tunnel addresses in line with `pools`.
/// Reads the Node afresh, so a stale copy never decides what to keep.
pub async fn reconcile(
    store: &ResourceStore,
    ipam: &Ipam,
    nodename: &str,
    pools: &[IPPool],
) -> Result<TunnelState, StartupError> {
    let node = get_node(store, nodename).await?;
    let vxlan = reconcile_one(store, ipam, &node, pools, Tunnel::Vxlan).await?;
    let node = get_node(store, nodename).await?;
    let ipip = reconcile_one(store, ipam, &node, pools, Tunnel::Ipip).await?;
    let node = get_node(store, nodename).await?;
    let vxlan_v6 = reconcile_one(store, ipam, &node, pools, Tunnel::VxlanV6).await?;
    Ok(TunnelState {
        vxlan,
        ipip,
        vxlan_v6,
    })
}

async fn reconcile_one(
    store: &ResourceStore,
    ipam: &Ipam,
    node: &Node,
    pools: &[IPPool],
    tunnel: Tunnel,
) -> Result<Option<IpAddr>, StartupError> {
    let name = node.metadata.name.as_str();
    let handle = tunnel.handle(name);
    let wanted = tunnel_pools(pools, node, tunnel);
    let held = ipam.ips_by_handle(&handle).await?;
    let current = tunnel.current(node);

    if wanted.is_empty() {
        if !held.is_empty() {
            let n = ipam.release_by_handle(&handle).await?;
            tracing::info!(
                node = name,
                handle,
                released = n,
                "no pool needs a {tunnel} tunnel address any more; released it"
            );
        }
        if current.is_some() {
            modify_node(store, name, |n| tunnel.record(n, None)).await?;
        }
        return Ok(None);
    }

    // Keep the address we hold when it is on the Node, ours by handle, and in a wanted pool.
    if let Some(ip) = current
        && held.contains(&ip)
        && wanted
            .iter()
            .any(|p| p.spec.network().is_some_and(|n| n.contains(&ip)))
    {
        modify_node(store, name, |n| tunnel.record(n, Some(ip))).await?;
        return Ok(Some(ip));
    }

    if !held.is_empty() {
        ipam.release_by_handle(&handle).await?;
    }
    let mut args = AutoAssignArgs::new(name, handle.clone());
    args.usage = AllowedUse::Tunnel;
    let names = wanted.iter().map(|p| p.metadata.name.clone()).collect();
    if tunnel.v6() {
        (args.num_v4, args.num_v6) = (0, 1);
        args.ipv6_pools = names;
    } else {
        args.ipv4_pools = names;
    }
    args.attrs = Attrs {
        node: Some(name.to_string()),
        kind: Some(tunnel.attribute_type().to_string()),
        ..Attrs::default()
    };
    let got = ipam.auto_assign(&args).await?;
    let Some(ip) = got.v4.first().or(got.v6.first()).map(IpNet::addr) else {
        return Err(StartupError::NoTunnelAddress {
            node: name.to_string(),
            pools: [args.ipv4_pools.clone(), args.ipv6_pools.clone()].concat(),
        });
    };
    tracing::info!(node = name, handle, %ip, "assigned {tunnel} tunnel address");
    modify_node(store, name, |n| tunnel.record(n, Some(ip))).await?;
    Ok(Some(ip))
}
