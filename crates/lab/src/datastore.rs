//! The lab's datastore: the embedded file in the state directory (default), or one etcd member
//! running in the lab's own `etcd` namespace on a subnet (the seeds' "etcd on the management
//! network"). `up` starts it, applies the topology's resources to it, and hands every node the
//! variables calico-node reads (`DATASTORE_TYPE`, `EMBEDDED_DATASTORE_PATH` / `ETCD_ENDPOINTS`).
//!
//! 127.0.0.1 of the host is invisible inside the lab, and the lab's etcd is invisible from the
//! host: resources are therefore applied from a thread inside the etcd namespace.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use calico_datastore::config::{DatastoreConfig, EmbeddedConfig, EtcdConfig};
use calico_datastore::resources::ResourceStore;

use crate::agents;
use crate::names::{self, LabNames};
use crate::state::State;
use crate::topology::{Datastore, Topology};

/// How long `up` waits for the lab's etcd to answer.
const ETCD_READY_TIMEOUT: Duration = Duration::from_secs(15);

/// The variables a node agent needs to reach the lab's datastore.
pub fn node_vars(topo: &Topology, embedded_path: &Path) -> Vec<(String, String)> {
    match topo.datastore.etcd_endpoint() {
        None => vec![
            ("DATASTORE_TYPE".into(), "embedded".into()),
            (
                "EMBEDDED_DATASTORE_PATH".into(),
                embedded_path.display().to_string(),
            ),
        ],
        Some(ep) => vec![
            ("DATASTORE_TYPE".into(), "etcdv3".into()),
            ("ETCD_ENDPOINTS".into(), ep),
        ],
    }
}

fn config(topo: &Topology, embedded_path: &Path) -> DatastoreConfig {
    match topo.datastore.etcd_endpoint() {
        None => DatastoreConfig::Embedded(EmbeddedConfig {
            path: embedded_path.to_path_buf(),
        }),
        Some(ep) => DatastoreConfig::Etcd(EtcdConfig {
            endpoints: vec![ep],
            ..EtcdConfig::default()
        }),
    }
}

fn find_in_path(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(program))
            .find(|f| f.is_file())
    })
}

/// Start the lab's etcd (when the topology asks for one); returns its pid.
pub fn start_etcd(topo: &Topology, names: &LabNames, lab_dir: &Path) -> Result<Option<i32>> {
    let Datastore::Etcd { interface } = &topo.datastore else {
        return Ok(None);
    };
    let bin = find_in_path("etcd").ok_or_else(|| {
        anyhow!("datastore etcd: no `etcd` in PATH; install it (apt-get install etcd-server)")
    })?;
    let dir = lab_dir.join(names::ETCD);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let client = format!(
        "http://{}:{}",
        interface.address,
        crate::topology::ETCD_CLIENT_PORT
    );
    // Peers stay on loopback: a single member.
    let peer = "http://127.0.0.1:2380";
    let argv: Vec<String> = [
        bin.display().to_string().as_str(),
        "--name",
        "lab",
        "--data-dir",
        &dir.join("data").display().to_string(),
        "--listen-client-urls",
        &client,
        "--advertise-client-urls",
        &client,
        "--listen-peer-urls",
        peer,
        "--initial-advertise-peer-urls",
        peer,
        "--initial-cluster",
        &format!("lab={peer}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let pid = agents::start(
        "etcd",
        &names.netns(names::ETCD),
        &argv,
        &Default::default(),
        &dir,
    )?;
    Ok(Some(pid))
}

/// Open the datastore (creating the embedded file) and apply the resources, in file order.
pub fn apply(topo: &Topology, names: &LabNames, embedded_path: &Path) -> Result<Vec<String>> {
    let config = config(topo, embedded_path);
    let netns = match topo.datastore {
        Datastore::Embedded => None,
        Datastore::Etcd { .. } => Some(names.netns(names::ETCD)),
    };
    block_on_in(netns.as_deref(), || apply_async(topo, &config))
}

/// Run the future `f` makes on a fresh current-thread runtime; inside `netns` when given (the
/// lab's etcd is reachable only from its namespaces). Blocks the caller.
pub fn block_on_in<T, F, Fut>(netns: Option<&str>, f: F) -> Result<T>
where
    T: Send,
    F: FnOnce() -> Fut + Send,
    Fut: std::future::Future<Output = Result<T>>,
{
    let work = move || -> Result<T> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime for the datastore")?;
        rt.block_on(f())
    };
    match netns {
        None => work(),
        Some(ns) => calico_dataplane::NetNs::named(ns)?.run(work)?,
    }
}

