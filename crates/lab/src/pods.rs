//! Pods: a network namespace per pod, wired by the real CNI plugins (`calico` + `calico-ipam`
//! from crates/cni, found next to `calico-lab`), run the way a container runtime runs them.
//!
//! ```text
//! pod add: record in state.json ─▶ ip netns add <lab>-pod_<ns>_<pod> ─▶ conflist ADD, each
//!          plugin run as `ip netns exec <node-ns> PLUGIN` (so the host-side caliX lands in the
//!          node) with CNI_NETNS=/run/netns/<pod-ns>, prevResult chained ─▶ address recorded
//! pod del: conflist DEL in reverse ─▶ ip netns del ─▶ record removed
//! ```
//!
//! Each node gets `<state>/<node>/10-calico.conflist`, shaped like upstream's
//! (`k8s-pod-network`, `calico` with `calico-ipam`), pointing at the lab's datastore, the node
//! name, and the MTU file calico-node writes in the node's state directory. The container id is
//! derived from the lab, namespace and pod, so a DEL after a lost state file hits the same
//! IPAM handle.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::names::{self, LabNames};
use crate::state::{PodRecord, Root, State};
use crate::sys;

/// The network name (upstream's default conflist).
pub const NETWORK: &str = "k8s-pod-network";
/// The conflist file in each node's directory.
pub const CONFLIST: &str = "10-calico.conflist";
/// Reference plugins (containernetworking-plugins), appended to CNI_PATH.
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";
/// Overrides where `calico` and `calico-ipam` are looked for.
pub const CNI_DIR_ENV: &str = "CALICO_LAB_CNI_DIR";
/// One plugin run may take this long before it is killed.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The directory holding our plugin binaries: `$CALICO_LAB_CNI_DIR`, else next to calico-lab.
pub fn plugin_dir() -> Result<PathBuf> {
    let dir = match std::env::var_os(CNI_DIR_ENV) {
        Some(d) => PathBuf::from(d),
        None => std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
            .ok_or_else(|| anyhow!("cannot find the directory of the calico-lab binary"))?,
    };
    for bin in ["calico", "calico-ipam"] {
        if !dir.join(bin).is_file() {
            bail!(
                "CNI plugin {} is missing; build it (cargo build -p calico-cni) or point {CNI_DIR_ENV} \
                 at the directory holding calico and calico-ipam",
                dir.join(bin).display()
            );
        }
    }
    Ok(dir)
}

/// The conflist of `node` (upstream's shape; datastore, node name and MTU file of the lab).
pub fn conflist(root: &Root, st: &State, node: &str) -> Value {
    let mut calico = json!({
        "type": "calico",
        "log_level": "info",
        "log_file_path": root.node_dir(&st.lab, node).join("cni.log"),
        "nodename": node,
        "mtu": 0,
        "mtu_file": root.node_state_dir(&st.lab, node).join("mtu"),
        "ipam": {"type": "calico-ipam"},
    });
    match &st.etcd_endpoint {
        Some(ep) => {
            calico["datastore_type"] = json!("etcdv3");
            calico["etcd_endpoints"] = json!(ep);
        }
        None => {
            calico["datastore_type"] = json!("embedded");
            calico["embedded_datastore_path"] = json!(st.datastore);
        }
    }
    json!({"name": NETWORK, "cniVersion": "1.0.0", "plugins": [calico]})
}

/// `CNI_CONTAINERID` of a pod: stable for (lab, namespace, pod).
pub fn container_id(names: &LabNames, namespace: &str, pod: &str) -> String {
    format!("cl-{}-{namespace}-{pod}", names.tag())
}

/// One CNI command for one pod.
struct Invocation<'a> {
    command: &'a str,
    node_netns: &'a str,
    pod: &'a PodRecord,
    labels: &'a BTreeMap<String, String>,
    plugin_dir: &'a Path,
}

