//! calico-lab against the real kernel: `up` a 4-node / 2-subnet lab, check all-pairs node
//! reachability (also across subnets through the switch), `down` removes every namespace and
//! link; a lab whose `up` was SIGKILLed half-way, or whose state file is gone, is still cleaned.
//!
//! Needs root and iproute2; fails loudly otherwise. Every test uses its own lab name (pid,
//! counter, time) and its own state directory, and a guard runs `down` even when it fails.
//! Traffic goes only to addresses inside the namespaces these labs create.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const FOUR_NODES: &str = "
subnets:
  - {name: vlan10, cidr: 10.10.10.0/24, gateway: 10.10.10.1}
  - {name: vlan20, cidr: 10.10.20.0/24, gateway: 10.10.20.1, mtu: 9000}
nodes:
  - name: control-plane
    subnet: vlan10
    address: 10.10.10.10
    interfaces: [{name: eth2, subnet: vlan20, address: 10.10.20.50, mtu: 1500}]
  - {name: worker, subnet: vlan10, address: 10.10.10.11}
  - {name: worker2, subnet: vlan10, address: 10.10.10.12}
  - {name: worker3, subnet: vlan20, address: 10.10.20.10}
resources:
  - inline:
      apiVersion: projectcalico.org/v3
      kind: IPPool
      metadata: {name: default-ipv4-ippool}
      spec: {cidr: 192.168.0.0/16, blockSize: 26, vxlanMode: CrossSubnet, natOutgoing: true}
nodeEnv: {CALICO_NETWORKING_BACKEND: vxlan}
";

