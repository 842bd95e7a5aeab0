//! Golden replay tests (CONVENTIONS.md 5): `tests/golden/<case>/input.yaml` (resources, blocks,
//! local facts, then steps) ⇒ `expected.txt` (per node: `ip route`, `ip neigh`, `bridge fdb`,
//! vxlan device, BGP seam, NAT pools, MTU). `UPDATE_GOLDEN=1 cargo test -p calico-felix --test
//! golden` rewrites the expected files; review the diff.
//!
//! Each case is replayed incrementally through one graph per rendered node, and after every step
//! the incremental state must equal a graph built from scratch from the same store and a replica
//! that applied only the emitted changes.

mod common;

use std::fmt::Write;
use std::path::{Path, PathBuf};

use calico_api::Kind;
use calico_datastore::keys;
use calico_felix::{CalcGraph, DesiredState, LocalFacts, render};
use common::{BlockSpec, Store, block_json, diff_updates, parse_resources, resource_kv};

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Case {
    #[allow(dead_code)]
    description: String,
    uplink: Option<String>,
    host_mtu: u32,
    /// Nodes whose desired state is rendered.
    render: Vec<String>,
    resources: String,
    #[serde(default)]
    blocks: Vec<BlockSpec>,
    #[serde(default)]
    steps: Vec<Step>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Step {
    name: String,
    /// Resources to create or replace.
    #[serde(default)]
    resources: Option<String>,
    #[serde(default)]
    blocks: Vec<BlockSpec>,
    /// `Kind/name`, `WorkloadEndpoint/<ns>/<name>` or `Block/<cidr>`.
    #[serde(default)]
    delete: Vec<String>,
}

fn apply_step(store: &mut Store, resources: Option<&str>, blocks: &[BlockSpec], delete: &[String]) {
    for d in delete {
        let (kind, rest) = d.split_once('/').expect("delete entry is Kind/name");
        let key = if kind == "Block" {
            keys::block_key(rest)
        } else {
            let kind = *Kind::ALL
                .iter()
                .find(|k| k.name() == kind)
                .unwrap_or_else(|| panic!("unknown kind {kind}"));
            match rest.split_once('/') {
                Some((ns, name)) if kind.namespaced() => keys::resource_key(kind, Some(ns), name),
                _ => keys::resource_key(kind, None, rest),
            }
        };
        assert!(
            store.remove(&key).is_some(),
            "delete {d}: no such key {key}"
        );
    }
    if let Some(text) = resources {
        for r in parse_resources(text) {
            let (k, v) = resource_kv(&r);
            store.insert(k, v);
        }
    }
    for b in blocks {
        let (k, v) = block_json(b);
        store.insert(k, v);
    }
}

struct NodeRun {
    graph: CalcGraph,
    replica: DesiredState,
}

fn local(case: &Case, node: &str) -> LocalFacts {
    LocalFacts {
        node_name: node.to_string(),
        uplink: case.uplink.clone(),
        host_mtu: case.host_mtu,
    }
}

fn check_and_render(case: &Case, runs: &[NodeRun], store: &Store, out: &mut String, title: &str) {
    for (node, run) in case.render.iter().zip(runs) {
        let scratch = CalcGraph::from_snapshot(
            local(case, node),
            store.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
        );
        assert_eq!(
            run.graph.state(),
            scratch.state(),
            "{title}, node {node}: incremental state differs from a recompute"
        );
        assert_eq!(
            &run.replica,
            run.graph.state(),
            "{title}, node {node}: replaying the changes does not give the state"
        );
        let _ = writeln!(out, "## {title}: node {node}");
        out.push_str(&render::render_state(run.graph.state()));
        out.push('\n');
    }
}

/// Replays a case; returns the rendered output.
fn run_case(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("input.yaml")).expect("input.yaml");
    let case: Case = serde_saphyr::from_str(&text).expect("input.yaml parses");
    let mut store = Store::new();
    let mut rev = 0;
    let mut runs: Vec<NodeRun> = case
        .render
        .iter()
        .map(|n| {
            let graph = CalcGraph::new(local(&case, n));
            let replica = graph.state().clone();
            NodeRun { graph, replica }
        })
        .collect();
    let feed = |runs: &mut Vec<NodeRun>, old: &Store, new: &Store, rev: &mut i64| {
        let mut updates = diff_updates(old, new, rev);
        updates.push(calico_datastore::syncer::SyncUpdate::InSync);
        for run in runs.iter_mut() {
            for u in &updates {
                let outcome = run.graph.apply(u);
                assert_eq!(outcome.error, None, "update {u:?}");
                for c in &outcome.changes {
                    c.apply_to(&mut run.replica);
                }
            }
        }
    };
    let mut out = String::new();
    let mut next = Store::new();
    apply_step(&mut next, Some(&case.resources), &case.blocks, &[]);
    feed(&mut runs, &store, &next, &mut rev);
    store = next;
    check_and_render(&case, &runs, &store, &mut out, "initial");
    for (i, step) in case.steps.iter().enumerate() {
        let mut next = store.clone();
        apply_step(
            &mut next,
            step.resources.as_deref(),
            &step.blocks,
            &step.delete,
        );
        feed(&mut runs, &store, &next, &mut rev);
        store = next;
        let title = format!("step {}: {}", i + 1, step.name);
        check_and_render(&case, &runs, &store, &mut out, &title);
    }
    out
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Output of one case (for the seed assertions in `seeds.rs`-style tests below).
fn case_output(name: &str) -> String {
    run_case(&golden_dir().join(name))
}

#[test]
fn golden_cases() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("tests/golden")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("input.yaml").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 5, "golden cases missing: {dirs:?}");
    let mut failed = Vec::new();
    for dir in &dirs {
        let got = run_case(dir);
        let path = dir.join("expected.txt");
        if update {
            std::fs::write(&path, &got).expect("write expected.txt");
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if got != want {
            eprintln!("--- {} differs; got:\n{got}", path.display());
            failed.push(dir.clone());
        }
    }
    assert!(
        failed.is_empty(),
        "golden mismatch in {failed:?}; rerun with UPDATE_GOLDEN=1 and review the diff"
    );
}

