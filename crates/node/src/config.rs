//! calico-node's settings, parsed once from the environment (upstream's variable names) into
//! typed values. Everything downstream takes a `NodeConfig`; nothing else reads the environment,
//! so tests build configurations from a plain map.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use calico_api::resources::{AsNumber, EncapMode};
use calico_datastore::DatastoreConfig;
use ipnet::IpNet;

use crate::autodetect::{Family, Method, family_of, family_vars};
use crate::pools::DefaultPools;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}={value:?}: {reason}")]
    Invalid {
        var: &'static str,
        value: String,
        reason: String,
    },
    /// A default pool that IPPool's validation refuses; `problems` names the variables.
    #[error("default pool {pool}: {problems}")]
    Pool {
        pool: &'static str,
        problems: String,
    },
    #[error("cannot determine the node name: set NODENAME ({0})")]
    NoNodeName(String),
    #[error("datastore settings: {0}")]
    Datastore(#[from] calico_datastore::Error),
}

/// `IP` / `IP6`: how the node's IPv4 / IPv6 address is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpSetting {
    /// Unset: keep the Node's stored address; with none stored, `IP` autodetects while `IP6`
    /// leaves IPv6 off (upstream).
    Unset,
    /// `autodetect`: always run the family's autodetection method.
    Autodetect,
    /// An explicit address; without a prefix length the interface carrying it supplies one.
    Fixed { addr: IpAddr, prefix: Option<u8> },
    /// `none`: no address of this family (the Node keeps whatever it has).
    None,
}

/// `CALICO_NETWORKING_BACKEND`: recorded for the BGP work (bird = BGP on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Bird,
    Vxlan,
    None,
}

/// What calico-node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub nodename: String,
    pub ip: IpSetting,
    pub method: Method,
    /// `IP6` (default: unset, i.e. no IPv6 unless the Node already has one).
    pub ip6: IpSetting,
    /// `IP6_AUTODETECTION_METHOD` (default first-found).
    pub method6: Method,
    pub as_number: Option<AsNumber>,
    pub backend: Backend,
    /// `NO_DEFAULT_POOLS` and `CALICO_IPV4POOL_*` / `CALICO_IPV6POOL_*`.
    pub pools: DefaultPools,
    /// `FELIX_IPV6SUPPORT` (default true): false means no default IPv6 pool.
    pub ipv6_support: bool,
    pub state_dir: PathBuf,
    /// `FELIX_MTUIFACEPATTERN`: uplinks whose smallest MTU is the host MTU. Unset: the
    /// interface carrying the node address (else upstream's default pattern).
    pub mtu_iface_pattern: Option<String>,
    pub health_enabled: bool,
    pub health_host: String,
    pub health_port: u16,
    pub metrics_enabled: bool,
    pub metrics_host: String,
    pub metrics_port: u16,
    pub datastore: Option<DatastoreConfig>,
    /// `FELIX_ROUTEREFRESHINTERVAL` (seconds): how often Felix re-reads the kernel and repairs
    /// its routes; `Some(ZERO)` turns the refresh off. Unset: FelixConfiguration's
    /// `routeRefreshInterval`, else 90 s.
    pub route_refresh_interval: Option<Duration>,
}

/// Upstream Felix's default `MTUIfacePattern`.
pub const DEFAULT_MTU_IFACE_PATTERN: &str = "^((en|wl|ww|sl|ib)[Pcopsvx].*|(eth|wlan|wwan).*)";

pub(crate) fn parse_bool(var: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "1" | "yes" | "y" | "on" => Ok(true),
        "false" | "f" | "0" | "no" | "n" | "off" | "" => Ok(false),
        _ => Err(ConfigError::Invalid {
            var,
            value: v.into(),
            reason: "expected true or false".into(),
        }),
    }
}