#[test]
fn up_check_and_down_of_a_four_node_two_subnet_lab() {
    let lab = Lab::new("lab");
    let topo = lab.write_topology(FOUR_NODES);
    let out = lab.ok(&["up", topo.to_str().expect("utf-8 path"), "--no-node"]);
    for (node, subnet, addr) in [
        ("control-plane", "vlan10", "10.10.10.10/24"),
        ("worker", "vlan10", "10.10.10.11/24"),
        ("worker2", "vlan10", "10.10.10.12/24"),
        ("worker3", "vlan20", "10.10.20.10/24"),
    ] {
        assert!(
            out.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() >= 4 && f[0] == node && f[1] == subnet && f[2] == addr && f[3] == "eth1"
            }),
            "summary lacks {node} {subnet} {addr}:\n{out}"
        );
    }
    assert!(
        out.contains("applied 1 resource(s): IPPool default-ipv4-ippool"),
        "{out}"
    );
    // Switch + 4 nodes, every one carrying the lab's name.
    let ns = lab.netns();
    assert_eq!(ns.len(), 5, "{ns:?}");
    assert!(ns.iter().all(|n| n.contains(&lab.name)), "{ns:?}");

    // Inside a node: eth1 with its address, default route via the gateway, forwarding on.
    let addr = lab.addr4("worker3", "eth1");
    assert!(addr.contains("10.10.20.10/24"), "{addr}");
    let link = lab.link("worker3", "eth1");
    assert!(
        link.contains("mtu 9000"),
        "subnet MTU reaches the node: {link}"
    );
    let routes = lab.ok(&["exec", "worker3", "--", "ip", "route", "show", "default"]);
    assert!(
        routes.contains("default via 10.10.20.1 dev eth1"),
        "{routes}"
    );
    let fwd = lab.ok(&[
        "exec",
        "worker",
        "--",
        "cat",
        "/proc/sys/net/ipv4/ip_forward",
    ]);
    assert_eq!(fwd.trim(), "1");
    let eth2 = lab.addr4("control-plane", "eth2");
    assert!(eth2.contains("10.10.20.50/24"), "extra interface: {eth2}");
    // exec passes the command's exit code through.
    let o = lab.run(&["exec", "worker", "--", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    // An unknown pod is named, with the pods there are.
    let o = lab.run(&["exec", "default/pod-a", "--", "true"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no pod \"default/pod-a\" (pods: none)"),
        "{}",
        text(&o)
    );

    // Every node reaches every other, in its subnet and across the switch.
    let matrix = lab.ok(&["check"]);
    assert_eq!(matrix.matches(" ok").count(), 12, "{matrix}");
    assert!(!matrix.contains("FAIL"), "{matrix}");
    assert!(
        matrix.contains("all node pairs reach each other"),
        "{matrix}"
    );

    // The datastore file exists in the state directory and holds the pool.
    let state = lab.state_dir().join(&lab.name);
    assert!(state.join("datastore.db").exists());
    let env = std::fs::read_to_string(state.join("worker/calico-node.env")).expect("env file");
    assert!(env.contains("NODENAME=worker\n"), "{env}");
    assert!(env.contains("CALICO_NETWORKING_BACKEND=vxlan\n"), "{env}");

    let status = lab.ok(&["status"]);
    assert!(status.contains("10.10.10.11/24"), "{status}");
    assert!(status.contains(&lab.names.bridge(0)), "{status}");

    // A second `up` of the same lab is refused and changes nothing.
    let o = lab.run(&["up", topo.to_str().expect("utf-8 path"), "--no-node"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already up"),
        "{}",
        text(&o)
    );
    assert_eq!(lab.netns().len(), 5);

    lab.ok(&["down", &lab.name]);
    assert_eq!(
        lab.netns(),
        Vec::<String>::new(),
        "down left namespaces behind"
    );
    assert!(!state.exists(), "down removes the state directory");
}

#[test]
fn check_reports_a_broken_link() {
    let lab = Lab::new("brk");
    let topo = lab.write_topology(FOUR_NODES);
    lab.ok(&["up", topo.to_str().expect("utf-8 path"), "--no-node"]);
    lab.ok(&["exec", "worker2", "--", "ip", "link", "set", "eth1", "down"]);
    let started = Instant::now();
    let o = lab.run(&["check"]);
    assert!(!o.status.success(), "check must fail: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    // worker2's row and column fail (3 + 3), the rest answer.
    assert_eq!(out.matches("FAIL").count(), 6, "{out}");
    assert_eq!(out.matches(" ok").count(), 6, "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "pings are bounded"
    );
}

#[test]
fn down_after_up_was_killed_half_way() {
    let lab = Lab::new("crash");
    let topo = lab.write_topology(FOUR_NODES);
    // Killed before step 24 (0-based), the second node's first veth: the switch and the
    // first node are complete, the second node's namespace exists without links.
    let o = lab
        .cmd(&["up", topo.to_str().expect("utf-8 path"), "--no-node"])
        .env(calico_lab::lab::CRASH_AFTER_ENV, "24")
        .output()
        .expect("run up");
    assert_eq!(
        o.status.signal(),
        Some(9),
        "up should have been SIGKILLed: {}",
        text(&o)
    );
    let left = lab.netns();
    assert_eq!(left.len(), 3, "switch + 2 nodes expected: {left:?}");
    let st = lab.state_dir().join(&lab.name).join("state.json");
    let state = std::fs::read_to_string(&st).expect("state file survives the crash");
    assert!(state.contains("\"complete\": false"), "{state}");

    let status = lab.ok(&["status"]);
    assert!(status.contains("INCOMPLETE"), "{status}");

    let out = lab.ok(&["down", &lab.name]);
    assert!(out.contains("is down"), "{out}");
    assert_eq!(lab.netns(), Vec::<String>::new());
    // Now it can come up cleanly again.
    lab.ok(&["up", topo.to_str().expect("utf-8 path"), "--no-node"]);
    assert_eq!(lab.netns().len(), 5);
}

#[test]
fn down_without_a_state_file_cleans_by_name_and_stops_processes() {
    let lab = Lab::new("orph");
    let other = Lab::new("orph");
    // Leftovers of a lab whose state directory is gone: two namespaces and a process in one.
    let a = lab.names.netns("node-a");
    let sw = lab.names.switch_netns();
    let keep = other.names.netns("node-a");
    for n in [&a, &sw, &keep] {
        let s = Command::new("ip")
            .args(["netns", "add", n])
            .status()
            .expect("ip");
        assert!(s.success(), "ip netns add {n}");
    }
    let mut sleeper = Command::new("ip")
        .args(["netns", "exec", &a, "sleep", "60"])
        .spawn()
        .expect("start a process in the lab namespace");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let pids = Command::new("ip")
            .args(["netns", "pids", &a])
            .output()
            .expect("ip");
        if !pids.stdout.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let out = lab.ok(&["down", &lab.name]);
    assert!(out.contains("2 namespace(s), 1 process(es)"), "{out}");
    assert_eq!(lab.netns(), Vec::<String>::new());
    let status = sleeper.wait().expect("reap the sleeper");
    assert!(
        !status.success(),
        "the process in the lab's namespace was stopped"
    );
    // Another lab's namespace is not touched.
    assert_eq!(other.netns(), vec![keep.clone()]);
}

#[test]
fn an_invalid_topology_names_the_field_and_creates_nothing() {
    let lab = Lab::new("inval");
    let topo = lab.write_topology(&FOUR_NODES.replace(
        "{name: worker2, subnet: vlan10",
        "{name: worker2, subnet: sub3",
    ));
    let o = lab.run(&["up", topo.to_str().expect("utf-8 path"), "--no-node"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nodes[2].subnet: no subnet named \"sub3\""),
        "{err}"
    );
    assert_eq!(lab.netns(), Vec::<String>::new());
    assert!(!Path::new(&lab.state_dir().join(&lab.name)).exists());
}

fn write_script(lab: &Lab, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = lab.dir.path().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn node_agents_start_in_their_namespace_with_the_node_env_and_stop_on_down() {
    let lab = Lab::new("agent");
    let out_dir = lab.dir.path().join("agent-out");
    std::fs::create_dir_all(&out_dir).expect("mkdir");
    let agent = write_script(
        &lab,
        "fake-calico-node",
        "{ env; ip -o -4 addr show dev eth1; } > \"$FAKE_DIR/$NODENAME.out\"\nexec sleep 60",
    );
    let topo = lab.write_topology(
        &format!("{FOUR_NODES}\n  FAKE_DIR: {}\n", out_dir.display()).replace(
            "nodeEnv: {CALICO_NETWORKING_BACKEND: vxlan}\n",
            "nodeEnv:\n  CALICO_NETWORKING_BACKEND: vxlan",
        ),
    );
    let o = lab
        .cmd(&["up", topo.to_str().expect("utf-8"), "--node-bin"])
        .arg(&agent)
        .env("CALICO_LAB_TEST_LEAK", "1")
        .output()
        .expect("up");
    assert!(o.status.success(), "{}", text(&o));
    let summary = String::from_utf8_lossy(&o.stdout);
    assert_eq!(summary.matches(" pid ").count(), 4, "{summary}");

    let state = lab.state_dir().join(&lab.name);
    let db = state.join("datastore.db");
    for (node, addr) in [
        ("control-plane", "10.10.10.10/24"),
        ("worker3", "10.10.20.10/24"),
    ] {
        let path = out_dir.join(format!("{node}.out"));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !path.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let seen = std::fs::read_to_string(&path).expect("the agent wrote its report");
        assert!(seen.contains(&format!("NODENAME={node}\n")), "{seen}");
        assert!(seen.contains("DATASTORE_TYPE=embedded\n"), "{seen}");
        assert!(
            seen.contains(&format!("EMBEDDED_DATASTORE_PATH={}\n", db.display())),
            "{seen}"
        );
        assert!(seen.contains("CALICO_NETWORKING_BACKEND=vxlan\n"), "{seen}");
        assert!(
            seen.contains(addr),
            "the agent runs in its node's namespace: {seen}"
        );
        assert!(
            !seen.contains("CALICO_LAB_TEST_LEAK"),
            "caller env leaked: {seen}"
        );
    }
    let st = std::fs::read_to_string(state.join("state.json")).expect("state");
    let st: serde_json::Value = serde_json::from_str(&st).expect("json");
    let pids: Vec<i64> = st["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .filter_map(|p| p["pid"].as_i64())
        .collect();
    assert_eq!(pids.len(), 4);
    let status = lab.ok(&["status"]);
    assert!(status.contains("sleep ("), "{status}");

    let out = lab.ok(&["down"]);
    assert!(out.contains("4 process(es)"), "{out}");
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z"),
            "agent {pid} still running: {stat}"
        );
    }
    assert_eq!(lab.netns(), Vec::<String>::new());
}

#[test]
fn an_agent_that_dies_at_once_fails_up_and_up_cleans_after_itself() {
    let lab = Lab::new("dies");
    let agent = write_script(
        &lab,
        "broken-node",
        "echo 'cannot reach the datastore' >&2\nexit 3",
    );
    let topo = lab.write_topology(FOUR_NODES);
    let o = lab
        .cmd(&["up", topo.to_str().expect("utf-8"), "--node-bin"])
        .arg(&agent)
        .output()
        .expect("up");
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("exited at once"), "{err}");
    assert!(
        err.contains("cannot reach the datastore"),
        "the log tail is shown: {err}"
    );
    assert_eq!(
        lab.netns(),
        Vec::<String>::new(),
        "a failed up removes what it created"
    );

    let o = lab.run(&[
        "up",
        topo.to_str().expect("utf-8"),
        "--node-bin",
        "/nonexistent/calico-node",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/nonexistent/calico-node"),
        "{}",
        text(&o)
    );
    assert_eq!(lab.netns(), Vec::<String>::new());
}

#[test]
fn a_lab_with_its_own_etcd_applies_resources_and_every_node_reaches_it() {
    let lab = Lab::new("etcd");
    let topo = lab.write_topology(&format!(
        "datastore: {{type: etcd, subnet: vlan10, address: 10.10.10.2}}\n{FOUR_NODES}"
    ));
    let out = lab.ok(&["up", topo.to_str().expect("utf-8"), "--no-node"]);
    assert!(
        out.contains("datastore etcd http://10.10.10.2:2379"),
        "{out}"
    );
    assert_eq!(lab.netns().len(), 6, "switch, 4 nodes, etcd");
    // worker3 is in the other subnet: it reaches etcd through the switch, and the pool is there.
    let keys = lab.ok(&[
        "exec",
        "worker3",
        "--",
        "etcdctl",
        "--endpoints",
        "http://10.10.10.2:2379",
        "--dial-timeout",
        "2s",
        "--command-timeout",
        "3s",
        "get",
        "--prefix",
        "/calico/resources/v3/projectcalico.org/ippools/",
        "--keys-only",
    ]);
    assert!(keys.contains("ippools/default-ipv4-ippool"), "{keys}");
    let env = std::fs::read_to_string(
        lab.state_dir()
            .join(&lab.name)
            .join("worker3/calico-node.env"),
    )
    .expect("env file");
    assert!(env.contains("DATASTORE_TYPE=etcdv3\n"), "{env}");
    assert!(
        env.contains("ETCD_ENDPOINTS=http://10.10.10.2:2379\n"),
        "{env}"
    );
    let out = lab.ok(&["down", &lab.name]);
    assert!(out.contains("6 namespace(s), 1 process(es)"), "{out}");
    assert_eq!(lab.netns(), Vec::<String>::new());
}

#[test]
fn down_never_signals_a_recorded_pid_that_now_names_another_process() {
    let lab = Lab::new("reuse");
    // A process outside the lab, recorded in the state file with a start time that is not its
    // own: as if an agent died and the kernel gave its pid to someone else.
    let mut bystander = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    let pid = bystander.id();
    let state = serde_json::json!({
        "lab": lab.name, "tag": lab.names.tag(), "topology": "/nonexistent.yaml",
        "complete": true, "netns": [], "members": [], "datastore": "/nonexistent.db",
        "processes": [{"name": "calico-node n1", "netns": lab.names.netns("n1"),
                       "pid": pid, "start_time": 1}],
    });
    let dir = lab.state_dir().join(&lab.name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("state.json"), state.to_string()).expect("write state");

    let out = lab.ok(&["down", &lab.name]);
    assert!(out.contains("0 process(es)"), "{out}");
    let still = bystander.try_wait().expect("try_wait");
    let _ = bystander.kill();
    let _ = bystander.wait();
    assert!(still.is_none(), "down signalled a process it did not start");
}
