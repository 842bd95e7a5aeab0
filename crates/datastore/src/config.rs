//! Which datastore to use: from the environment (upstream's variable names), from a
//! CalicoAPIConfig file (`/etc/calico/calicoctl.cfg`), or built directly.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Default location of the embedded store's file.
pub const DEFAULT_EMBEDDED_PATH: &str = "/var/lib/calico/datastore.db";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatastoreConfig {
    Etcd(EtcdConfig),
    Embedded(EmbeddedConfig),
    Kubernetes,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `http(s)://host:port` URLs.
    pub endpoints: Vec<String>,
    pub ca_cert_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedConfig {
    pub path: PathBuf,
}

impl DatastoreConfig {
    /// Reads `DATASTORE_TYPE`, `ETCD_ENDPOINTS`, `ETCD_CA_CERT_FILE`, `ETCD_CERT_FILE`,
    /// `ETCD_KEY_FILE`, `ETCD_USERNAME`, `ETCD_PASSWORD`, `EMBEDDED_DATASTORE_PATH` from `vars`.
    /// Returns `None` when `DATASTORE_TYPE` is unset and no etcd endpoint is given.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Option<DatastoreConfig>> {
        let get = |k: &str| {
            vars.get(k)
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let ty = get("DATASTORE_TYPE");
        let endpoints = get("ETCD_ENDPOINTS");
        let ty = match (ty, &endpoints) {
            (Some(t), _) => t,
            (None, Some(_)) => "etcdv3".to_string(),
            (None, None) => return Ok(None),
        };
        Self::build(
            &ty,
            Fields {
                etcd_endpoints: endpoints,
                etcd_ca_cert_file: get("ETCD_CA_CERT_FILE"),
                etcd_cert_file: get("ETCD_CERT_FILE"),
                etcd_key_file: get("ETCD_KEY_FILE"),
                etcd_username: get("ETCD_USERNAME"),
                etcd_password: get("ETCD_PASSWORD"),
                embedded_path: get("EMBEDDED_DATASTORE_PATH"),
            },
            "DATASTORE_TYPE",
        )
        .map(Some)
    }

    /// Parses a CalicoAPIConfig document (YAML or JSON).
    pub fn from_calico_api_config(text: &str, origin: &Path) -> Result<DatastoreConfig> {
        let doc: ApiConfigDoc = serde_saphyr::from_str(text).map_err(|e| {
            Error::Config(format!(
                "{}: not a valid CalicoAPIConfig: {e}",
                origin.display()
            ))
        })?;
        if doc.kind != "CalicoAPIConfig" {
            return Err(Error::Config(format!(
                "{}: kind is {:?}; expected CalicoAPIConfig",
                origin.display(),
                doc.kind
            )));
        }
        let s = doc.spec;
        let ty = s.datastore_type.clone().unwrap_or_else(|| "etcdv3".into());
        Self::build(
            &ty,
            Fields {
                etcd_endpoints: s.etcd_endpoints,
                etcd_ca_cert_file: s.etcd_ca_cert_file,
                etcd_cert_file: s.etcd_cert_file,
                etcd_key_file: s.etcd_key_file,
                etcd_username: s.etcd_username,
                etcd_password: s.etcd_password,
                embedded_path: s.embedded_datastore_path,
            },
            &format!("{}: spec.datastoreType", origin.display()),
        )
    }

    /// Resolution order used by calicoctl: explicit config file, else environment, else
    /// `/etc/calico/calicoctl.cfg`, else the embedded store at its default path.
    pub fn resolve(
        config_file: Option<&Path>,
        vars: &HashMap<String, String>,
    ) -> Result<DatastoreConfig> {
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .map_err(|e| Error::Config(format!("cannot read config file {}: {e}", p.display())))
        };
        if let Some(p) = config_file {
            return Self::from_calico_api_config(&read(p)?, p);
        }
        if let Some(c) = Self::from_vars(vars)? {
            return Ok(c);
        }
        let default = Path::new("/etc/calico/calicoctl.cfg");
        if default.exists() {
            return Self::from_calico_api_config(&read(default)?, default);
        }
        Ok(DatastoreConfig::Embedded(EmbeddedConfig {
            path: DEFAULT_EMBEDDED_PATH.into(),
        }))
    }

    fn build(ty: &str, f: Fields, field: &str) -> Result<DatastoreConfig> {
        match ty {
            "etcdv3" | "etcd" => {
                let eps = f.etcd_endpoints.unwrap_or_default();
                let endpoints: Vec<String> = eps
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                if endpoints.is_empty() {
                    return Err(Error::Config(
                        "datastore type etcdv3 needs etcd endpoints: set ETCD_ENDPOINTS (e.g. \
                         http://127.0.0.1:2379) or spec.etcdEndpoints in calicoctl.cfg"
                            .into(),
                    ));
                }
                for e in &endpoints {
                    if !(e.starts_with("http://") || e.starts_with("https://")) {
                        return Err(Error::Config(format!(
                            "etcd endpoint {e:?} must start with http:// or https://"
                        )));
                    }
                }
                Ok(DatastoreConfig::Etcd(EtcdConfig {
                    endpoints,
                    ca_cert_file: f.etcd_ca_cert_file.map(PathBuf::from),
                    cert_file: f.etcd_cert_file.map(PathBuf::from),
                    key_file: f.etcd_key_file.map(PathBuf::from),
                    username: f.etcd_username,
                    password: f.etcd_password,
                }))
            }
            "embedded" => Ok(DatastoreConfig::Embedded(EmbeddedConfig {
                path: f
                    .embedded_path
                    .unwrap_or_else(|| DEFAULT_EMBEDDED_PATH.into())
                    .into(),
            })),
            "kubernetes" => Ok(DatastoreConfig::Kubernetes),
            other => Err(Error::Config(format!(
                "{field}: unknown datastore type {other:?}; use etcdv3, embedded or kubernetes"
            ))),
        }
    }
}

