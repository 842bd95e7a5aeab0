//! Startup against an embedded datastore in a temp dir, on made-up hosts (no root needed):
//! Node registration, default pool, tunnel addresses (and their release), MTU and nodename files.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use calico_api::naming::vxlan_tunnel_mac;
use calico_api::resources::{AsNumber, EncapMode, IPPool, Node, OrchRef};
use calico_api::{Kind, Resource};
use calico_datastore::config::EmbeddedConfig;
use calico_datastore::resources::ResourceStore;
use calico_datastore::{Datastore, DatastoreConfig};
use calico_ipam::Ipam;
use calico_node::autodetect::{DetectError, Family, Iface};
use calico_node::config::NodeConfig;
use calico_node::startup::{self, Started};
use calico_node::tunnels;

struct Env {
    dir: tempfile::TempDir,
    ds: Arc<dyn Datastore>,
}

impl Env {
    async fn new() -> Result<Env> {
        let dir = tempfile::tempdir()?;
        let cfg = DatastoreConfig::Embedded(EmbeddedConfig {
            path: dir.path().join("datastore.db"),
        });
        let ds = calico_datastore::connect(&cfg).await?;
        Ok(Env { dir, ds })
    }

    fn store(&self) -> ResourceStore {
        ResourceStore::new(self.ds.clone())
    }

    fn config(&self, extra: &[(&str, &str)]) -> Result<NodeConfig> {
        let mut vars: HashMap<String, String> = HashMap::new();
        vars.insert("NODENAME".into(), "node-1".into());
        vars.insert(
            "CALICO_STATE_DIR".into(),
            self.dir.path().join("state").display().to_string(),
        );
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        Ok(NodeConfig::from_vars(&vars, || Ok("unused".into()))?)
    }

    async fn start(&self, extra: &[(&str, &str)], uplink_mtu: u32) -> Result<Started> {
        let cfg = self.config(extra)?;
        let ipam = Ipam::new(self.ds.clone());
        let ifaces = host(uplink_mtu);
        Ok(startup::run(&cfg, &self.store(), &ipam, &ifaces, no_reach).await?)
    }

    fn state(&self, name: &str) -> Result<String> {
        std::fs::read_to_string(self.dir.path().join("state").join(name))
            .with_context(|| format!("state file {name}"))
    }
}

fn no_reach(_: Family, dest: &str) -> Result<IpAddr, DetectError> {
    Err(DetectError::Reach {
        dest: dest.into(),
        reason: "not used in this test".into(),
    })
}

fn host(uplink_mtu: u32) -> Vec<Iface> {
    let i = |index, name: &str, mtu, addrs: &[&str]| Iface {
        index,
        name: name.into(),
        up: true,
        mtu: Some(mtu),
        addrs: addrs.iter().filter_map(|a| a.parse().ok()).collect(),
    };
    vec![
        i(1, "lo", 65536, &["127.0.0.1/8"]),
        i(
            2,
            "eth0",
            uplink_mtu,
            &["172.31.5.7/20", "fe80::7/64", "2600:1f18::7/64"],
        ),
        i(3, "docker0", 1500, &["172.17.0.1/16", "fd00:17::1/64"]),
    ]
}

async fn node(store: &ResourceStore, name: &str) -> Result<Node> {
    match store.get(Kind::Node, None, name).await? {
        Resource::Node(n) => Ok(n),
        other => bail!("not a node: {other:?}"),
    }
}

async fn pools(store: &ResourceStore) -> Result<Vec<IPPool>> {
    Ok(startup::list_pools(store).await?)
}

