//! Naming rules: WorkloadEndpoint names, `cali` interface names, VTEP MAC addresses.
//!
//! These names are derived, not chosen: the CNI plugin, Felix and calicoctl must compute the same
//! string from the same inputs, and upstream Calico nodes compute them too, so every rule here
//! matches upstream byte for byte.
//!
//! - WorkloadEndpoint name: the segments `<node>-<orchestrator>-<id>-<endpoint>` joined by `-`,
//!   with each `-` inside a segment doubled. The third segment depends on the orchestrator:
//!   `k8s` ⇒ pod, `cni` ⇒ container ID, `libnetwork` ⇒ the literal `libnetwork`, else workload.
//! - Host-side veth: a prefix (`cali` by default) + the first 11 hex digits of
//!   sha1(`<namespace>.<pod>`).
//! - VXLAN VTEP MAC: byte 0x66 (ASCII `f`) then the first 5 bytes of sha1(node name) (the IPv6
//!   device hashes `<node>-v6`), unless the Node resource names one explicitly.

use sha1::{Digest, Sha1};

/// The orchestrator name Kubernetes workloads use.
pub const ORCHESTRATOR_K8S: &str = "k8s";
/// The orchestrator name of plain CNI workloads.
pub const ORCHESTRATOR_CNI: &str = "cni";
/// The orchestrator name of Docker libnetwork workloads.
pub const ORCHESTRATOR_LIBNETWORK: &str = "libnetwork";
/// Default host-side interface prefix (Felix's `InterfacePrefix`).
pub const DEFAULT_INTERFACE_PREFIX: &str = "cali";

/// Why a WorkloadEndpoint name could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamingError {
    #[error("workload endpoint {field} must be set to build the endpoint name")]
    Missing { field: &'static str },
    #[error("workload endpoint {field} {value:?} must not begin with '-' (rename it)")]
    LeadingDash { field: &'static str, value: String },
    #[error("workload endpoint {field} {value:?} must not end with '-' (rename it)")]
    TrailingDash { field: &'static str, value: String },
    #[error("cannot parse an empty workload endpoint name")]
    EmptyName,
    #[error(
        "workload endpoint name {name:?} has more segments than <node>-<orchestrator>-<id>-<endpoint>; \
         check the name"
    )]
    TooManySegments { name: String },
}

/// The values a WorkloadEndpoint name is built from; an empty string means "not set". Which of
/// `pod`, `container_id` and `workload` is used depends on `orchestrator`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadEndpointIdentifiers {
    pub node: String,
    pub orchestrator: String,
    pub pod: String,
    pub container_id: String,
    pub workload: String,
    pub endpoint: String,
}

impl WorkloadEndpointIdentifiers {
    /// Identifiers of a Kubernetes pod's endpoint.
    pub fn k8s(node: &str, pod: &str, endpoint: &str) -> Self {
        WorkloadEndpointIdentifiers {
            node: node.into(),
            orchestrator: ORCHESTRATOR_K8S.into(),
            pod: pod.into(),
            endpoint: endpoint.into(),
            ..Default::default()
        }
    }

