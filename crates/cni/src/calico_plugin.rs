//! The `calico` plugin: IPAM by delegation to the plugin named in `ipam.type` (found on
//! CNI_PATH), pod wiring (`wiring`), and the WorkloadEndpoint in upstream's name and format.
//!
//! ADD is all or nothing: the datastore is reached before anything changes, and a failure after
//! the IPAM ADD removes the veth, the endpoint this call wrote, and releases the addresses by
//! delegated DEL. A repeated ADD for a container whose endpoint and veth exist returns the
//! existing result. DEL reaches the datastore first (unreachable ⇒ error, nothing touched), then
//! removes the endpoint, the veth and the allocation, each missing one being fine.

use std::collections::BTreeMap;
use std::sync::Arc;

use calico_api::resources::endpoint::{WorkloadEndpoint, WorkloadEndpointSpec};
use calico_api::{Kind, Resource};
use calico_dataplane::NetNs;
use calico_datastore::Datastore;
use calico_datastore::resources::{ResourceStore, StoreError};
use ipnet::IpNet;

use crate::context::{self, Log, Workload};
use crate::spec::delegate::{delegate_add, delegate_check, delegate_del};
use crate::spec::{CniError, CniResult, ErrorCode, Interface, IpConfig, Plugin, Request};
use crate::wiring::{self, HOST_MAC, Wiring};

/// `calico`.
#[derive(Debug, Default)]
pub struct Calico;

fn ipam_type(req: &Request) -> Result<String, CniError> {
    req.conf
        .ipam
        .as_ref()
        .map(|i| i.plugin_type.clone())
        .ok_or_else(|| {
            CniError::new(
                ErrorCode::InvalidNetworkConfig,
                "invalid network configuration field ipam",
                "the calico plugin needs an ipam section, e.g. {\"type\": \"calico-ipam\"}",
            )
        })
}

fn pod_netns(req: &Request) -> Result<NetNs, CniError> {
    let path = req.env.netns.as_deref().ok_or_else(|| {
        CniError::new(
            ErrorCode::InvalidEnvironment,
            "CNI_NETNS is required",
            "set CNI_NETNS to the pod's network namespace path",
        )
    })?;
    NetNs::open(path).map_err(|e| {
        CniError::new(
            ErrorCode::InvalidEnvironment,
            format!("cannot open the pod namespace {}", path.display()),
            e.to_string(),
        )
    })
}

/// The pod's labels: args.cni.labels plus the projectcalico.org ones.
fn labels(req: &Request, wl: &Workload, sa: &str) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = req
        .conf
        .args_labels
        .iter()
        .map(|l| (l.key.clone(), l.value.clone()))
        .collect();
    let ns = wl
        .pod
        .as_ref()
        .map(|(ns, _)| ns.as_str())
        .unwrap_or("default");
    m.insert("projectcalico.org/namespace".into(), ns.into());
    m.insert(
        "projectcalico.org/orchestrator".into(),
        wl.identifiers().orchestrator,
    );
    if !sa.is_empty() {
        m.insert("projectcalico.org/serviceaccount".into(), sa.into());
    }
    m
}

/// The WorkloadEndpoint for this attachment.
pub fn build_endpoint(
    req: &Request,
    wl: &Workload,
    ips: &[IpNet],
    mac: &str,
) -> Result<WorkloadEndpoint, CniError> {
    let (name, ns) = wl.endpoint_name()?;
    let sa = req
        .env
        .args
        .other
        .iter()
        .find(|(k, _)| k == "K8S_POD_SERVICE_ACCOUNT")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "default".to_string());
    let sa = if wl.pod.is_some() { sa } else { String::new() };
    let ids = wl.identifiers();
    let mut wep = WorkloadEndpoint::new(name);
    wep.metadata.namespace = Some(ns.clone());
    wep.metadata.labels = Some(labels(req, wl, &sa));
    // Kubernetes: the namespace and service-account profiles; plain CNI: the network name.
    let profiles = match &wl.pod {
        Some(_) => vec![format!("kns.{ns}"), format!("ksa.{ns}.{sa}")],
        None => vec![req.conf.name.clone()],
    };
    wep.spec = WorkloadEndpointSpec {
        orchestrator: ids.orchestrator,
        node: wl.node.clone(),
        container_id: wl.container_id.clone(),
        pod: ids.pod,
        workload: if wl.pod.is_none() {
            wl.container_id.clone()
        } else {
            String::new()
        },
        endpoint: wl.ifname.clone(),
        service_account_name: sa,
        ip_networks: ips.iter().map(|n| n.to_string()).collect(),
        profiles,
        interface_name: wl.host_veth(),
        mac: mac.to_string(),
        ..Default::default()
    };
    Ok(wep)
}

