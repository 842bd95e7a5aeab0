//! `calico-node`: configured by upstream's environment variables, runs in the foreground in the
//! host's (or a lab node's) network namespace, logs to stderr, exits 0 on SIGTERM/SIGINT.
//!
//! Order: health/metrics listeners (readiness 503) → datastore → interfaces via netlink →
//! startup → Felix's dataplane thread + agent loop (readiness 200 once in sync and the
//! dataplane programmed) → signal → exit.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use calico_dataplane::Netlink;
use calico_datastore::DatastoreConfig;
use calico_datastore::config::{DEFAULT_EMBEDDED_PATH, EmbeddedConfig};
use calico_datastore::resources::ResourceStore;
use calico_felix::LocalFacts;
use calico_ipam::Ipam;
use calico_node::agent::Agent;
use calico_node::autodetect;
use calico_node::config::NodeConfig;
use calico_node::felix::{self, Felix};
use calico_node::health::{self, Endpoints, Status};
use calico_node::startup;
use tokio::sync::watch;

fn main() -> ExitCode {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| std::env::var("FELIX_LOGSEVERITYSCREEN").ok())
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_else(|| "info".into());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    // One thread is plenty for an agent this size and keeps RSS small.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("calico-node failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A receiver that turns true on SIGTERM or SIGINT.
fn signals() -> anyhow::Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens after it sent.
    let _ = rx.wait_for(|v| *v).await;
}

async fn run() -> anyhow::Result<()> {
    let vars: HashMap<String, String> = std::env::vars().collect();
    let cfg = NodeConfig::from_vars(&vars, || {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
    })?;
    tracing::info!(node = cfg.nodename, backend = ?cfg.backend, "calico-node starting");
    let stop = signals()?;
    let status = Status::new();

    let mut servers = Vec::new();
    if cfg.health_enabled {
        let l = health::bind(&cfg.health_host, cfg.health_port)
            .await
            .with_context(|| {
                format!(
                    "health listener on {}:{} (FELIX_HEALTHHOST/FELIX_HEALTHPORT)",
                    cfg.health_host, cfg.health_port
                )
            })?;
        tracing::info!(addr = ?l.local_addr().ok(), "health endpoints /liveness /readiness");
        servers.push(tokio::spawn(health::serve(
            l,
            status.clone(),
            Endpoints::Health,
        )));
    }
    if cfg.metrics_enabled {
        let l = health::bind(&cfg.metrics_host, cfg.metrics_port)
            .await
            .with_context(|| {
                format!(
                    "metrics listener on {}:{} (FELIX_PROMETHEUSMETRICSHOST/PORT)",
                    cfg.metrics_host, cfg.metrics_port
                )
            })?;
        tracing::info!(addr = ?l.local_addr().ok(), "Prometheus metrics /metrics");
        servers.push(tokio::spawn(health::serve(
            l,
            status.clone(),
            Endpoints::Metrics,
        )));
    }

    let ds_cfg = cfg.datastore.clone().unwrap_or_else(|| {
        DatastoreConfig::Embedded(EmbeddedConfig {
            path: DEFAULT_EMBEDDED_PATH.into(),
        })
    });
    let ds = calico_datastore::connect(&ds_cfg).await.context(
        "connect to the datastore (DATASTORE_TYPE, ETCD_ENDPOINTS, EMBEDDED_DATASTORE_PATH)",
    )?;
    let ifaces = tokio::task::spawn_blocking(|| {
        let mut nl = Netlink::open()?;
        autodetect::read_interfaces(&mut nl)
    })
    .await
    .context("interface listing task")??;

    let store = ResourceStore::new(ds.clone());
    let ipam = Ipam::new(ds.clone());
    let started = tokio::select! {
        r = startup::run(&cfg, &store, &ipam, &ifaces, autodetect::reach_source) => r?,
        () = stopped(stop.clone()) => {
            tracing::info!("stopped during startup");
            return Ok(());
        }
    };
    status
        .pod_mtu
        .store(started.pod_mtu.into(), Ordering::Relaxed);
    status.startup_done.store(true, Ordering::Relaxed);
    tracing::info!(
        cidr = ?started.cidr,
        cidr6 = ?started.cidr6,
        vxlan_tunnel = ?started.tunnels.vxlan,
        ipip_tunnel = ?started.tunnels.ipip,
        pod_mtu = started.pod_mtu,
        "startup complete"
    );

    let felix = Felix::new(
        LocalFacts {
            node_name: cfg.nodename.clone(),
            uplink: started.uplink.clone(),
            host_mtu: started.host_mtu,
        },
        cfg.route_refresh_interval,
    );
    let (consumer, felix_thread) = felix::spawn(felix, Arc::clone(&status))?;
    let mut agent = Agent::new(cfg, ds, Arc::clone(&status), started.host_mtu);
    agent.add_consumer(Box::new(consumer));
    let result = agent.run(stopped(stop)).await;
    // The agent dropped the consumer: the dataplane thread finishes its pass and ends.
    let _ = tokio::task::spawn_blocking(move || felix_thread.join()).await;
    for s in servers {
        s.abort();
    }
    result.map_err(Into::into)
}
