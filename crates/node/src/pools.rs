//! The default IP pools calico-node creates at startup, one code path for both families.
//!
//! ```text
//!  CALICO_IPV{4,6}POOL_* + NO_DEFAULT_POOLS ──DefaultPools::from_vars──▶ PoolSettings per family
//!      (parsed and checked with IPPool's own validation, every rule named by its variable)
//!  ──ensure_default_pools──▶ one listing: a family with no pool of its own gets its default
//!      (IPv6 only when IPv6 is supported; no CIDR given ⇒ a random ULA /48)
//! ```
//!
//! Upstream's rules (node/pkg/lifecycle/startup): the pools are `default-ipv4-ippool` and
//! `default-ipv6-ippool`; a family's default is created when no pool of that family exists, the
//! family's CIDR is not `none`, and — for IPv6 — `FELIX_IPV6SUPPORT` is not false and the host has
//! `/proc/sys/net/ipv6`. `IP6` plays no part. `NO_DEFAULT_POOLS=true` together with either CIDR
//! variable is refused. IPv6 pools never use IPIP. Every value is checked before anything is
//! written, so a bad environment leaves the datastore untouched.

use std::io::Read;

use calico_api::resources::{EncapMode, IPPool};
use calico_api::{Kind, Resource};
use calico_datastore::resources::{ResourceStore, StoreError};
use ipnet::{IpNet, Ipv6Net};

use crate::autodetect::{self, Family};
use crate::config::{ConfigError, parse_bool, parse_encap};
use crate::startup::StartupError;

pub const DEFAULT_IPV4_POOL: &str = "default-ipv4-ippool";
pub const DEFAULT_IPV6_POOL: &str = "default-ipv6-ippool";
/// Upstream's default IPv4 pool CIDR.
pub const DEFAULT_IPV4_CIDR: &str = "192.168.0.0/16";

/// A family's pool name, variable names and defaults.
struct Vars {
    family: &'static str,
    name: &'static str,
    cidr: &'static str,
    block_size: &'static str,
    vxlan: &'static str,
    ipip: &'static str,
    nat_outgoing: &'static str,
    node_selector: &'static str,
    disable_bgp_export: &'static str,
    default_block: u8,
    blocks: (u8, u8),
    default_nat: &'static str,
}

fn vars(family: Family) -> &'static Vars {
    const V4: Vars = Vars {
        family: "IPv4",
        name: DEFAULT_IPV4_POOL,
        cidr: "CALICO_IPV4POOL_CIDR",
        block_size: "CALICO_IPV4POOL_BLOCK_SIZE",
        vxlan: "CALICO_IPV4POOL_VXLAN",
        ipip: "CALICO_IPV4POOL_IPIP",
        nat_outgoing: "CALICO_IPV4POOL_NAT_OUTGOING",
        node_selector: "CALICO_IPV4POOL_NODE_SELECTOR",
        disable_bgp_export: "CALICO_IPV4POOL_DISABLE_BGP_EXPORT",
        default_block: 26,
        blocks: (20, 32),
        default_nat: "true",
    };
    const V6: Vars = Vars {
        family: "IPv6",
        name: DEFAULT_IPV6_POOL,
        cidr: "CALICO_IPV6POOL_CIDR",
        block_size: "CALICO_IPV6POOL_BLOCK_SIZE",
        vxlan: "CALICO_IPV6POOL_VXLAN",
        // Not an upstream variable (upstream always writes ipipMode Never on IPv6); read only to
        // refuse an enabled mode instead of silently ignoring it.
        ipip: "CALICO_IPV6POOL_IPIP",
        nat_outgoing: "CALICO_IPV6POOL_NAT_OUTGOING",
        node_selector: "CALICO_IPV6POOL_NODE_SELECTOR",
        disable_bgp_export: "CALICO_IPV6POOL_DISABLE_BGP_EXPORT",
        default_block: 122,
        blocks: (116, 128),
        default_nat: "false",
    };
    match family {
        Family::V4 => &V4,
        Family::V6 => &V6,
    }
}

/// Where a default pool's CIDR comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolCidr {
    Given(IpNet),
    /// `CALICO_IPV6POOL_CIDR` unset: a random ULA /48 (RFC 4193), drawn when the pool is made.
    RandomUla,
}

/// One family's default pool as the environment describes it; valid by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    pub family: Family,
    pub cidr: PoolCidr,
    pub block_size: u8,
    pub vxlan: EncapMode,
    pub ipip: EncapMode,
    pub nat_outgoing: bool,
    /// `None`: `all()`.
    pub node_selector: Option<String>,
    pub disable_bgp_export: bool,
}

/// The default pools; `None` for a family whose CIDR is `none`, both `None` with
/// `NO_DEFAULT_POOLS=true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultPools {
    pub v4: Option<PoolSettings>,
    pub v6: Option<PoolSettings>,
}