async fn get_endpoint(
    store: &ResourceStore,
    wl: &Workload,
) -> Result<Option<WorkloadEndpoint>, CniError> {
    let (name, ns) = wl.endpoint_name()?;
    match store.get(Kind::WorkloadEndpoint, Some(&ns), &name).await {
        Ok(Resource::WorkloadEndpoint(w)) => Ok(Some(w)),
        Ok(_) => Ok(None),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(context::datastore_error(
            &format!("reading WorkloadEndpoint {ns}/{name}"),
            e,
        )),
    }
}

fn result_for(req: &Request, wl: &Workload, ips: &[IpNet], pod_mac: &str) -> CniResult {
    let sandbox = req.env.netns.as_deref().map(|p| p.display().to_string());
    CniResult {
        interfaces: vec![
            Interface {
                name: wl.host_veth(),
                mac: Some(wiring::mac_string(&HOST_MAC)),
                ..Default::default()
            },
            Interface {
                name: wl.ifname.clone(),
                mac: Some(pod_mac.to_string()).filter(|m| !m.is_empty()),
                sandbox,
                ..Default::default()
            },
        ],
        ips: ips
            .iter()
            .map(|n| IpConfig {
                address: *n,
                gateway: None,
                interface: Some(1),
            })
            .collect(),
        ..Default::default()
    }
}

fn host_prefix(n: &IpNet) -> IpNet {
    let len = if n.addr().is_ipv4() { 32 } else { 128 };
    IpNet::new(n.addr(), len).unwrap_or(*n)
}

