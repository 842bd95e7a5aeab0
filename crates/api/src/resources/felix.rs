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

/// Declares the spec from upstream's field list: every field optional, absent ones not printed.
macro_rules! felix_spec {
    ($($json:literal $field:ident: $ty:ty,)*) => {
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct FelixConfigurationSpec {
            $(
                #[serde(default, rename = $json, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }

        impl FelixConfigurationSpec {
            /// Upstream's field names, in upstream's order.
            pub const FIELD_NAMES: &'static [&'static str] = &[$($json),*];
        }
    };
}

// Generated from upstream's FelixConfigurationSpec (api/pkg/apis/projectcalico/v3/felixconfig.go).
felix_spec! {
    "useInternalDataplaneDriver" use_internal_dataplane_driver: bool,
    "dataplaneDriver" dataplane_driver: String,
    "dataplaneWatchdogTimeout" dataplane_watchdog_timeout: String,
    "ipv6Support" ipv6_support: bool,
    "routeRefreshInterval" route_refresh_interval: String,
    "interfaceRefreshInterval" interface_refresh_interval: String,
    "iptablesRefreshInterval" iptables_refresh_interval: String,
    "iptablesPostWriteCheckInterval" iptables_post_write_check_interval: String,
    "iptablesLockFilePath" iptables_lock_file_path: String,
    "iptablesLockTimeout" iptables_lock_timeout: String,
    "iptablesLockProbeInterval" iptables_lock_probe_interval: String,
    "featureDetectOverride" feature_detect_override: String,
    "featureGates" feature_gates: String,
    "ipsetsRefreshInterval" ipsets_refresh_interval: String,
    "maxIpsetSize" max_ipset_size: i64,
    "iptablesBackend" iptables_backend: String,
    "xdpRefreshInterval" xdp_refresh_interval: String,
    "netlinkTimeout" netlink_timeout: String,
    "metadataAddr" metadata_addr: String,
    "metadataPort" metadata_port: i64,
    "openstackRegion" openstack_region: String,
    "interfacePrefix" interface_prefix: String,
    "interfaceExclude" interface_exclude: String,
    "chainInsertMode" chain_insert_mode: String,
    "defaultEndpointToHostAction" default_endpoint_to_host_action: String,
    "iptablesFilterAllowAction" iptables_filter_allow_action: String,
    "iptablesMangleAllowAction" iptables_mangle_allow_action: String,
    "iptablesFilterDenyAction" iptables_filter_deny_action: String,
    "logPrefix" log_prefix: String,
    "logFilePath" log_file_path: String,
    "logSeverityFile" log_severity_file: String,
    "logSeverityScreen" log_severity_screen: String,
    "logSeveritySys" log_severity_sys: String,
    "logDebugFilenameRegex" log_debug_filename_regex: String,
    "ipipEnabled" ipip_enabled: bool,
    "ipipMTU" ipip_mtu: i64,
    "vxlanEnabled" vxlan_enabled: bool,
    "vxlanMTU" vxlan_mtu: i64,
    "vxlanMTUV6" vxlan_mtuv6: i64,
    "vxlanPort" vxlan_port: i64,
    "vxlanVNI" vxlan_vni: i64,
    "allowVXLANPacketsFromWorkloads" allow_vxlan_packets_from_workloads: bool,
    "allowIPIPPacketsFromWorkloads" allow_ipip_packets_from_workloads: bool,
    "reportingInterval" reporting_interval: String,
    "reportingTTL" reporting_ttl: String,
    "endpointReportingEnabled" endpoint_reporting_enabled: bool,
    "endpointReportingDelay" endpoint_reporting_delay: String,
    "endpointStatusPathPrefix" endpoint_status_path_prefix: String,
    "iptablesMarkMask" iptables_mark_mask: i64,
    "disableConntrackInvalidCheck" disable_conntrack_invalid_check: bool,
    "healthEnabled" health_enabled: bool,
    "healthHost" health_host: String,
    "healthPort" health_port: i64,
    "healthTimeoutOverrides" health_timeout_overrides: Vec<HealthTimeoutOverride>,
    "prometheusMetricsEnabled" prometheus_metrics_enabled: bool,
    "prometheusMetricsHost" prometheus_metrics_host: String,
    "prometheusMetricsPort" prometheus_metrics_port: i64,
    "prometheusGoMetricsEnabled" prometheus_go_metrics_enabled: bool,
    "prometheusProcessMetricsEnabled" prometheus_process_metrics_enabled: bool,
    "prometheusWireGuardMetricsEnabled" prometheus_wire_guard_metrics_enabled: bool,
    "failsafeInboundHostPorts" failsafe_inbound_host_ports: Vec<ProtoPort>,
    "failsafeOutboundHostPorts" failsafe_outbound_host_ports: Vec<ProtoPort>,
    "kubeNodePortRanges" kube_node_port_ranges: Vec<Port>,
    "policySyncPathPrefix" policy_sync_path_prefix: String,
    "usageReportingEnabled" usage_reporting_enabled: bool,
    "usageReportingInitialDelay" usage_reporting_initial_delay: String,
    "usageReportingInterval" usage_reporting_interval: String,
    "natPortRange" nat_port_range: Port,
    "natOutgoingAddress" nat_outgoing_address: String,
    "natOutgoingExclusions" nat_outgoing_exclusions: String,
    "deviceRouteSourceAddress" device_route_source_address: String,
    "deviceRouteSourceAddressIPv6" device_route_source_address_ipv6: String,
    "deviceRouteProtocol" device_route_protocol: i64,
    "removeExternalRoutes" remove_external_routes: bool,
    "programClusterRoutes" program_cluster_routes: String,
    "ipForwarding" ip_forwarding: String,
    "externalNodesList" external_nodes_list: Vec<String>,
    "debugMemoryProfilePath" debug_memory_profile_path: String,
    "debugDisableLogDropping" debug_disable_log_dropping: bool,
    "debugSimulateCalcGraphHangAfter" debug_simulate_calc_graph_hang_after: String,
    "debugSimulateDataplaneHangAfter" debug_simulate_dataplane_hang_after: String,
    "debugSimulateDataplaneApplyDelay" debug_simulate_dataplane_apply_delay: String,
    "debugHost" debug_host: String,
    "debugPort" debug_port: i64,
    "iptablesNATOutgoingInterfaceFilter" iptables_nat_outgoing_interface_filter: String,
    "sidecarAccelerationEnabled" sidecar_acceleration_enabled: bool,
    "xdpEnabled" xdp_enabled: bool,
    "genericXDPEnabled" generic_xdp_enabled: bool,
    "nftablesMode" nftables_mode: String,
    "nftablesRefreshInterval" nftables_refresh_interval: String,
    "nftablesFilterAllowAction" nftables_filter_allow_action: String,
    "nftablesMangleAllowAction" nftables_mangle_allow_action: String,
    "nftablesFilterDenyAction" nftables_filter_deny_action: String,
    "nftablesMarkMask" nftables_mark_mask: i64,
    "bpfEnabled" bpf_enabled: bool,
    "bpfDisableUnprivileged" bpf_disable_unprivileged: bool,
    "bpfLogLevel" bpf_log_level: String,
    "bpfConntrackLogLevel" bpf_conntrack_log_level: String,
    "bpfConntrackMode" bpf_conntrack_mode: String,
    "bpfConntrackTimeouts" bpf_conntrack_timeouts: serde_json::Value,
    "bpfLogFilters" bpf_log_filters: BTreeMap<String, String>,
    "bpfCTLBLogFilter" bpf_ctlb_log_filter: String,
    "bpfDataIfacePattern" bpf_data_iface_pattern: String,
    "bpfL3IfacePattern" bpf_l3_iface_pattern: String,
    "bpfConnectTimeLoadBalancingEnabled" bpf_connect_time_load_balancing_enabled: bool,
    "bpfConnectTimeLoadBalancing" bpf_connect_time_load_balancing: String,
    "bpfHostNetworkedNATWithoutCTLB" bpf_host_networked_nat_without_ctlb: String,
    "bpfExternalServiceMode" bpf_external_service_mode: String,
    "bpfDSROptoutCIDRs" bpf_dsr_optout_cid_rs: Vec<String>,
    "bpfExtToServiceConnmark" bpf_ext_to_service_connmark: i64,
    "bpfKubeProxyIptablesCleanupEnabled" bpf_kube_proxy_iptables_cleanup_enabled: bool,
    "bpfKubeProxyMinSyncPeriod" bpf_kube_proxy_min_sync_period: String,
    "bpfKubeProxyEndpointSlicesEnabled" bpf_kube_proxy_endpoint_slices_enabled: bool,
    "bpfPSNATPorts" bpf_psnat_ports: Port,
    "bpfMapSizeNATFrontend" bpf_map_size_nat_frontend: i64,
    "bpfMapSizeNATBackend" bpf_map_size_nat_backend: i64,
    "bpfMapSizeNATAffinity" bpf_map_size_nat_affinity: i64,
    "bpfMapSizeRoute" bpf_map_size_route: i64,
    "bpfMapSizeConntrack" bpf_map_size_conntrack: i64,
    "bpfMapSizePerCpuConntrack" bpf_map_size_per_cpu_conntrack: i64,
    "bpfMapSizeConntrackScaling" bpf_map_size_conntrack_scaling: String,
    "bpfMapSizeConntrackCleanupQueue" bpf_map_size_conntrack_cleanup_queue: i64,
    "bpfMapSizeIPSets" bpf_map_size_ip_sets: i64,
    "bpfMapSizeIfState" bpf_map_size_if_state: i64,
    "bpfHostConntrackBypass" bpf_host_conntrack_bypass: bool,
    "bpfEnforceRPF" bpf_enforce_rpf: String,
    "bpfPolicyDebugEnabled" bpf_policy_debug_enabled: bool,
    "bpfForceTrackPacketsFromIfaces" bpf_force_track_packets_from_ifaces: Vec<String>,
    "bpfDisableGROForIfaces" bpf_disable_gro_for_ifaces: String,
    "bpfExcludeCIDRsFromNAT" bpf_exclude_cid_rs_from_nat: Vec<String>,
    "bpfExportBufferSizeMB" bpf_export_buffer_size_mb: i64,
    "cgroupV2Path" cgroup_v2_path: String,
    "flowLogsPolicyEvaluationMode" flow_logs_policy_evaluation_mode: String,
    "bpfRedirectToPeer" bpf_redirect_to_peer: String,
    "bpfAttachType" bpf_attach_type: String,
    "flowLogsFlushInterval" flow_logs_flush_interval: String,
    "flowLogsCollectorDebugTrace" flow_logs_collector_debug_trace: bool,
    "flowLogsGoldmaneServer" flow_logs_goldmane_server: String,
    "flowLogsLocalReporter" flow_logs_local_reporter: String,
    "bpfProfiling" bpf_profiling: String,
    "routeSource" route_source: String,
    "routeTableRanges" route_table_ranges: Vec<RouteTableRange>,
    "routeTableRange" route_table_range: RouteTableRange,
    "routeSyncDisabled" route_sync_disabled: bool,
    "wireguardEnabled" wireguard_enabled: bool,
    "wireguardEnabledV6" wireguard_enabled_v6: bool,
    "wireguardThreadingEnabled" wireguard_threading_enabled: bool,
    "wireguardListeningPort" wireguard_listening_port: i64,
    "wireguardListeningPortV6" wireguard_listening_port_v6: i64,
    "wireguardRoutingRulePriority" wireguard_routing_rule_priority: i64,
    "wireguardInterfaceName" wireguard_interface_name: String,
    "wireguardInterfaceNameV6" wireguard_interface_name_v6: String,
    "wireguardMTU" wireguard_mtu: i64,
    "wireguardMTUV6" wireguard_mtuv6: i64,
    "wireguardHostEncryptionEnabled" wireguard_host_encryption_enabled: bool,
    "wireguardKeepAlive" wireguard_keep_alive: String,
    "awsSrcDstCheck" aws_src_dst_check: String,
    "serviceLoopPrevention" service_loop_prevention: String,
    "workloadSourceSpoofing" workload_source_spoofing: String,
    "mtuIfacePattern" mtu_iface_pattern: String,
    "floatingIPs" floating_ips: String,
    "windowsManageFirewallRules" windows_manage_firewall_rules: String,
    "goGCThreshold" go_gc_threshold: i64,
    "goMemoryLimitMB" go_memory_limit_mb: i64,
    "goMaxProcs" go_max_procs: i64,
    "requireMTUFile" require_mtu_file: bool,
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