impl DefaultPools {
    /// Reads `NO_DEFAULT_POOLS` and both families' `CALICO_IPV*POOL_*`; `get` returns a
    /// variable's trimmed value, `None` when unset or empty.
    pub fn from_vars<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, ConfigError> {
        let off = parse_bool("NO_DEFAULT_POOLS", get("NO_DEFAULT_POOLS").unwrap_or(""))?;
        if off {
            for family in [Family::V4, Family::V6] {
                let var = vars(family).cidr;
                if let Some(v) = get(var) {
                    return Err(ConfigError::Invalid {
                        var: "NO_DEFAULT_POOLS",
                        value: "true".into(),
                        reason: format!(
                            "cannot be combined with {var}={v:?}; unset {var} or NO_DEFAULT_POOLS"
                        ),
                    });
                }
            }
            return Ok(DefaultPools { v4: None, v6: None });
        }
        Ok(DefaultPools {
            v4: PoolSettings::from_vars(Family::V4, &get)?,
            v6: PoolSettings::from_vars(Family::V6, &get)?,
        })
    }

    pub fn get(&self, family: Family) -> Option<&PoolSettings> {
        match family {
            Family::V4 => self.v4.as_ref(),
            Family::V6 => self.v6.as_ref(),
        }
    }
}

fn invalid(var: &'static str, value: &str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        var,
        value: value.into(),
        reason,
    }
}

impl PoolSettings {
    /// `family`'s settings; `Ok(None)` when its CIDR is `none`.
    pub fn from_vars<'a>(
        family: Family,
        get: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Option<Self>, ConfigError> {
        let v = vars(family);
        let cidr = match (get(v.cidr), family) {
            (Some(s), _) if s.eq_ignore_ascii_case("none") => return Ok(None),
            (Some(s), _) => PoolCidr::Given(parse_cidr(family, v.cidr, s)?),
            (None, Family::V4) => PoolCidr::Given(
                DEFAULT_IPV4_CIDR
                    .parse()
                    .map_err(|_| invalid(v.cidr, DEFAULT_IPV4_CIDR, "built-in default".into()))?,
            ),
            (None, Family::V6) => PoolCidr::RandomUla,
        };
        let (lo, hi) = v.blocks;
        let block_size = match get(v.block_size) {
            None => v.default_block,
            Some(s) => s
                .parse::<u8>()
                .ok()
                .filter(|b| (lo..=hi).contains(b))
                .ok_or_else(|| {
                    invalid(
                        v.block_size,
                        s,
                        format!(
                            "{} block sizes are {lo}-{hi}; unset it for the default {}",
                            v.family, v.default_block
                        ),
                    )
                })?,
        };
        let ipip = parse_encap(v.ipip, get(v.ipip).unwrap_or(""))?;
        if family == Family::V6 && ipip.enabled() {
            return Err(invalid(
                v.ipip,
                get(v.ipip).unwrap_or(""),
                "IPIP is not supported on IPv6 pools; unset it and use CALICO_IPV6POOL_VXLAN for \
                 encapsulation"
                    .into(),
            ));
        }
        let settings = PoolSettings {
            family,
            cidr,
            block_size,
            vxlan: parse_encap(v.vxlan, get(v.vxlan).unwrap_or(""))?,
            ipip,
            nat_outgoing: parse_bool(v.nat_outgoing, get(v.nat_outgoing).unwrap_or(v.default_nat))?,
            node_selector: get(v.node_selector).map(String::from),
            disable_bgp_export: parse_bool(
                v.disable_bgp_export,
                get(v.disable_bgp_export).unwrap_or("false"),
            )?,
        };
        settings.check()?;
        Ok(Some(settings))
    }

    /// The pool's name (`default-ipv4-ippool` / `default-ipv6-ippool`).
    pub fn name(&self) -> &'static str {
        vars(self.family).name
    }

    /// The pool resource with CIDR `cidr`.
    fn pool(&self, cidr: IpNet) -> IPPool {
        let mut pool = IPPool::new(self.name());
        pool.spec.cidr = cidr.trunc().to_string();
        pool.spec.block_size = Some(self.block_size);
        pool.spec.vxlan_mode = Some(self.vxlan);
        pool.spec.ipip_mode = Some(self.ipip);
        pool.spec.nat_outgoing = Some(self.nat_outgoing);
        pool.spec.disable_bgp_export = Some(self.disable_bgp_export);
        pool.spec.node_selector = Some(self.node_selector.clone().unwrap_or("all()".into()));
        pool.apply_defaults();
        pool
    }

    /// The rules the pool as a whole must meet (the CIDR holds a block, not link-local, one
    /// encapsulation, a valid selector), by IPPool's own validation, each broken rule reported
    /// with the variables behind its field.
    fn check(&self) -> Result<(), ConfigError> {
        // A generated ULA is a /48 inside fd00::/8, so any one of them stands for all.
        let cidr = match self.cidr {
            PoolCidr::Given(n) => n,
            PoolCidr::RandomUla => IpNet::V6(ula_prefix([0; 5])),
        };
        let Err(errs) = self.pool(cidr).validate() else {
            return Ok(());
        };
        let v = vars(self.family);
        let shown = |var: &str| match var {
            x if x == v.cidr => match self.cidr {
                PoolCidr::Given(n) => format!("{x}={n}"),
                PoolCidr::RandomUla => format!("{x} unset (random ULA /48)"),
            },
            x if x == v.block_size => format!("{x}={}", self.block_size),
            x if x == v.vxlan => format!("{x}={:?}", self.vxlan),
            x if x == v.ipip => format!("{x}={:?}", self.ipip),
            x => format!("{x}={:?}", self.node_selector.as_deref().unwrap_or("all()")),
        };
        // Only these fields come from the environment; nothing else is set on the pool.
        let problems: Vec<String> = errs
            .0
            .iter()
            .map(|e| {
                let behind: &[&str] = match e.field.as_str() {
                    "spec.cidr" => &[v.cidr],
                    "spec.blockSize" => &[v.cidr, v.block_size],
                    "spec.ipipMode" => &[v.ipip],
                    "spec.vxlanMode" => &[v.ipip, v.vxlan],
                    "spec.nodeSelector" => &[v.node_selector],
                    _ => &[],
                };
                let names: Vec<String> = behind.iter().map(|var| shown(var)).collect();
                format!("{} ({}): {}", names.join(", "), e.field, e.message)
            })
            .collect();
        Err(ConfigError::Pool {
            pool: v.name,
            problems: problems.join("; "),
        })
    }
}

