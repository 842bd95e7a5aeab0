//! Test fixtures: a fresh datastore of either backend, and resources IPAM reads.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use calico_api::Resource;
use calico_api::resources::ipam::IPReservation;
use calico_api::resources::ippool::IPPool;
use calico_api::resources::node::Node;
use calico_datastore::config::EmbeddedConfig;
use calico_datastore::resources::ResourceStore;
use calico_datastore::testutil::EtcdServer;
use calico_datastore::{Datastore, DatastoreConfig, connect};

pub enum Guard {
    Dir(tempfile::TempDir),
    Etcd(EtcdServer),
}

pub struct Fixture {
    pub ds: Arc<dyn Datastore>,
    /// Environment for a child process to reach the same store.
    pub env: Vec<(String, String)>,
    pub guard: Guard,
}

pub async fn embedded() -> Result<Fixture> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let path = dir.path().join("calico.db");
    let ds = connect(&DatastoreConfig::Embedded(EmbeddedConfig {
        path: path.clone(),
    }))
    .await?;
    Ok(Fixture {
        ds,
        env: vec![
            ("DATASTORE_TYPE".into(), "embedded".into()),
            ("EMBEDDED_DATASTORE_PATH".into(), path.display().to_string()),
        ],
        guard: Guard::Dir(dir),
    })
}

pub async fn etcd() -> Result<Fixture> {
    let server = EtcdServer::start().context("starting etcd (apt package etcd-server)")?;
    let ds = connect(&DatastoreConfig::Etcd(server.config())).await?;
    Ok(Fixture {
        ds,
        env: vec![
            ("DATASTORE_TYPE".into(), "etcdv3".into()),
            ("ETCD_ENDPOINTS".into(), server.endpoint()),
        ],
        guard: Guard::Etcd(server),
    })
}

pub async fn add_pool(
    ds: &Arc<dyn Datastore>,
    name: &str,
    cidr: &str,
    block_size: u8,
    edit: impl FnOnce(&mut IPPool),
) -> Result<()> {
    let mut p = IPPool::new(name);
    p.spec.cidr = cidr.into();
    p.spec.block_size = Some(block_size);
    edit(&mut p);
    ResourceStore::new(ds.clone())
        .create(Resource::IPPool(p))
        .await?;
    Ok(())
}

pub async fn add_node(ds: &Arc<dyn Datastore>, name: &str, labels: &[(&str, &str)]) -> Result<()> {
    let mut n = Node::new(name);
    if !labels.is_empty() {
        n.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        );
    }
    ResourceStore::new(ds.clone())
        .create(Resource::Node(n))
        .await?;
    Ok(())
}

pub async fn add_reservation(ds: &Arc<dyn Datastore>, name: &str, cidrs: &[&str]) -> Result<()> {
    let mut r = IPReservation::new(name);
    r.spec.reserved_cidrs = cidrs.iter().map(|s| s.to_string()).collect();
    ResourceStore::new(ds.clone())
        .create(Resource::IPReservation(r))
        .await?;
    Ok(())
}

/// Instantiates each listed async test once per backend: `<name>_embedded` and `<name>_etcd`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let f = $crate::common::embedded().await?;
                    super::$name(&f).await
                }
            )*
        }
        mod etcd_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let f = $crate::common::etcd().await?;
                    super::$name(&f).await
                }
            )*
        }
    };
}

/// A k8s WorkloadEndpoint on `node` for pod `pod` with the given addresses (`10.0.0.1/32`).
pub async fn add_wep(ds: &Arc<dyn Datastore>, node: &str, pod: &str, ips: &[String]) -> Result<()> {
    let mut w = calico_api::resources::endpoint::WorkloadEndpoint::new("");
    w.metadata.namespace = Some("default".into());
    w.spec.orchestrator = "k8s".into();
    w.spec.node = node.into();
    w.spec.pod = pod.into();
    w.spec.endpoint = "eth0".into();
    w.spec.ip_networks = ips.to_vec();
    ResourceStore::new(ds.clone())
        .create(Resource::WorkloadEndpoint(w))
        .await?;
    Ok(())
}

/// Reads a resource, lets `edit` change it, and writes it back.
pub async fn edit_resource(
    ds: &Arc<dyn Datastore>,
    kind: calico_api::Kind,
    name: &str,
    edit: impl FnOnce(&mut Resource),
) -> Result<()> {
    let rs = ResourceStore::new(ds.clone());
    let mut r = rs.get(kind, None, name).await?;
    edit(&mut r);
    rs.update(r).await?;
    Ok(())
}
