//! Calico's etcd key layout (upstream libcalico-go's), so a store we write reads like theirs.
//!
//! - resources: `/calico/resources/v3/projectcalico.org/<plural>/[<namespace>/]<name>`
//! - IPAM blocks: `/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26`
//! - affinities: `/calico/ipam/v2/host/<node>/ipv4/block/10.0.0.0-26`
//! - handles: `/calico/ipam/v2/handle/<handle id>`
//! - IPAM config: `/calico/ipam/v2/config`

use calico_api::Kind;

pub const RESOURCES_ROOT: &str = "/calico/resources/v3/projectcalico.org/";
pub const IPAM_ROOT: &str = "/calico/ipam/v2/";

/// The key of one resource. `namespace` is ignored for cluster-scoped kinds.
pub fn resource_key(kind: Kind, namespace: Option<&str>, name: &str) -> String {
    match (kind.namespaced(), namespace) {
        (true, Some(ns)) => format!("{RESOURCES_ROOT}{}/{ns}/{name}", kind.plural()),
        _ => format!("{RESOURCES_ROOT}{}/{name}", kind.plural()),
    }
}

/// The prefix under which all resources of a kind (in one namespace, when given) live.
pub fn resource_prefix(kind: Kind, namespace: Option<&str>) -> String {
    match (kind.namespaced(), namespace) {
        (true, Some(ns)) => format!("{RESOURCES_ROOT}{}/{ns}/", kind.plural()),
        _ => format!("{RESOURCES_ROOT}{}/", kind.plural()),
    }
}

/// Splits a resource key back into (kind, namespace, name).
pub fn parse_resource_key(key: &str) -> Option<(Kind, Option<String>, String)> {
    let rest = key.strip_prefix(RESOURCES_ROOT)?;
    let mut parts = rest.split('/');
    let plural = parts.next()?;
    let kind = *Kind::ALL.iter().find(|k| k.plural() == plural)?;
    let a = parts.next()?;
    match (kind.namespaced(), parts.next(), parts.next()) {
        (true, Some(name), None) if !a.is_empty() && !name.is_empty() => {
            Some((kind, Some(a.to_string()), name.to_string()))
        }
        (false, None, None) if !a.is_empty() => Some((kind, None, a.to_string())),
        _ => None,
    }
}

/// `10.0.0.0/26` → `10.0.0.0-26` (and `fd00::/122` → `fd00::-122`).
pub fn cidr_segment(cidr: &str) -> String {
    cidr.replace('/', "-")
}

fn family(cidr: &str) -> &'static str {
    if cidr.contains(':') { "ipv6" } else { "ipv4" }
}

pub fn block_key(cidr: &str) -> String {
    format!(
        "{IPAM_ROOT}assignment/{}/block/{}",
        family(cidr),
        cidr_segment(cidr)
    )
}

pub fn block_prefix(ipv6: bool) -> String {
    format!(
        "{IPAM_ROOT}assignment/{}/block/",
        if ipv6 { "ipv6" } else { "ipv4" }
    )
}

pub fn affinity_key(host: &str, cidr: &str) -> String {
    typed_affinity_key("host", host, cidr)
}

pub fn host_affinity_prefix(host: &str) -> String {
    typed_affinity_prefix("host", host)
}

/// An affinity of another type than `host`: upstream keeps LoadBalancer blocks' affinities at
/// `/calico/ipam/v2/virtual/load-balancer/ipv4/block/<cidr>`.
pub fn typed_affinity_key(kind: &str, owner: &str, cidr: &str) -> String {
    format!(
        "{IPAM_ROOT}{kind}/{owner}/{}/block/{}",
        family(cidr),
        cidr_segment(cidr)
    )
}

pub fn typed_affinity_prefix(kind: &str, owner: &str) -> String {
    format!("{IPAM_ROOT}{kind}/{owner}/")
}

pub fn all_affinities_prefix() -> String {
    format!("{IPAM_ROOT}host/")
}

pub fn handle_key(handle_id: &str) -> String {
    format!("{IPAM_ROOT}handle/{handle_id}")
}

pub fn handle_prefix() -> String {
    format!("{IPAM_ROOT}handle/")
}

pub fn ipam_config_key() -> String {
    format!("{IPAM_ROOT}config")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_upstream() {
        assert_eq!(
            resource_key(Kind::IPPool, None, "default-ipv4-ippool"),
            "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool"
        );
        assert_eq!(
            resource_key(Kind::WorkloadEndpoint, Some("default"), "n1-k8s-p-eth0"),
            "/calico/resources/v3/projectcalico.org/workloadendpoints/default/n1-k8s-p-eth0"
        );
        assert_eq!(
            block_key("10.0.0.0/26"),
            "/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26"
        );
        assert_eq!(
            affinity_key("node1", "fd00::/122"),
            "/calico/ipam/v2/host/node1/ipv6/block/fd00::-122"
        );
        assert_eq!(
            handle_key("k8s-pod-network.abc"),
            "/calico/ipam/v2/handle/k8s-pod-network.abc"
        );
    }

    #[test]
    fn resource_keys_round_trip() {
        for k in Kind::ALL {
            let key = resource_key(*k, Some("ns1"), "x");
            let (kind, ns, name) = parse_resource_key(&key).unwrap();
            assert_eq!(kind, *k);
            assert_eq!(name, "x");
            assert_eq!(ns.is_some(), k.namespaced());
        }
        assert_eq!(parse_resource_key("/calico/other"), None);
    }
}
