//! Cluster-wide singletons: ClusterInformation (written by calico-node) and
//! KubeControllersConfiguration (settings of the controllers, incl. IPAM garbage collection).

use super::common::{
    check_duration, check_labels, check_log_level, check_one_of, check_selector, resource_struct,
};
use crate::validate::ValidationErrors;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

resource_struct!(
    /// `kind: ClusterInformation` (name `default`).
    ClusterInformation,
    ClusterInformationSpec
);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterInformationSpec {
    #[serde(
        default,
        rename = "clusterGUID",
        skip_serializing_if = "String::is_empty"
    )]
    pub cluster_guid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub calico_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore_ready: Option<bool>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl ClusterInformation {
    pub fn apply_defaults(&mut self) {}
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        Ok(())
    }
}

super::common::resource_struct!(
    /// `kind: KubeControllersConfiguration` (name `default`); carries a `status`.
    KubeControllersConfiguration,
    KubeControllersConfigurationSpec,
    status: KubeControllersConfigurationStatus
);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeControllersConfigurationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    /// `Enabled` | `Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_checks: Option<String>,
    #[serde(
        default,
        rename = "etcdV3CompactionPeriod",
        skip_serializing_if = "Option::is_none"
    )]
    pub etcd_v3_compaction_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_port: Option<i64>,
    #[serde(default)]
    pub controllers: ControllersConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_profile_port: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ControllersConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeControllerConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<ReconcilerConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_endpoint: Option<ReconcilerConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ReconcilerConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<ReconcilerConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerControllerConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeControllerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciler_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_labels: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_endpoint: Option<AutoHostEndpointConfig>,
    /// How long an IPAM allocation whose owner is gone waits before release (15m upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leak_grace_period: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoHostEndpointConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_create: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_default_host_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<HostEndpointTemplate>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostEndpointTemplate {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub generate_name: String,
    #[serde(
        default,
        rename = "interfaceCIDRs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub interface_cidrs: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface_selector: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_selector: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReconcilerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciler_period: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerControllerConfig {
    /// `AllServices` | `RequestedServicesOnly`.
    #[serde(default, rename = "assignIPs", skip_serializing_if = "Option::is_none")]
    pub assign_ips: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeControllersConfigurationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_config: Option<KubeControllersConfigurationSpec>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment_vars: BTreeMap<String, String>,
}

impl KubeControllersConfiguration {
    pub fn apply_defaults(&mut self) {}

    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let s = &self.spec;
        if let Some(l) = &s.log_severity_screen {
            check_log_level(l, "spec.logSeverityScreen", &mut errs);
        }
        if let Some(h) = &s.health_checks {
            check_one_of(h, &["Enabled", "Disabled"], "spec.healthChecks", &mut errs);
        }
        if let Some(d) = &s.etcd_v3_compaction_period {
            check_duration(d, "spec.etcdV3CompactionPeriod", &mut errs);
        }
        for (p, f) in [
            (s.prometheus_metrics_port, "spec.prometheusMetricsPort"),
            (s.debug_profile_port, "spec.debugProfilePort"),
        ] {
            if let Some(p) = p
                && !(0..=65535).contains(&p)
            {
                errs.push(f, format!("{p} is not a port; use 1–65535 (0 disables)"));
            }
        }
        let c = &s.controllers;
        if let Some(n) = &c.node {
            let f = "spec.controllers.node";
            if let Some(d) = &n.reconciler_period {
                check_duration(d, &format!("{f}.reconcilerPeriod"), &mut errs);
            }
            if let Some(d) = &n.leak_grace_period {
                check_duration(d, &format!("{f}.leakGracePeriod"), &mut errs);
            }
            if let Some(v) = &n.sync_labels {
                check_one_of(
                    v,
                    &["Enabled", "Disabled"],
                    &format!("{f}.syncLabels"),
                    &mut errs,
                );
            }
            if let Some(h) = &n.host_endpoint {
                if let Some(v) = &h.auto_create {
                    check_one_of(
                        v,
                        &["Enabled", "Disabled"],
                        &format!("{f}.hostEndpoint.autoCreate"),
                        &mut errs,
                    );
                }
                if let Some(v) = &h.create_default_host_endpoint {
                    check_one_of(
                        v,
                        &["Enabled", "Disabled"],
                        &format!("{f}.hostEndpoint.createDefaultHostEndpoint"),
                        &mut errs,
                    );
                }
                for (i, t) in h.templates.iter().enumerate() {
                    let tf = format!("{f}.hostEndpoint.templates[{i}]");
                    for (j, c) in t.interface_cidrs.iter().enumerate() {
                        super::common::check_cidr(
                            c,
                            &format!("{tf}.interfaceCIDRs[{j}]"),
                            &mut errs,
                        );
                    }
                    if !t.node_selector.is_empty() {
                        check_selector(&t.node_selector, &format!("{tf}.nodeSelector"), &mut errs);
                    }
                    check_labels(&t.labels, &format!("{tf}.labels"), &mut errs);
                }
            }
        }
        for (r, name) in [
            (&c.policy, "policy"),
            (&c.workload_endpoint, "workloadEndpoint"),
            (&c.service_account, "serviceAccount"),
            (&c.namespace, "namespace"),
        ] {
            if let Some(d) = r.as_ref().and_then(|r| r.reconciler_period.as_ref()) {
                check_duration(
                    d,
                    &format!("spec.controllers.{name}.reconcilerPeriod"),
                    &mut errs,
                );
            }
        }
        if let Some(a) = c.load_balancer.as_ref().and_then(|l| l.assign_ips.as_ref()) {
            check_one_of(
                a,
                &["AllServices", "RequestedServicesOnly"],
                "spec.controllers.loadBalancer.assignIPs",
                &mut errs,
            );
        }
        errs.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_controllers_configuration_parses_and_checks() {
        let k: KubeControllersConfiguration = serde_json::from_str(
            r#"{"apiVersion":"projectcalico.org/v3","kind":"KubeControllersConfiguration","metadata":{"name":"default"},
               "spec":{"healthChecks":"Enabled","etcdV3CompactionPeriod":"10m",
                       "controllers":{"node":{"reconcilerPeriod":"5m","syncLabels":"Enabled","leakGracePeriod":"15m"},
                                      "policy":{"reconcilerPeriod":"5m"}}},
               "status":{"environmentVars":{"ENABLED_CONTROLLERS":"node"}}}"#,
        )
        .unwrap();
        assert!(k.validate().is_ok());
        let mut bad = k.clone();
        bad.spec.controllers.node = Some(NodeControllerConfig {
            leak_grace_period: Some("later".into()),
            ..Default::default()
        });
        assert_eq!(
            bad.validate().unwrap_err().0[0].field,
            "spec.controllers.node.leakGracePeriod"
        );
    }
}