pub(crate) fn parse_encap(var: &'static str, v: &str) -> Result<EncapMode, ConfigError> {
    // Upstream accepts the modes case-insensitively and treats "off" as Never.
    match v.trim().to_ascii_lowercase().as_str() {
        "" | "never" | "off" => Ok(EncapMode::Never),
        "always" => Ok(EncapMode::Always),
        "crosssubnet" | "cross-subnet" => Ok(EncapMode::CrossSubnet),
        _ => Err(ConfigError::Invalid {
            var,
            value: v.into(),
            reason: "expected Never, Always or CrossSubnet".into(),
        }),
    }
}

fn parse_seconds(var: &'static str, v: &str) -> Result<Duration, ConfigError> {
    v.trim()
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| ConfigError::Invalid {
            var,
            value: v.into(),
            reason: "expected a number of seconds (0 turns it off)".into(),
        })
}

fn parse_port(var: &'static str, v: &str) -> Result<u16, ConfigError> {
    v.trim().parse().map_err(|_| ConfigError::Invalid {
        var,
        value: v.into(),
        reason: "expected a TCP port number (1-65535)".into(),
    })
}

/// Parses `IP` (`Family::V4`) or `IP6` (`Family::V6`).
pub fn parse_ip(family: Family, v: &str) -> Result<IpSetting, ConfigError> {
    let t = v.trim();
    match t.to_ascii_lowercase().as_str() {
        "" => return Ok(IpSetting::Unset),
        "autodetect" => return Ok(IpSetting::Autodetect),
        "none" => return Ok(IpSetting::None),
        _ => {}
    }
    let (var, max, example) = match family {
        Family::V4 => ("IP", 32, "a.b.c.d or a.b.c.d/nn"),
        Family::V6 => (
            "IP6",
            128,
            "an IPv6 address like 2001:db8::5 or 2001:db8::5/64",
        ),
    };
    let bad = |reason: String| ConfigError::Invalid {
        var,
        value: v.into(),
        reason,
    };
    let (a, p) = match t.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (t, None),
    };
    let addr: IpAddr = a
        .parse()
        .ok()
        .filter(|ip: &IpAddr| family_of(*ip) == family)
        .ok_or_else(|| bad(format!("expected autodetect, none, {example}")))?;
    let prefix = match p {
        None => None,
        Some(p) => Some(
            p.parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| bad(format!("the prefix length must be 0-{max}")))?,
        ),
    };
    Ok(IpSetting::Fixed { addr, prefix })
}

fn parse_method(family: Family, value: Option<&str>) -> Result<Method, ConfigError> {
    let var = family_vars(family).2;
    Method::parse(value.unwrap_or("first-found")).map_err(|reason| ConfigError::Invalid {
        var,
        value: value.unwrap_or("").into(),
        reason,
    })
}

impl IpSetting {
    /// The setting as a CIDR when it is fully given.
    pub fn fixed_cidr(&self) -> Option<IpNet> {
        match self {
            IpSetting::Fixed {
                addr,
                prefix: Some(p),
            } => IpNet::new(*addr, *p).ok(),
            _ => None,
        }
    }
}