/// The datastore of a lab that is up, and the namespace to reach it from (etcd: the lab's
/// etcd namespace; embedded: here).
pub fn of_state(st: &State) -> (DatastoreConfig, Option<String>) {
    match &st.etcd_endpoint {
        None => (
            DatastoreConfig::Embedded(EmbeddedConfig {
                path: st.datastore.clone(),
            }),
            None,
        ),
        Some(ep) => (
            DatastoreConfig::Etcd(EtcdConfig {
                endpoints: vec![ep.clone()],
                ..EtcdConfig::default()
            }),
            Some(LabNames::new(&st.lab).netns(names::ETCD)),
        ),
    }
}

/// Run `f` with the lab's datastore open (bounded connect).
pub fn with_store<T, F, Fut>(st: &State, f: F) -> Result<T>
where
    T: Send,
    F: FnOnce(Arc<dyn calico_datastore::Datastore>) -> Fut + Send,
    Fut: std::future::Future<Output = Result<T>>,
{
    let (config, netns) = of_state(st);
    block_on_in(netns.as_deref(), || async move {
        let ds = tokio::time::timeout(ETCD_READY_TIMEOUT, calico_datastore::connect(&config))
            .await
            .map_err(|_| anyhow!("opening the lab's datastore ({config:?}): timed out"))?
            .with_context(|| format!("opening the lab's datastore ({config:?})"))?;
        f(ds).await
    })
}

/// `calico-lab apply`: create or replace every resource of `text` (YAML or JSON, several
/// documents allowed; all parsed before the first write). Returns `Kind name` per resource.
pub fn apply_text(st: &State, text: &str, origin: &str) -> Result<Vec<String>> {
    let docs = calico_api::codec::parse_documents(text).map_err(|e| anyhow!("{origin}: {e}"))?;
    with_store(st, |ds| async move {
        let store = ResourceStore::new(ds);
        let mut applied = Vec::new();
        for r in docs {
            let what = format!("{:?} {}", r.kind(), r.name());
            store
                .apply(r)
                .await
                .with_context(|| format!("{origin}: applying {what}"))?;
            applied.push(what);
        }
        Ok(applied)
    })
}

async fn apply_async(topo: &Topology, config: &DatastoreConfig) -> Result<Vec<String>> {
    let deadline = Instant::now() + ETCD_READY_TIMEOUT;
    // etcd takes a moment to listen; the embedded store is there at once.
    let ds = loop {
        let attempt = async {
            let ds = calico_datastore::connect(config).await?;
            ds.revision().await?;
            Ok::<_, calico_datastore::Error>(ds)
        };
        match attempt.await {
            Ok(ds) => break ds,
            Err(e) if Instant::now() >= deadline => {
                return Err(anyhow!("opening the lab's datastore ({config:?}): {e}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let store = ResourceStore::new(Arc::clone(&ds));
    let mut applied = Vec::new();
    for (origin, r) in &topo.resources {
        let what = format!("{:?} {}", r.kind(), r.name());
        store
            .apply(r.clone())
            .await
            .with_context(|| format!("{origin}: applying {what}"))?;
        applied.push(what);
    }
    Ok(applied)
}
