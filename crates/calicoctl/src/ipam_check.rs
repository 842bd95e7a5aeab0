//! `calicoctl ipam check` and `ipam release --from-report`.
//!
//! The check cross-references IPAM allocations with their users (WorkloadEndpoints' ipNetworks,
//! Nodes' tunnel addresses) like upstream, and adds `calico_ipam::check`'s structural findings
//! (half-done claims, wrong handle counts, overlapping blocks) with their fixes. The `-o` report
//! is upstream's JSON plus a `problems` list; `release --from-report` releases what every given
//! report calls leaked (guarded by handle and sequence number) and applies the fixes (guarded by
//! revision, so anything that changed since the report is left alone).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use calico_api::{Kind, Resource};
use calico_datastore::Datastore;
use calico_datastore::resources::ResourceStore;
use calico_ipam::{Ipam, Problem, ProblemKind, ReleaseRequest};
use serde::{Deserialize, Serialize};

use crate::ipam::cluster_info;

const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Allocation {
    ip: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    handle: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sequence_number: Option<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pod: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    node: String,
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    creation_timestamp: String,
    #[serde(default)]
    in_use: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    borrowed: bool,
    #[serde(default)]
    owners: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct HandleInfo {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "UID", default)]
    uid: Option<String>,
    #[serde(rename = "Revision", default)]
    revision: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CheckReport {
    #[serde(default)]
    version: String,
    #[serde(rename = "clusterGUID", default)]
    cluster_guid: String,
    #[serde(default)]
    datastore_locked: bool,
    #[serde(rename = "clusterInformationRevision", default)]
    cluster_info_revision: String,
    #[serde(default)]
    cluster_type: String,
    #[serde(default)]
    allocations: BTreeMap<String, Vec<Allocation>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    leaked_handles: Vec<HandleInfo>,
    /// Our addition: structural problems and their compare-and-swap fixes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    problems: Vec<Problem>,
}

fn normalise(addr: &str) -> Option<IpAddr> {
    let a = addr.split('/').next().unwrap_or(addr);
    a.trim().parse().ok()
}

/// Addresses in use: workload endpoints and node tunnel addresses, with a friendly owner name.
async fn in_use(
    store: &ResourceStore,
) -> Result<(BTreeMap<IpAddr, Vec<String>>, usize, usize), String> {
    let mut used: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
    let mut node_ips = 0;
    for r in store
        .list(Kind::Node, None)
        .await
        .map_err(|e| e.to_string())?
    {
        let Resource::Node(n) = r else { continue };
        let mut addrs = vec![n.spec.ipv4_vxlan_tunnel_addr.clone()];
        if let Some(bgp) = &n.spec.bgp {
            addrs.push(bgp.ipv4_ipip_tunnel_addr.clone());
        }
        if let Some(wg) = &n.spec.wireguard {
            addrs.push(wg.interface_ipv4_address.clone());
        }
        for ip in addrs
            .iter()
            .filter(|a| !a.is_empty())
            .filter_map(|a| normalise(a))
        {
            used.entry(ip)
                .or_default()
                .push(format!("Node({})", n.metadata.name));
            node_ips += 1;
        }
    }
    let mut wep_ips = 0;
    for r in store
        .list(Kind::WorkloadEndpoint, None)
        .await
        .map_err(|e| e.to_string())?
    {
        let Resource::WorkloadEndpoint(w) = r else {
            continue;
        };
        let ns = w.metadata.namespace.clone().unwrap_or_default();
        for ip in w.spec.ip_networks.iter().filter_map(|a| normalise(a)) {
            used.entry(ip)
                .or_default()
                .push(format!("Workload({ns}/{})", w.metadata.name));
            wep_ips += 1;
        }
    }
    Ok((used, node_ips, wep_ips))
}