struct Fields {
    etcd_endpoints: Option<String>,
    etcd_ca_cert_file: Option<String>,
    etcd_cert_file: Option<String>,
    etcd_key_file: Option<String>,
    etcd_username: Option<String>,
    etcd_password: Option<String>,
    embedded_path: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiConfigDoc {
    #[allow(dead_code)]
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[allow(dead_code)]
    #[serde(default)]
    metadata: Option<serde_json::Value>,
    #[serde(default)]
    spec: ApiConfigSpec,
}

// Every field upstream's CalicoAPIConfig accepts is accepted here so existing files load; the
// Kubernetes and inline-certificate ones are not used yet.
#[allow(dead_code)]
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ApiConfigSpec {
    datastore_type: Option<String>,
    etcd_endpoints: Option<String>,
    etcd_discovery_srv: Option<String>,
    etcd_username: Option<String>,
    etcd_password: Option<String>,
    etcd_key_file: Option<String>,
    etcd_cert_file: Option<String>,
    #[serde(rename = "etcdCACertFile")]
    etcd_ca_cert_file: Option<String>,
    etcd_key: Option<String>,
    etcd_cert: Option<String>,
    #[serde(rename = "etcdCACert")]
    etcd_ca_cert: Option<String>,
    embedded_datastore_path: Option<String>,
    kubeconfig: Option<String>,
    k8s_api_endpoint: Option<String>,
    k8s_key_file: Option<String>,
    k8s_cert_file: Option<String>,
    #[serde(rename = "k8sCAFile")]
    k8s_ca_file: Option<String>,
    k8s_api_token: Option<String>,
    k8s_insecure_skip_tls_verify: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_etcd() {
        let c = DatastoreConfig::from_vars(&vars(&[
            ("DATASTORE_TYPE", "etcdv3"),
            (
                "ETCD_ENDPOINTS",
                "http://10.0.0.1:2379, http://10.0.0.2:2379",
            ),
        ]))
        .unwrap()
        .unwrap();
        let DatastoreConfig::Etcd(e) = c else {
            panic!("not etcd")
        };
        assert_eq!(
            e.endpoints,
            vec!["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
        );
    }

    #[test]
    fn env_embedded_default_path() {
        let c = DatastoreConfig::from_vars(&vars(&[("DATASTORE_TYPE", "embedded")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            c,
            DatastoreConfig::Embedded(EmbeddedConfig {
                path: DEFAULT_EMBEDDED_PATH.into()
            })
        );
    }

    #[test]
    fn etcd_without_endpoints_says_how_to_fix() {
        let e = DatastoreConfig::from_vars(&vars(&[("DATASTORE_TYPE", "etcdv3")])).unwrap_err();
        assert!(e.to_string().contains("ETCD_ENDPOINTS"), "{e}");
    }

    #[test]
    fn unknown_type_is_refused() {
        let e = DatastoreConfig::from_vars(&vars(&[("DATASTORE_TYPE", "zookeeper")])).unwrap_err();
        assert!(
            e.to_string().contains("etcdv3, embedded or kubernetes"),
            "{e}"
        );
    }

    #[test]
    fn calico_api_config_file() {
        let text = "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata:\nspec:\n  datastoreType: etcdv3\n  etcdEndpoints: https://etcd:2379\n  etcdCACertFile: /ca.pem\n";
        let c = DatastoreConfig::from_calico_api_config(text, Path::new("x.cfg")).unwrap();
        let DatastoreConfig::Etcd(e) = c else {
            panic!("not etcd")
        };
        assert_eq!(e.ca_cert_file.as_deref(), Some(Path::new("/ca.pem")));
    }
}