impl Calico {
    async fn add_async(&self, req: &Request, log: &Log) -> Result<CniResult, CniError> {
        let ipam = ipam_type(req)?;
        let node = context::nodename(req)?;
        let wl = Workload::new(req, node);
        let mtu = context::mtu(req)?;
        let pod_ns = pod_netns(req)?;
        // The datastore first: unreachable ⇒ nothing done.
        let ds: Arc<dyn Datastore> = context::connect(req).await?;
        log.debug("datastore open");
        let store = ResourceStore::new(ds);
        let host_veth = wl.host_veth();

        let existing = get_endpoint(&store, &wl).await?;
        log.debug(&format!("endpoint read (present: {})", existing.is_some()));
        if let Some(wep) = &existing
            && wep.spec.container_id == wl.container_id
            && wiring::host_veth_exists(&host_veth)?
        {
            let ips: Vec<IpNet> = wep
                .spec
                .ip_networks
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect();
            let w = Wiring {
                host_veth: host_veth.clone(),
                pod_ifname: wl.ifname.clone(),
                mtu,
                ips: ips.clone(),
                allow_ip_forwarding: req.conf.allow_ip_forwarding,
            };
            if wiring::verify(&w, &pod_ns).is_ok() {
                log.info(&format!(
                    "endpoint {} already wired; returning it",
                    wep.metadata.name
                ));
                return Ok(result_for(req, &wl, &ips, &wep.spec.mac));
            }
        }

        let ipam_result = delegate_add(&ipam, &req.stdin, &req.env)?;
        log.debug(&format!("IPAM {ipam} answered"));
        let ips: Vec<IpNet> = ipam_result
            .ips
            .iter()
            .map(|c| host_prefix(&c.address))
            .collect();
        if ips.is_empty() {
            let _ = delegate_del(&ipam, &req.stdin, &req.env);
            return Err(CniError::plugin(
                format!("IPAM plugin {ipam} returned no address"),
                "check the IPAM configuration (assign_ipv4 / assign_ipv6, pools)",
            ));
        }
        log.info(&format!("IPAM {ipam} gave {ips:?}"));
        match self
            .wire_and_record(
                req,
                &wl,
                &store,
                &pod_ns,
                mtu,
                &ips,
                existing.is_some(),
                log,
            )
            .await
        {
            Ok(result) => {
                let mut result = result;
                result.routes = ipam_result.routes.clone();
                result.dns = ipam_result.dns.clone();
                Ok(result)
            }
            Err(e) => {
                log.warn(&format!("ADD failed, rolling back: {e}"));
                if let Err(u) = wiring::unwire(&host_veth) {
                    log.warn(&format!("rollback: {u}"));
                }
                // Only an endpoint this call wrote is removed.
                if let Ok(Some(w)) = get_endpoint(&store, &wl).await
                    && w.spec.container_id == wl.container_id
                    && let Ok((name, ns)) = wl.endpoint_name()
                    && let Err(d) = store
                        .delete(Kind::WorkloadEndpoint, Some(&ns), &name, None)
                        .await
                {
                    log.warn(&format!("rollback: delete endpoint: {d}"));
                }
                if let Err(d) = delegate_del(&ipam, &req.stdin, &req.env) {
                    log.warn(&format!("rollback: IPAM release: {d}"));
                }
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn wire_and_record(
        &self,
        req: &Request,
        wl: &Workload,
        store: &ResourceStore,
        pod_ns: &NetNs,
        mtu: u32,
        ips: &[IpNet],
        endpoint_exists: bool,
        log: &Log,
    ) -> Result<CniResult, CniError> {
        let host_veth = wl.host_veth();
        // A stale veth of an earlier sandbox of the same pod goes first (as upstream).
        if wiring::host_veth_exists(&host_veth)? {
            log.info(&format!("removing stale {host_veth}"));
            wiring::unwire(&host_veth)?;
        }
        let w = Wiring {
            host_veth,
            pod_ifname: wl.ifname.clone(),
            mtu,
            ips: ips.to_vec(),
            allow_ip_forwarding: req.conf.allow_ip_forwarding,
        };
        let wired = wiring::wire(&w, pod_ns)?;
        log.debug(&format!("wired {}", w.host_veth));
        let wep = Resource::WorkloadEndpoint(build_endpoint(req, wl, ips, &wired.pod_mac)?);
        let name = wep.name().to_string();
        // No endpoint when ADD started (the common case): one create, no read. Otherwise (or
        // when another writer won the race) a create-or-replace.
        let written = if endpoint_exists {
            store.apply(wep).await
        } else {
            match store.create(wep.clone()).await {
                Err(StoreError::AlreadyExists { .. }) => store.apply(wep).await,
                other => other,
            }
        };
        written.map_err(|e| {
            context::datastore_error(&format!("writing WorkloadEndpoint {name}"), e)
        })?;
        log.info(&format!("wrote WorkloadEndpoint {name}"));
        Ok(result_for(req, wl, ips, &wired.pod_mac))
    }

    async fn del_async(&self, req: &Request, log: &Log) -> Result<(), CniError> {
        let ipam = ipam_type(req)?;
        let node = context::nodename(req)?;
        let wl = Workload::new(req, node);
        let ds = context::connect(req).await?;
        log.debug("datastore open");
        let store = ResourceStore::new(ds);
        let existing = get_endpoint(&store, &wl).await?;
        // An endpoint of a newer sandbox of the same pod is not ours to remove.
        let ours = existing.as_ref().is_none_or(|w| {
            w.spec.container_id.is_empty() || w.spec.container_id == wl.container_id
        });
        if let Some(w) = &existing
            && ours
        {
            let (name, ns) = wl.endpoint_name()?;
            match store
                .delete(Kind::WorkloadEndpoint, Some(&ns), &name, None)
                .await
            {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => {
                    return Err(context::datastore_error(
                        &format!("deleting WorkloadEndpoint {ns}/{name}"),
                        e,
                    ));
                }
            }
            log.info(&format!("deleted WorkloadEndpoint {}", w.metadata.name));
        }
        if ours {
            wiring::unwire(&wl.host_veth())?;
            log.debug(&format!("removed {}", wl.host_veth()));
        }
        delegate_del(&ipam, &req.stdin, &req.env)?;
        log.debug(&format!("IPAM {ipam} released"));
        Ok(())
    }

    async fn check_async(&self, req: &Request) -> Result<(), CniError> {
        let ipam = ipam_type(req)?;
        let node = context::nodename(req)?;
        let wl = Workload::new(req, node);
        let pod_ns = pod_netns(req)?;
        let ips: Vec<IpNet> = match &req.conf.prev_result {
            Some(prev) => prev.ips.iter().map(|c| host_prefix(&c.address)).collect(),
            None => {
                let ds = context::connect(req).await?;
                let store = ResourceStore::new(ds);
                get_endpoint(&store, &wl)
                    .await?
                    .map(|w| {
                        w.spec
                            .ip_networks
                            .iter()
                            .filter_map(|s| s.parse().ok())
                            .collect()
                    })
                    .unwrap_or_default()
            }
        };
        let w = Wiring {
            host_veth: wl.host_veth(),
            pod_ifname: wl.ifname.clone(),
            mtu: 0,
            ips,
            allow_ip_forwarding: false,
        };
        wiring::verify(&w, &pod_ns)?;
        delegate_check(&ipam, &req.stdin, &req.env)
    }
}

fn logged<T>(log: &Log, r: Result<T, CniError>) -> Result<T, CniError> {
    if let Err(e) = &r {
        log.warn(&e.to_string());
    }
    r
}

impl Plugin for Calico {
    fn add(&mut self, req: &Request) -> Result<CniResult, CniError> {
        let log = Log::new(req, "calico");
        logged(
            &log,
            context::runtime()?.block_on(self.add_async(req, &log)),
        )
    }

    fn del(&mut self, req: &Request) -> Result<(), CniError> {
        let log = Log::new(req, "calico");
        // A missing namespace is fine for DEL: only the host side matters.
        logged(
            &log,
            context::runtime()?.block_on(self.del_async(req, &log)),
        )
    }

    fn check(&mut self, req: &Request) -> Result<(), CniError> {
        let log = Log::new(req, "calico");
        logged(&log, context::runtime()?.block_on(self.check_async(req)))
    }
}
