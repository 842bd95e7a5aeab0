//! Startup, in upstream's order: choose the node address, register/update the Node, create the
//! default IPv4 and IPv6 pools (`pools`), assign tunnel addresses, then write the files the CNI plugin reads (MTU,
//! nodename) into the state directory.
//!
//! ```text
//!  NodeConfig + [Iface] (+ can-reach source) ──choose_address(V4, V6)──▶ CIDRs, uplink
//!     ──modify_node (CAS loop)──▶ Node{bgp.ipv4Address, bgp.ipv6Address,
//!                                      addresses[CalicoNodeIP], asNumber}
//!     ──pools::ensure_default_pools──▶ tunnels::reconcile ──▶ host MTU − overhead ──▶ <state>/mtu
//! ```
//!
//! Everything here takes the host's interfaces as data, so the same code runs against the real
//! kernel (via netlink in `main`) and against made-up hosts in tests.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use calico_api::resources::{EncapMode, IPPool, Node, NodeAddress, NodeBGPSpec};
use calico_api::{Kind, Resource};
use calico_datastore::resources::{ResourceStore, StoreError};
use calico_ipam::{Ipam, IpamError};
use ipnet::IpNet;
use regex::Regex;

use crate::autodetect::{self, DetectError, Family, Iface};
use crate::config::{DEFAULT_MTU_IFACE_PATTERN, IpSetting, NodeConfig};
use crate::pools;
use crate::tunnels::{self, TunnelState};

pub use crate::pools::{DEFAULT_IPV4_POOL, DEFAULT_IPV6_POOL};
/// Overheads of the encapsulations (IPv4).
pub const VXLAN_OVERHEAD: u32 = 50;
pub const IPIP_OVERHEAD: u32 = 20;
/// VXLAN with an IPv6 outer header (`vxlan-v6.calico`).
pub const VXLAN_V6_OVERHEAD: u32 = 70;
const CAS_RETRIES: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("IPAM: {0}")]
    Ipam(#[from] IpamError),
    #[error("reading the host's interfaces: {0}")]
    Netlink(#[from] calico_dataplane::Error),
    #[error("{action} {}: {source}; check that the state directory (CALICO_STATE_DIR) is writable", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Node({0}) kept changing under us ({CAS_RETRIES} compare-and-swap attempts); retry")]
    Contention(String),
    #[error("stored Node({0}) is not a Node")]
    WrongKind(String),
    #[error(
        "no tunnel address for node {node} from pools {pools:?}: the pools are full or do not \
         allow Tunnel use; enlarge a pool or free addresses"
    )]
    NoTunnelAddress { node: String, pools: Vec<String> },
    #[error("the datastore syncer stopped unexpectedly; restart calico-node")]
    SyncerStopped,
    #[error(
        "reading /dev/urandom for the default IPv6 pool's random ULA prefix: {0}; set \
         CALICO_IPV6POOL_CIDR instead"
    )]
    Ula(std::io::Error),
}

/// What startup established.
#[derive(Debug, Clone)]
pub struct Started {
    pub node: Node,
    /// The node's IPv4 CIDR, if it has one.
    pub cidr: Option<IpNet>,
    /// The node's IPv6 CIDR, if it has one (`IP6`).
    pub cidr6: Option<IpNet>,
    /// The interface carrying the IPv4 address (else the IPv6 one).
    pub uplink: Option<String>,
    pub host_mtu: u32,
    pub pod_mtu: u32,
    pub tunnels: TunnelState,
}

pub async fn get_node(store: &ResourceStore, name: &str) -> Result<Node, StartupError> {
    match store.get(Kind::Node, None, name).await? {
        Resource::Node(n) => Ok(n),
        _ => Err(StartupError::WrongKind(name.into())),
    }
}