fn parse_cidr(family: Family, var: &'static str, s: &str) -> Result<IpNet, ConfigError> {
    let example = match family {
        Family::V4 => "an IPv4 CIDR like 192.168.0.0/16",
        Family::V6 => "an IPv6 CIDR like fd00:10::/48",
    };
    s.parse::<IpNet>()
        .ok()
        .filter(|n| {
            matches!(
                (n, family),
                (IpNet::V4(_), Family::V4) | (IpNet::V6(_), Family::V6)
            )
        })
        .map(|n| n.trunc())
        .ok_or_else(|| invalid(var, s, format!("expected {example}, or none for no pool")))
}

/// The ULA prefix `fdXX:XXXX:XXXX::/48` with global ID `id` (RFC 4193 §3.1).
pub fn ula_prefix(id: [u8; 5]) -> Ipv6Net {
    let mut octets = [0u8; 16];
    octets[0] = 0xfd;
    octets[1..6].copy_from_slice(&id);
    // 48 <= 128, so the prefix length is always accepted.
    Ipv6Net::new(octets.into(), 48).unwrap_or_default()
}

/// 40 random bits from the kernel for a ULA global ID.
pub fn random_ula_id() -> std::io::Result<[u8; 5]> {
    let mut id = [0u8; 5];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut id)?;
    Ok(id)
}

/// Upstream's test for creating the IPv6 default: `FELIX_IPV6SUPPORT` (`felix_ipv6_support`) is
/// not false and the kernel has IPv6 (`/proc/sys/net/ipv6`).
pub fn ipv6_supported(felix_ipv6_support: bool) -> bool {
    felix_ipv6_support && std::path::Path::new("/proc/sys/net/ipv6").exists()
}

/// Creates each family's default pool when no pool of that family exists (IPv6 only when
/// `ipv6_supported`); `ula_id` supplies the random ULA when `CALICO_IPV6POOL_CIDR` is unset.
/// Returns the pools it created; losing a race with another node's creation counts as not
/// created.
pub async fn ensure_default_pools(
    store: &ResourceStore,
    pools: &DefaultPools,
    ipv6_supported: bool,
    mut ula_id: impl FnMut() -> std::io::Result<[u8; 5]>,
) -> Result<Vec<IPPool>, StartupError> {
    let wanted: Vec<&PoolSettings> = [
        pools.v4.as_ref(),
        pools.v6.as_ref().filter(|_| ipv6_supported),
    ]
    .into_iter()
    .flatten()
    .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let existing = store.list(Kind::IPPool, None).await?;
    let has = |family: Family| {
        existing.iter().any(|r| match r {
            Resource::IPPool(p) => p
                .spec
                .network()
                .is_some_and(|n| autodetect::family_of(n.addr()) == family),
            _ => false,
        })
    };
    let mut to_create = Vec::new();
    for s in wanted.into_iter().filter(|s| !has(s.family)) {
        let cidr = match s.cidr {
            PoolCidr::Given(n) => n,
            PoolCidr::RandomUla => IpNet::V6(ula_prefix(ula_id().map_err(StartupError::Ula)?)),
        };
        to_create.push(s.pool(cidr));
    }
    let mut created = Vec::new();
    for pool in to_create {
        let name = pool.metadata.name.clone();
        match store.create(Resource::IPPool(pool)).await {
            Ok(r) => {
                if let Resource::IPPool(p) = r {
                    tracing::info!(cidr = p.spec.cidr, "created default pool {name}");
                    created.push(p);
                }
            }
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(created)
}

#[cfg(test)]
#[path = "pools_tests.rs"]
mod tests;