/// Lines of one node's section of a rendered case that contain `filter`; a filter starting with
/// `#` selects a whole subsection instead (`# ip route`, `# ip neigh`, ...).
fn section_lines(out: &str, title: &str, node: &str, filter: &str) -> Vec<String> {
    let head = format!("## {title}: node {node}\n");
    let start = out
        .find(&head)
        .unwrap_or_else(|| panic!("no section {head}"))
        + head.len();
    let body = &out[start..];
    let end = body.find("\n## ").unwrap_or(body.len());
    let body = &body[..end];
    if filter.starts_with('#') {
        let start = body.find(filter).unwrap_or_else(|| panic!("no {filter}")) + filter.len();
        let rest = &body[start..];
        let end = rest.find("\n#").unwrap_or(rest.len());
        return lines(&rest[..end]);
    }
    body.lines()
        .filter(|l| l.contains(filter))
        .map(str::to_string)
        .collect()
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Seed 000 `ip route | grep /26` on k01-worker, k01-worker2 and k01-worker3, verbatim.
#[test]
fn seed_000_crosssubnet_routes_match_the_seed() {
    let out = case_output("seed000_crosssubnet");
    let want = [
        (
            "k01-worker",
            "192.168.23.64/26 via 10.10.10.10 dev eth1 proto 80 onlink
             blackhole 192.168.81.64/26 proto 80
             192.168.164.128/26 via 10.10.10.12 dev eth1 proto 80 onlink
             192.168.209.64/26 via 192.168.209.64 dev vxlan.calico onlink",
        ),
        (
            "k01-worker2",
            "192.168.23.64/26 via 10.10.10.10 dev eth1 proto 80 onlink
             192.168.81.64/26 via 10.10.10.11 dev eth1 proto 80 onlink
             blackhole 192.168.164.128/26 proto 80
             192.168.209.64/26 via 192.168.209.64 dev vxlan.calico onlink",
        ),
        (
            "k01-worker3",
            "192.168.23.64/26 via 192.168.23.64 dev vxlan.calico onlink
             192.168.81.64/26 via 192.168.81.64 dev vxlan.calico onlink
             192.168.164.128/26 via 192.168.164.128 dev vxlan.calico onlink
             blackhole 192.168.209.64/26 proto 80",
        ),
    ];
    for (node, routes) in want {
        assert_eq!(
            section_lines(&out, "initial", node, "/26"),
            lines(routes),
            "{node}"
        );
    }
    // worker3's neighbours and one FDB entry, as the seed lists them (sorted by address here).
    assert_eq!(
        section_lines(&out, "initial", "k01-worker3", "PERMANENT"),
        lines(
            "192.168.23.64 dev vxlan.calico lladdr 66:15:9d:fa:c6:aa PERMANENT
             192.168.81.64 dev vxlan.calico lladdr 66:fb:ad:98:aa:13 PERMANENT
             192.168.164.128 dev vxlan.calico lladdr 66:c7:4d:6e:6b:f3 PERMANENT"
        )
    );
    assert!(
        section_lines(&out, "initial", "k01-worker3", "self permanent")
            .contains(&"66:fb:ad:98:aa:13 dev vxlan.calico dst 10.10.10.11 self permanent".into())
    );
    assert_eq!(
        section_lines(&out, "initial", "k01-worker", "vxlan.calico:"),
        lines(
            "vxlan.calico: vni 4096 port 4789 local 10.10.10.11 addr 192.168.81.64/32 mac 66:fb:ad:98:aa:13 mtu 1450 parent eth1"
        )
    );
}

/// Seed 003: master1's and master2's Calico routes (the kernel's own lines left out), verbatim.
#[test]
fn seed_003_vxlan_always_routes_match_the_seed() {
    let out = case_output("seed003_vxlan_always");
    let master1 = "10.233.72.0/26 via 10.233.72.0 dev vxlan.calico onlink
        blackhole 10.233.104.64/26 proto 80
        10.233.104.65 dev cali3c73a6b29ba scope link
        10.233.105.128/26 via 10.233.105.132 dev vxlan.calico onlink
        10.233.116.0/26 via 10.233.116.0 dev vxlan.calico onlink
        10.233.125.0/26 via 10.233.125.0 dev vxlan.calico onlink";
    let master2 = "10.233.72.0/26 via 10.233.72.0 dev vxlan.calico onlink
        10.233.104.64/26 via 10.233.104.64 dev vxlan.calico onlink
        10.233.105.128/26 via 10.233.105.132 dev vxlan.calico onlink
        blackhole 10.233.116.0/26 proto 80
        10.233.116.1 dev calif3d1a45b809 scope link
        10.233.125.0/26 via 10.233.125.0 dev vxlan.calico onlink";
    assert_eq!(
        section_lines(&out, "initial", "master1", "# ip route"),
        lines(master1)
    );
    assert_eq!(
        section_lines(&out, "initial", "master2", "# ip route"),
        lines(master2)
    );
    assert!(out.contains("host 1500 pod 1450"));
}

/// Seed 002 after the switch to vxlanMode Always: control1's Felix routes, verbatim; the other
/// pool (Never) stays with BGP.
#[test]
fn seed_002_mixed_pools_match_the_seed() {
    let out = case_output("seed002_mixed_pools");
    let title = "step 1: default-ipv4-ippool vxlanMode Never -> Always";
    let want = "10.48.0.0/26 via 10.48.0.46 dev vxlan.calico onlink
        10.48.0.128 dev cali1bff47cba53 scope link
        blackhole 10.48.0.128/26 proto 80
        10.48.0.130 dev calic628ed26868 scope link
        10.48.0.131 dev calic7ceee6b788 scope link
        10.48.0.132 dev cali4b871599db0 scope link
        10.48.0.133 dev caliae0f159e5b3 scope link
        10.48.0.134 dev cali2135bcd7981 scope link
        10.48.0.192/26 via 10.48.0.206 dev vxlan.calico onlink";
    let routes = section_lines(&out, title, "control1", "# ip route");
    assert_eq!(routes, lines(want));
    assert_eq!(
        section_lines(&out, title, "control1", "PERMANENT"),
        lines(
            "10.48.0.46 dev vxlan.calico lladdr 66:4b:ff:e1:ef:01 PERMANENT
             10.48.0.206 dev vxlan.calico lladdr 66:14:9d:f4:2c:1f PERMANENT"
        )
    );
    assert_eq!(
        section_lines(&out, title, "control1", "self permanent"),
        lines(
            "66:14:9d:f4:2c:1f dev vxlan.calico dst 10.0.1.30 self permanent
             66:4b:ff:e1:ef:01 dev vxlan.calico dst 10.0.1.31 self permanent"
        )
    );
    // The Never pool's remote blocks are BGP's, before and after.
    for t in ["initial", title] {
        assert_eq!(
            section_lines(&out, t, "control1", "expect from")
                .into_iter()
                .filter(|l| l.starts_with("10.48.128."))
                .collect::<Vec<_>>(),
            lines(
                "10.48.128.0/26 expect from worker2 via 10.0.1.31
                 10.48.128.192/26 expect from worker1 via 10.0.1.30"
            ),
            "{t}"
        );
    }
    assert!(
        section_lines(&out, title, "control1", "host 9001").contains(&"host 9001 pod 8951".into())
    );
}