impl Invocation<'_> {
    fn cni_args(&self) -> String {
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={}",
            self.pod.namespace, self.pod.name, self.pod.container_id
        )
    }

    /// Run one plugin entry of the list; its stdout on success.
    fn run_plugin(&self, conf: &Value) -> Result<String> {
        let ty = conf["type"].as_str().unwrap_or_default().to_string();
        let bin = [self.plugin_dir, Path::new(REFERENCE_PLUGINS)]
            .iter()
            .map(|d| d.join(&ty))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                anyhow!(
                    "CNI plugin {ty:?} is in neither {} nor {REFERENCE_PLUGINS}",
                    self.plugin_dir.display()
                )
            })?;
        let netns_path = Path::new(calico_dataplane::netns::NETNS_RUN_DIR).join(&self.pod.netns);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.node_netns])
            .arg(&bin)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", self.command)
            .env("CNI_CONTAINERID", &self.pod.container_id)
            .env("CNI_NETNS", &netns_path)
            .env("CNI_IFNAME", "eth0")
            .env(
                "CNI_PATH",
                format!("{}:{REFERENCE_PLUGINS}", self.plugin_dir.display()),
            )
            .env("CNI_ARGS", self.cni_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("running CNI plugin {}", bin.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(&serde_json::to_vec(conf)?);
        }
        let out = sys::wait_output(child, PLUGIN_TIMEOUT)
            .with_context(|| format!("CNI {} of {} by {ty}", self.command, self.pod.key()))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            let msg = serde_json::from_str::<Value>(&stdout)
                .ok()
                .map(|v| {
                    format!(
                        "{} ({})",
                        v["msg"].as_str().unwrap_or(""),
                        v["details"].as_str().unwrap_or("")
                    )
                })
                .unwrap_or_else(|| stdout.trim().to_string());
            bail!(
                "CNI {} of pod {} on node netns {}: plugin {ty} exited with {}: {msg}{}",
                self.command,
                self.pod.key(),
                self.node_netns,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(stdout)
    }

    /// The whole list: ADD/CHECK in order with prevResult, DEL in reverse. Returns the final
    /// result (ADD) or an empty object.
    fn run_list(&self, list: &Value) -> Result<Value> {
        let mut plugins: Vec<Value> = list["plugins"].as_array().cloned().unwrap_or_default();
        if self.command == "DEL" {
            plugins.reverse();
        }
        let mut prev: Option<Value> = None;
        for mut conf in plugins {
            conf["name"] = list["name"].clone();
            conf["cniVersion"] = list["cniVersion"].clone();
            if conf["type"] == "calico" && !self.labels.is_empty() {
                let labels: Vec<Value> = self
                    .labels
                    .iter()
                    .map(|(k, v)| json!({"key": k, "value": v}))
                    .collect();
                conf["args"] = json!({"cni": {"labels": labels}});
            }
            if let Some(p) = &prev {
                conf["prevResult"] = p.clone();
            }
            let out = self.run_plugin(&conf)?;
            if self.command == "ADD" {
                prev = Some(serde_json::from_str(&out).with_context(|| {
                    format!("CNI ADD of {}: result is not JSON: {out:?}", self.pod.key())
                })?);
            }
        }
        Ok(prev.unwrap_or_else(|| json!({})))
    }
}

/// The first address of an ADD result, without its prefix length.
fn result_address(result: &Value) -> Option<String> {
    result["ips"]
        .as_array()?
        .first()?
        .get("address")?
        .as_str()
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
}

fn load(root: &Root, lab: &str) -> Result<State> {
    root.load(lab)?
        .ok_or_else(|| anyhow!("lab {lab:?} is not up (no state file)"))
}