    /// The name segments (field name, value) for this orchestrator, in order.
    fn segments(&self) -> Result<[(&'static str, &str); 4], NamingError> {
        if self.node.is_empty() {
            return Err(NamingError::Missing { field: "node" });
        }
        let id = match self.orchestrator.as_str() {
            ORCHESTRATOR_K8S => ("pod", self.pod.as_str()),
            ORCHESTRATOR_CNI => ("containerID", self.container_id.as_str()),
            ORCHESTRATOR_LIBNETWORK => ("orchestrator", self.orchestrator.as_str()),
            _ => ("workload", self.workload.as_str()),
        };
        Ok([
            ("node", self.node.as_str()),
            ("orchestrator", self.orchestrator.as_str()),
            id,
            ("endpoint", self.endpoint.as_str()),
        ])
    }

    /// The full name, e.g. `worker--1-k8s-nginx--abc-eth0`; every segment must be set.
    pub fn name(&self) -> Result<String, NamingError> {
        self.build(false)
    }

    /// The name up to the first unset segment, ending in `-` (for prefix listings), or the full
    /// name when all are set. A prefix match may include other workloads (pod `a` is a prefix of
    /// pod `a-1`); filter the results with [`WorkloadEndpointIdentifiers::name_matches`].
    pub fn name_prefix(&self) -> Result<String, NamingError> {
        self.build(true)
    }

    fn build(&self, allow_prefix: bool) -> Result<String, NamingError> {
        let mut name = String::new();
        for (i, (field, value)) in self.segments()?.into_iter().enumerate() {
            if value.is_empty() {
                if allow_prefix {
                    name.push('-');
                    return Ok(name);
                }
                return Err(NamingError::Missing { field });
            }
            if value.starts_with('-') {
                return Err(NamingError::LeadingDash {
                    field,
                    value: value.into(),
                });
            }
            if value.ends_with('-') {
                return Err(NamingError::TrailingDash {
                    field,
                    value: value.into(),
                });
            }
            if i > 0 {
                name.push('-');
            }
            name.push_str(&value.replace('-', "--"));
        }
        Ok(name)
    }

    /// Whether `name` is an endpoint name with these identifiers (unset ones match anything).
    pub fn name_matches(&self, name: &str) -> Result<bool, NamingError> {
        let segments = self.segments()?;
        let parts = split_name(name);
        if name.len() < 2 * segments.len() - 1 || parts.len() != segments.len() {
            return Ok(false);
        }
        Ok(segments
            .iter()
            .zip(&parts)
            .all(|((_, want), got)| want.is_empty() || want == got))
    }
}

/// Splits a name at single dashes and un-doubles the dashes inside each segment. A dash at the
/// very start belongs to the first segment, as upstream reads names.
fn split_name(name: &str) -> Vec<String> {
    let bytes = name.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 1;
    while i < bytes.len() {
        if bytes[i] == b'-' {
            if bytes.get(i + 1) == Some(&b'-') {
                i += 2;
                continue;
            }
            parts.push(name[start..i].replace("--", "-"));
            start = i + 1;
        }
        i += 1;
    }
    parts.push(name.get(start..).unwrap_or_default().replace("--", "-"));
    parts
}

/// Reads a WorkloadEndpoint name back into identifiers. Shorter names fill only the leading
/// fields (`node`, then `orchestrator`, ...), as upstream does; a name with more than four
/// segments is an error.
pub fn parse_workload_endpoint_name(
    name: &str,
) -> Result<WorkloadEndpointIdentifiers, NamingError> {
    if name.is_empty() {
        return Err(NamingError::EmptyName);
    }
    let mut parts = split_name(name).into_iter();
    if parts.len() > 4 {
        return Err(NamingError::TooManySegments { name: name.into() });
    }
    let mut ids = WorkloadEndpointIdentifiers {
        node: parts.next().unwrap_or_default(),
        orchestrator: parts.next().unwrap_or_default(),
        ..Default::default()
    };
    let third = parts.next().unwrap_or_default();
    match ids.orchestrator.as_str() {
        ORCHESTRATOR_K8S => ids.pod = third,
        ORCHESTRATOR_CNI => ids.container_id = third,
        // The third segment repeats the orchestrator name.
        ORCHESTRATOR_LIBNETWORK => {}
        _ => ids.workload = third,
    }
    ids.endpoint = parts.next().unwrap_or_default();
    Ok(ids)
}

fn sha1(data: &[u8]) -> [u8; 20] {
    Sha1::digest(data).into()
}

/// The host-side veth name of a Kubernetes pod: `cali` + 11 hex digits (15 characters, the
/// kernel's limit).
pub fn host_interface_name(namespace: &str, pod: &str) -> String {
    host_interface_name_with_prefix(DEFAULT_INTERFACE_PREFIX, namespace, pod)
}

/// Like [`host_interface_name`] with another prefix. Felix's `InterfacePrefix` may be a
/// comma-separated list; the name uses its first entry.
pub fn host_interface_name_with_prefix(prefix: &str, namespace: &str, pod: &str) -> String {
    let prefix = prefix.split(',').next().unwrap_or_default();
    let prefix = if prefix.is_empty() {
        DEFAULT_INTERFACE_PREFIX
    } else {
        prefix
    };
    let digest = sha1(format!("{namespace}.{pod}").as_bytes());
    let mut hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex.truncate(11);
    format!("{prefix}{hex}")
}

fn mac_string(bytes: &[u8; 6]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn derived_mac(seed: &str) -> [u8; 6] {
    let d = sha1(seed.as_bytes());
    [0x66, d[0], d[1], d[2], d[3], d[4]]
}

/// The IPv4 VXLAN device MAC of a node when `Node.spec.vxlanTunnelMACAddr` is not set, as
/// lower-case colon-separated hex.
pub fn vxlan_tunnel_mac(node: &str) -> String {
    mac_string(&derived_mac(node))
}

/// The IPv6 VXLAN device MAC of a node (upstream hashes `<node>-v6`) when
/// `vxlanTunnelMACAddrV6` is not set.
pub fn vxlan_v6_tunnel_mac(node: &str) -> String {
    mac_string(&derived_mac(&format!("{node}-v6")))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    // Vectors: `printf %s default.nginx-abc | sha1sum` = c611c731f425d3e3...,
    // `printf %s worker-1 | sha1sum` = 937f54d553...; python hashlib agrees.

    #[test]
    fn k8s_name_doubles_dashes_inside_segments() {
        let ids = WorkloadEndpointIdentifiers::k8s("worker-1", "nginx-abc", "eth0");
        assert_eq!(ids.name(), Ok("worker--1-k8s-nginx--abc-eth0".into()));
        assert_eq!(
            parse_workload_endpoint_name("worker--1-k8s-nginx--abc-eth0"),
            Ok(ids)
        );
    }

    #[test]
    fn other_orchestrators_use_their_own_third_segment() {
        let cni = WorkloadEndpointIdentifiers {
            node: "n".into(),
            orchestrator: "cni".into(),
            container_id: "abc-123".into(),
            endpoint: "eth0".into(),
            ..Default::default()
        };
        assert_eq!(cni.name(), Ok("n-cni-abc--123-eth0".into()));
        assert_eq!(parse_workload_endpoint_name("n-cni-abc--123-eth0"), Ok(cni));

        let libnetwork = WorkloadEndpointIdentifiers {
            node: "n".into(),
            orchestrator: "libnetwork".into(),
            endpoint: "ep".into(),
            ..Default::default()
        };
        assert_eq!(libnetwork.name(), Ok("n-libnetwork-libnetwork-ep".into()));
        assert_eq!(
            parse_workload_endpoint_name("n-libnetwork-libnetwork-ep"),
            Ok(libnetwork)
        );

        let openstack = WorkloadEndpointIdentifiers {
            node: "compute-0".into(),
            orchestrator: "openstack".into(),
            workload: "vm-7".into(),
            endpoint: "tap-1".into(),
            ..Default::default()
        };
        assert_eq!(
            openstack.name(),
            Ok("compute--0-openstack-vm--7-tap--1".into())
        );
        assert_eq!(
            parse_workload_endpoint_name("compute--0-openstack-vm--7-tap--1"),
            Ok(openstack)
        );
    }

    #[test]
    fn building_rejects_missing_and_dash_edged_segments() {
        let mut ids = WorkloadEndpointIdentifiers::k8s("n", "p", "");
        assert_eq!(ids.name(), Err(NamingError::Missing { field: "endpoint" }));
        ids.endpoint = "-eth0".into();
        assert_eq!(
            ids.name(),
            Err(NamingError::LeadingDash {
                field: "endpoint",
                value: "-eth0".into()
            })
        );
        ids.endpoint = "eth0-".into();
        assert!(matches!(
            ids.name(),
            Err(NamingError::TrailingDash {
                field: "endpoint",
                ..
            })
        ));
        let no_node = WorkloadEndpointIdentifiers::k8s("", "p", "e");
        assert_eq!(no_node.name(), Err(NamingError::Missing { field: "node" }));
        let msg = NamingError::LeadingDash {
            field: "pod",
            value: "-x".into(),
        }
        .to_string();
        assert!(
            msg.contains("pod") && msg.contains("must not begin with '-'"),
            "{msg}"
        );
    }

    #[test]
    fn prefix_stops_at_the_first_unset_segment() {
        let ids = WorkloadEndpointIdentifiers::k8s("node-1", "pod", "");
        assert_eq!(ids.name_prefix(), Ok("node--1-k8s-pod-".into()));
        let ids = WorkloadEndpointIdentifiers::k8s("node-1", "", "");
        assert_eq!(ids.name_prefix(), Ok("node--1-k8s-".into()));
        let all = WorkloadEndpointIdentifiers::k8s("n", "p", "e");
        assert_eq!(all.name_prefix(), Ok("n-k8s-p-e".into()));
    }

    #[test]
    fn name_matches_filters_prefix_false_positives() {
        let ids = WorkloadEndpointIdentifiers::k8s("node1", "pod", "");
        assert_eq!(ids.name_matches("node1-k8s-pod-eth0"), Ok(true));
        assert_eq!(ids.name_matches("node1-k8s-pod--1-eth0"), Ok(false));
        assert_eq!(ids.name_matches("node1-k8s-pod"), Ok(false));
        assert_eq!(ids.name_matches("node2-k8s-pod-eth0"), Ok(false));
    }

    #[test]
    fn parsing_short_long_and_empty_names() {
        assert_eq!(
            parse_workload_endpoint_name(""),
            Err(NamingError::EmptyName)
        );
        let short = parse_workload_endpoint_name("node--1-k8s");
        assert_eq!(
            short,
            Ok(WorkloadEndpointIdentifiers {
                node: "node-1".into(),
                orchestrator: "k8s".into(),
                ..Default::default()
            })
        );
        assert!(matches!(
            parse_workload_endpoint_name("a-k8s-b-c-d"),
            Err(NamingError::TooManySegments { .. })
        ));
    }

    #[test]
    fn host_interface_names_match_known_vectors() {
        assert_eq!(
            host_interface_name("default", "nginx-abc"),
            "calic611c731f42"
        );
        assert_eq!(host_interface_name("ns", "pod"), "calie34aba5891b");
        assert_eq!(
            host_interface_name("kube-system", "coredns-5d78c9869d-abcde"),
            "cali4d5f75c480c"
        );
        assert_eq!(host_interface_name("default", "nginx-abc").len(), 15);
        assert_eq!(
            host_interface_name_with_prefix("tap", "ns", "pod"),
            "tape34aba5891b"
        );
        assert_eq!(
            host_interface_name_with_prefix("ens,cali", "ns", "pod"),
            "ense34aba5891b"
        );
        assert_eq!(
            host_interface_name_with_prefix("", "ns", "pod"),
            "calie34aba5891b"
        );
    }

    #[test]
    fn vtep_macs_match_known_vectors() {
        assert_eq!(vxlan_tunnel_mac("worker-1"), "66:93:7f:54:d5:53");
        assert_eq!(vxlan_tunnel_mac("node1"), "66:f9:37:c3:7e:94");
        assert_eq!(vxlan_v6_tunnel_mac("worker-1"), "66:d8:48:96:ab:01");
    }

    fn segment() -> impl Strategy<Value = String> {
        // Any text that neither starts nor ends with '-', with runs of dashes inside.
        "[a-z0-9]([a-z0-9.-]{0,10}[a-z0-9])?"
    }

    proptest! {
        #[test]
        fn names_round_trip(node in segment(), pod in segment(), ep in segment(), orch in "k8s|cni|libnetwork|openstack") {
            let mut ids = WorkloadEndpointIdentifiers {
                node,
                orchestrator: orch.clone(),
                endpoint: ep,
                ..Default::default()
            };
            match orch.as_str() {
                "k8s" => ids.pod = pod,
                "cni" => ids.container_id = pod,
                "libnetwork" => {}
                _ => ids.workload = pod,
            }
            let name = ids.name();
            prop_assert!(name.is_ok());
            let name = name.unwrap_or_default();
            prop_assert_eq!(parse_workload_endpoint_name(&name), Ok(ids.clone()));
            prop_assert_eq!(ids.name_matches(&name), Ok(true));
        }

        #[test]
        fn parsing_any_text_never_panics(name in any::<String>()) {
            let _ = parse_workload_endpoint_name(&name);
            let _ = WorkloadEndpointIdentifiers::k8s("n", "", "").name_matches(&name);
        }
    }
}
