//! The `{apiVersion, kind, metadata, spec}` envelope shared by every kind.
//!
//! TEMPORARY SCAFFOLD: kinds other than IPPool have empty specs until their modules land.

use crate::meta::ObjectMeta;
use crate::validate::ValidationErrors;
use serde::{Deserialize, Serialize};

macro_rules! placeholder_kind {
    ($($name:ident),*) => {$(
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            #[serde(default)]
            pub api_version: String,
            #[serde(default)]
            pub kind: String,
            #[serde(default)]
            pub metadata: ObjectMeta,
            #[serde(default)]
            pub spec: serde_json::Value,
        }
        impl $name {
            pub fn apply_defaults(&mut self) {}
            pub fn validate(&self) -> Result<(), ValidationErrors> { Ok(()) }
        }
    )*};
}

placeholder_kind!(
    IPAMConfiguration, IPReservation, BlockAffinity, Node, WorkloadEndpoint, HostEndpoint,
    BGPConfiguration, BGPPeer, BGPFilter, FelixConfiguration, NetworkPolicy, GlobalNetworkPolicy,
    Tier, NetworkSet, GlobalNetworkSet, Profile, ClusterInformation, KubeControllersConfiguration
);