pub async fn run(
    config: &str,
    output: Option<&str>,
    show_all: bool,
    show_problems: bool,
) -> Result<String, String> {
    let show_problems = show_problems || show_all;
    let store = crate::client::connect(Some(config)).await?;
    let ds: Arc<dyn Datastore> = store.datastore().clone();
    let mut out = String::from("Checking IPAM for inconsistencies...\n\n");
    let (guid, revision, locked) = cluster_info(&ds).await?;
    let structural = calico_ipam::check(ds.as_ref())
        .await
        .map_err(|e| e.to_string())?;

    out.push_str("Loading all IPAM blocks...\n");
    let mut blocks = Vec::new();
    for v6 in [false, true] {
        for kv in ds
            .list(&calico_datastore::keys::block_prefix(v6))
            .await
            .map_err(|e| e.to_string())?
            .kvs
        {
            if let Ok(b) = calico_ipam::AllocationBlock::from_json(&kv.value) {
                blocks.push(b);
            }
        }
    }
    out.push_str(&format!("Found {} IPAM blocks.\n", blocks.len()));
    let mut allocations: BTreeMap<String, Vec<Allocation>> = BTreeMap::new();
    let mut by_node: BTreeMap<String, usize> = BTreeMap::new();
    let mut handles_in_blocks = BTreeSet::new();
    for b in &blocks {
        out.push_str(&format!(
            " IPAM block {} affinity={}:\n",
            b.cidr,
            b.affinity.as_deref().unwrap_or("<none>")
        ));
        let owner = b
            .affinity
            .as_deref()
            .and_then(|a| a.strip_prefix("host:"))
            .unwrap_or("")
            .to_string();
        for ip in b.in_use_ips() {
            let attr = b
                .attribute_of(ip)
                .ok()
                .flatten()
                .cloned()
                .unwrap_or_default();
            let get = |k: &str| attr.secondary.get(k).cloned().unwrap_or_default();
            let node = attr
                .secondary
                .get("node")
                .cloned()
                .unwrap_or_else(|| owner.clone());
            let a = Allocation {
                ip: ip.to_string(),
                handle: attr.handle_id.clone().unwrap_or_default(),
                sequence_number: b.sequence_number_of(ip).ok(),
                pod: get("pod"),
                namespace: get("namespace"),
                kind: get("type"),
                creation_timestamp: get("timestamp"),
                borrowed: node != owner,
                node: node.clone(),
                ..Default::default()
            };
            if let Some(h) = &attr.handle_id {
                handles_in_blocks.insert(h.clone());
            }
            if show_all {
                out.push_str(&format!(
                    "  {ip} allocated; attrs Main:{} Extra:{}\n",
                    attr.handle_id.as_deref().unwrap_or("<none>"),
                    attr.secondary
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                ));
            }
            *by_node.entry(node).or_default() += 1;
            allocations.entry(ip.to_string()).or_default().push(a);
        }
    }
    let num_allocs: usize = allocations.values().map(Vec::len).sum();
    out.push_str(&format!("IPAM blocks record {num_allocs} allocations.\n\n"));

    out.push_str("Loading all IPAM pools...\n");
    let pools = Ipam::new(ds.clone())
        .pools()
        .await
        .map_err(|e| e.to_string())?;
    let active: Vec<ipnet::IpNet> = pools
        .iter()
        .filter(|p| !p.spec.is_disabled())
        .filter_map(|p| {
            out.push_str(&format!("  {}\n", p.spec.cidr));
            p.spec.network()
        })
        .collect();
    out.push_str(&format!("Found {} active IP pools.\n\n", active.len()));

    out.push_str("Loading all nodes.\n");
    let (used, node_ips, wep_ips) = in_use(&store).await?;
    out.push_str(&format!("Found {node_ips} node tunnel IPs.\n\n"));
    out.push_str("Loading all workload endpoints.\n");
    out.push_str(&format!(
        "Found {wep_ips} workload IPs.\nWorkloads and nodes are using {} IPs.\n\n",
        used.len()
    ));
    for (ip, owners) in &used {
        for a in allocations.get_mut(&ip.to_string()).into_iter().flatten() {
            a.in_use = true;
            a.owners = Some(owners.clone());
        }
    }

    out.push_str("Loading all handles\n");
    let handle_kvs = ds
        .list(&calico_datastore::keys::handle_prefix())
        .await
        .map_err(|e| e.to_string())?
        .kvs;
    let handles: BTreeMap<String, String> = handle_kvs
        .iter()
        .filter_map(|kv| {
            calico_ipam::model::parse_handle_key(&kv.key)
                .map(|id| (id.to_string(), kv.mod_revision.to_string()))
        })
        .collect();

    out.push_str("Looking for top (up to 20) nodes by allocations...\n");
    let mut nodes: Vec<(&String, &usize)> = by_node.iter().collect();
    nodes.sort_by(|a, b| b.1.cmp(a.1));
    for (n, c) in nodes.iter().take(20) {
        out.push_str(&format!("  {n} has {c} allocations\n"));
    }
    if let (Some(max), Some(median)) = (nodes.first(), nodes.get(nodes.len() / 2)) {
        out.push_str(&format!(
            "Node with most allocations has {}; median is {}\n",
            max.1, median.1
        ));
    }
    out.push('\n');

    let mut problems = 0;
    out.push_str("Scanning for IPs that are allocated but not actually in use...\n");
    let mut leaked = 0;
    for (ip, allocs) in &allocations {
        if allocs.iter().all(|a| !a.in_use) {
            leaked += 1;
            if show_problems {
                out.push_str(&format!(
                    "  {ip} leaked; handle {}\n",
                    allocs.first().map(|a| a.handle.as_str()).unwrap_or("")
                ));
            }
        }
    }
    problems += leaked;
    out.push_str(&format!(
        "Found {leaked} IPs that are allocated in IPAM but not actually in use.\n"
    ));
    out.push_str(
        "Scanning for IPs that are in use by a workload or node but not allocated in IPAM...\n",
    );
    let (mut outside, mut unallocated) = (0, 0);
    for (ip, owners) in &used {
        if show_problems && owners.len() > 1 {
            out.push_str(&format!("  {ip} has multiple owners.\n"));
        }
        if allocations.contains_key(&ip.to_string()) {
            continue;
        }
        if active.iter().any(|c| c.contains(ip)) {
            unallocated += 1;
            if show_problems {
                out.push_str(&format!("  {ip} in use by {owners:?} and in active IPAM pool but has no IPAM allocation.\n"));
            }
        } else {
            outside += 1;
            if show_problems {
                out.push_str(&format!(
                    "  {ip} in use by {owners:?} is not in any active IP pool.\n"
                ));
            }
        }
    }
    problems += outside + unallocated;
    out.push_str(&format!(
        "Found {outside} in-use IPs that are not in active IP pools.\n"
    ));
    out.push_str(&format!("Found {unallocated} in-use IPs that are in active IP pools but have no corresponding IPAM allocation.\n\n"));

    out.push_str("Scanning for IPAM handles with no matching IPs...\n");
    let leaked_handles: Vec<HandleInfo> = handles
        .iter()
        .filter(|(id, _)| !handles_in_blocks.contains(*id))
        .map(|(id, rev)| HandleInfo {
            id: id.clone(),
            uid: None,
            revision: rev.clone(),
        })
        .collect();
    if show_all {
        for h in &leaked_handles {
            out.push_str(&format!("  {} doesn't have any active IPs.\n", h.id));
        }
    }
    problems += leaked_handles.len();
    out.push_str(&format!(
        "Found {} handles with no matching IPs (and {} handles with matches).\n",
        leaked_handles.len(),
        handles.len() - leaked_handles.len()
    ));
    out.push_str("Scanning for IPs with missing handle...\n");
    let missing: Vec<&String> = handles_in_blocks
        .iter()
        .filter(|h| !handles.contains_key(*h))
        .collect();
    if show_problems {
        for h in &missing {
            out.push_str(&format!("  {h} is in use in a block but doesn't exist.\n"));
        }
    }
    problems += missing.len();
    out.push_str(&format!(
        "Found {} handles mentioned in blocks with no matching handle resource.\n",
        missing.len()
    ));

    // Structural findings not already counted above (leaked and missing handles are).
    let extra: Vec<&Problem> = structural
        .problems
        .iter()
        .filter(|p| p.kind != ProblemKind::AllocationWithoutHandle)
        .filter(|p| {
            !(p.kind == ProblemKind::HandleCountWrong
                && p.fix.as_ref().is_some_and(|f| f.value.is_none()))
        })
        .collect();
    out.push_str("Scanning for inconsistent IPAM data (affinities, handle counts, blocks)...\n");
    for p in &extra {
        let how = if p.fix.is_some() {
            "repairable with `calicoctl ipam release --from-report`"
        } else {
            "needs manual repair"
        };
        out.push_str(&format!(
            "  {:?} at {}: {} ({how})\n",
            p.kind, p.key, p.detail
        ));
    }
    problems += extra.len();
    out.push_str(&format!(
        "Found {} inconsistencies in IPAM data.\n",
        extra.len()
    ));
    out.push_str(&format!("Check complete; found {problems} problems.\n"));

    if let Some(path) = output {
        let report = CheckReport {
            version: VERSION.to_string(),
            cluster_guid: guid,
            datastore_locked: locked,
            cluster_info_revision: revision,
            cluster_type: String::new(),
            allocations,
            leaked_handles,
            problems: structural.problems.clone(),
        };
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, json)
            .map_err(|e| format!("cannot write the report to {path}: {e}"))?;
    }
    Ok(out)
}

