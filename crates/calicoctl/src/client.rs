//! Which datastore calicoctl talks to, and turning datastore failures into messages that say
//! where calicoctl looked and how to point it elsewhere.

use calico_datastore::resources::{ResourceStore, StoreError};
use calico_datastore::{DatastoreConfig, Error};
use std::path::Path;
use std::time::Duration;

/// Upstream's default `--config` path.
pub const DEFAULT_CONFIG: &str = "/etc/calico/calicoctl.cfg";

/// How long to wait for a backend to answer before calling it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const HOW_TO_CONFIGURE: &str = "point calicoctl at the datastore with DATASTORE_TYPE=etcdv3 and \
ETCD_ENDPOINTS=http://host:2379 (ETCD_CA_CERT_FILE, ETCD_CERT_FILE, ETCD_KEY_FILE for TLS), \
DATASTORE_TYPE=embedded and EMBEDDED_DATASTORE_PATH=FILE, or a CalicoAPIConfig file given with \
--config (default /etc/calico/calicoctl.cfg)";

/// The datastore configuration: an explicit `--config` file, else the environment, else
/// `/etc/calico/calicoctl.cfg`, else the embedded store at its default path. `--config` set
/// to the default path behaves as if it were not given (upstream falls back the same way).
pub fn resolve(config: Option<&str>) -> Result<DatastoreConfig, String> {
    let explicit = config
        .filter(|c| !c.is_empty() && *c != DEFAULT_CONFIG)
        .map(Path::new);
    let vars = std::env::vars().collect();
    DatastoreConfig::resolve(explicit, &vars).map_err(|e| format!("{e}"))
}

/// Connects, or says why not (upstream: "Failed to create Calico API client: …").
pub async fn connect(config: Option<&str>) -> Result<ResourceStore, String> {
    let cfg = resolve(config).map_err(|e| format!("Failed to create Calico API client: {e}"))?;
    let ds = match tokio::time::timeout(CONNECT_TIMEOUT, calico_datastore::connect(&cfg)).await {
        Ok(Ok(ds)) => ds,
        Ok(Err(e)) => {
            return Err(format!(
                "Failed to create Calico API client: {}",
                explain(&e)
            ));
        }
        Err(_) => {
            return Err(format!(
                "Failed to create Calico API client: {} did not answer within {}s; {HOW_TO_CONFIGURE}",
                describe(&cfg),
                CONNECT_TIMEOUT.as_secs()
            ));
        }
    };
    Ok(ResourceStore::new(ds))
}

fn describe(cfg: &DatastoreConfig) -> String {
    match cfg {
        DatastoreConfig::Etcd(e) => format!("etcd at {}", e.endpoints.join(",")),
        DatastoreConfig::Embedded(e) => format!("embedded datastore {}", e.path.display()),
        DatastoreConfig::Kubernetes => "kubernetes datastore".into(),
    }
}

/// A datastore error, with the how-to-configure hint when the store could not be reached.
pub fn explain(e: &Error) -> String {
    match e {
        // The backend's own message may already say how to fix it; don't say it twice.
        Error::Unavailable { reason, .. } if mentions_config(reason) => e.to_string(),
        Error::Config(msg) if mentions_config(msg) => e.to_string(),
        Error::Unavailable { .. } | Error::Config(_) => format!("{e}; {HOW_TO_CONFIGURE}"),
        other => other.to_string(),
    }
}

fn mentions_config(msg: &str) -> bool {
    ["ETCD_ENDPOINTS", "EMBEDDED_DATASTORE_PATH", "calicoctl.cfg"]
        .iter()
        .any(|k| msg.contains(k))
}

/// A resource-store error in calicoctl's words.
pub fn store_error(e: &StoreError) -> String {
    match e {
        StoreError::Datastore(inner) => explain(inner),
        // Upstream (etcdv3 datastore) reports a missing resource as libcalico-go's
        // ErrorResourceDoesNotExist without a cause, which Go prints as `with error: <nil>`;
        // scripts written against upstream match the whole line.
        StoreError::NotFound { .. } => format!("{e} with error: <nil>"),
        other => other.to_string(),
    }
}

/// Runs one datastore call with the same bound as connecting, so an unreachable backend fails
/// promptly with its address instead of hanging.
pub async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Datastore(Error::Unavailable {
            endpoint: "the datastore".into(),
            reason: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
        })),
    }
}
