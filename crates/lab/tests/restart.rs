//! SIGKILL and restart of calico-node under an established TCP flow between pods on different
//! nodes (across subnets, over vxlan.calico): the flow loses no packet (no TCP retransmission
//! in either pod's namespace), and once the restarted agents are ready every node's routes,
//! VXLAN neighbours and FDB entries are exactly what they were — nothing duplicated or stale.
//!
//! Needs root, iproute2, ping, and calico-node + calico + calico-ipam built next to calico-lab.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use calico_dataplane::NetNs;
use common::*;

const NODES: [&str; 4] = [
    "k01-control-plane",
    "k01-worker",
    "k01-worker2",
    "k01-worker3",
];

/// `Tcp: … RetransSegs` of the namespace (`/proc/net/snmp` is per network namespace).
fn retransmitted(netns: &str) -> u64 {
    let ns = NetNs::named(netns).expect("open namespace");
    let snmp = ns
        .run(|| std::fs::read_to_string("/proc/net/snmp"))
        .expect("enter namespace")
        .expect("read /proc/net/snmp");
    let tcp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Tcp:")).collect();
    assert_eq!(tcp.len(), 2, "{snmp}");
    let names: Vec<&str> = tcp[0].split_whitespace().collect();
    let values: Vec<&str> = tcp[1].split_whitespace().collect();
    let i = names
        .iter()
        .position(|n| *n == "RetransSegs")
        .expect("RetransSegs column");
    values[i].parse().expect("RetransSegs value")
}

/// calico-node's /readiness inside the node's namespace answers 200.
fn ready(netns: &str) -> bool {
    let Ok(ns) = NetNs::named(netns) else {
        return false;
    };
    ns.run(|| -> std::io::Result<bool> {
        let addr: SocketAddr = "127.0.0.1:9099".parse().map_err(std::io::Error::other)?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        s.set_read_timeout(Some(Duration::from_secs(1)))?;
        s.write_all(b"GET /readiness HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf);
        Ok(buf.split_whitespace().nth(1) == Some("200"))
    })
    .is_ok_and(|r| r.unwrap_or(false))
}

/// Every node's full `ip route`, VXLAN neighbours and FDB entries, sorted.
fn dataplane(lab: &Lab) -> Vec<String> {
    let mut all = Vec::new();
    for n in NODES {
        for cmd in [
            &["ip", "route", "show"][..],
            &["ip", "neigh", "show", "dev", "vxlan.calico"][..],
            &["bridge", "fdb", "show", "dev", "vxlan.calico"][..],
        ] {
            let mut args = vec!["exec", n, "--"];
            args.extend_from_slice(cmd);
            let mut lines: Vec<String> = lab
                .ok(&args)
                .lines()
                .map(|l| format!("{n}: {}", l.trim_end()))
                .collect();
            lines.sort();
            all.extend(lines);
        }
    }
    all
}

#[test]
fn sigkill_and_restart_of_calico_node_keeps_an_established_flow_and_the_routes() {
    let lab = Lab::new("rst");
    lab.up_with_agents(&lab.example("seed000-crosssubnet.yaml"));
    let before = dataplane(&lab);
    let src = lab.names.pod_netns("default", "pod-w1");
    let dst = lab.names.pod_netns("default", "pod-w3");
    let dst_ip = lab
        .addr4("default/pod-w3", "eth0")
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|c| c.split('/').next())
        .expect("pod-w3 address")
        .to_string();

    // A flow from pod-w1 (k01-worker, vlan10) to pod-w3 (k01-worker3, vlan20): a counter
    // every 2 ms, bounded to 30 s.
    let listener = NetNs::named(&dst)
        .expect("pod-w3 namespace")
        .run(|| TcpListener::bind("0.0.0.0:0"))
        .expect("enter pod-w3")
        .expect("listen in pod-w3");
    let port = listener.local_addr().expect("port").port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut next = 0u64;
        let mut buf = [0u8; 8];
        while s.read_exact(&mut buf).is_ok() {
            assert_eq!(u64::from_be_bytes(buf), next, "in order, nothing missing");
            next += 1;
        }
        next
    });
    let addr: SocketAddr = format!("{dst_ip}:{port}").parse().expect("address");
    let mut client = NetNs::named(&src)
        .expect("pod-w1 namespace")
        .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
        .expect("enter pod-w1")
        .expect("connect pod-w1 -> pod-w3");
    client.set_nodelay(true).expect("nodelay");
    let retrans = (retransmitted(&src), retransmitted(&dst));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                client.write_all(&sent.to_be_bytes()).expect("flow write");
                sent += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            sent
        })
    };

    std::thread::sleep(Duration::from_millis(300));
    for node in ["k01-worker", "k01-worker3"] {
        let out = lab.ok(&["node", "restart", &lab.name, node, "--kill"]);
        assert!(out.contains("restarted"), "{out}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in ["k01-worker", "k01-worker3"] {
        let netns = lab.names.netns(node);
        while !ready(&netns) {
            assert!(
                Instant::now() < deadline,
                "{node}'s calico-node never got ready again"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Past the restarted agents' first dataplane pass (readiness waits for it).
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().expect("sender");
    let received = server.join().expect("server");
    assert_eq!(received, sent, "every counter arrived");
    assert!(
        sent > 200,
        "the flow ran through the restarts ({sent} messages)"
    );
    assert_eq!(
        (retransmitted(&src), retransmitted(&dst)),
        retrans,
        "no TCP segment was retransmitted: no packet of the flow was lost"
    );
    assert_eq!(
        dataplane(&lab),
        before,
        "routes, neighbours and FDB as before the restarts"
    );
}
