//! Health (`/liveness`, `/readiness` on FELIX_HEALTHHOST:FELIX_HEALTHPORT, default
//! localhost:9099) and Prometheus metrics (`/metrics` on FELIX_PROMETHEUSMETRICSHOST:PORT,
//! default all addresses :9091), served by a tiny HTTP/1.1 responder: one request per
//! connection, bounded in size and time, `Connection: close`.
//!
//! The agent updates a shared `Status`; the responders only read it. Readiness is 200 once
//! startup finished and the syncer reached its first in-sync, 503 before.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `felix_resync_state` values.
pub const RESYNC_WAITING: u8 = 1;
pub const RESYNC_IN_PROGRESS: u8 = 2;
pub const RESYNC_IN_SYNC: u8 = 3;

const MAX_REQUEST: usize = 8192;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the agent reports; shared with the HTTP responders.
#[derive(Debug, Default)]
pub struct Status {
    pub startup_done: AtomicBool,
    pub in_sync: AtomicBool,
    pub resync_state: AtomicU8,
    pub syncer_updates: AtomicU64,
    pub tunnel_reconciles: AtomicU64,
    pub pod_mtu: AtomicU64,
    /// Felix's dataplane thread runs: readiness then also waits for its first pass.
    pub felix_enabled: AtomicBool,
    /// Felix programmed the kernel at least once after the first in-sync.
    pub dataplane_synced: AtomicBool,
    /// Set by the dataplane thread while it runs (cleared when it ends, also by a panic).
    pub dataplane_alive: AtomicBool,
    pub dataplane_applies: AtomicU64,
    pub dataplane_failures: AtomicU64,
}

impl Status {
    pub fn new() -> Arc<Status> {
        let s = Status::default();
        s.resync_state.store(RESYNC_WAITING, Ordering::Relaxed);
        Arc::new(s)
    }

    pub fn ready(&self) -> bool {
        self.startup_done.load(Ordering::Relaxed)
            && self.in_sync.load(Ordering::Relaxed)
            && (!self.felix_enabled.load(Ordering::Relaxed)
                || self.dataplane_synced.load(Ordering::Relaxed))
    }
}

/// Binds `host:port`; `""` means every address, names resolve (first address wins).
pub async fn bind(host: &str, port: u16) -> std::io::Result<TcpListener> {
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other(format!("{host} resolves to no address"))))
}

/// Which endpoints a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoints {
    Health,
    Metrics,
}

/// Serves until the task is dropped/aborted.
pub async fn serve(listener: TcpListener, status: Arc<Status>, endpoints: Endpoints) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            // Accept errors (e.g. EMFILE) are transient; do not spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let status = status.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, handle(conn, &status, endpoints)).await;
        });
    }
}

async fn handle(mut conn: TcpStream, status: &Status, endpoints: Endpoints) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let mut parts = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (code, body) = respond(method, path, status, endpoints);
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let ctype = if path == "/metrics" {
        "text/plain; version=0.0.4"
    } else {
        "text/plain; charset=utf-8"
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    if method != "HEAD" {
        conn.write_all(body.as_bytes()).await?;
    }
    conn.shutdown().await
}

/// The pure part: status code and body for one request.
pub fn respond(method: &str, path: &str, status: &Status, endpoints: Endpoints) -> (u16, String) {
    if method != "GET" && method != "HEAD" {
        return (405, "only GET and HEAD\n".into());
    }
    match (endpoints, path) {
        (Endpoints::Health, "/liveness")
            if status.felix_enabled.load(Ordering::Relaxed)
                && !status.dataplane_alive.load(Ordering::Relaxed) =>
        {
            (
                503,
                "not live: Felix's dataplane thread stopped (see the log)\n".into(),
            )
        }
        (Endpoints::Health, "/liveness") => (200, "live\n".into()),
        (Endpoints::Health, "/readiness") if status.ready() => (200, "ready\n".into()),
        (Endpoints::Health, "/readiness") => (
            503,
            if !status.startup_done.load(Ordering::Relaxed) {
                "not ready: startup not finished\n".into()
            } else if !status.in_sync.load(Ordering::Relaxed) {
                "not ready: datastore not in sync yet\n".into()
            } else {
                "not ready: dataplane not programmed yet\n".into()
            },
        ),
        (Endpoints::Metrics, "/metrics") => (200, metrics(status)),
        _ => (404, "not found\n".into()),
    }
}