#[tokio::test]
async fn registers_the_node_and_creates_the_default_pools() -> Result<()> {
    let env = Env::new().await?;
    let s = env.start(&[], 1500).await?;
    assert_eq!(
        s.cidr.map(|c| c.to_string()).as_deref(),
        Some("172.31.5.7/20")
    );
    assert_eq!(s.uplink.as_deref(), Some("eth0"));
    let n = node(&env.store(), "node-1").await?;
    let bgp = n.spec.bgp.clone().context("spec.bgp")?;
    assert_eq!(bgp.ipv4_address, "172.31.5.7/20");
    assert_eq!(n.spec.addresses.len(), 1);
    assert_eq!(n.spec.addresses[0].address, "172.31.5.7/20");
    assert_eq!(n.spec.addresses[0].address_type, "CalicoNodeIP");
    // Default pools: upstream's names and defaults; no encapsulation, so no tunnel address.
    let p = pools(&env.store()).await?;
    let names: Vec<&str> = p.iter().map(|p| p.metadata.name.as_str()).collect();
    assert_eq!(names, ["default-ipv4-ippool", "default-ipv6-ippool"]);
    assert_eq!(p[0].spec.cidr, "192.168.0.0/16");
    assert_eq!(p[0].spec.block_size, Some(26));
    assert_eq!(p[0].spec.nat_outgoing, Some(true));
    assert_eq!(p[0].spec.node_selector.as_deref(), Some("all()"));
    assert_eq!(p[0].spec.vxlan(), EncapMode::Never);
    // IPv6 (made although IP6 is unset, as upstream): a random ULA /48, /122 blocks, no NAT.
    let ula = p[1].spec.network().context("v6 cidr")?;
    assert!(ula.prefix_len() == 48 && "fd00::/8".parse::<ipnet::IpNet>()?.contains(&ula));
    assert_eq!(p[1].spec.block_size, Some(122));
    assert_eq!(p[1].spec.nat_outgoing, Some(false));
    assert_eq!(
        (p[1].spec.ipip(), p[1].spec.vxlan()),
        (EncapMode::Never, EncapMode::Never)
    );
    assert_eq!(p[1].spec.node_selector.as_deref(), Some("all()"));
    assert_eq!(p[1].spec.disable_bgp_export, Some(false));
    assert!(n.spec.ipv4_vxlan_tunnel_addr.is_empty());
    assert_eq!(env.state("mtu")?, "1500");
    assert_eq!(env.state("nodename")?, "node-1");
    Ok(())
}

/// The Node's `(bgp.ipv4Address, bgp.ipv6Address)` and its CalicoNodeIP addresses.
async fn node_addresses(env: &Env) -> Result<((String, String), Vec<String>)> {
    let n = node(&env.store(), "node-1").await?;
    let bgp = n.spec.bgp.context("spec.bgp")?;
    let calico: Vec<String> = n
        .spec
        .addresses
        .into_iter()
        .filter(|a| a.address_type == "CalicoNodeIP")
        .map(|a| a.address)
        .collect();
    Ok(((bgp.ipv4_address, bgp.ipv6_address), calico))
}

#[tokio::test]
async fn ip6_autodetect_records_bgp_ipv6_address_and_unset_keeps_it() -> Result<()> {
    let env = Env::new().await?;
    let v4 = "172.31.5.7/20".to_string();
    // IP6 unset and nothing stored: no IPv6 (upstream's default), although eth0 has one.
    let s = env.start(&[], 1500).await?;
    assert_eq!(s.cidr6, None);
    assert_eq!(
        node_addresses(&env).await?,
        ((v4.clone(), String::new()), vec![v4.clone()])
    );

    // autodetect (first-found): eth0's global address, not its fe80:: nor docker0's.
    let s = env.start(&[("IP6", "autodetect")], 1500).await?;
    let v6 = "2600:1f18::7/64".to_string();
    assert_eq!(s.cidr6.map(|c| c.to_string()), Some(v6.clone()));
    assert_eq!(s.uplink.as_deref(), Some("eth0"));
    assert_eq!(
        node_addresses(&env).await?,
        ((v4.clone(), v6.clone()), vec![v4.clone(), v6.clone()])
    );

    // Unset or none afterwards: the stored address stays.
    let s = env.start(&[], 1500).await?;
    assert_eq!(s.cidr6.map(|c| c.to_string()), Some(v6.clone()));
    env.start(&[("IP6", "none")], 1500).await?;
    assert_eq!(node_addresses(&env).await?.0, (v4.clone(), v6));

    // Another method, then a fixed value: each replaces the IPv6 entries only.
    env.start(
        &[
            ("IP6", "autodetect"),
            ("IP6_AUTODETECTION_METHOD", "interface=docker0"),
        ],
        1500,
    )
    .await?;
    let docker = "fd00:17::1/64".to_string();
    assert_eq!(
        node_addresses(&env).await?,
        ((v4.clone(), docker.clone()), vec![v4.clone(), docker])
    );
    env.start(&[("IP6", "2001:db8::9/120")], 1500).await?;
    let fixed = "2001:db8::9/120".to_string();
    assert_eq!(
        node_addresses(&env).await?,
        ((v4.clone(), fixed.clone()), vec![v4, fixed])
    );

    // IP6=autodetect on a host without a global IPv6 address fails and names IP6.
    let err = env
        .start(
            &[
                ("IP6", "autodetect"),
                ("IP6_AUTODETECTION_METHOD", "interface=^lo$"),
            ],
            1500,
        )
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("no global unicast IPv6") && err.contains("IP6="),
        "{err}"
    );
    Ok(())
}

