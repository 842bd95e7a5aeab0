//! The `calico-ipam` plugin: addresses from Calico IPAM (crates/ipam) under the handle
//! `<network name>.<containerID>`, with upstream's attributes (node, pod, namespace, timestamp).
//!
//! ADD: requested addresses (runtimeConfig.ips, args.cni.ips) through AssignIP, otherwise
//! auto-assignment per `assign_ipv4`/`assign_ipv6` from `ipv4_pools`/`ipv6_pools`; a failure
//! part-way releases what this request got. DEL: release by handle; nothing to release is
//! success. CHECK: the handle holds addresses.

use std::net::IpAddr;
use std::time::SystemTime;

use calico_ipam::{AssignIpArgs, Attrs, AutoAssignArgs, Ipam, IpamError};
use ipnet::IpNet;

use crate::context::{self, Log, Workload};
use crate::spec::{CniError, CniResult, ErrorCode, IpConfig, Plugin, Request};

/// The IPAM handle of one attachment.
pub fn handle_id(network: &str, container_id: &str) -> String {
    format!("{network}.{container_id}")
}

fn ipam_error(what: &str, e: IpamError) -> CniError {
    let code = match e {
        IpamError::Datastore(_) | IpamError::TooManyRetries(_) => ErrorCode::TryAgainLater,
        _ => ErrorCode::Other(crate::spec::error::CODE_PLUGIN),
    };
    CniError::new(code, format!("calico-ipam: {what}"), e.to_string())
}

fn host_net(ip: IpAddr) -> IpNet {
    let len = if ip.is_ipv4() { 32 } else { 128 };
    // A host prefix is always valid for its family.
    IpNet::new(ip, len).unwrap_or_else(|_| IpNet::from(ip))
}

/// `calico-ipam`.
#[derive(Debug, Default)]
pub struct CalicoIpam;

impl CalicoIpam {
    async fn add_async(&self, req: &Request, log: &Log) -> Result<CniResult, CniError> {
        let node = context::nodename(req)?;
        let wl = Workload::new(req, node.clone());
        let ipam_conf = req.conf.ipam.clone();
        let (v4, v6, v4_pools, v6_pools) = match &ipam_conf {
            Some(i) => (
                i.assign_ipv4,
                i.assign_ipv6,
                i.ipv4_pools.clone(),
                i.ipv6_pools.clone(),
            ),
            None => (true, false, Vec::new(), Vec::new()),
        };
        let handle = handle_id(&req.conf.name, &req.env.container_id);
        let attrs = Attrs {
            node: Some(node.clone()),
            pod: wl.pod.as_ref().map(|(_, p)| p.clone()),
            namespace: wl.pod.as_ref().map(|(ns, _)| ns.clone()),
            timestamp: Some(calico_ipam::clock::format_rfc3339(SystemTime::now())),
            ..Default::default()
        };
        let ds = context::connect(req).await?;
        log.debug("datastore open");
        let ipam = Ipam::new(ds);

        // A repeated ADD for the same container returns what the handle already holds.
        let existing = ipam
            .ips_by_handle(&handle)
            .await
            .map_err(|e| ipam_error("cannot read the handle", e))?;
        log.debug("handle read");
        let ips: Vec<IpAddr> = if !existing.is_empty() {
            log.info(&format!("handle {handle} already holds {existing:?}"));
            existing
        } else {
            let requested = req.conf.requested_ips();
            let result = if requested.is_empty() {
                let mut args = AutoAssignArgs::new(node.clone(), handle.clone());
                args.num_v4 = usize::from(v4);
                args.num_v6 = usize::from(v6);
                args.attrs = attrs.clone();
                args.ipv4_pools = v4_pools;
                args.ipv6_pools = v6_pools;
                ipam.auto_assign(&args)
                    .await
                    .map(|a| a.v4.iter().chain(&a.v6).map(|n| n.addr()).collect())
            } else {
                let mut got = Vec::new();
                let mut res = Ok(());
                for ip in &requested {
                    let args = AssignIpArgs {
                        ip: *ip,
                        handle: Some(handle.clone()),
                        attrs: attrs.clone(),
                        hostname: node.clone(),
                    };
                    match ipam.assign_ip(&args).await {
                        Ok(()) => got.push(*ip),
                        Err(e) => {
                            res = Err(e);
                            break;
                        }
                    }
                }
                res.map(|()| got)
            };
            match result {
                Ok(ips) if !ips.is_empty() => ips,
                Ok(_) => {
                    return Err(CniError::plugin(
                        "calico-ipam: no address assigned",
                        "assign_ipv4 and assign_ipv6 are both false",
                    ));
                }
                Err(e) => {
                    // Leave nothing behind from a partial assignment.
                    if let Err(re) = ipam.release_by_handle(&handle).await {
                        log.warn(&format!("release of {handle} after failure: {re}"));
                    }
                    return Err(ipam_error("cannot assign an address", e));
                }
            }
        };
        log.info(&format!("assigned {ips:?} to handle {handle}"));
        Ok(CniResult {
            ips: ips
                .into_iter()
                .map(|ip| IpConfig {
                    address: host_net(ip),
                    gateway: None,
                    interface: None,
                })
                .collect(),
            ..Default::default()
        })
    }

    async fn del_async(&self, req: &Request, log: &Log) -> Result<(), CniError> {
        let handle = handle_id(&req.conf.name, &req.env.container_id);
        let ds = context::connect(req).await?;
        let ipam = Ipam::new(ds);
        let n = ipam
            .release_by_handle(&handle)
            .await
            .map_err(|e| ipam_error(&format!("cannot release handle {handle}"), e))?;
        log.info(&format!("released {n} address(es) of handle {handle}"));
        Ok(())
    }

    async fn check_async(&self, req: &Request) -> Result<(), CniError> {
        let handle = handle_id(&req.conf.name, &req.env.container_id);
        let ds = context::connect(req).await?;
        let ipam = Ipam::new(ds);
        let ips = ipam
            .ips_by_handle(&handle)
            .await
            .map_err(|e| ipam_error("cannot read the handle", e))?;
        if ips.is_empty() {
            return Err(CniError::plugin(
                format!("calico-ipam: handle {handle} holds no address"),
                "the container has no allocation; run ADD again",
            ));
        }
        Ok(())
    }
}

impl Plugin for CalicoIpam {
    fn add(&mut self, req: &Request) -> Result<CniResult, CniError> {
        let log = Log::new(req, "calico-ipam");
        let r = context::runtime()?.block_on(self.add_async(req, &log));
        if let Err(e) = &r {
            log.warn(&e.to_string());
        }
        r
    }

    fn del(&mut self, req: &Request) -> Result<(), CniError> {
        let log = Log::new(req, "calico-ipam");
        let r = context::runtime()?.block_on(self.del_async(req, &log));
        if let Err(e) = &r {
            log.warn(&e.to_string());
        }
        r
    }

    fn check(&mut self, req: &Request) -> Result<(), CniError> {
        context::runtime()?.block_on(self.check_async(req))
    }
}