/// `VmRSS` of this process in bytes, from /proc/self/status (no page-size assumption).
fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// User + system CPU seconds from /proc/self/stat (clock ticks are USER_HZ = 100 on Linux).
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Prometheus text exposition of the metrics we keep.
pub fn metrics(status: &Status) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, kind: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    gauge(
        "felix_resync_state",
        "gauge",
        "Current datastore state (1 waiting, 2 resyncing, 3 in sync).",
        status.resync_state.load(Ordering::Relaxed).to_string(),
    );
    gauge(
        "felix_syncer_updates_total",
        "counter",
        "Datastore syncer updates processed (puts, deletes, in-sync markers).",
        status.syncer_updates.load(Ordering::Relaxed).to_string(),
    );
    gauge(
        "calico_node_tunnel_reconciles_total",
        "counter",
        "Tunnel address reconciliations after pool or node changes.",
        status.tunnel_reconciles.load(Ordering::Relaxed).to_string(),
    );
    gauge(
        "felix_int_dataplane_apply_total",
        "counter",
        "Dataplane passes (route batch, device, neighbours, FDB, nft) after datastore changes, retries and refreshes.",
        status.dataplane_applies.load(Ordering::Relaxed).to_string(),
    );
    gauge(
        "felix_int_dataplane_failures",
        "counter",
        "Dataplane passes that failed or left an object failed (retried with backoff).",
        status
            .dataplane_failures
            .load(Ordering::Relaxed)
            .to_string(),
    );
    gauge(
        "calico_node_pod_mtu",
        "gauge",
        "Pod MTU written for the CNI plugin.",
        status.pod_mtu.load(Ordering::Relaxed).to_string(),
    );
    if let Some(rss) = rss_bytes() {
        gauge(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            rss.to_string(),
        );
    }
    if let Some(cpu) = cpu_seconds() {
        gauge(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            format!("{cpu}"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_startup_and_sync() {
        let s = Status::new();
        assert_eq!(respond("GET", "/liveness", &s, Endpoints::Health).0, 200);
        assert_eq!(respond("GET", "/readiness", &s, Endpoints::Health).0, 503);
        s.startup_done.store(true, Ordering::Relaxed);
        let (code, body) = respond("GET", "/readiness", &s, Endpoints::Health);
        assert_eq!(
            (code, body.as_str()),
            (503, "not ready: datastore not in sync yet\n")
        );
        s.in_sync.store(true, Ordering::Relaxed);
        assert_eq!(respond("GET", "/readiness", &s, Endpoints::Health).0, 200);

        // With Felix: ready after its first dataplane pass, live while its thread runs.
        s.felix_enabled.store(true, Ordering::Relaxed);
        s.dataplane_alive.store(true, Ordering::Relaxed);
        let (code, body) = respond("GET", "/readiness", &s, Endpoints::Health);
        assert_eq!(
            (code, body.as_str()),
            (503, "not ready: dataplane not programmed yet\n")
        );
        s.dataplane_synced.store(true, Ordering::Relaxed);
        assert_eq!(respond("GET", "/readiness", &s, Endpoints::Health).0, 200);
        assert_eq!(respond("GET", "/liveness", &s, Endpoints::Health).0, 200);
        s.dataplane_alive.store(false, Ordering::Relaxed);
        assert_eq!(respond("GET", "/liveness", &s, Endpoints::Health).0, 503);
        assert_eq!(respond("POST", "/readiness", &s, Endpoints::Health).0, 405);
        assert_eq!(respond("GET", "/metrics", &s, Endpoints::Health).0, 404);
        assert_eq!(respond("GET", "/readiness", &s, Endpoints::Metrics).0, 404);
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let s = Status::new();
        s.syncer_updates.store(7, Ordering::Relaxed);
        let (code, body) = respond("GET", "/metrics", &s, Endpoints::Metrics);
        assert_eq!(code, 200);
        assert!(body.contains("# TYPE felix_resync_state gauge\nfelix_resync_state 1\n"));
        assert!(body.contains("felix_syncer_updates_total 7\n"));
        let rss = body
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        assert!(rss > 0, "{body}");
    }
}