impl NodeConfig {
    /// Reads the settings from `vars` (the process environment in `main`). `hostname` is the
    /// fallback node name when `NODENAME` (and the deprecated `HOSTNAME`) are unset.
    pub fn from_vars(
        vars: &HashMap<String, String>,
        hostname: impl FnOnce() -> std::io::Result<String>,
    ) -> Result<NodeConfig, ConfigError> {
        let get = |k: &str| vars.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
        let nodename = match get("NODENAME").or_else(|| get("HOSTNAME")) {
            Some(n) => n.to_string(),
            None => {
                let h = hostname().map_err(|e| ConfigError::NoNodeName(e.to_string()))?;
                let h = h.trim().to_string();
                if h.is_empty() {
                    return Err(ConfigError::NoNodeName("the hostname is empty".into()));
                }
                h
            }
        };
        let ip = parse_ip(Family::V4, get("IP").unwrap_or(""))?;
        let method = parse_method(Family::V4, get("IP_AUTODETECTION_METHOD"))?;
        let ip6 = parse_ip(Family::V6, get("IP6").unwrap_or(""))?;
        let method6 = parse_method(Family::V6, get("IP6_AUTODETECTION_METHOD"))?;
        let as_number = match get("AS") {
            None => None,
            Some(s) => Some(AsNumber::parse(s).map_err(|reason| ConfigError::Invalid {
                var: "AS",
                value: s.into(),
                reason,
            })?),
        };
        let backend = match get("CALICO_NETWORKING_BACKEND").unwrap_or("bird") {
            "bird" => Backend::Bird,
            "vxlan" => Backend::Vxlan,
            "none" => Backend::None,
            other => {
                return Err(ConfigError::Invalid {
                    var: "CALICO_NETWORKING_BACKEND",
                    value: other.into(),
                    reason: "expected bird, vxlan or none".into(),
                });
            }
        };
        let state_dir = PathBuf::from(get("CALICO_STATE_DIR").unwrap_or("/var/lib/calico"));
        Ok(NodeConfig {
            nodename,
            ip,
            method,
            ip6,
            method6,
            as_number,
            backend,
            pools: DefaultPools::from_vars(get)?,
            ipv6_support: parse_bool(
                "FELIX_IPV6SUPPORT",
                get("FELIX_IPV6SUPPORT").unwrap_or("true"),
            )?,
            state_dir,
            mtu_iface_pattern: get("FELIX_MTUIFACEPATTERN").map(String::from),
            // Upstream's Felix defaults health off but its container manifests turn it on;
            // calico-node here is that container, so on unless FELIX_HEALTHENABLED=false.
            health_enabled: parse_bool(
                "FELIX_HEALTHENABLED",
                get("FELIX_HEALTHENABLED").unwrap_or("true"),
            )?,
            health_host: get("FELIX_HEALTHHOST").unwrap_or("localhost").into(),
            health_port: match get("FELIX_HEALTHPORT") {
                Some(p) => parse_port("FELIX_HEALTHPORT", p)?,
                None => 9099,
            },
            metrics_enabled: parse_bool(
                "FELIX_PROMETHEUSMETRICSENABLED",
                get("FELIX_PROMETHEUSMETRICSENABLED").unwrap_or("true"),
            )?,
            metrics_host: get("FELIX_PROMETHEUSMETRICSHOST").unwrap_or("").into(),
            metrics_port: match get("FELIX_PROMETHEUSMETRICSPORT") {
                Some(p) => parse_port("FELIX_PROMETHEUSMETRICSPORT", p)?,
                None => 9091,
            },
            datastore: DatastoreConfig::from_vars(vars)?,
            route_refresh_interval: match get("FELIX_ROUTEREFRESHINTERVAL") {
                Some(v) => Some(parse_seconds("FELIX_ROUTEREFRESHINTERVAL", v)?),
                None => None,
            },
        })
    }

    /// The `IP` setting as a CIDR when it is fully given.
    pub fn fixed_cidr(&self) -> Option<IpNet> {
        self.ip.fixed_cidr()
    }

