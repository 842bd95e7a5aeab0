//! The YAML shape of a topology file, exactly as users write it; unknown fields are refused.
//! Addresses stay strings here: `validate` parses them so errors carry the field path.

use std::collections::BTreeMap;

use super::RouterKind;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct File {
    pub name: String,
    #[serde(default)]
    pub datastore: Option<Datastore>,
    pub subnets: Vec<Subnet>,
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub routers: Vec<Router>,
    #[serde(default)]
    pub resources: Vec<ResourceSource>,
    #[serde(default)]
    pub node_env: BTreeMap<String, String>,
    #[serde(default)]
    pub pods: Vec<Pod>,
}

/// `embedded`, or `{type: etcd, subnet: S, address: A}` (etcd in its own namespace).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Datastore {
    Name(String),
    Spec(DatastoreSpec),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatastoreSpec {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub subnet: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subnet {
    pub name: String,
    pub cidr: String,
    pub gateway: String,
    #[serde(default)]
    pub mtu: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    pub subnet: String,
    pub address: String,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    #[serde(default)]
    pub name: Option<String>,
    pub subnet: String,
    pub address: String,
    #[serde(default)]
    pub mtu: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Router {
    pub name: String,
    pub kind: RouterKind,
    #[serde(rename = "as")]
    pub asn: u32,
    pub interfaces: Vec<Interface>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSource {
    #[serde(default)]
    pub file: Option<String>,
    /// A YAML string (one or more documents) or the resource written as a mapping.
    #[serde(default)]
    pub inline: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pod {
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub name: String,
    pub node: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_namespace() -> String {
    "default".to_string()
}
