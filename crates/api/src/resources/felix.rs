//! FelixConfiguration: per-cluster (`default`) or per-node (`node.<name>`) dataplane settings.
//!
//! Every field upstream defines is accepted under its exact name (generated from upstream's
//! field list), so any upstream FelixConfiguration applies. Plain values are typed (bool,
//! integer, string, Go duration strings); nested structures are typed where this project reads
//! them (failsafe ports, port ranges, route table ranges) and kept as JSON values otherwise.
//! Nothing is defaulted in the stored object: Felix applies its defaults when it reads it.

use super::common::{
    Port, check_duration, check_ip, check_log_level, check_one_of, parse_cidr_or_ip,
    resource_struct,
};
use crate::validate::ValidationErrors;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

resource_struct!(
    /// `kind: FelixConfiguration`.
    FelixConfiguration,
    FelixConfigurationSpec
);

/// A `{protocol, port, net}` entry of the failsafe port lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtoPort {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub net: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthTimeoutOverride {
    pub name: String,
    pub timeout: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteTableRange {
    pub min: i64,
    pub max: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FelixConfigurationSpec {
    #[serde(
        default,
        rename = "useInternalDataplaneDriver",
        skip_serializing_if = "Option::is_none"
    )]
    pub use_internal_dataplane_driver: Option<bool>,
    #[serde(
        default,
        rename = "dataplaneDriver",
        skip_serializing_if = "Option::is_none"
    )]
    pub dataplane_driver: Option<String>,
    #[serde(
        default,
        rename = "dataplaneWatchdogTimeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub dataplane_watchdog_timeout: Option<String>,
    #[serde(
        default,
        rename = "ipv6Support",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_support: Option<bool>,
    #[serde(
        default,
        rename = "routeRefreshInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub route_refresh_interval: Option<String>,
    #[serde(
        default,
        rename = "interfaceRefreshInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_refresh_interval: Option<String>,
    #[serde(
        default,
        rename = "iptablesRefreshInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_refresh_interval: Option<String>,
    #[serde(
        default,
        rename = "iptablesPostWriteCheckInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_post_write_check_interval: Option<String>,
    #[serde(
        default,
        rename = "iptablesLockFilePath",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_lock_file_path: Option<String>,
    #[serde(
        default,
        rename = "iptablesLockTimeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_lock_timeout: Option<String>,
    #[serde(
        default,
        rename = "iptablesLockProbeInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_lock_probe_interval: Option<String>,
    #[serde(
        default,
        rename = "featureDetectOverride",
        skip_serializing_if = "Option::is_none"
    )]
    pub feature_detect_override: Option<String>,
    #[serde(
        default,
        rename = "featureGates",
        skip_serializing_if = "Option::is_none"
    )]
    pub feature_gates: Option<String>,
    #[serde(
        default,
        rename = "ipsetsRefreshInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipsets_refresh_interval: Option<String>,
    #[serde(
        default,
        rename = "maxIpsetSize",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_ipset_size: Option<i64>,
    #[serde(
        default,
        rename = "iptablesBackend",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_backend: Option<String>,
    #[serde(
        default,
        rename = "xdpRefreshInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub xdp_refresh_interval: Option<String>,
    #[serde(
        default,
        rename = "netlinkTimeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub netlink_timeout: Option<String>,
    #[serde(
        default,
        rename = "metadataAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub metadata_addr: Option<String>,
    #[serde(
        default,
        rename = "metadataPort",
        skip_serializing_if = "Option::is_none"
    )]
    pub metadata_port: Option<i64>,
    #[serde(
        default,
        rename = "openstackRegion",
        skip_serializing_if = "Option::is_none"
    )]
    pub openstack_region: Option<String>,
    #[serde(
        default,
        rename = "interfacePrefix",
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_prefix: Option<String>,
    #[serde(
        default,
        rename = "interfaceExclude",
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_exclude: Option<String>,
    #[serde(
        default,
        rename = "chainInsertMode",
        skip_serializing_if = "Option::is_none"
    )]
    pub chain_insert_mode: Option<String>,
    #[serde(
        default,
        rename = "defaultEndpointToHostAction",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_endpoint_to_host_action: Option<String>,
    #[serde(
        default,
        rename = "iptablesFilterAllowAction",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_filter_allow_action: Option<String>,
    #[serde(
        default,
        rename = "iptablesMangleAllowAction",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_mangle_allow_action: Option<String>,
    #[serde(
        default,
        rename = "iptablesFilterDenyAction",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_filter_deny_action: Option<String>,
    #[serde(default, rename = "logPrefix", skip_serializing_if = "Option::is_none")]
    pub log_prefix: Option<String>,
    #[serde(
        default,
        rename = "logFilePath",
        skip_serializing_if = "Option::is_none"
    )]
    pub log_file_path: Option<String>,
    #[serde(
        default,
        rename = "logSeverityFile",
        skip_serializing_if = "Option::is_none"
    )]
    pub log_severity_file: Option<String>,
    #[serde(
        default,
        rename = "logSeverityScreen",
        skip_serializing_if = "Option::is_none"
    )]
    pub log_severity_screen: Option<String>,
    #[serde(
        default,
        rename = "logSeveritySys",
        skip_serializing_if = "Option::is_none"
    )]
    pub log_severity_sys: Option<String>,
    #[serde(
        default,
        rename = "logDebugFilenameRegex",
        skip_serializing_if = "Option::is_none"
    )]
    pub log_debug_filename_regex: Option<String>,
    #[serde(
        default,
        rename = "ipipEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipip_enabled: Option<bool>,
    #[serde(default, rename = "ipipMTU", skip_serializing_if = "Option::is_none")]
    pub ipip_mtu: Option<i64>,
    #[serde(
        default,
        rename = "vxlanEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_enabled: Option<bool>,
    #[serde(default, rename = "vxlanMTU", skip_serializing_if = "Option::is_none")]
    pub vxlan_mtu: Option<i64>,
    #[serde(
        default,
        rename = "vxlanMTUV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_mtuv6: Option<i64>,
    #[serde(default, rename = "vxlanPort", skip_serializing_if = "Option::is_none")]
    pub vxlan_port: Option<i64>,
    #[serde(default, rename = "vxlanVNI", skip_serializing_if = "Option::is_none")]
    pub vxlan_vni: Option<i64>,
    #[serde(
        default,
        rename = "allowVXLANPacketsFromWorkloads",
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_vxlan_packets_from_workloads: Option<bool>,
    #[serde(
        default,
        rename = "allowIPIPPacketsFromWorkloads",
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_ipip_packets_from_workloads: Option<bool>,
    #[serde(
        default,
        rename = "reportingInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub reporting_interval: Option<String>,
    #[serde(
        default,
        rename = "reportingTTL",
        skip_serializing_if = "Option::is_none"
    )]
    pub reporting_ttl: Option<String>,
    #[serde(
        default,
        rename = "endpointReportingEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint_reporting_enabled: Option<bool>,
    #[serde(
        default,
        rename = "endpointReportingDelay",
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint_reporting_delay: Option<String>,
    #[serde(
        default,
        rename = "endpointStatusPathPrefix",
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint_status_path_prefix: Option<String>,
    #[serde(
        default,
        rename = "iptablesMarkMask",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_mark_mask: Option<i64>,
    #[serde(
        default,
        rename = "disableConntrackInvalidCheck",
        skip_serializing_if = "Option::is_none"
    )]
    pub disable_conntrack_invalid_check: Option<bool>,
    #[serde(
        default,
        rename = "healthEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub health_enabled: Option<bool>,
    #[serde(
        default,
        rename = "healthHost",
        skip_serializing_if = "Option::is_none"
    )]
    pub health_host: Option<String>,
    #[serde(
        default,
        rename = "healthPort",
        skip_serializing_if = "Option::is_none"
    )]
    pub health_port: Option<i64>,
    #[serde(
        default,
        rename = "healthTimeoutOverrides",
        skip_serializing_if = "Option::is_none"
    )]
    pub health_timeout_overrides: Option<Vec<HealthTimeoutOverride>>,
    #[serde(
        default,
        rename = "prometheusMetricsEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_metrics_enabled: Option<bool>,
    #[serde(
        default,
        rename = "prometheusMetricsHost",
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_metrics_host: Option<String>,
    #[serde(
        default,
        rename = "prometheusMetricsPort",
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_metrics_port: Option<i64>,
    #[serde(
        default,
        rename = "prometheusGoMetricsEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_go_metrics_enabled: Option<bool>,
    #[serde(
        default,
        rename = "prometheusProcessMetricsEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_process_metrics_enabled: Option<bool>,
    #[serde(
        default,
        rename = "prometheusWireGuardMetricsEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_wire_guard_metrics_enabled: Option<bool>,
    #[serde(
        default,
        rename = "failsafeInboundHostPorts",
        skip_serializing_if = "Option::is_none"
    )]
    pub failsafe_inbound_host_ports: Option<Vec<ProtoPort>>,
    #[serde(
        default,
        rename = "failsafeOutboundHostPorts",
        skip_serializing_if = "Option::is_none"
    )]
    pub failsafe_outbound_host_ports: Option<Vec<ProtoPort>>,
    #[serde(
        default,
        rename = "kubeNodePortRanges",
        skip_serializing_if = "Option::is_none"
    )]
    pub kube_node_port_ranges: Option<Vec<Port>>,
    #[serde(
        default,
        rename = "policySyncPathPrefix",
        skip_serializing_if = "Option::is_none"
    )]
    pub policy_sync_path_prefix: Option<String>,
    #[serde(
        default,
        rename = "usageReportingEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub usage_reporting_enabled: Option<bool>,
    #[serde(
        default,
        rename = "usageReportingInitialDelay",
        skip_serializing_if = "Option::is_none"
    )]
    pub usage_reporting_initial_delay: Option<String>,
    #[serde(
        default,
        rename = "usageReportingInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub usage_reporting_interval: Option<String>,
    #[serde(
        default,
        rename = "natPortRange",
        skip_serializing_if = "Option::is_none"
    )]
    pub nat_port_range: Option<Port>,
    #[serde(
        default,
        rename = "natOutgoingAddress",
        skip_serializing_if = "Option::is_none"
    )]
    pub nat_outgoing_address: Option<String>,
    #[serde(
        default,
        rename = "natOutgoingExclusions",
        skip_serializing_if = "Option::is_none"
    )]
    pub nat_outgoing_exclusions: Option<String>,
    #[serde(
        default,
        rename = "deviceRouteSourceAddress",
        skip_serializing_if = "Option::is_none"
    )]
    pub device_route_source_address: Option<String>,
    #[serde(
        default,
        rename = "deviceRouteSourceAddressIPv6",
        skip_serializing_if = "Option::is_none"
    )]
    pub device_route_source_address_ipv6: Option<String>,
    #[serde(
        default,
        rename = "deviceRouteProtocol",
        skip_serializing_if = "Option::is_none"
    )]
    pub device_route_protocol: Option<i64>,
    #[serde(
        default,
        rename = "removeExternalRoutes",
        skip_serializing_if = "Option::is_none"
    )]
    pub remove_external_routes: Option<bool>,
    #[serde(
        default,
        rename = "programClusterRoutes",
        skip_serializing_if = "Option::is_none"
    )]
    pub program_cluster_routes: Option<String>,
    #[serde(
        default,
        rename = "ipForwarding",
        skip_serializing_if = "Option::is_none"
    )]
    pub ip_forwarding: Option<String>,
    #[serde(
        default,
        rename = "externalNodesList",
        skip_serializing_if = "Option::is_none"
    )]
    pub external_nodes_list: Option<Vec<String>>,
    #[serde(
        default,
        rename = "debugMemoryProfilePath",
        skip_serializing_if = "Option::is_none"
    )]
    pub debug_memory_profile_path: Option<String>,
    #[serde(
        default,
        rename = "debugDisableLogDropping",
        skip_serializing_if = "Option::is_none"
    )]
    pub debug_disable_log_dropping: Option<bool>,
    #[serde(
        default,
        rename = "debugSimulateCalcGraphHangAfter",
        skip_serializing_if = "Option::is_none"
    )]
    pub debug_simulate_calc_graph_hang_after: Option<String>,
    #[serde(
        default,
        rename = "debugSimulateDataplaneHangAfter",
        skip_serializing_if = "Option::is_none"
    )]
    pub debug_simulate_dataplane_hang_after: Option<String>,
    #[serde(
        default,
        rename = "debugSimulateDataplaneApplyDelay",
        skip_serializing_if = "Option::is_none"
    )]
    pub debug_simulate_dataplane_apply_delay: Option<String>,
    #[serde(default, rename = "debugHost", skip_serializing_if = "Option::is_none")]
    pub debug_host: Option<String>,
    #[serde(default, rename = "debugPort", skip_serializing_if = "Option::is_none")]
    pub debug_port: Option<i64>,
    #[serde(
        default,
        rename = "iptablesNATOutgoingInterfaceFilter",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_nat_outgoing_interface_filter: Option<String>,
    #[serde(
        default,
        rename = "sidecarAccelerationEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub sidecar_acceleration_enabled: Option<bool>,
    #[serde(
        default,
        rename = "xdpEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub xdp_enabled: Option<bool>,
    #[serde(
        default,
        rename = "genericXDPEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub generic_xdp_enabled: Option<bool>,
    #[serde(
        default,
        rename = "nftablesMode",
        skip_serializing_if = "Option::is_none"
    )]
    pub nftables_mode: Option<String>,
    #[serde(
        default,
        rename = "nftablesRefreshInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub nftables_refresh_interval: Option<String>,
    #[serde(
        default,
        rename = "nftablesFilterAllowAction",
        skip_serializing_if = "Option::is_none"
    )]
    pub nftables_filter_allow_action: Option<String>,
    #[serde(
        default,
        rename = "nftablesMangleAllowAction",
        skip_serializing_if = "Option::is_none"
    )]
    pub nftables_mangle_allow_action: Option<String>,
    #[serde(
        default,
        rename = "nftablesFilterDenyAction",
        skip_serializing_if = "Option::is_none"
    )]
    pub nftables_filter_deny_action: Option<String>,
    #[serde(
        default,
        rename = "nftablesMarkMask",
        skip_serializing_if = "Option::is_none"
    )]
    pub nftables_mark_mask: Option<i64>,
    #[serde(
        default,
        rename = "bpfEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_enabled: Option<bool>,
    #[serde(
        default,
        rename = "bpfDisableUnprivileged",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_disable_unprivileged: Option<bool>,
    #[serde(
        default,
        rename = "bpfLogLevel",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_log_level: Option<String>,
    #[serde(
        default,
        rename = "bpfConntrackLogLevel",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_conntrack_log_level: Option<String>,
    #[serde(
        default,
        rename = "bpfConntrackMode",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_conntrack_mode: Option<String>,
    #[serde(
        default,
        rename = "bpfConntrackTimeouts",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_conntrack_timeouts: Option<serde_json::Value>,
    #[serde(
        default,
        rename = "bpfLogFilters",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_log_filters: Option<BTreeMap<String, String>>,
    #[serde(
        default,
        rename = "bpfCTLBLogFilter",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_ctlb_log_filter: Option<String>,
    #[serde(
        default,
        rename = "bpfDataIfacePattern",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_data_iface_pattern: Option<String>,
    #[serde(
        default,
        rename = "bpfL3IfacePattern",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_l3_iface_pattern: Option<String>,
    #[serde(
        default,
        rename = "bpfConnectTimeLoadBalancingEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_connect_time_load_balancing_enabled: Option<bool>,
    #[serde(
        default,
        rename = "bpfConnectTimeLoadBalancing",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_connect_time_load_balancing: Option<String>,
    #[serde(
        default,
        rename = "bpfHostNetworkedNATWithoutCTLB",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_host_networked_nat_without_ctlb: Option<String>,
    #[serde(
        default,
        rename = "bpfExternalServiceMode",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_external_service_mode: Option<String>,
    #[serde(
        default,
        rename = "bpfDSROptoutCIDRs",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_dsr_optout_cid_rs: Option<Vec<String>>,
    #[serde(
        default,
        rename = "bpfExtToServiceConnmark",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_ext_to_service_connmark: Option<i64>,
    #[serde(
        default,
        rename = "bpfKubeProxyIptablesCleanupEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_kube_proxy_iptables_cleanup_enabled: Option<bool>,
    #[serde(
        default,
        rename = "bpfKubeProxyMinSyncPeriod",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_kube_proxy_min_sync_period: Option<String>,
    #[serde(
        default,
        rename = "bpfKubeProxyEndpointSlicesEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_kube_proxy_endpoint_slices_enabled: Option<bool>,
    #[serde(
        default,
        rename = "bpfPSNATPorts",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_psnat_ports: Option<Port>,
    #[serde(
        default,
        rename = "bpfMapSizeNATFrontend",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_nat_frontend: Option<i64>,
    #[serde(
        default,
        rename = "bpfMapSizeNATBackend",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_nat_backend: Option<i64>,
    #[serde(
        default,
        rename = "bpfMapSizeNATAffinity",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_nat_affinity: Option<i64>,
    #[serde(
        default,
        rename = "bpfMapSizeRoute",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_route: Option<i64>,
    #[serde(
        default,
        rename = "bpfMapSizeConntrack",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_conntrack: Option<i64>,
    #[serde(
        default,
        rename = "bpfMapSizePerCpuConntrack",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_per_cpu_conntrack: Option<i64>,
    #[serde(
        default,
        rename = "bpfMapSizeConntrackScaling",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_conntrack_scaling: Option<String>,
    #[serde(
        default,
        rename = "bpfMapSizeConntrackCleanupQueue",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_conntrack_cleanup_queue: Option<i64>,
    #[serde(
        default,
        rename = "bpfMapSizeIPSets",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_ip_sets: Option<i64>,
    #[serde(
        default,
        rename = "bpfMapSizeIfState",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_if_state: Option<i64>,
    #[serde(
        default,
        rename = "bpfHostConntrackBypass",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_host_conntrack_bypass: Option<bool>,
    #[serde(
        default,
        rename = "bpfEnforceRPF",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_enforce_rpf: Option<String>,
    #[serde(
        default,
        rename = "bpfPolicyDebugEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_policy_debug_enabled: Option<bool>,
    #[serde(
        default,
        rename = "bpfForceTrackPacketsFromIfaces",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_force_track_packets_from_ifaces: Option<Vec<String>>,
    #[serde(
        default,
        rename = "bpfDisableGROForIfaces",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_disable_gro_for_ifaces: Option<String>,
    #[serde(
        default,
        rename = "bpfExcludeCIDRsFromNAT",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_exclude_cid_rs_from_nat: Option<Vec<String>>,
    #[serde(
        default,
        rename = "bpfExportBufferSizeMB",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_export_buffer_size_mb: Option<i64>,
    #[serde(
        default,
        rename = "cgroupV2Path",
        skip_serializing_if = "Option::is_none"
    )]
    pub cgroup_v2_path: Option<String>,
    #[serde(
        default,
        rename = "flowLogsPolicyEvaluationMode",
        skip_serializing_if = "Option::is_none"
    )]
    pub flow_logs_policy_evaluation_mode: Option<String>,
    #[serde(
        default,
        rename = "bpfRedirectToPeer",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_redirect_to_peer: Option<String>,
    #[serde(
        default,
        rename = "bpfAttachType",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_attach_type: Option<String>,
    #[serde(
        default,
        rename = "flowLogsFlushInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub flow_logs_flush_interval: Option<String>,
    #[serde(
        default,
        rename = "flowLogsCollectorDebugTrace",
        skip_serializing_if = "Option::is_none"
    )]
    pub flow_logs_collector_debug_trace: Option<bool>,
    #[serde(
        default,
        rename = "flowLogsGoldmaneServer",
        skip_serializing_if = "Option::is_none"
    )]
    pub flow_logs_goldmane_server: Option<String>,
    #[serde(
        default,
        rename = "flowLogsLocalReporter",
        skip_serializing_if = "Option::is_none"
    )]
    pub flow_logs_local_reporter: Option<String>,
    #[serde(
        default,
        rename = "bpfProfiling",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_profiling: Option<String>,
    #[serde(
        default,
        rename = "routeSource",
        skip_serializing_if = "Option::is_none"
    )]
    pub route_source: Option<String>,
    #[serde(
        default,
        rename = "routeTableRanges",
        skip_serializing_if = "Option::is_none"
    )]
    pub route_table_ranges: Option<Vec<RouteTableRange>>,
    #[serde(
        default,
        rename = "routeTableRange",
        skip_serializing_if = "Option::is_none"
    )]
    pub route_table_range: Option<RouteTableRange>,
    #[serde(
        default,
        rename = "routeSyncDisabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub route_sync_disabled: Option<bool>,
    #[serde(
        default,
        rename = "wireguardEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_enabled: Option<bool>,
    #[serde(
        default,
        rename = "wireguardEnabledV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_enabled_v6: Option<bool>,
    #[serde(
        default,
        rename = "wireguardThreadingEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_threading_enabled: Option<bool>,
    #[serde(
        default,
        rename = "wireguardListeningPort",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_listening_port: Option<i64>,
    #[serde(
        default,
        rename = "wireguardListeningPortV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_listening_port_v6: Option<i64>,
    #[serde(
        default,
        rename = "wireguardRoutingRulePriority",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_routing_rule_priority: Option<i64>,
    #[serde(
        default,
        rename = "wireguardInterfaceName",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_interface_name: Option<String>,
    #[serde(
        default,
        rename = "wireguardInterfaceNameV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_interface_name_v6: Option<String>,
    #[serde(
        default,
        rename = "wireguardMTU",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_mtu: Option<i64>,
    #[serde(
        default,
        rename = "wireguardMTUV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_mtuv6: Option<i64>,
    #[serde(
        default,
        rename = "wireguardHostEncryptionEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_host_encryption_enabled: Option<bool>,
    #[serde(
        default,
        rename = "wireguardKeepAlive",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_keep_alive: Option<String>,
    #[serde(
        default,
        rename = "awsSrcDstCheck",
        skip_serializing_if = "Option::is_none"
    )]
    pub aws_src_dst_check: Option<String>,
    #[serde(
        default,
        rename = "serviceLoopPrevention",
        skip_serializing_if = "Option::is_none"
    )]
    pub service_loop_prevention: Option<String>,
    #[serde(
        default,
        rename = "workloadSourceSpoofing",
        skip_serializing_if = "Option::is_none"
    )]
    pub workload_source_spoofing: Option<String>,
    #[serde(
        default,
        rename = "mtuIfacePattern",
        skip_serializing_if = "Option::is_none"
    )]
    pub mtu_iface_pattern: Option<String>,
    #[serde(
        default,
        rename = "floatingIPs",
        skip_serializing_if = "Option::is_none"
    )]
    pub floating_ips: Option<String>,
    #[serde(
        default,
        rename = "windowsManageFirewallRules",
        skip_serializing_if = "Option::is_none"
    )]
    pub windows_manage_firewall_rules: Option<String>,
    #[serde(
        default,
        rename = "goGCThreshold",
        skip_serializing_if = "Option::is_none"
    )]
    pub go_gc_threshold: Option<i64>,
    #[serde(
        default,
        rename = "goMemoryLimitMB",
        skip_serializing_if = "Option::is_none"
    )]
    pub go_memory_limit_mb: Option<i64>,
    #[serde(
        default,
        rename = "goMaxProcs",
        skip_serializing_if = "Option::is_none"
    )]
    pub go_max_procs: Option<i64>,
    #[serde(
        default,
        rename = "requireMTUFile",
        skip_serializing_if = "Option::is_none"
    )]
    pub require_mtu_file: Option<bool>,
}

