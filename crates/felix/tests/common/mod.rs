//! Test helpers: a key/value "store" built from v3 resources and IPAM blocks as the datastore
//! holds them, and the syncer updates that move it from one content to the next.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use calico_api::Resource;
use calico_datastore::keys;
use calico_datastore::syncer::SyncUpdate;
use calico_datastore::{KeyValue, Revision};
use calico_ipam::AllocationBlock;
use ipnet::IpNet;

pub type Store = BTreeMap<String, Vec<u8>>;

/// A block with explicit allocations (`ip`, owner `node`, handle).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockSpec {
    pub cidr: String,
    #[serde(default)]
    pub affinity: Option<String>,
    #[serde(default)]
    pub allocations: Vec<AllocSpec>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocSpec {
    pub ip: String,
    pub node: String,
    #[serde(default)]
    pub handle: Option<String>,
}

pub fn block_json(spec: &BlockSpec) -> (String, Vec<u8>) {
    let cidr: IpNet = spec.cidr.parse().expect("block cidr");
    let mut b = AllocationBlock::new(cidr, spec.affinity.clone(), 1).expect("block");
    for a in &spec.allocations {
        let ip: IpAddr = a.ip.parse().expect("allocation ip");
        let owner = BTreeMap::from([("node".to_string(), a.node.clone())]);
        let handle = a
            .handle
            .clone()
            .unwrap_or_else(|| format!("k8s-pod-network.{}", a.ip));
        b.assign(ip, Some(&handle), &owner).expect("assign");
    }
    (keys::block_key(&cidr.to_string()), b.to_json())
}

/// Key and stored JSON of a resource (validated and defaulted like a `calicoctl apply`).
pub fn resource_kv(r: &Resource) -> (String, Vec<u8>) {
    let meta = r.metadata();
    let key = keys::resource_key(r.kind(), meta.namespace.as_deref(), &meta.name);
    (key, serde_json::to_vec(r).expect("resource json"))
}

pub fn parse_resources(text: &str) -> Vec<Resource> {
    let mut rs = calico_api::codec::parse_documents(text).expect("resources parse");
    for r in &mut rs {
        r.apply_defaults();
        if let Err(e) = r.validate() {
            panic!("{} {}: {e}", r.kind().plural(), r.metadata().name);
        }
    }
    rs
}

/// The updates a syncer would send to go from `old` to `new` (deletes first, then puts).
pub fn diff_updates(old: &Store, new: &Store, rev: &mut Revision) -> Vec<SyncUpdate> {
    let mut out = Vec::new();
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for k in keys {
        match (old.get(k), new.get(k)) {
            (Some(_), None) => {
                *rev += 1;
                out.push(SyncUpdate::Delete {
                    key: k.clone(),
                    revision: *rev,
                });
            }
            (a, Some(v)) if a != Some(v) => {
                *rev += 1;
                out.push(put(k, v, *rev));
            }
            _ => {}
        }
    }
    out
}

pub fn put(key: &str, value: &[u8], rev: Revision) -> SyncUpdate {
    SyncUpdate::Put(KeyValue {
        key: key.to_string(),
        value: value.to_vec(),
        create_revision: rev,
        mod_revision: rev,
        lease: None,
    })
}