/// Creates or updates Node `name` through `change` (true = it changed something), retrying on
/// lost compare-and-swaps; fields `change` leaves alone are kept.
pub async fn modify_node(
    store: &ResourceStore,
    name: &str,
    mut change: impl FnMut(&mut Node) -> bool,
) -> Result<Node, StartupError> {
    for _ in 0..CAS_RETRIES {
        let (mut node, exists) = match get_node(store, name).await {
            Ok(n) => (n, true),
            Err(StartupError::Store(StoreError::NotFound { .. })) => (Node::new(name), false),
            Err(e) => return Err(e),
        };
        let changed = change(&mut node);
        if exists && !changed {
            return Ok(node);
        }
        let res = if exists {
            store.update(Resource::Node(node)).await
        } else {
            store.create(Resource::Node(node)).await
        };
        match res {
            Ok(Resource::Node(n)) => return Ok(n),
            Ok(_) => return Err(StartupError::WrongKind(name.into())),
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StartupError::Contention(name.into()))
}

/// The node's CIDR of `family` per `IP` / `IP_AUTODETECTION_METHOD` (IPv4) or `IP6` /
/// `IP6_AUTODETECTION_METHOD` (IPv6), with the interface carrying it. `stored` is the Node's
/// current `bgp.ipv4Address` / `bgp.ipv6Address`; `reach` gives the can-reach source.
pub fn choose_address(
    cfg: &NodeConfig,
    family: Family,
    ifaces: &[Iface],
    stored: Option<&str>,
    reach: impl FnOnce(Family, &str) -> Result<IpAddr, DetectError>,
) -> Result<Option<(IpNet, Option<String>)>, DetectError> {
    let on_iface = |net: IpNet| {
        let iface = autodetect::find_address(ifaces, net.addr()).map(|d| d.iface);
        (net, iface)
    };
    let (setting, method) = cfg.family(family);
    let stored = stored
        .and_then(|s| s.parse::<IpNet>().ok())
        .filter(|n| autodetect::family_of(n.addr()) == family);
    match setting {
        IpSetting::None => Ok(None),
        IpSetting::Fixed { addr, prefix } => {
            match (prefix, autodetect::find_address(ifaces, *addr)) {
                (Some(p), found) => {
                    let net = IpNet::new(*addr, *p).map_err(|e| {
                        let var = autodetect::family_vars(family).1;
                        DetectError::Invalid(format!("{var}={addr}/{p}: {e}"))
                    })?;
                    Ok(Some((net, found.map(|d| d.iface))))
                }
                // No prefix given: the interface's, else a host route (upstream).
                (None, Some(d)) => Ok(Some((d.cidr, Some(d.iface)))),
                (None, None) => Ok(Some(on_iface(IpNet::from(*addr)))),
            }
        }
        IpSetting::Unset if stored.is_some() => Ok(stored.map(on_iface)),
        // Upstream autodetects IPv4 when nothing is stored, but leaves IPv6 off.
        IpSetting::Unset if family == Family::V6 => Ok(None),
        IpSetting::Unset | IpSetting::Autodetect => {
            let source = match method {
                autodetect::Method::CanReach(dest) => Some(reach(family, dest)?),
                _ => None,
            };
            let d = autodetect::detect(family, method, ifaces, source)?;
            Ok(Some((d.cidr, Some(d.iface))))
        }
    }
}

/// Sets the address fields of `node` (either family left alone when its CIDR is `None`);
/// true when something changed.
fn record_address(
    node: &mut Node,
    cfg: &NodeConfig,
    cidr: Option<IpNet>,
    cidr6: Option<IpNet>,
) -> bool {
    let before = node.spec.clone();
    for cidr in [cidr, cidr6].into_iter().flatten() {
        let bgp = node.spec.bgp.get_or_insert_with(NodeBGPSpec::default);
        let v4 = matches!(cidr, IpNet::V4(_));
        if v4 {
            bgp.ipv4_address = cidr.to_string();
        } else {
            bgp.ipv6_address = cidr.to_string();
        }
        node.spec
            .addresses
            .retain(|a| !(a.address_type == "CalicoNodeIP" && is_v4(&a.address) == v4));
        node.spec.addresses.push(NodeAddress {
            address: cidr.to_string(),
            address_type: "CalicoNodeIP".into(),
        });
    }
    if let Some(asn) = cfg.as_number {
        node.spec
            .bgp
            .get_or_insert_with(NodeBGPSpec::default)
            .as_number = Some(asn);
    }
    node.spec != before
}

fn is_v4(a: &str) -> bool {
    let host = a.split('/').next().unwrap_or(a);
    host.parse::<std::net::Ipv4Addr>().is_ok()
}

pub async fn list_pools(store: &ResourceStore) -> Result<Vec<IPPool>, StartupError> {
    Ok(store
        .list(Kind::IPPool, None)
        .await?
        .into_iter()
        .filter_map(|r| match r {
            Resource::IPPool(p) => Some(p),
            _ => None,
        })
        .collect())
}

/// The host MTU: the smallest MTU of the interfaces matching `FELIX_MTUIFACEPATTERN` when set;
/// else of the uplink carrying the node address; else of upstream's default pattern; else 1500.
pub fn host_mtu(cfg: &NodeConfig, ifaces: &[Iface], uplink: Option<&str>) -> u32 {
    let by_pattern = |pat: &str| {
        let re = Regex::new(pat).ok()?;
        ifaces
            .iter()
            .filter(|i| i.up && re.is_match(&i.name))
            .filter_map(|i| i.mtu)
            .min()
    };
    if let Some(p) = &cfg.mtu_iface_pattern {
        if let Some(m) = by_pattern(p) {
            return m;
        }
        tracing::warn!(
            pattern = p,
            "FELIX_MTUIFACEPATTERN matches no interface; using the uplink"
        );
    }
    uplink
        .and_then(|u| ifaces.iter().find(|i| i.name == u).and_then(|i| i.mtu))
        .or_else(|| by_pattern(DEFAULT_MTU_IFACE_PATTERN))
        .unwrap_or(1500)
}

/// Pod MTU: host MTU minus the largest overhead of the encapsulations enabled pools use.
pub fn pod_mtu(host_mtu: u32, pools: &[IPPool]) -> u32 {
    let enabled = pools.iter().filter(|p| !p.spec.is_disabled());
    let overhead = enabled
        .map(|p| {
            let vx = if p.spec.vxlan() != EncapMode::Never {
                match p.spec.network() {
                    Some(ipnet::IpNet::V6(_)) => VXLAN_V6_OVERHEAD,
                    _ => VXLAN_OVERHEAD,
                }
            } else {
                0
            };
            let ip = if p.spec.ipip() != EncapMode::Never {
                IPIP_OVERHEAD
            } else {
                0
            };
            vx.max(ip)
        })
        .max()
        .unwrap_or(0);
    host_mtu.saturating_sub(overhead)
}

/// Writes `content` to `dir/name` atomically (temp file + rename), creating `dir`.
pub fn write_state_file(dir: &Path, name: &str, content: &str) -> Result<(), StartupError> {
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| StartupError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("rename into", &path))?;
    Ok(())
}