impl FelixConfiguration {
    pub fn apply_defaults(&mut self) {}

    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        check_spec(&self.spec, &mut errs);
        errs.into_result()
    }
}

fn check_spec(s: &FelixConfigurationSpec, errs: &mut ValidationErrors) {
    for (v, f) in [
        (&s.dataplane_watchdog_timeout, "dataplaneWatchdogTimeout"),
        (&s.route_refresh_interval, "routeRefreshInterval"),
        (&s.interface_refresh_interval, "interfaceRefreshInterval"),
        (&s.iptables_refresh_interval, "iptablesRefreshInterval"),
        (
            &s.iptables_post_write_check_interval,
            "iptablesPostWriteCheckInterval",
        ),
        (&s.iptables_lock_timeout, "iptablesLockTimeout"),
        (&s.iptables_lock_probe_interval, "iptablesLockProbeInterval"),
        (&s.ipsets_refresh_interval, "ipsetsRefreshInterval"),
        (&s.xdp_refresh_interval, "xdpRefreshInterval"),
        (&s.netlink_timeout, "netlinkTimeout"),
        (&s.reporting_interval, "reportingInterval"),
        (&s.reporting_ttl, "reportingTTL"),
        (&s.endpoint_reporting_delay, "endpointReportingDelay"),
        (
            &s.usage_reporting_initial_delay,
            "usageReportingInitialDelay",
        ),
        (&s.usage_reporting_interval, "usageReportingInterval"),
        (
            &s.debug_simulate_calc_graph_hang_after,
            "debugSimulateCalcGraphHangAfter",
        ),
        (
            &s.debug_simulate_dataplane_hang_after,
            "debugSimulateDataplaneHangAfter",
        ),
        (
            &s.debug_simulate_dataplane_apply_delay,
            "debugSimulateDataplaneApplyDelay",
        ),
        (&s.nftables_refresh_interval, "nftablesRefreshInterval"),
        (
            &s.bpf_kube_proxy_min_sync_period,
            "bpfKubeProxyMinSyncPeriod",
        ),
        (&s.flow_logs_flush_interval, "flowLogsFlushInterval"),
        (&s.wireguard_keep_alive, "wireguardKeepAlive"),
    ] {
        if let Some(v) = v {
            check_duration(v, &format!("spec.{f}"), errs);
        }
    }
    for (v, f) in [
        (s.metadata_port, "metadataPort"),
        (s.vxlan_port, "vxlanPort"),
        (s.health_port, "healthPort"),
        (s.prometheus_metrics_port, "prometheusMetricsPort"),
        (s.debug_port, "debugPort"),
        (s.wireguard_listening_port, "wireguardListeningPort"),
        (s.wireguard_listening_port_v6, "wireguardListeningPortV6"),
    ] {
        if let Some(p) = v
            && !(1..=65535).contains(&p)
        {
            errs.push(
                format!("spec.{f}"),
                format!("{p} is not a port; use 1–65535"),
            );
        }
    }
    for (v, f) in [
        (&s.log_severity_screen, "logSeverityScreen"),
        (&s.log_severity_file, "logSeverityFile"),
        (&s.log_severity_sys, "logSeveritySys"),
    ] {
        if let Some(v) = v
            && !v.is_empty()
        {
            check_log_level(v, &format!("spec.{f}"), errs);
        }
    }
    let enums: [(&Option<String>, &str, &[&str]); 16] = [
        (
            &s.iptables_backend,
            "iptablesBackend",
            &["Auto", "NFTables", "Legacy"],
        ),
        (
            &s.nftables_mode,
            "nftablesMode",
            &["Disabled", "Enabled", "Auto"],
        ),
        (
            &s.default_endpoint_to_host_action,
            "defaultEndpointToHostAction",
            &["Drop", "Accept", "Return"],
        ),
        (
            &s.iptables_filter_allow_action,
            "iptablesFilterAllowAction",
            &["Accept", "Return"],
        ),
        (
            &s.iptables_mangle_allow_action,
            "iptablesMangleAllowAction",
            &["Accept", "Return"],
        ),
        (
            &s.iptables_filter_deny_action,
            "iptablesFilterDenyAction",
            &["Drop", "Reject"],
        ),
        (
            &s.nftables_filter_allow_action,
            "nftablesFilterAllowAction",
            &["Accept", "Return"],
        ),
        (
            &s.nftables_mangle_allow_action,
            "nftablesMangleAllowAction",
            &["Accept", "Return"],
        ),
        (
            &s.nftables_filter_deny_action,
            "nftablesFilterDenyAction",
            &["Drop", "Reject"],
        ),
        (&s.bpf_log_level, "bpfLogLevel", &["Debug", "Info", "Off"]),
        (
            &s.bpf_external_service_mode,
            "bpfExternalServiceMode",
            &["Tunnel", "DSR"],
        ),
        (
            &s.bpf_connect_time_load_balancing,
            "bpfConnectTimeLoadBalancing",
            &["Disabled", "Enabled", "TCP"],
        ),
        (
            &s.bpf_host_networked_nat_without_ctlb,
            "bpfHostNetworkedNATWithoutCTLB",
            &["Disabled", "Enabled"],
        ),
        (
            &s.route_source,
            "routeSource",
            &["WorkloadIPs", "CalicoIPAM"],
        ),
        (
            &s.chain_insert_mode,
            "chainInsertMode",
            &["Insert", "Append"],
        ),
        (&s.ip_forwarding, "ipForwarding", &["Enabled", "Disabled"]),
    ];
    for (v, f, allowed) in enums {
        if let Some(v) = v
            && !v.is_empty()
        {
            check_one_of(v, allowed, &format!("spec.{f}"), errs);
        }
    }
    if let Some(ranges) = &s.kube_node_port_ranges {
        if ranges.len() > 7 {
            errs.push(
                "spec.kubeNodePortRanges",
                "at most 7 ranges fit the multiport match; merge some ranges",
            );
        }
        for (i, p) in ranges.iter().enumerate() {
            let f = format!("spec.kubeNodePortRanges[{i}]");
            if matches!(p, Port::Named(_)) {
                errs.push(
                    f,
                    "node port ranges must be numbers or ranges, not named ports",
                );
            } else {
                p.check(&f, errs);
            }
        }
    }
    for (list, name) in [
        (&s.failsafe_inbound_host_ports, "failsafeInboundHostPorts"),
        (&s.failsafe_outbound_host_ports, "failsafeOutboundHostPorts"),
    ] {
        for (i, pp) in list.iter().flatten().enumerate() {
            let f = format!("spec.{name}[{i}]");
            if !pp.protocol.is_empty() {
                check_one_of(
                    &pp.protocol,
                    &["TCP", "UDP", "SCTP"],
                    &format!("{f}.protocol"),
                    errs,
                );
            }
            if !pp.net.is_empty() && parse_cidr_or_ip(&pp.net).is_none() {
                errs.push(format!("{f}.net"), format!("{:?} is not a CIDR", pp.net));
            }
        }
    }
    for (i, c) in s.external_nodes_list.iter().flatten().enumerate() {
        match parse_cidr_or_ip(c) {
            Some(n) if n.addr().is_ipv4() => {}
            Some(_) => errs.push(
                format!("spec.externalNodesList[{i}]"),
                "only IPv4 CIDRs are supported here",
            ),
            None => errs.push(
                format!("spec.externalNodesList[{i}]"),
                format!("{c:?} is not a CIDR"),
            ),
        }
    }
    if let Some(r) = &s.openstack_region
        && !r.is_empty()
        && (r.len() > 63 - "openstack-region-".len() || !super::common::is_dns1123_label(r))
    {
        errs.push(
            "spec.openstackRegion",
            "must be a DNS label of at most 46 characters",
        );
    }
    if let Some(a) = s.nat_outgoing_address.as_deref().filter(|a| !a.is_empty()) {
        check_ip(a, 4, "spec.natOutgoingAddress", errs);
    }
    if let Some(a) = s
        .device_route_source_address
        .as_deref()
        .filter(|a| !a.is_empty())
    {
        check_ip(a, 4, "spec.deviceRouteSourceAddress", errs);
    }
    if let Some(a) = s
        .device_route_source_address_ipv6
        .as_deref()
        .filter(|a| !a.is_empty())
    {
        check_ip(a, 6, "spec.deviceRouteSourceAddressIPv6", errs);
    }
    if s.route_table_range.is_some() && s.route_table_ranges.is_some() {
        errs.push(
            "spec.routeTableRange",
            "routeTableRange cannot be set together with routeTableRanges; keep routeTableRanges",
        );
    }
    if let Some(r) = &s.route_table_range
        && !(r.min >= 1 && r.max >= r.min && r.max <= 250)
    {
        errs.push(
            "spec.routeTableRange",
            "must be a range of route table indices within 1..250",
        );
    }
    let mut total = 0i64;
    for (i, r) in s.route_table_ranges.iter().flatten().enumerate() {
        let f = format!("spec.routeTableRanges[{i}]");
        if r.min > r.max {
            errs.push(&f, "min cannot be greater than max");
        }
        if r.min <= 0 {
            errs.push(&f, "cannot target indices < 1");
        }
        if r.max > i64::from(u32::MAX) {
            errs.push(&f, "max index too high (at most 4294967295)");
        }
        total += (r.max - r.min + 1).max(0);
    }
    if total > 0xffff {
        errs.push(
            "spec.routeTableRanges",
            "targets too many tables (at most 65535)",
        );
    }
    for (i, h) in s.health_timeout_overrides.iter().flatten().enumerate() {
        check_duration(
            &h.timeout,
            &format!("spec.healthTimeoutOverrides[{i}].timeout"),
            errs,
        );
    }
    for (k, _) in s.bpf_log_filters.iter().flatten() {
        let ok = k == "all"
            || (k.len() <= 15
                && !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)));
        if !ok {
            errs.push(
                format!("spec.bpfLogFilters[{k}]"),
                "keys are interface names or \"all\"",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_fields_parse_and_check() {
        let f: FelixConfiguration = serde_json::from_str(
            r#"{"apiVersion":"projectcalico.org/v3","kind":"FelixConfiguration","metadata":{"name":"default"},
               "spec":{"bpfLogLevel":"","floatingIPs":"Disabled","logSeverityScreen":"Info","reportingInterval":"0s",
                       "vxlanVNI":4096,"ipipMTU":1440,"healthPort":9099,"routeRefreshInterval":"90s",
                       "failsafeInboundHostPorts":[{"protocol":"TCP","port":22},{"protocol":"UDP","port":68}],
                       "kubeNodePortRanges":["30000:32767"],"iptablesMarkMask":4294901760}}"#,
        )
        .unwrap();
        assert_eq!(f.spec.vxlan_vni, Some(4096));
        assert!(f.validate().is_ok(), "{:?}", f.validate());
        let mut g = f.clone();
        g.spec.route_refresh_interval = Some("soon".into());
        g.spec.health_port = Some(70000);
        g.spec.iptables_backend = Some("Fast".into());
        let fields: Vec<_> = g
            .validate()
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.routeRefreshInterval",
                "spec.healthPort",
                "spec.iptablesBackend"
            ]
        );
        assert!(serde_json::from_str::<FelixConfigurationSpec>(r#"{"notAField":1}"#).is_err());
    }
}
