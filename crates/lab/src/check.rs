//! The all-pairs reachability matrix of `calico-lab check`: every endpoint (node or pod)
//! probes every other one. The probe is injected, so the matrix logic and its rendering are
//! tested without namespaces. The real probes, all bounded: one `ping -c1 -W1` from inside the
//! source's namespace, and for pods a TCP exchange (connect, send a line, read it back, 1 s
//! each) with an echo listener this process opens inside every target pod's namespace for the
//! duration of the check (`EchoListeners`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use calico_dataplane::NetNs;

use crate::lab::table;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    /// The namespace probes start from.
    pub netns: String,
    pub address: String,
    /// Port of this endpoint's TCP echo listener, when it has one (pods).
    pub tcp_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matrix {
    pub endpoints: Vec<Endpoint>,
    /// `results[i][j]`: the failed probes from i to j, empty when i reached j (`None` on the
    /// diagonal).
    pub results: Vec<Vec<Option<Vec<String>>>>,
    /// What the endpoints are ("node", "pod"), for the verdict line.
    pub what: String,
}

impl Matrix {
    /// Probe all ordered pairs; one thread per source, its targets one after the other.
    pub fn probe<P>(what: &str, endpoints: &[Endpoint], probe: P) -> Matrix
    where
        P: Fn(&Endpoint, &Endpoint) -> Vec<String> + Sync,
    {
        let probe = &probe;
        let results = std::thread::scope(|s| {
            let handles: Vec<_> = endpoints
                .iter()
                .enumerate()
                .map(|(i, src)| {
                    s.spawn(move || {
                        endpoints
                            .iter()
                            .enumerate()
                            .map(|(j, dst)| (i != j).then(|| probe(src, dst)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                // A panicking probe counts as failures, never as success.
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| vec![Some(vec!["panic".into()]); endpoints.len()])
                })
                .collect()
        });
        Matrix {
            endpoints: endpoints.to_vec(),
            results,
            what: what.to_string(),
        }
    }

    pub fn all_ok(&self) -> bool {
        self.results.iter().enumerate().all(|(i, row)| {
            row.iter()
                .enumerate()
                .all(|(j, r)| i == j || r.as_ref().is_some_and(Vec::is_empty))
        })
    }

    pub fn render(&self) -> String {
        let mut rows = vec![
            std::iter::once("FROM \\ TO".to_string())
                .chain(self.endpoints.iter().map(|e| e.name.clone()))
                .collect::<Vec<_>>(),
        ];
        for (i, e) in self.endpoints.iter().enumerate() {
            let mut row = vec![format!("{} ({})", e.name, e.address)];
            for j in 0..self.endpoints.len() {
                let cell = self
                    .results
                    .get(i)
                    .and_then(|r| r.get(j))
                    .cloned()
                    .flatten();
                row.push(match cell {
                    None if i == j => "-".into(),
                    Some(f) if f.is_empty() => "ok".into(),
                    Some(f) => format!("FAIL({})", f.join(",")),
                    None => "FAIL".into(),
                });
            }
            rows.push(row);
        }
        let mut out = table(&rows);
        let _ = std::fmt::Write::write_fmt(
            &mut out,
            format_args!(
                "{}\n",
                if self.all_ok() {
                    format!("all {} pairs reach each other", self.what)
                } else {
                    format!("some {} pairs do NOT reach each other", self.what)
                }
            ),
        );
        out
    }
}

/// One `ping -c1 -W1` from inside `netns` (at most ~1 s).
pub fn ping(netns: &str, dst: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", netns, "ping", "-c1", "-W1", "-q", dst])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Time bound of each TCP step (connect, write, read).
const TCP_STEP: Duration = Duration::from_secs(1);

/// Connect from inside `netns` to `dst:port`, send a line and read the same line back.
pub fn tcp_echo(netns: &str, dst: &str, port: u16) -> bool {
    let Ok(addr) = format!("{dst}:{port}").parse::<SocketAddr>() else {
        return false;
    };
    let Ok(ns) = NetNs::named(netns) else {
        return false;
    };
    let token = format!("calico-lab {netns} -> {dst}\n");
    ns.run(|| -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr, TCP_STEP)?;
        s.set_read_timeout(Some(TCP_STEP))?;
        s.set_write_timeout(Some(TCP_STEP))?;
        s.write_all(token.as_bytes())?;
        let mut back = vec![0u8; token.len()];
        s.read_exact(&mut back)?;
        Ok(back == token.as_bytes())
    })
    .is_ok_and(|r| r.unwrap_or(false))
}

/// The probe of the pod matrix: ICMP, and TCP when the target listens.
pub fn probe_pod(src: &Endpoint, dst: &Endpoint) -> Vec<String> {
    let mut failed = Vec::new();
    if !ping(&src.netns, &dst.address) {
        failed.push("icmp".to_string());
    }
    if let Some(port) = dst.tcp_port
        && !tcp_echo(&src.netns, &dst.address, port)
    {
        failed.push("tcp".to_string());
    }
    failed
}

/// The probe of the node matrix: ICMP only.
pub fn probe_node(src: &Endpoint, dst: &Endpoint) -> Vec<String> {
    if ping(&src.netns, &dst.address) {
        Vec::new()
    } else {
        vec!["icmp".to_string()]
    }
}

/// TCP echo listeners opened inside namespaces by this process; closed on drop. Each serves
/// connections (one line echoed back, 1 s bounds) on its own thread until dropped.
pub struct EchoListeners {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl EchoListeners {
    /// Open one listener on an ephemeral port in each endpoint's namespace and record the
    /// port in the endpoint.
    pub fn open(endpoints: &mut [Endpoint]) -> Result<EchoListeners, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut me = EchoListeners {
            stop: Arc::clone(&stop),
            threads: Vec::new(),
        };
        for e in endpoints.iter_mut() {
            let ns = NetNs::named(&e.netns).map_err(|err| format!("{}: {err}", e.name))?;
            let listener = ns
                .run(|| TcpListener::bind("0.0.0.0:0"))
                .map_err(|err| format!("{}: {err}", e.name))?
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|err| format!("TCP listener in {}: {err}", e.netns))?;
            e.tcp_port = Some(
                listener
                    .local_addr()
                    .map_err(|err| format!("TCP listener in {}: {err}", e.netns))?
                    .port(),
            );
            let stop = Arc::clone(&stop);
            me.threads
                .push(std::thread::spawn(move || serve(&listener, &stop)));
        }
        Ok(me)
    }
}

fn serve(listener: &TcpListener, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((s, _)) => {
                std::thread::spawn(move || echo_line(s));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Read one line (≤ 512 bytes, 1 s) and write it back.
fn echo_line(mut s: TcpStream) {
    let deadline = Instant::now() + TCP_STEP;
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(TCP_STEP));
    let _ = s.set_write_timeout(Some(TCP_STEP));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while !buf.contains(&b'\n') && buf.len() < 512 && Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = s.write_all(&buf);
}

impl Drop for EchoListeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(n: &str, a: &str) -> Endpoint {
        Endpoint {
            name: n.into(),
            netns: format!("ns-{n}"),
            address: a.into(),
            tcp_port: None,
        }
    }

    #[test]
    fn every_ordered_pair_is_probed_once_and_failures_show() {
        let eps = [
            ep("a", "10.0.0.1"),
            ep("b", "10.0.0.2"),
            ep("c", "10.0.1.1"),
        ];
        let seen = std::sync::Mutex::new(Vec::new());
        let m = Matrix::probe("node", &eps, |src, dst| {
            let (ns, dst) = (&src.netns, &dst.address);
            seen.lock().map(|mut v| v.push(format!("{ns}->{dst}"))).ok();
            if ns == "ns-b" && dst == "10.0.1.1" {
                vec!["icmp".into(), "tcp".into()]
            } else {
                Vec::new()
            }
        });
        let mut seen = seen.into_inner().unwrap_or_default();
        seen.sort();
        assert_eq!(seen.len(), 6);
        assert!(!m.all_ok());
        assert_eq!(m.results[1][2], Some(vec!["icmp".into(), "tcp".into()]));
        assert_eq!(m.results[2][1], Some(vec![]));
        let text = m.render();
        assert!(
            text.lines()
                .nth(2)
                .is_some_and(|l| l.starts_with("b (10.0.0.2)") && l.ends_with("FAIL(icmp,tcp)")),
            "{text}"
        );
        assert_eq!(text.matches("FAIL").count(), 1, "{text}");
        assert!(text.contains("do NOT reach"), "{text}");
    }

    #[test]
    fn all_reachable() {
        let eps = [ep("a", "10.0.0.1"), ep("b", "10.0.0.2")];
        let m = Matrix::probe("pod", &eps, |_, _| Vec::new());
        assert!(m.all_ok());
        assert!(m.render().contains("all pod pairs reach each other"));
    }
}
