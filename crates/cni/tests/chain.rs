//! Our `calico` chained with the reference `portmap` and `bandwidth` plugins, run as libcni runs
//! a conflist: ADD in order (each gets the previous result), CHECK in order with the final
//! result, DEL in reverse order. Everything runs inside a test node namespace.

mod common;

use calico_dataplane::testns::TestNetns;
use common::{Fixture, NETWORK, Pod, Run, run_in};
use serde_json::{Value, json};

fn env(command: &str, p: &Pod) -> Vec<(&'static str, String)> {
    vec![
        ("CNI_COMMAND", command.to_string()),
        ("CNI_CONTAINERID", p.container_id.clone()),
        ("CNI_NETNS", p.netns_path().display().to_string()),
        ("CNI_IFNAME", "eth0".to_string()),
        ("CNI_ARGS", p.args()),
        ("CNI_PATH", common::cni_path()),
    ]
}

/// Run the plugin `entry["type"]` (ours from the target dir, the others from /usr/lib/cni).
fn run_entry(fx: &Fixture, command: &str, p: &Pod, entry: &Value, prev: Option<&Value>) -> Run {
    let mut conf = entry.clone();
    conf["cniVersion"] = json!("1.0.0");
    conf["name"] = json!(NETWORK);
    if let Some(prev) = prev {
        conf["prevResult"] = prev.clone();
    }
    let ty = entry["type"].as_str().expect("type").to_string();
    let vars = env(command, p);
    if ty == "calico" {
        return run_in(&fx.node, "calico", &vars, conf.to_string().as_bytes());
    }
    // Reference plugins: same runner, other binary.
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "exec", fx.node.name()])
        .arg(format!("/usr/lib/cni/{ty}"))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in &vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn reference plugin");
    if let Some(mut s) = child.stdin.take() {
        use std::io::Write;
        let _ = s.write_all(conf.to_string().as_bytes());
    }
    let out = child.wait_with_output().expect("wait");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn calico_portmap_bandwidth_conflist_add_check_del() {
    let fx = Fixture::new("10.65.0.0/16", 26);
    let calico = fx.calico_ipam_conf();
    let portmap = json!({"type": "portmap", "snat": true, "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}});
    let bandwidth = json!({"type": "bandwidth", "capabilities": {"bandwidth": true},
        "runtimeConfig": {"bandwidth": {"ingressRate": 8000000, "ingressBurst": 80000,
                                         "egressRate": 8000000, "egressBurst": 80000}}});
    let chain = [calico, portmap, bandwidth];
    let ns = TestNetns::new();
    let p = Pod {
        container_id: "ctr-chain".into(),
        netns: &ns,
        namespace: "default",
        name: "chained".into(),
    };
    let mut prev: Option<Value> = None;
    for entry in &chain {
        let r = run_entry(&fx, "ADD", &p, entry, prev.as_ref());
        assert_eq!(r.code, 0, "ADD {}: {r:?}", entry["type"]);
        prev = Some(r.json());
    }
    let result = prev.expect("final result");
    let ip = result["ips"][0]["address"]
        .as_str()
        .expect("ip")
        .to_string();
    let nat = fx.node.exec(&["iptables-save", "-t", "nat"]);
    assert!(nat.contains("8080"), "portmap rule: {nat}");
    let veth = calico_api::naming::host_interface_name("default", "chained");
    let qdisc = fx.node.exec(&["tc", "qdisc", "show", "dev", &veth]);
    assert!(
        qdisc.contains("tbf") || qdisc.contains("ingress"),
        "{qdisc}"
    );
    for entry in &chain {
        let r = run_entry(&fx, "CHECK", &p, entry, Some(&result));
        if entry["type"] == "portmap" {
            // The installed portmap (1.1.1) checks its IPv6 table even for IPv4 pods and
            // always fails CHECK (containernetworking/plugins#819, fixed in later releases);
            // accept exactly that failure and nothing else.
            assert!(
                r.code == 0 || r.stdout.contains("could not check ipv6 dnat"),
                "CHECK portmap: {r:?}"
            );
            continue;
        }
        assert_eq!(r.code, 0, "CHECK {}: {r:?}", entry["type"]);
    }
    for entry in chain.iter().rev() {
        let r = run_entry(&fx, "DEL", &p, entry, Some(&result));
        assert_eq!(r.code, 0, "DEL {}: {r:?}", entry["type"]);
    }
    assert!(fx.cali_links().is_empty());
    assert!(fx.endpoints().is_empty());
    assert!(fx.handle_ips("ctr-chain").is_empty());
    let nat = fx.node.exec(&["iptables-save", "-t", "nat"]);
    assert!(
        !nat.contains(&ip.replace("/32", "")),
        "no portmap rule left: {nat}"
    );
}