/// The whole startup sequence.
pub async fn run(
    cfg: &NodeConfig,
    store: &ResourceStore,
    ipam: &Ipam,
    ifaces: &[Iface],
    reach: impl Fn(Family, &str) -> Result<IpAddr, DetectError>,
) -> Result<Started, StartupError> {
    let stored = match get_node(store, &cfg.nodename).await {
        Ok(n) => n.spec.bgp.unwrap_or_default(),
        Err(StartupError::Store(StoreError::NotFound { .. })) => NodeBGPSpec::default(),
        Err(e) => return Err(e),
    };
    // An empty stored address does not parse, so it counts as none.
    let chosen = choose_address(cfg, Family::V4, ifaces, Some(&stored.ipv4_address), &reach)?;
    let chosen6 = choose_address(cfg, Family::V6, ifaces, Some(&stored.ipv6_address), &reach)?;
    let cidr = chosen.as_ref().map(|c| c.0);
    let cidr6 = chosen6.as_ref().map(|c| c.0);
    let uplink = chosen.and_then(|c| c.1).or(chosen6.and_then(|c| c.1));
    tracing::info!(node = cfg.nodename, cidr = ?cidr, cidr6 = ?cidr6, uplink = ?uplink, "node address");
    modify_node(store, &cfg.nodename, |n| {
        record_address(n, cfg, cidr, cidr6)
    })
    .await?;
    pools::ensure_default_pools(
        store,
        &cfg.pools,
        pools::ipv6_supported(cfg.ipv6_support),
        pools::random_ula_id,
    )
    .await?;
    let pools = list_pools(store).await?;
    let tunnels = tunnels::reconcile(store, ipam, &cfg.nodename, &pools).await?;
    let host_mtu = host_mtu(cfg, ifaces, uplink.as_deref());
    let pod_mtu = pod_mtu(host_mtu, &pools);
    write_state_file(&cfg.state_dir, "mtu", &pod_mtu.to_string())?;
    write_state_file(&cfg.state_dir, "nodename", &cfg.nodename)?;
    tracing::info!(host_mtu, pod_mtu, state_dir = %cfg.state_dir.display(), "wrote MTU and nodename files");
    let node = get_node(store, &cfg.nodename).await?;
    Ok(Started {
        node,
        cidr,
        cidr6,
        uplink,
        host_mtu,
        pod_mtu,
        tunnels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn pool(vxlan: EncapMode, ipip: EncapMode, disabled: bool) -> IPPool {
        let mut p = IPPool::new("p");
        p.spec.cidr = "10.0.0.0/16".into();
        p.spec.vxlan_mode = Some(vxlan);
        p.spec.ipip_mode = Some(ipip);
        p.spec.disabled = Some(disabled);
        p
    }

    fn iface(name: &str, up: bool, mtu: u32) -> Iface {
        Iface {
            index: 0,
            name: name.into(),
            up,
            mtu: Some(mtu),
            addrs: Vec::new(),
        }
    }

    #[test]
    fn pod_mtu_subtracts_the_largest_enabled_overhead() {
        use EncapMode::*;
        assert_eq!(pod_mtu(1500, &[]), 1500);
        assert_eq!(pod_mtu(1500, &[pool(Never, Never, false)]), 1500);
        assert_eq!(pod_mtu(1500, &[pool(Always, Never, false)]), 1450);
        assert_eq!(pod_mtu(9000, &[pool(CrossSubnet, Never, false)]), 8950);
        assert_eq!(pod_mtu(1500, &[pool(Never, Always, false)]), 1480);
        let mixed = [pool(Never, Always, false), pool(Always, Never, false)];
        assert_eq!(pod_mtu(1500, &mixed), 1450);
        // A disabled pool's encapsulation does not count.
        assert_eq!(pod_mtu(1500, &[pool(Always, Never, true)]), 1500);
    }

    #[test]
    fn host_mtu_prefers_pattern_then_uplink_then_default_pattern()
    -> Result<(), crate::config::ConfigError> {
        let vars = |p: Option<&str>| {
            let mut m: HashMap<String, String> = [("NODENAME".to_string(), "n".to_string())].into();
            if let Some(p) = p {
                m.insert("FELIX_MTUIFACEPATTERN".into(), p.into());
            }
            NodeConfig::from_vars(&m, || Ok("n".into()))
        };
        let ifaces = [
            iface("lo", true, 65536),
            iface("eth0", true, 9000),
            iface("eth1", true, 1500),
            iface("bond0", true, 8000),
            iface("eth2", false, 1200),
        ];
        assert_eq!(host_mtu(&vars(None)?, &ifaces, Some("bond0")), 8000);
        // No uplink known: upstream's default pattern (eth*), up interfaces only.
        assert_eq!(host_mtu(&vars(None)?, &ifaces, None), 1500);
        assert_eq!(
            host_mtu(&vars(Some("^eth0$"))?, &ifaces, Some("bond0")),
            9000
        );
        assert_eq!(
            host_mtu(&vars(Some("^nomatch$"))?, &ifaces, Some("bond0")),
            8000
        );
        assert_eq!(host_mtu(&vars(None)?, &[], None), 1500);
        Ok(())
    }

    #[test]
    fn state_files_are_replaced_whole() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("calico-node-state-{}", std::process::id()));
        write_state_file(&dir, "mtu", "1450")?;
        write_state_file(&dir, "mtu", "8950")?;
        assert_eq!(std::fs::read_to_string(dir.join("mtu"))?, "8950");
        assert!(!dir.join(".mtu.tmp").exists());
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