pub async fn release_from_reports(
    ipam: &Ipam,
    ds: &Arc<dyn Datastore>,
    files: &[String],
    force: bool,
) -> Result<String, String> {
    let (guid, revision, locked) = cluster_info(ds).await?;
    let mut out = String::new();
    let mut reports = Vec::new();
    let mut current = false;
    for file in files {
        let text =
            std::fs::read_to_string(file).map_err(|e| format!("cannot read report {file}: {e}"))?;
        let r: CheckReport = serde_json::from_str(&text)
            .map_err(|e| format!("report {file} is not an IPAM check report: {e}"))?;
        if r.cluster_guid != guid {
            return Err(format!(
                "cluster does not match the provided report ({file}): mismatched cluster GUID. Refusing to release"
            ));
        }
        if r.version != VERSION {
            if !force {
                return Err(format!(
                    "the provided report ({file}) was produced using a different version ({}) of calicoctl. Refusing to release",
                    r.version
                ));
            }
            out.push_str("WARNING: Report was produced using a different version of calicoctl. Ignoring due to --force option\n");
        }
        current |= r.cluster_info_revision == revision;
        reports.push(r);
    }
    if !current {
        return Err("the provided reports are all stale - at least one should be up-to-date. Please generate a new report while the data store is locked and try again".into());
    }
    if !locked {
        if !force {
            return Err(
                "data store is not locked. Either lock the data store, or re-run with --force"
                    .into(),
            );
        }
        out.push_str("WARNING: Data store is not locked. Ignoring due to --force option\n");
    }

    // Leaked in every report, with the same handle and sequence number.
    let mut leaked: Option<BTreeMap<String, ReleaseRequest>> = None;
    let mut handles: Option<BTreeMap<String, String>> = None;
    for r in &reports {
        let mut ips = BTreeMap::new();
        for a in r.allocations.values().flatten().filter(|a| !a.in_use) {
            let Ok(ip) = a.ip.parse::<IpAddr>() else {
                continue;
            };
            if leaked.as_ref().is_some_and(|l| !l.contains_key(&a.ip)) {
                continue;
            }
            let handle = (!a.handle.is_empty()).then(|| a.handle.clone());
            ips.insert(
                a.ip.clone(),
                ReleaseRequest {
                    ip,
                    handle,
                    sequence_number: a.sequence_number,
                },
            );
        }
        leaked = Some(ips);
        let hs: BTreeMap<String, String> = r
            .leaked_handles
            .iter()
            .filter(|h| {
                handles
                    .as_ref()
                    .is_none_or(|prev| prev.get(&h.id) == Some(&h.revision))
            })
            .map(|h| (h.id.clone(), h.revision.clone()))
            .collect();
        handles = Some(hs);
    }
    let leaked: Vec<ReleaseRequest> = leaked.unwrap_or_default().into_values().collect();
    if leaked.is_empty() {
        out.push_str("Report didn't contain any leaked IPs to clean up.\n");
    } else {
        out.push_str(&format!("Releasing {} old IPs...\n", leaked.len()));
        match ipam.release_ips(&leaked).await {
            Ok(r) => {
                out.push_str(&format!("Released {} IPs successfully\n", r.released.len()));
                if !r.not_allocated.is_empty() {
                    out.push_str(&format!("{} addresses marked as leaked in the report had already been cleaned up.\n", r.not_allocated.len()));
                }
            }
            Err(e) => out.push_str(&format!(
                "An error occurred while releasing some IPs: {e}.  Problems are often caused by an out-of-date IPAM report.  Try regenerating the IPAM report and retry.\n"
            )),
        }
    }
    let handles = handles.unwrap_or_default();
    if handles.is_empty() {
        out.push_str("Report didn't contain any handles to clean up.\n");
    } else {
        out.push_str(&format!(
            "Deleting {} handles...\nKey: '.' = Deleted OK; 'x' = skip, handle missing/changed.\n",
            handles.len()
        ));
        let (mut ok, mut skipped, mut errors) = (0, 0, 0);
        for (id, rev) in &handles {
            let key = calico_datastore::keys::handle_key(id);
            let expected = rev.parse::<i64>().ok();
            match ds.delete(&key, expected).await {
                Ok(_) => {
                    ok += 1;
                    out.push('.');
                }
                Err(
                    calico_datastore::Error::NotFound { .. }
                    | calico_datastore::Error::Conflict { .. },
                ) => {
                    skipped += 1;
                    out.push('x');
                }
                Err(e) => {
                    errors += 1;
                    out.push_str(&format!("\nDeleting handle {id} failed: {e}.\n"));
                }
            }
        }
        out.push_str(&format!(
            "\nReleased {ok} handles; {skipped} skipped; {errors} errors.\n"
        ));
    }

    // Structural fixes (from the newest report that has them), each guarded by revision.
    if let Some(r) = reports.iter().rev().find(|r| !r.problems.is_empty()) {
        let fixable: Vec<Problem> = r
            .problems
            .iter()
            .filter(|p| p.fix.is_some())
            .cloned()
            .collect();
        let applied = calico_ipam::repair_problems(ds.as_ref(), &fixable)
            .await
            .map_err(|e| e.to_string())?;
        out.push_str(&format!(
            "Repaired {applied} of {} IPAM data problems ({} changed since the report and were skipped).\n",
            fixable.len(),
            fixable.len() - applied
        ));
    }
    Ok(out)
}