    /// The `IP` / `IP6` setting and autodetection method of `family`.
    pub fn family(&self, family: Family) -> (&IpSetting, &Method) {
        match family {
            Family::V4 => (&self.ip, &self.method),
            Family::V6 => (&self.ip6, &self.method6),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pools::PoolCidr;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_upstream() -> anyhow::Result<()> {
        let c = NodeConfig::from_vars(&vars(&[]), || Ok("host-a\n".into()))?;
        assert_eq!(c.nodename, "host-a");
        assert_eq!(c.ip, IpSetting::Unset);
        assert_eq!(c.method, Method::FirstFound);
        assert_eq!(
            (&c.ip6, &c.method6),
            (&IpSetting::Unset, &Method::FirstFound)
        );
        let v4 = c
            .pools
            .v4
            .as_ref()
            .map(|p| (p.cidr, p.block_size, p.nat_outgoing));
        assert_eq!(
            v4,
            Some((PoolCidr::Given("192.168.0.0/16".parse()?), 26, true))
        );
        let v6 = c
            .pools
            .v6
            .as_ref()
            .map(|p| (p.cidr, p.block_size, p.nat_outgoing));
        assert_eq!(v6, Some((PoolCidr::RandomUla, 122, false)));
        assert!(c.ipv6_support);
        assert_eq!(c.backend, Backend::Bird);
        assert_eq!((c.health_host.as_str(), c.health_port), ("localhost", 9099));
        assert_eq!(c.metrics_port, 9091);
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/calico"));
        assert_eq!(c.route_refresh_interval, None);
        Ok(())
    }

    #[test]
    fn explicit_values_parse() -> anyhow::Result<()> {
        let c = NodeConfig::from_vars(
            &vars(&[
                ("NODENAME", "n1"),
                ("IP", "10.0.0.5/24"),
                ("IP_AUTODETECTION_METHOD", "interface=eth.*,ens3"),
                ("IP6", "2001:db8::5/64"),
                ("IP6_AUTODETECTION_METHOD", "cidr=2001:db8::/32"),
                ("AS", "64513"),
                ("NO_DEFAULT_POOLS", "true"),
                ("FELIX_HEALTHPORT", "19099"),
                ("CALICO_NETWORKING_BACKEND", "vxlan"),
                ("FELIX_ROUTEREFRESHINTERVAL", "2.5"),
            ]),
            || Err(std::io::Error::other("unused")),
        )?;
        assert_eq!(
            c.fixed_cidr().map(|n| n.to_string()).as_deref(),
            Some("10.0.0.5/24")
        );
        assert_eq!(
            c.ip6.fixed_cidr().map(|n| n.to_string()).as_deref(),
            Some("2001:db8::5/64")
        );
        assert_eq!(
            c.method6,
            Method::Cidr(vec!["2001:db8::/32".parse::<IpNet>()?])
        );
        for (v, want) in [
            ("autodetect", IpSetting::Autodetect),
            ("NONE", IpSetting::None),
            (
                "fd00::7",
                IpSetting::Fixed {
                    addr: "fd00::7".parse()?,
                    prefix: None,
                },
            ),
        ] {
            assert_eq!(parse_ip(Family::V6, v)?, want, "{v}");
        }
        assert_eq!(c.as_number, Some(AsNumber(64513)));
        assert_eq!(c.pools, DefaultPools { v4: None, v6: None });
        assert_eq!(c.health_port, 19099);
        assert_eq!(c.backend, Backend::Vxlan);
        assert_eq!(c.route_refresh_interval, Some(Duration::from_millis(2500)));
        Ok(())
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (k, v) in [
            ("IP", "10.0.0.300"),
            ("IP", "10.0.0.1/33"),
            ("IP", "2001:db8::1/64"),
            ("IP6", "10.0.0.1/24"),
            ("IP6", "2001:db8::1/129"),
            ("IP6_AUTODETECTION_METHOD", "cidr=2001:db8::/200"),
            ("CALICO_IPV4POOL_CIDR", "nope"),
            ("CALICO_IPV4POOL_BLOCK_SIZE", "8"),
            ("CALICO_IPV4POOL_VXLAN", "sometimes"),
            ("IP_AUTODETECTION_METHOD", "guess"),
            ("FELIX_HEALTHPORT", "99999"),
            ("FELIX_ROUTEREFRESHINTERVAL", "-1"),
            ("FELIX_ROUTEREFRESHINTERVAL", "soon"),
        ] {
            let err = NodeConfig::from_vars(&vars(&[("NODENAME", "n"), (k, v)]), || Ok("h".into()))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(k), "{k}={v}: {err}");
        }
    }
}
