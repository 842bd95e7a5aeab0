//! `version`: this binary's version and commit, and the cluster's from ClusterInformation.

use crate::client;
use crate::crud::Outcome;
use calico_api::Kind;
use calico_datastore::resources::StoreError;

/// `v<crate version>`, as upstream prints `v3.x.y`.
pub fn client_version() -> String {
    format!("v{}", env!("CARGO_PKG_VERSION"))
}

/// The commit the binary was built from (set by build.rs), or `unknown`.
pub fn git_commit() -> &'static str {
    option_env!("CALICOCTL_GIT_COMMIT")
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
}

pub async fn run(config: Option<&str>, client_only: bool) -> Outcome {
    // Go's Println("Client Version:   ", v) puts one more space between label and value.
    let mut out = format!(
        "Client Version:    {}\nGit commit:        {}\n",
        client_version(),
        git_commit()
    );
    if client_only {
        return Outcome { out, err: None };
    }
    if client::resolve(config).is_err() {
        out.push_str("Unable to detect installed Calico version\n");
        return Outcome { out, err: None };
    }
    let store = match client::connect(config).await {
        Ok(s) => s,
        Err(e) => {
            let e = e.trim_start_matches("Failed to create Calico API client: ");
            return Outcome {
                out,
                err: Some(format!("unable to retrieve Cluster Version or Type: {e}")),
            };
        }
    };
    let (version, cluster_type) =
        match client::bounded(store.get(Kind::ClusterInformation, None, "default")).await {
            Ok(r) => {
                let v = serde_json::to_value(&r).unwrap_or_default();
                let field = |f: &str| {
                    v.pointer(&format!("/spec/{f}"))
                        .and_then(|x| x.as_str())
                        .filter(|s| !s.is_empty())
                        .unwrap_or("unknown")
                        .to_string()
                };
                (field("calicoVersion"), field("clusterType"))
            }
            // Nothing has initialised the cluster yet (calico-node writes ClusterInformation).
            Err(StoreError::NotFound { .. }) => ("unknown".into(), "unknown".into()),
            Err(e) => {
                return Outcome {
                    out,
                    err: Some(format!(
                        "unable to retrieve Cluster Version or Type: {}",
                        client::store_error(&e)
                    )),
                };
            }
        };
    out.push_str(&format!(
        "Cluster Version:   {version}\nCluster Type:      {cluster_type}\n"
    ));
    Outcome { out, err: None }
}