async fn pool_names(env: &Env) -> Result<Vec<String>> {
    Ok(pools(&env.store())
        .await?
        .into_iter()
        .map(|p| p.metadata.name)
        .collect())
}

/// Upstream's rule per family: a default is made only when no pool of its family exists, its
/// CIDR is not `none`, and (IPv6) FELIX_IPV6SUPPORT is not false.
#[tokio::test]
async fn default_pools_per_family_rules() -> Result<()> {
    let env = Env::new().await?;
    env.start(&[("NO_DEFAULT_POOLS", "true")], 1500).await?;
    assert!(pools(&env.store()).await?.is_empty());

    for (extra, want) in [
        (
            &[("FELIX_IPV6SUPPORT", "false")][..],
            &["default-ipv4-ippool"][..],
        ),
        (
            &[("CALICO_IPV6POOL_CIDR", "none")],
            &["default-ipv4-ippool"],
        ),
        (
            &[("CALICO_IPV4POOL_CIDR", "none")],
            &["default-ipv6-ippool"],
        ),
    ] {
        let env = Env::new().await?;
        env.start(extra, 1500).await?;
        assert_eq!(pool_names(&env).await?, want, "{extra:?}");
    }

    // A pool of one family does not stop the other family's default.
    for (mine, cidr, default) in [
        ("mine4", "10.244.0.0/16", "default-ipv6-ippool"),
        ("mine6", "fd10::/64", "default-ipv4-ippool"),
    ] {
        let env = Env::new().await?;
        let mut p = IPPool::new(mine);
        p.spec.cidr = cidr.into();
        env.store().create(Resource::IPPool(p)).await?;
        env.start(&[], 1500).await?;
        let mut want = vec![default.to_string(), mine.to_string()];
        want.sort();
        assert_eq!(pool_names(&env).await?, want);
    }

    // The environment's values, and a second start changes nothing.
    let env = Env::new().await?;
    let extra = [
        ("CALICO_IPV6POOL_CIDR", "fd77::/56"),
        ("CALICO_IPV6POOL_BLOCK_SIZE", "120"),
        ("CALICO_IPV6POOL_NAT_OUTGOING", "true"),
        ("CALICO_IPV6POOL_NODE_SELECTOR", "has(v6)"),
        ("CALICO_IPV6POOL_DISABLE_BGP_EXPORT", "true"),
    ];
    env.start(&extra, 1500).await?;
    let before = pools(&env.store()).await?;
    let v6 = before.get(1).context("no IPv6 pool")?;
    assert_eq!(v6.spec.cidr, "fd77::/56");
    assert_eq!(v6.spec.block_size, Some(120));
    assert_eq!(v6.spec.nat_outgoing, Some(true));
    assert_eq!(v6.spec.node_selector.as_deref(), Some("has(v6)"));
    assert_eq!(v6.spec.disable_bgp_export, Some(true));
    env.start(&[], 1500).await?;
    assert_eq!(pools(&env.store()).await?, before);
    Ok(())
}