/// Create pod NAMESPACE/NAME on `node`: namespace, CNI ADD; returns the record (with address).
pub fn add(
    root: &Root,
    lab: &str,
    node: &str,
    namespace: &str,
    pod: &str,
    labels: &BTreeMap<String, String>,
) -> Result<PodRecord> {
    for (field, v) in [("namespace", namespace), ("pod", pod)] {
        names::check_object_name(v).map_err(|e| anyhow!("pod {field}: {e}"))?;
    }
    let mut st = load(root, lab)?;
    let member = st.node(node)?.clone();
    if let Some(p) = st.pod(namespace, pod) {
        bail!(
            "pod {namespace}/{pod} already exists on node {}; `calico-lab pod del {lab} {pod} --namespace {namespace}` first",
            p.node
        );
    }
    let plugin_dir = plugin_dir()?;
    let names = LabNames::new(lab);
    let rec = PodRecord {
        namespace: namespace.into(),
        name: pod.into(),
        node: node.into(),
        netns: names.pod_netns(namespace, pod),
        container_id: container_id(&names, namespace, pod),
        address: None,
    };
    let dir = root.node_dir(lab, node);
    std::fs::create_dir_all(&dir)?;
    let list = conflist(root, &st, node);
    std::fs::write(dir.join(CONFLIST), serde_json::to_string_pretty(&list)?)?;
    st.pods.push(rec.clone());
    root.save(&st)?;
    let inv = Invocation {
        command: "ADD",
        node_netns: &member.netns,
        pod: &rec,
        labels,
        plugin_dir: &plugin_dir,
    };
    let created = sys::add_netns(&rec.netns)
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            sys::ip_in(&rec.netns, &sys::strs(&["link", "set", "lo", "up"]))?;
            Ok(())
        })
        .and_then(|()| inv.run_list(&list));
    let result = match created {
        Ok(r) => r,
        Err(e) => {
            // Undo: DEL (idempotent), the namespace, the record.
            let _ = del(root, lab, namespace, pod);
            return Err(e);
        }
    };
    let mut rec = rec;
    rec.address = result_address(&result);
    let mut st = load(root, lab)?;
    if let Some(p) = st
        .pods
        .iter_mut()
        .find(|p| p.namespace == namespace && p.name == pod)
    {
        p.address = rec.address.clone();
    }
    root.save(&st)?;
    Ok(rec)
}

/// Remove pod NAMESPACE/NAME: CNI DEL, then its namespace, then the record. The namespace and
/// record go even when DEL fails (the error is returned after).
pub fn del(root: &Root, lab: &str, namespace: &str, pod: &str) -> Result<()> {
    let mut st = load(root, lab)?;
    let rec = st.pod(namespace, pod).cloned().ok_or_else(|| {
        let known: Vec<String> = st.pods.iter().map(PodRecord::key).collect();
        anyhow!(
            "lab {lab} has no pod {namespace}/{pod} (pods: {})",
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        )
    })?;
    let deleted = del_record(root, &st, &rec);
    st.pods
        .retain(|p| !(p.namespace == namespace && p.name == pod));
    root.save(&st)?;
    deleted
}

/// CNI DEL and namespace removal for one recorded pod (state file untouched).
pub fn del_record(root: &Root, st: &State, rec: &PodRecord) -> Result<()> {
    let node_netns = LabNames::new(&st.lab).netns(&rec.node);
    let existing = sys::list_netns()?;
    let mut errors = Vec::new();
    if existing.contains(&node_netns) {
        let no_labels = BTreeMap::new();
        let result = plugin_dir().and_then(|plugin_dir| {
            let inv = Invocation {
                command: "DEL",
                node_netns: &node_netns,
                pod: rec,
                labels: &no_labels,
                plugin_dir: &plugin_dir,
            };
            inv.run_list(&conflist(root, st, &rec.node))
        });
        if let Err(e) = result {
            errors.push(format!("{e:#}"));
        }
    }
    if existing.contains(&rec.netns)
        && let Err(e) = sys::del_netns(&rec.netns)
    {
        errors.push(e.to_string());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        bail!("removing pod {}: {}", rec.key(), errors.join("; "))
    }
}