#[tokio::test]
async fn vxlan_pool_gets_a_tunnel_address_mac_and_mtu_then_releases_it() -> Result<()> {
    let env = Env::new().await?;
    let s = env
        .start(
            &[
                ("CALICO_IPV4POOL_CIDR", "10.48.0.0/16"),
                ("CALICO_IPV4POOL_BLOCK_SIZE", "26"),
                ("CALICO_IPV4POOL_VXLAN", "Always"),
            ],
            1500,
        )
        .await?;
    let store = env.store();
    let n = node(&store, "node-1").await?;
    let ip: IpAddr = n.spec.ipv4_vxlan_tunnel_addr.parse()?;
    assert_eq!(s.tunnels.vxlan, Some(ip));
    assert!("10.48.0.0/16".parse::<ipnet::IpNet>()?.contains(&ip));
    assert_eq!(n.spec.vxlan_tunnel_mac_addr, vxlan_tunnel_mac("node-1"));
    assert_eq!(env.state("mtu")?, "1450");

    let ipam = Ipam::new(env.ds.clone());
    let (handle, attrs) = ipam
        .assignment_of(ip)
        .await?
        .context("tunnel address not allocated")?;
    assert_eq!(handle.as_deref(), Some("vxlan-tunnel-addr-node-1"));
    assert_eq!(
        attrs.get("type").map(String::as_str),
        Some("vxlanTunnelAddress")
    );
    assert_eq!(attrs.get("node").map(String::as_str), Some("node-1"));

    // A restart keeps the same address.
    let again = env.start(&[], 1500).await?;
    assert_eq!(again.tunnels.vxlan, Some(ip));

    // The pool switches to Never: the address goes back to IPAM and the Node forgets it.
    let mut p = pools(&store).await?.remove(0);
    p.spec.vxlan_mode = Some(EncapMode::Never);
    store.update(Resource::IPPool(p)).await?;
    let t = tunnels::reconcile(&store, &ipam, "node-1", &pools(&store).await?).await?;
    assert_eq!(t, tunnels::TunnelState::default());
    let n = node(&store, "node-1").await?;
    assert!(n.spec.ipv4_vxlan_tunnel_addr.is_empty());
    assert!(n.spec.vxlan_tunnel_mac_addr.is_empty());
    assert_eq!(ipam.assignment_of(ip).await?, None);
    assert!(
        ipam.ips_by_handle("vxlan-tunnel-addr-node-1")
            .await?
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn ipip_pool_gets_an_ipip_tunnel_address() -> Result<()> {
    let env = Env::new().await?;
    env.start(
        &[
            ("CALICO_IPV4POOL_IPIP", "Always"),
            ("CALICO_IPV4POOL_CIDR", "10.50.0.0/16"),
        ],
        1500,
    )
    .await?;
    let n = node(&env.store(), "node-1").await?;
    let ip: IpAddr = n.spec.bgp.context("bgp")?.ipv4_ipip_tunnel_addr.parse()?;
    let ipam = Ipam::new(env.ds.clone());
    let (handle, attrs) = ipam.assignment_of(ip).await?.context("not allocated")?;
    assert_eq!(handle.as_deref(), Some("ipip-tunnel-addr-node-1"));
    assert_eq!(
        attrs.get("type").map(String::as_str),
        Some("ipipTunnelAddress")
    );
    assert!(n.spec.ipv4_vxlan_tunnel_addr.is_empty());
    assert_eq!(env.state("mtu")?, "1480");
    Ok(())
}

#[tokio::test]
async fn jumbo_uplink_gives_8950_with_vxlan() -> Result<()> {
    let env = Env::new().await?;
    let s = env
        .start(&[("CALICO_IPV4POOL_VXLAN", "CrossSubnet")], 9000)
        .await?;
    assert_eq!((s.host_mtu, s.pod_mtu), (9000, 8950));
    assert_eq!(env.state("mtu")?, "8950");
    Ok(())
}

#[tokio::test]
async fn updating_an_existing_node_keeps_its_other_fields() -> Result<()> {
    let env = Env::new().await?;
    let store = env.store();
    let mut n = Node::new("node-1");
    n.metadata.labels = Some([("rack".to_string(), "r1".to_string())].into());
    n.spec.orch_refs = vec![OrchRef {
        node_name: "k8s-node-1".into(),
        orchestrator: "k8s".into(),
    }];
    store.create(Resource::Node(n)).await?;
    env.start(&[("IP", "172.31.5.7"), ("AS", "64600")], 1500)
        .await?;
    let n = node(&store, "node-1").await?;
    let bgp = n.spec.bgp.clone().context("bgp")?;
    // No prefix in IP: the interface's prefix length is used.
    assert_eq!(bgp.ipv4_address, "172.31.5.7/20");
    assert_eq!(bgp.as_number, Some(AsNumber(64600)));
    assert_eq!(n.spec.orch_refs.len(), 1);
    assert_eq!(
        n.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("rack"))
            .map(String::as_str),
        Some("r1")
    );

    // IP unset later: the stored address is kept even though detection would find it too.
    let s = env.start(&[("IP", "10.1.2.3/24")], 1500).await?;
    assert_eq!(
        s.cidr.map(|c| c.to_string()).as_deref(),
        Some("10.1.2.3/24")
    );
    let s = env.start(&[], 1500).await?;
    assert_eq!(
        s.cidr.map(|c| c.to_string()).as_deref(),
        Some("10.1.2.3/24")
    );
    let n = node(&store, "node-1").await?;
    let calico_ips: Vec<&str> = n
        .spec
        .addresses
        .iter()
        .filter(|a| a.address_type == "CalicoNodeIP")
        .map(|a| a.address.as_str())
        .collect();
    assert_eq!(calico_ips, vec!["10.1.2.3/24"]);
    // IP=autodetect always detects.
    let s = env.start(&[("IP", "autodetect")], 1500).await?;
    assert_eq!(
        s.cidr.map(|c| c.to_string()).as_deref(),
        Some("172.31.5.7/20")
    );
    Ok(())
}

#[tokio::test]
async fn ipv6_vxlan_pool_gets_a_v6_tunnel_address_and_mac_then_releases_it() -> Result<()> {
    let env = Env::new().await?;
    // The IPv6 default pool with VXLAN, from the environment.
    let s = env
        .start(
            &[
                ("CALICO_IPV4POOL_VXLAN", "Always"),
                ("CALICO_IPV6POOL_CIDR", "fd5a:5a5a::/48"),
                ("CALICO_IPV6POOL_VXLAN", "Always"),
            ],
            1500,
        )
        .await?;
    assert_eq!(s.pod_mtu, 1430);
    let store = env.store();
    let all = pools(&store).await?;
    assert_eq!(
        startup::pod_mtu(1500, &all),
        1430,
        "IPv6 VXLAN costs 70 bytes"
    );

    let ipam = Ipam::new(env.ds.clone());
    let t = tunnels::reconcile(&store, &ipam, "node-1", &all).await?;
    let ip = t.vxlan_v6.context("no IPv6 VXLAN tunnel address")?;
    assert!(ip.is_ipv6() && "fd5a:5a5a::/48".parse::<ipnet::IpNet>()?.contains(&ip));
    assert!(t.vxlan.is_some_and(|v4| v4.is_ipv4()));
    let n = node(&store, "node-1").await?;
    assert_eq!(n.spec.ipv6_vxlan_tunnel_addr, ip.to_string());
    assert_eq!(
        n.spec.vxlan_tunnel_mac_addr_v6,
        calico_api::naming::vxlan_v6_tunnel_mac("node-1")
    );
    let (handle, attrs) = ipam.assignment_of(ip).await?.context("not allocated")?;
    assert_eq!(handle.as_deref(), Some("vxlan-v6-tunnel-addr-node-1"));
    assert_eq!(
        attrs.get("type").map(String::as_str),
        Some("vxlanV6TunnelAddress")
    );

    // Again: the same address is kept.
    let again = tunnels::reconcile(&store, &ipam, "node-1", &all).await?;
    assert_eq!(again.vxlan_v6, Some(ip));

    // The IPv6 pool stops using VXLAN: the address and the MAC go, IPv4's stays.
    let Resource::IPPool(mut p) = store.get(Kind::IPPool, None, "default-ipv6-ippool").await?
    else {
        bail!("not a pool");
    };
    p.spec.vxlan_mode = Some(EncapMode::Never);
    store.update(Resource::IPPool(p)).await?;
    let t = tunnels::reconcile(&store, &ipam, "node-1", &pools(&store).await?).await?;
    assert_eq!((t.vxlan_v6, t.vxlan), (None, again.vxlan));
    let n = node(&store, "node-1").await?;
    assert!(n.spec.ipv6_vxlan_tunnel_addr.is_empty() && n.spec.vxlan_tunnel_mac_addr_v6.is_empty());
    assert_eq!(ipam.assignment_of(ip).await?, None);
    Ok(())
}
